"""The PostgreSQL backend of the state store: several `mixllm serve` replicas share one database.

Only connection, transaction, migration and snapshot details live here; every query is
`state.base.StoreBase`'s, written in the SQL both backends understand (`?` placeholders are
turned into psycopg's `%s` once per statement text). The schema is `state.schema`'s, its
version kept in the one-row table `mixllm_schema`. psycopg is imported only when a store is
used, so the SQLite-only paths never load it.

Locking: every write transaction first takes one transaction-scoped advisory lock
(`pg_advisory_xact_lock(QUEUE_LOCK)`), the PostgreSQL twin of SQLite's `BEGIN IMMEDIATE`.
Why one advisory lock rather than row locks: a routing decision reads the queue of *every* LLM
(the waits of all candidates enter the score) before it writes one row, so a row-lock scheme
would have to lock every LLM's queue row anyway, in a fixed order, and would still need a
serialisation point for the feedback log. One lock also makes the feedback log's `seq` commit
in order (a reader never sees seq 12 committed while 11 is still in flight, which would make
`feedback_since` skip 11 forever). The transactions run at READ COMMITTED, so each statement
after the lock sees everything the previous holder committed. The lock is released by commit,
rollback, or the server noticing that a killed replica's connection is gone, so a SIGKILLed
replica can never leave the queue locked or half-written. The critical section is a few
round trips (~1 ms on loopback); the encoder, not the lock, bounds a replica's throughput.

Stale connections: after PostgreSQL restarts (or a network blip drops the connection), a replica's
idle connections are dead, and each would fail its next statement: one 503 per connection and per
outage. Two rules keep a restart from costing any request. Before a connection is used it is
looked at without a round trip (`_Conn.stale`: an idle connection whose socket has something to
read, the server's "terminating connection" notice or end of file, is dead) and replaced. And
when the first statement still finds the connection dropped (`_dropped`: an OperationalError
that left it broken), it is run once more on a fresh connection, but only where that cannot do
anything twice: the BEGIN and the lock that open a transaction (nothing of the caller has run
yet), and plain SELECTs outside a transaction. A failure after that (a statement inside a
transaction, a write) stays a `StoreError` (503): the transaction is gone and the caller decides.
"""

from __future__ import annotations

import contextlib
import re
import select
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import StoreError
from .base import Row, StoreBase
from .schema import statements, steps

if TYPE_CHECKING:
    import psycopg

QUEUE_LOCK = 0x6D69786C6C6D  # "mixllm": the one write lock (advisory, transaction-scoped)
MIGRATE_LOCK = QUEUE_LOCK + 1
LEARN_LOCK = QUEUE_LOCK + 2  # session-scoped: one replica at a time folds the feedback log
CONNECT_TIMEOUT_S = 10

_PLACEHOLDER = re.compile(r"\?")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class _Conn:
    """A psycopg connection that speaks `?` placeholders, like sqlite3, and fails with `StoreError`.

    `reconnect` opens a fresh raw connection: a SELECT outside a transaction that finds the
    connection dropped runs again, once, on a new one (see the module docstring)."""

    def __init__(self, raw: psycopg.Connection[Row], where: str,
                 reconnect: Callable[[], psycopg.Connection[Row]] | None = None):
        self.raw = raw
        self.where = where
        self.reconnect = reconnect
        self._sql: dict[str, str] = {}

    def execute(self, sql: str, params: Sequence[object] = (), /) -> psycopg.Cursor[Row]:
        import psycopg

        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = _PLACEHOLDER.sub("%s", sql)
        idle = self.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            return self.raw.execute(q, params)
        except psycopg.Error as exc:
            if not (idle and _dropped(self.raw, exc) and self.reconnect is not None
                    and sql.lstrip()[:6].upper() == "SELECT"):
                raise _failure(self.where, exc) from None
        self.replace()  # a read outside a transaction on a connection the server dropped: once more
        try:
            return self.raw.execute(q, params)
        except psycopg.Error as exc:
            raise _failure(self.where, exc) from None

    def replace(self) -> None:
        """Close this connection and open a fresh one in its place (StoreError if that fails)."""
        import psycopg

        with contextlib.suppress(Exception):
            self.raw.close()
        assert self.reconnect is not None
        try:
            self.raw = self.reconnect()
        except psycopg.Error as exc:
            raise _failure(self.where, exc, "cannot connect to the state database") from None

    def stale(self) -> bool:
        """Dead without asking the server: closed, broken, or idle with something to read (only a server
        that is going away, or has gone, speaks to an idle client: its notice, or end of file)."""
        import psycopg

        raw = self.raw
        if raw.closed or raw.broken:
            return True
        if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return False
        try:
            readable, _, _ = select.select([raw.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


def _dropped(raw: psycopg.Connection[Row], exc: Exception) -> bool:
    """Whether `exc` means the connection itself is gone (the server restarted, the network dropped it)."""
    import psycopg

    return isinstance(exc, psycopg.OperationalError) and (raw.broken or raw.closed)


def _failure(where: str, exc: Exception, what: str = "state database error") -> StoreError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"{where}: {what} ({msg})")


class PostgresStore(StoreBase):
    """The PostgreSQL backend: one database (or schema, via `search_path`) shared by replicas."""

    shares_snapshot = True

    def __init__(self, url: str):
        self.url = url
        self._conn: _Conn | None = None

    def describe(self) -> str:
        return redact(self.url)

    @property
    def conn(self) -> _Conn:
        if self._conn is not None and self._conn.stale():
            self.close()  # the server restarted or the network dropped: reconnect
        if self._conn is None:
            self._conn = _Conn(self._connect(), self.describe(), self._connect)
        return self._conn

    def _connect(self) -> psycopg.Connection[Row]:
        """A new raw connection, the schema migrated (StoreError if either fails)."""
        import psycopg

        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                  application_name="mixllm")
        except psycopg.Error as exc:
            raise _failure(self.describe(), exc, "cannot connect to the state database") from None
        try:
            self._migrate(raw)
        except psycopg.Error as exc:
            raw.close()
            raise _failure(self.describe(), exc, "cannot migrate the state database") from None
        return raw

    @staticmethod
    def _migrate(raw: psycopg.Connection[Row]) -> None:
        with raw.transaction():
            # Replicas starting at once take turns; DDL is transactional, so a crash leaves the old version.
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            raw.execute("CREATE TABLE IF NOT EXISTS mixllm_schema (version INTEGER NOT NULL)")
            row = raw.execute("SELECT version FROM mixllm_schema").fetchone()
            version = row[0] if row else 0
            if row is None:
                raw.execute("INSERT INTO mixllm_schema VALUES (0)")
            for i, sql in enumerate(steps("postgres")[version:], start=version + 1):
                for statement in statements(sql):
                    raw.execute(statement)
                raw.execute("UPDATE mixllm_schema SET version = %s", (i,))

    def schema_version(self) -> int:
        row = self.conn.execute("SELECT version FROM mixllm_schema").fetchone()
        assert row is not None  # migrating inserts the one row
        return int(row[0])

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.raw.close()
            self._conn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Conn]:
        """One writer at a time across every replica (the advisory lock); all or nothing.

        A connection found dropped while opening the transaction (BEGIN, or the lock: nothing of the
        caller's has run) is replaced and the transaction opened again, once."""
        import psycopg

        conn, tx = self._begin()
        try:
            with tx:
                yield conn
        except psycopg.Error as exc:  # the commit or rollback itself failed
            raise _failure(self.describe(), exc) from None

    def _begin(self) -> tuple[_Conn, contextlib.ExitStack]:
        """An open transaction holding the queue lock, and the stack that ends it (commit or rollback)."""
        import psycopg

        conn = self.conn
        for attempt in (1, 2):
            tx = contextlib.ExitStack()
            try:
                tx.enter_context(conn.raw.transaction())
                conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (QUEUE_LOCK,))
                return conn, tx
            except psycopg.Error as exc:
                with contextlib.suppress(Exception):
                    tx.close()  # roll back what began (on a dead connection this fails too)
                if attempt == 2 or not _dropped(conn.raw, exc):
                    raise _failure(self.describe(), exc) from None
            conn.replace()
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    # ---------------------------------------------------------------- the shared online snapshot

    @contextlib.contextmanager
    def learning(self) -> Iterator[bool]:
        """True for the one replica that holds the learner lock (released on exit, or when its
        connection dies); the others get False and try again later."""
        row = self.conn.execute("SELECT pg_try_advisory_lock(?)", (LEARN_LOCK,)).fetchone()
        got = bool(row and row[0])
        try:
            yield got
        finally:
            if got and self._conn is not None and not self._conn.raw.broken:
                with contextlib.suppress(StoreError):
                    self._conn.execute("SELECT pg_advisory_unlock(?)", (LEARN_LOCK,))

    def read_snapshot(self) -> bytes | None:
        rows = self._read("SELECT data FROM online_snapshot WHERE id = 1")
        return bytes(rows[0][0]) if rows else None

    def snapshot_seq(self) -> int | None:
        rows = self._read("SELECT last_seq FROM online_snapshot WHERE id = 1")
        return int(rows[0][0]) if rows else None

    def write_snapshot(self, data: bytes, last_seq: int) -> bool:
        """Store the snapshot unless another replica already stored one that has seen more of the log;
        False if it was not stored. Replicas catching up at once compute the same state from the
        same log, so keeping the furthest one is enough. One statement, atomic on its own: it takes the
        snapshot row's lock, not the queue's, so routing on every replica goes on while megabytes are written."""
        cur = self.conn.execute(
            "INSERT INTO online_snapshot (id, last_seq, saved_s, data) VALUES (1, ?, ?, ?) ON CONFLICT (id) "
            "DO UPDATE SET last_seq = excluded.last_seq, saved_s = excluded.saved_s, data = excluded.data "
            "WHERE online_snapshot.last_seq <= excluded.last_seq", (last_seq, time.time(), data))
        return cur.rowcount == 1
