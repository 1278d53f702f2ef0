"""The state: decisions, the queue of calls in flight, observed latencies, the feedback log.

One logic layer (`StoreBase`) over two backends that differ only in how they connect, lock and
migrate: the home's SQLite file (`StateStore`, here) and PostgreSQL (`store_pg.PostgresStore`),
which several `mixllm serve` replicas share. SQLite: WAL mode and a busy timeout let several
`mixllm` processes route and report at once; every read-decide-write runs in one `BEGIN
IMMEDIATE` transaction, so two parallel `route` calls see each other's load and never
double-book a slot. Migrations are tiny, ordered and idempotent.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .base import BUSY_TIMEOUT_MS, StoreBase, _retry_while_locked

STATE_FILE = "state.sqlite3"
POLL_TIMEOUT_MS = 5

MIGRATIONS: tuple[str, ...] = (
    # 1: decisions, the queue, latency observations and estimates
    """
    CREATE TABLE decisions (
        id TEXT PRIMARY KEY,
        created_s REAL NOT NULL,
        llm TEXT NOT NULL,
        budget TEXT,
        lambda REAL NOT NULL,
        query_sha256 TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        predicted_response_tokens REAL NOT NULL,
        predicted_cost_usd REAL NOT NULL,
        expected_wait_s REAL NOT NULL
    );
    CREATE TABLE jobs (
        decision_id TEXT PRIMARY KEY REFERENCES decisions(id),
        llm TEXT NOT NULL,
        slot INTEGER NOT NULL,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        done_s REAL
    );
    CREATE INDEX jobs_open ON jobs(llm, end_s) WHERE done_s IS NULL;
    CREATE TABLE latency_observations (
        decision_id TEXT PRIMARY KEY REFERENCES decisions(id),
        llm TEXT NOT NULL,
        at_s REAL NOT NULL,
        latency_ms REAL,
        ttft_ms REAL,
        response_tokens REAL
    );
    CREATE TABLE latency_estimates (
        llm TEXT PRIMARY KEY,
        ttft_ms REAL NOT NULL,
        output_tokens_per_s REAL NOT NULL,
        n INTEGER NOT NULL
    );
    """,
    # 2: the decision log keeps what online learning needs; feedback is a log of its own
    """
    ALTER TABLE decisions ADD COLUMN embedding BLOB;
    ALTER TABLE decisions ADD COLUMN token_ids BLOB;
    ALTER TABLE decisions ADD COLUMN candidates TEXT;
    ALTER TABLE decisions ADD COLUMN query_text TEXT;
    CREATE TABLE feedback (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        decision_id TEXT NOT NULL REFERENCES decisions(id),
        llm TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('refined', 'binary')),
        quality REAL,
        good INTEGER,
        response_tokens INTEGER,
        latency_ms REAL,
        cost_usd REAL,
        content_sha256 TEXT NOT NULL,
        at_s REAL NOT NULL,
        UNIQUE (decision_id, content_sha256)
    );
    """,
    # 3: reading the queue scans only the calls still in flight (`end_s > now`), not every call
    # never reported done (jobs_open is keyed by llm first, so a range on end_s alone misses it)
    """
    CREATE INDEX jobs_in_flight ON jobs(end_s) WHERE done_s IS NULL;
    """,
)


class StateStore(StoreBase):
    """The SQLite backend: `<home>/state.sqlite3`, WAL, one `BEGIN IMMEDIATE` writer at a time."""

    def __init__(self, path: Path):
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
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for i, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in sql.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {i}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

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


