"""The state store's schema (`state.schema`): both backends end with the same tables and columns,
and shipped migrations never change (databases record how many they have applied)."""

from __future__ import annotations

import hashlib

import pytest

from mixllm_cli.state.schema import MIGRATIONS, POSTGRES_ONLY_TABLES, statements, steps

# SQLite's declared types and the PostgreSQL types they stand for.
SAME_TYPE = {"TEXT": {"text"}, "REAL": {"double precision"}, "INTEGER": {"integer", "bigint"}, "BLOB": {"bytea"}}

# Each backend's shipped migrations, whitespace-normalised. A database at version v has applied the
# first v of its backend's steps, so these must never change: append a migration instead.
SHIPPED = {
    "sqlite": ["4a35f7c1da54442d", "fddde39909b905bf", "b2651a1bf98ceca8"],
    "postgres": ["daf9ece9b063ced7"],
}


def _digest(sql: str) -> str:
    return hashlib.sha256(" ".join(sql.split()).encode()).hexdigest()[:16]


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_shipped_migrations_are_unchanged(dialect):
    assert [_digest(sql) for sql in steps(dialect)[:len(SHIPPED[dialect])]] == SHIPPED[dialect]


def test_every_migration_is_named_and_splits_into_statements():
    names = [m.name for m in MIGRATIONS]
    assert all(names) and len(set(names)) == len(names)
    for m in MIGRATIONS:
        assert m.sqlite is not None or m.postgres is not None, m.name
        for sql in (m.sqlite, m.postgres):
            assert sql is None or statements(sql), m.name
    # Past the migrations PostgreSQL's first one covers, a change must reach both backends.
    for m in MIGRATIONS[len(SHIPPED["sqlite"]):]:
        assert m.sqlite is not None and m.postgres is not None, m.name


def _sqlite_columns(conn):
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    # (name, type, not null): SQLite lets a non-INTEGER PRIMARY KEY hold NULL, the schema never does
    return {t: [(name, kind.upper(), bool(notnull or pk))
                for _, name, kind, notnull, _, pk in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def _postgres_columns(conn):
    rows = conn.execute("SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position").fetchall()
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for table, name, kind, nullable in rows:
        out.setdefault(table, []).append((name, kind, nullable == "NO"))
    return out


def test_sqlite_and_postgresql_end_with_the_same_tables_and_columns(tmp_path, pg_url):
    from mixllm_cli.state.postgres import PostgresStore
    from mixllm_cli.state.sqlite import StateStore

    lite, pg = StateStore(tmp_path / "state.sqlite3"), PostgresStore(pg_url)
    try:
        assert lite.schema_version() == len(steps("sqlite"))
        assert pg.schema_version() == len(steps("postgres"))
        a, b = _sqlite_columns(lite.conn), _postgres_columns(pg.conn)
    finally:
        lite.close()
        pg.close()
    assert set(b) - set(a) == POSTGRES_ONLY_TABLES
    assert sorted(a) == sorted(set(b) - POSTGRES_ONLY_TABLES)
    for table in a:
        assert [c[0] for c in a[table]] == [c[0] for c in b[table]], table  # same names, same order
        for (name, lite_type, lite_nn), (_, pg_type, pg_nn) in zip(a[table], b[table]):
            assert pg_type in SAME_TYPE[lite_type], (table, name, lite_type, pg_type)
            assert lite_nn == pg_nn, (table, name)


def test_a_postgresql_store_at_version_1_opens_as_it_is(pg_url):
    """A database migrated by the first PostgreSQL release keeps its version and rows."""
    import psycopg

    from mixllm_cli.state.postgres import PostgresStore

    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("CREATE TABLE mixllm_schema (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO mixllm_schema VALUES (1)")
        for statement in statements(steps("postgres")[0]):
            raw.execute(statement)
        raw.execute("INSERT INTO decisions (id, created_s, llm, lambda, query_sha256, prompt_tokens, "
                    "predicted_response_tokens, predicted_cost_usd, expected_wait_s) VALUES "
                    "('d1', 0, 'mid', 1, 'x', 3, 10, 0, 0)")
    store = PostgresStore(pg_url)
    try:
        assert store.schema_version() == len(steps("postgres"))
        assert store.stats()["decisions"] == 1
    finally:
        store.close()
