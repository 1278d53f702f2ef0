"""The SQLite backend of the state store: the home's `state.sqlite3`, shared by every `mixllm`
process of one machine.

WAL mode lets readers run beside the one writer; every read-decide-write runs in one `BEGIN
IMMEDIATE` transaction, so two parallel `route` calls see each other's load and never double-book
a slot. The queries are `state.base.StoreBase`'s; the schema is `state.schema`'s, its version
kept in `PRAGMA user_version`.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from ..errors import StoreError
from .base import StoreBase
from .schema import statements, steps

STATE_FILE = "state.sqlite3"
BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for the lock before giving up
POLL_TIMEOUT_MS = 5

T = TypeVar("T")


def _is_lock_error(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _retry_while_locked(step: Callable[[], T], path: Path, failure: str = "state database error") -> T:
    """Run `step`, retrying every 0.5–3 ms (jittered) while the database is locked.

    Used for taking the write lock and for opening (several processes creating the database
    at once race for WAL mode and the migrations, and SQLite answers some of those races with
    "locked" without waiting). Polling with jitter, rather than SQLite's backoff whose sleeps
    grow to 100 ms, keeps busy neighbours from starving a process for seconds.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return step()
        except sqlite3.Error as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"{path}: {failure} ({exc})") from None
            if time.monotonic() > deadline:
                raise StoreError(f"{path}: the state database stayed locked for "
                                 f"{BUSY_TIMEOUT_MS // 1000} s; is another process stuck?") from None
            time.sleep(random.uniform(0.0005, 0.003))


class StateStore(StoreBase):
    """The SQLite backend: `<home>/state.sqlite3`, WAL, one `BEGIN IMMEDIATE` writer at a time."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_home(cls, home: Path | str | None = None) -> StateStore:
        from ..paths import home_dir

        return cls(home_dir(home) / STATE_FILE)

    def describe(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _retry_while_locked(self._open, self.path, "cannot open the state database")
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL keeps it consistent
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
            # From here on writers wait in `transaction`'s fair polling loop, not in SQLite's
            # handler; a short timeout still covers a checkpoint racing a statement.
            conn.execute(f"PRAGMA busy_timeout = {POLL_TIMEOUT_MS}")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Apply the migrations this file lacks, all in one transaction (the write lock keeps
        processes opening at once from applying one twice)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for i, sql in enumerate(steps("sqlite")[version:], start=version + 1):
                for statement in statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {i}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time (others wait up to the busy timeout); all or nothing.

        Waiting for the write lock polls every 0.5–3 ms (jittered) instead of SQLite's own
        backoff, whose sleeps grow to 100 ms and let busy neighbours starve a process for seconds.
        """
        conn = self.conn
        _retry_while_locked(lambda: conn.execute("BEGIN IMMEDIATE"), self.path)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # The online snapshot of a SQLite home is a file of the home (`learning.online` reads and
    # replaces it atomically), so this store holds none: `shares_snapshot` is False.

    def read_snapshot(self) -> bytes | None:
        return None

    def snapshot_seq(self) -> int | None:
        return None

    def write_snapshot(self, data: bytes, last_seq: int) -> bool:
        raise NotImplementedError("a SQLite store keeps no snapshot (shares_snapshot is False); "
                                  "learning.online saves it in the home")
