"""The state store's interface and the logic every backend shares: queue, decision log, feedback
log, latency model.

A backend (`state.sqlite.StateStore`, `state.postgres.PostgresStore`) provides what `StoreBase`
marks abstract: a connection, one-writer transactions, closing, a description for messages, and
the online snapshot. Every query here is written in the SQL both backends understand (`?`
placeholders, `INSERT ... ON CONFLICT`, `COALESCE`, no `OR REPLACE`), so one logic layer serves
both and their behaviour cannot drift apart.
"""

from __future__ import annotations

import abc
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..core.latency import LatencyEstimate, QueueState, update_estimate, within_band
from ..errors import UnknownDecisionError

#: One result row. Its columns' Python types depend on the query (and the database's own types),
#: so they stay `Any`; each caller unpacks the columns it selected.
Row = tuple[Any, ...]


class Cursor(Protocol):
    """What the shared logic uses of a cursor (sqlite3's and psycopg's both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Connection(Protocol):
    """A connection that runs one statement with `?` placeholders (sqlite3's own; PostgreSQL's is
    wrapped to translate them)."""

    def execute(self, sql: str, params: Sequence[object] = ..., /) -> Cursor: ...


@dataclass(frozen=True)
class Admission:
    """One routed query, as the state records it."""

    llm: str
    budget: str | None
    lam: float
    query_sha256: str
    prompt_tokens: int
    predicted_response_tokens: float
    predicted_cost_usd: float
    embedding: bytes | None = None  # float32, for online learning
    # The lexical features' source: `core.features.pack_lexical`'s hashed bucket counts (never the
    # token ids, which decode back to the query; rows logged before keep their int32 ids, and
    # `core.features.unpack_lexical` reads both). The column keeps its old name.
    token_ids: bytes | None = None
    candidates: str | None = None  # JSON: every candidate's predictions and score
    query_text: str | None = None  # only with --log-queries


def new_decision_id() -> str:
    return "d" + uuid.uuid4().hex[:15]


def _scalar(conn: Connection, sql: str, params: Sequence[object] = ()) -> Any:
    """The first column of the one row an aggregate query returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql  # aggregates without GROUP BY always return a row
    return row[0]


class StoreBase(abc.ABC):
    """The state's interface and its shared logic: queue, decision log, feedback log, latency model.

    Methods taking a `conn` run inside the caller's `transaction()`, so a read-decide-write (route
    a batch, record a batch of feedback) is atomic; the others open no transaction of their own
    (plain reads, or `complete`, which takes one).
    """

    #: True when the online snapshot lives in the store (shared by replicas); False when it lives
    #: in a file of the home (`learning.online`), and the snapshot methods below are not used.
    shares_snapshot = False

    # ------------------------------------------------------------------ what a backend provides

    @property
    @abc.abstractmethod
    def conn(self) -> Connection:
        """The connection, opened (and the schema migrated) on first use."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """One writer at a time across every process sharing the store; all or nothing."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection, if open; the next use opens it again."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the state lives, for people (no secrets)."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """How many of this backend's migrations (`state.schema.steps`) the database has applied."""

    @abc.abstractmethod
    def read_snapshot(self) -> bytes | None:
        """The online snapshot stored in the store, if any (None when `shares_snapshot` is False)."""

    @abc.abstractmethod
    def write_snapshot(self, data: bytes, last_seq: int) -> bool:
        """Store the online snapshot that has applied the feedback log through `last_seq`; False if
        it was not stored (the store already holds one that has seen more)."""

    @abc.abstractmethod
    def snapshot_seq(self) -> int | None:
        """The `last_seq` of the stored snapshot, if any (cheap: replicas poll it)."""

    def exists(self) -> bool:
        """Whether the state has been created (listing and stats never create it)."""
        return True

    @contextlib.contextmanager
    def learning(self) -> Iterator[bool]:
        """Whether this process should fold the log into the snapshot now. SQLite: always (one
        home, and the snapshot file is replaced atomically); PostgreSQL: only the one replica
        holding the learner lock, so replicas do not all redo the same work."""
        yield True

    # ------------------------------------------------------------------ reads

    def estimates(self, conn: Connection, defaults: dict[str, LatencyEstimate]) -> dict[str, LatencyEstimate]:
        """Learned estimates where there are observations, else the catalogue's figures; a learned
        figure is read within `core.latency.BAND_FACTOR` of the catalogue's (`within_band`)."""
        out = dict(defaults)
        for llm, ttft, tps, n in conn.execute("SELECT llm, ttft_ms, output_tokens_per_s, n FROM latency_estimates"):
            if llm in out:
                out[llm] = within_band(LatencyEstimate(ttft, tps, n), defaults[llm])
        return out

    def queue(self, conn: Connection, llm_ids: tuple[str, ...], slots: list[int], now: float) -> QueueState:
        """The queue as the open calls leave it at `now`."""
        free = {llm: [now] * max(int(k), 1) for llm, k in zip(llm_ids, slots)}
        # One row per busy slot, not per open call: the database folds the calls (one query per
        # decision reads the queue, and under load hundreds of calls are open). Plain lists here:
        # with every slot busy, numpy's per-element access cost each decision ~0.05 ms (bench_route.py).
        for llm, slot, end in conn.execute("SELECT llm, slot, MAX(end_s) FROM jobs WHERE done_s IS NULL "
                                           "AND end_s > ? GROUP BY llm, slot", (now,)):
            f = free.get(llm)
            if f is not None:
                s = slot % len(f)  # the catalogue may have changed the slot count since
                f[s] = max(f[s], end)
        return QueueState(llm_ids, [np.array(free[llm], dtype=np.float64) for llm in llm_ids])

    @staticmethod
    def decision_llm(conn: Connection, decision_id: str) -> str:
        row = conn.execute("SELECT llm FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        if row is None:
            raise UnknownDecisionError(f"unknown decision id '{decision_id}'")
        return str(row[0])

    def routed_decision(self, decision_id: str) -> dict[str, Any]:
        """What a chat completion needs to answer a decision routed earlier (`/v1/route`) without
        routing again: its LLM, budget, λ, query hash, prompt tokens and predicted cost, and whether
        its call was already reported (`ended`: answered, failed, or given a latency by hand)."""
        row = self.conn.execute(
            "SELECT d.llm, d.budget, d.lambda, d.query_sha256, d.prompt_tokens, d.predicted_cost_usd, "
            "EXISTS (SELECT 1 FROM latency_observations o WHERE o.decision_id = d.id) "
            "FROM decisions d WHERE d.id = ?", (decision_id,)).fetchone()
        if row is None:
            raise UnknownDecisionError(f"unknown decision id '{decision_id}'")
        keys = ("llm", "budget", "lambda", "query_sha256", "prompt_tokens", "predicted_cost_usd")
        out = dict(zip(keys, row[:6]))
        out["ended"] = bool(row[6])
        return out

    def feedback_since(self, seq: int) -> list[dict[str, Any]]:
        """Logged feedback after `seq`, in log order, joined with what its decision recorded.

        Each event also says whether it is its decision's first event (`first`) and its first of its
        kind (`first_of_kind`) in the whole log: the learner folds each decision once however many
        events it has (`learning.updates`), and these flags depend on the log alone, so a live
        catch-up and a rebuild agree."""
        rows = self.conn.execute(
            "SELECT f.seq, f.decision_id, f.llm, f.kind, f.quality, f.good, f.response_tokens, d.embedding, "
            "d.token_ids, "
            "NOT EXISTS (SELECT 1 FROM feedback g WHERE g.decision_id = f.decision_id AND g.seq < f.seq), "
            "NOT EXISTS (SELECT 1 FROM feedback g WHERE g.decision_id = f.decision_id AND g.seq < f.seq "
            "AND g.kind = f.kind) "
            "FROM feedback f JOIN decisions d ON d.id = f.decision_id WHERE f.seq > ? ORDER BY f.seq",
            (seq,)).fetchall()
        keys = ("seq", "decision_id", "llm", "kind", "quality", "good", "response_tokens", "embedding", "token_ids")
        out = []
        for r in rows:
            if r[7] is None:
                continue
            event = dict(zip(keys, r))
            event["first"], event["first_of_kind"] = bool(r[9]), bool(r[10])
            out.append(event)
        return out

    def outcomes_for(self, llm: str, after_seq: int) -> list[dict[str, Any]]:
        """The outcomes logged for `llm` after `after_seq`, one per decision: for each field, the
        latest value reported (feedback sent again with a correction replaces the earlier value)."""
        rows = self.conn.execute(
            "SELECT f.decision_id, f.quality, f.good, f.response_tokens, d.embedding, d.token_ids FROM feedback f "
            "JOIN decisions d ON d.id = f.decision_id WHERE f.llm = ? AND f.seq > ? AND d.embedding IS NOT NULL "
            "AND (f.quality IS NOT NULL OR f.good IS NOT NULL OR f.response_tokens IS NOT NULL) ORDER BY f.seq",
            (llm, after_seq)).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for did, quality, good, tokens, emb, ids in rows:
            o = out.setdefault(did, {"quality": None, "good": None, "response_tokens": None,
                                     "embedding": emb, "token_ids": ids})
            if quality is not None or good is not None:  # a new label replaces the old, whichever its kind
                o["quality"], o["good"] = quality, good
            if tokens is not None:
                o["response_tokens"] = tokens
        return list(out.values())

    def stats(self) -> dict[str, Any]:
        c = self.conn
        per_llm: dict[str, dict[str, int]] = {}
        for llm, n in c.execute("SELECT llm, COUNT(*) FROM decisions GROUP BY llm"):
            per_llm.setdefault(llm, {})["decisions"] = n
        for llm, kind, n in c.execute("SELECT llm, kind, COUNT(*) FROM feedback GROUP BY llm, kind"):
            per_llm.setdefault(llm, {})[f"{kind}_feedback"] = n
        return {
            "decisions": _scalar(c, "SELECT COUNT(*) FROM decisions"),
            "feedback": _scalar(c, "SELECT COUNT(*) FROM feedback"),
            "latency_reports": _scalar(c, "SELECT COUNT(*) FROM latency_observations"),
            "last_feedback_seq": _scalar(c, "SELECT COALESCE(MAX(seq), 0) FROM feedback"),
            "per_llm": per_llm,
        }

    def latency_percentiles(self, llm: str, last: int = 200) -> tuple[float, float] | None:
        """p50 and p95 of the last `last` observed latencies of `llm` (ms), if any."""
        rows = self.conn.execute(
            "SELECT latency_ms FROM latency_observations WHERE llm = ? AND latency_ms IS NOT NULL "
            "ORDER BY at_s DESC LIMIT ?", (llm, last)).fetchall()
        if not rows:
            return None
        values = np.array([r[0] for r in rows])
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    def open_calls(self, now: float) -> dict[str, int]:
        """Calls admitted and not yet finished (running or queued) per LLM."""
        return {llm: n for llm, n in self.conn.execute(
            "SELECT llm, COUNT(*) FROM jobs WHERE done_s IS NULL AND end_s > ? GROUP BY llm", (now,))}

    def learned(self) -> dict[str, LatencyEstimate]:
        return {llm: LatencyEstimate(t, s, n) for llm, t, s, n in
                self.conn.execute("SELECT llm, ttft_ms, output_tokens_per_s, n FROM latency_estimates")}

    def logged_queries(self, since: float | None = None) -> Iterator[tuple[str, float, str | None]]:
        """Every decision logged at or after `since` (unix seconds), oldest first, as (decision id,
        created_s, query text); the text is None for a decision routed without --log-queries.
        Lazy: SQLite streams the rows (PostgreSQL's driver fetches them at once)."""
        where, params = ("", ()) if since is None else ("WHERE created_s >= ? ", (since,))
        cursor = self.conn.execute(f"SELECT id, created_s, query_text FROM decisions {where}ORDER BY created_s, id",
                                   params)
        for did, created, text in cursor:
            yield str(did), float(created), text

    # ------------------------------------------------------------------ writes

    def admit(self, conn: Connection, a: Admission, now: float, wait_s: float, slot: int,
              start_s: float, end_s: float) -> str:
        """Log the decision and book its call on `slot` of its LLM; the new decision's id."""
        decision_id = new_decision_id()
        conn.execute(
            "INSERT INTO decisions (id, created_s, llm, budget, lambda, query_sha256, prompt_tokens, "
            "predicted_response_tokens, predicted_cost_usd, expected_wait_s, embedding, token_ids, candidates, "
            "query_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (decision_id, now, a.llm, a.budget, a.lam, a.query_sha256, a.prompt_tokens,
             a.predicted_response_tokens, a.predicted_cost_usd, wait_s, a.embedding, a.token_ids, a.candidates,
             a.query_text),
        )
        conn.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, NULL)", (decision_id, a.llm, slot, start_s, end_s))
        return decision_id

    def complete(self, decision_id: str, *, latency_ms: float | None = None, ttft_ms: float | None = None,
                 response_tokens: float | None = None,
                 defaults: Callable[[str], LatencyEstimate | None] = lambda llm: None,
                 now: float | None = None) -> dict[str, object]:
        """Record that a call finished: free its slot, fold the latency into the LLM's estimate.

        Idempotent: the same decision reported again changes nothing and says so.
        """
        with self.transaction() as conn:
            llm = self.decision_llm(conn, decision_id)
            recorded = self.complete_in(conn, decision_id, latency_ms=latency_ms, ttft_ms=ttft_ms,
                                        response_tokens=response_tokens, defaults=defaults, now=now)
        out: dict[str, object] = {"id": decision_id, "llm": llm, "recorded": recorded}
        if not recorded:
            out["reason"] = "already recorded"
        return out

    def complete_in(self, conn: Connection, decision_id: str, *, latency_ms: float | None,
                    ttft_ms: float | None, response_tokens: float | None,
                    defaults: Callable[[str], LatencyEstimate | None], now: float | None = None) -> bool:
        """`complete` inside the caller's transaction; False if this call was already reported."""
        now = time.time() if now is None else now
        row = conn.execute("SELECT llm, predicted_response_tokens FROM decisions WHERE id = ?",
                           (decision_id,)).fetchone()
        if row is None:
            raise UnknownDecisionError(f"unknown decision id '{decision_id}'")
        llm, predicted_tokens = row
        if conn.execute("SELECT 1 FROM latency_observations WHERE decision_id = ?", (decision_id,)).fetchone():
            return False
        conn.execute("UPDATE jobs SET done_s = ? WHERE decision_id = ? AND done_s IS NULL", (now, decision_id))
        conn.execute("INSERT INTO latency_observations VALUES (?, ?, ?, ?, ?, ?)",
                     (decision_id, llm, now, latency_ms, ttft_ms, response_tokens))
        if latency_ms is not None or ttft_ms is not None:
            cur = conn.execute("SELECT ttft_ms, output_tokens_per_s, n FROM latency_estimates WHERE llm = ?",
                               (llm,)).fetchone()
            prior = defaults(llm)
            est = LatencyEstimate(*cur) if cur else prior
            if est is not None:
                tokens = response_tokens if response_tokens is not None else predicted_tokens
                new = update_estimate(est, latency_ms, ttft_ms, tokens, prior=prior)
                conn.execute("INSERT INTO latency_estimates VALUES (?, ?, ?, ?) ON CONFLICT (llm) DO UPDATE SET "
                             "ttft_ms = excluded.ttft_ms, output_tokens_per_s = excluded.output_tokens_per_s, "
                             "n = excluded.n", (llm, new.ttft_ms, new.output_tokens_per_s, new.n))
        return True

    def add_feedback(self, conn: Connection, decision_id: str, llm: str, kind: str, values: Mapping[str, object],
                     content_sha256: str, now: float) -> bool:
        """Append one feedback event to the log; False if the same content was logged before."""
        cur = conn.execute(
            "INSERT INTO feedback (decision_id, llm, kind, quality, good, response_tokens, latency_ms, "
            "cost_usd, content_sha256, at_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (decision_id, llm, kind, values.get("quality"), values.get("good"), values.get("response_tokens"),
             values.get("latency_ms"), values.get("cost_usd"), content_sha256, now))
        return cur.rowcount == 1
