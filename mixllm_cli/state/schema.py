"""The state store's schema: one ordered list of named migrations, each in both dialects.

To change the schema, append a `Migration` here with its SQL for SQLite and for PostgreSQL (the
tables and columns must come out the same on both: tests/test_schema.py compares them). Never edit
or reorder a migration that has shipped: databases record how many they have applied.

Each backend's schema version is the number of migrations with SQL for it that it has applied:
SQLite keeps it in `PRAGMA user_version` (`state.sqlite`), PostgreSQL in the one-row table
`mixllm_schema` (`state.postgres`). A migration whose SQL for a backend is None does not count
for that backend. That is how PostgreSQL's first migration, written against the whole schema of
migrations 1-3 at once (no PostgreSQL store ever existed at versions 1 or 2, so there is nothing
to carry through them), stays version 1 there while SQLite counts three.

A migration's SQL is several statements separated by `;` (no `;` inside a statement), run in
order in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Migration:
    """One step of the schema: `sqlite` and `postgres` hold its SQL in each dialect, or None
    where that backend has nothing to do at this step (and so does not count it)."""

    name: str
    sqlite: str | None
    postgres: str | None

    def sql(self, dialect: Dialect) -> str | None:
        return self.sqlite if dialect == "sqlite" else self.postgres


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "decisions, the queue, latency observations and estimates",
        sqlite="""
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
        # Migrations 1-3 at once (see the module docstring), plus the online snapshot that replicas
        # share. The snapshot is stored uncompressed: float arrays barely compress, and compressing
        # megabytes on every save costs CPU.
        postgres="""
        CREATE TABLE decisions (
            id TEXT PRIMARY KEY,
            created_s DOUBLE PRECISION NOT NULL,
            llm TEXT NOT NULL,
            budget TEXT,
            lambda DOUBLE PRECISION NOT NULL,
            query_sha256 TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            predicted_response_tokens DOUBLE PRECISION NOT NULL,
            predicted_cost_usd DOUBLE PRECISION NOT NULL,
            expected_wait_s DOUBLE PRECISION NOT NULL,
            embedding BYTEA,
            token_ids BYTEA,
            candidates TEXT,
            query_text TEXT
        );
        CREATE TABLE jobs (
            decision_id TEXT PRIMARY KEY REFERENCES decisions(id),
            llm TEXT NOT NULL,
            slot INTEGER NOT NULL,
            start_s DOUBLE PRECISION NOT NULL,
            end_s DOUBLE PRECISION NOT NULL,
            done_s DOUBLE PRECISION
        );
        CREATE INDEX jobs_in_flight ON jobs(end_s) WHERE done_s IS NULL;
        CREATE TABLE latency_observations (
            decision_id TEXT PRIMARY KEY REFERENCES decisions(id),
            llm TEXT NOT NULL,
            at_s DOUBLE PRECISION NOT NULL,
            latency_ms DOUBLE PRECISION,
            ttft_ms DOUBLE PRECISION,
            response_tokens DOUBLE PRECISION
        );
        CREATE INDEX latency_observations_llm ON latency_observations(llm, at_s);
        CREATE TABLE latency_estimates (
            llm TEXT PRIMARY KEY,
            ttft_ms DOUBLE PRECISION NOT NULL,
            output_tokens_per_s DOUBLE PRECISION NOT NULL,
            n INTEGER NOT NULL
        );
        CREATE TABLE feedback (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            decision_id TEXT NOT NULL REFERENCES decisions(id),
            llm TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('refined', 'binary')),
            quality DOUBLE PRECISION,
            good INTEGER,
            response_tokens INTEGER,
            latency_ms DOUBLE PRECISION,
            cost_usd DOUBLE PRECISION,
            content_sha256 TEXT NOT NULL,
            at_s DOUBLE PRECISION NOT NULL,
            UNIQUE (decision_id, content_sha256)
        );
        CREATE INDEX feedback_llm_seq ON feedback(llm, seq);
        CREATE TABLE online_snapshot (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_seq BIGINT NOT NULL,
            saved_s DOUBLE PRECISION NOT NULL,
            data BYTEA NOT NULL
        );
        ALTER TABLE online_snapshot ALTER COLUMN data SET STORAGE EXTERNAL;
        """,
    ),
    Migration(
        "the decision log keeps what online learning needs; feedback is a log of its own",
        sqlite="""
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
        postgres=None,  # in PostgreSQL's first migration
    ),
    Migration(
        # Reading the queue scans only the calls still in flight (`end_s > now`), not every call never
        # reported done (jobs_open is keyed by llm first, so a range on end_s alone cannot use it).
        "an index of the calls in flight",
        sqlite="""
        CREATE INDEX jobs_in_flight ON jobs(end_s) WHERE done_s IS NULL;
        """,
        postgres=None,  # in PostgreSQL's first migration
    ),
    Migration(
        # `mixllm serve`'s API keys (`state.keys`): only each key's sha256 is stored, never the key.
        # A name is unique among the keys not revoked, so a revoked name can be given to a new key.
        # `api_key_usage` counts each key's requests per minute (unix time // 60) across replicas.
        "API keys, their spend and their requests per minute",
        sqlite="""
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_sha256 TEXT NOT NULL UNIQUE,
            created_s REAL NOT NULL,
            rpm INTEGER,
            max_usd REAL,
            spent_usd REAL NOT NULL DEFAULT 0,
            revoked_s REAL
        );
        CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_s IS NULL;
        CREATE TABLE api_key_usage (
            key_id TEXT NOT NULL REFERENCES api_keys(id),
            minute INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            PRIMARY KEY (key_id, minute)
        );
        """,
        postgres="""
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_sha256 TEXT NOT NULL UNIQUE,
            created_s DOUBLE PRECISION NOT NULL,
            rpm INTEGER,
            max_usd DOUBLE PRECISION,
            spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            revoked_s DOUBLE PRECISION
        );
        CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_s IS NULL;
        CREATE TABLE api_key_usage (
            key_id TEXT NOT NULL REFERENCES api_keys(id),
            minute BIGINT NOT NULL,
            requests BIGINT NOT NULL,
            PRIMARY KEY (key_id, minute)
        );
        """,
    ),
)

#: Tables only PostgreSQL has: its version bookkeeping, and the online snapshot replicas share
#: (SQLite's home keeps the snapshot in a file, `<home>/online/snapshot.npz`).
POSTGRES_ONLY_TABLES = frozenset({"mixllm_schema", "online_snapshot"})


def steps(dialect: Dialect) -> tuple[str, ...]:
    """The SQL of every migration for `dialect`, in order: a database at version v has applied
    the first v."""
    return tuple(sql for m in MIGRATIONS if (sql := m.sql(dialect)) is not None)


def statements(sql: str) -> list[str]:
    """One migration's statements, in order."""
    return [s for s in sql.split(";") if s.strip()]
