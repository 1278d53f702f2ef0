"""The state store's contract, run against both backends (SQLite and a real PostgreSQL server):
one logic layer, so every behaviour here must be the same on each."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CHAT, CODE

from mixllm_cli.errors import MixLLMError


@pytest.fixture
def store(store_url):
    from mixllm_cli.state import open_store

    s = open_store(url=store_url)
    yield s
    s.close()


@pytest.fixture
def router(trained_home):
    from mixllm_cli.routing.router import Router

    return Router.load(trained_home)


def route(router, store, n=1, query=CODE[0], lam=1000.0):
    from mixllm_cli.routing.router import WaitPolicy

    preds = router.predict([query] * n)
    return router.decisions(preds, None, lam, queries=[query] * n, state=store, policy=WaitPolicy(1000.0))


def wait_ms(d, llm):
    return next(c.wait_ms for c in d.candidates if c.llm == llm)


def test_the_queue_is_shared_by_consecutive_calls(router, store):
    ds = route(router, store, 4) + route(router, store, 1)
    assert [d.choice for d in ds] == ["big"] * 5
    assert [wait_ms(d, "big") for d in ds[:4]] == [0.0] * 4  # four slots
    assert wait_ms(ds[4], "big") > 5000  # the fifth call queues behind ~10 s answers
    assert store.open_calls(time.time()) == {"big": 5}
    assert store.stats()["decisions"] == 5


def test_completing_frees_the_slot_teaches_latency_and_is_idempotent(router, store):
    ds = route(router, store, 4)
    defaults = router.latency_defaults().get
    r = store.complete(ds[0].decision_id, latency_ms=1500.0, response_tokens=100, defaults=defaults)
    assert r == {"id": ds[0].decision_id, "llm": "big", "recorded": True}
    assert wait_ms(route(router, store)[0], "big") == 0.0
    again = store.complete(ds[0].decision_id, latency_ms=9999.0, defaults=defaults)
    assert again["recorded"] is False and again["reason"] == "already recorded"
    est = store.learned()["big"]
    # 100 tokens in 1.0 s after the catalogue's 500 ms TTFT: 100 tok/s, counted as at most 3x the
    # estimate (core.latency.CLIP_FACTOR), weight 0.2 from 20
    assert (est.n, est.output_tokens_per_s) == (1, pytest.approx(0.8 * 20 + 0.2 * min(100, 3 * 20)))
    store.complete(ds[1].decision_id, latency_ms=500.0 + 1000.0 * 100 / 50, response_tokens=100, defaults=defaults)
    est2 = store.learned()["big"]  # the upsert updates the same row
    assert est2.n == 2 and est2.output_tokens_per_s == pytest.approx(0.8 * est.output_tokens_per_s + 0.2 * 50)
    assert store.latency_percentiles("big") == (pytest.approx(2000.0), pytest.approx(1500.0 + 0.95 * 1000.0))
    with pytest.raises(MixLLMError, match="unknown decision id 'dnope'"):
        store.complete("dnope", latency_ms=1.0)


def test_the_feedback_log_dedupes_and_keeps_order_and_the_latest_label(router, store):
    ds = route(router, store, 2) + route(router, store, 1, query=CHAT[0], lam=0.1)
    now = time.time()
    with store.transaction() as conn:
        assert store.add_feedback(conn, ds[0].decision_id, "big", "refined",
                                  {"quality": 0.2, "response_tokens": 50}, "h1", now)
        assert not store.add_feedback(conn, ds[0].decision_id, "big", "refined", {"quality": 0.2}, "h1", now)
        assert store.add_feedback(conn, ds[0].decision_id, "big", "binary", {"good": 1}, "h2", now)
        assert store.add_feedback(conn, ds[1].decision_id, "big", "binary", {"good": 0}, "h3", now)
        assert store.add_feedback(conn, ds[2].decision_id, ds[2].choice, "refined", {"quality": 1.0}, "h4", now)
    events = store.feedback_since(0)
    assert [e["decision_id"] for e in events] == [ds[0].decision_id, ds[0].decision_id, ds[1].decision_id,
                                                  ds[2].decision_id]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert store.feedback_since(seqs[1])[0]["seq"] == seqs[2]
    emb = np.frombuffer(events[0]["embedding"], dtype=np.float32)
    assert np.allclose(emb, router.predict([CODE[0]]).embeddings[0], atol=1e-6)  # the decision's own embedding
    outcomes = sorted(store.outcomes_for("big", 0), key=lambda o: o["good"])
    assert [(o["quality"], o["good"], o["response_tokens"]) for o in outcomes] == [(None, 0, None), (None, 1, 50)]
    assert isinstance(outcomes[0]["embedding"], bytes) and isinstance(outcomes[0]["token_ids"], bytes)
    stats = store.stats()
    assert (stats["feedback"], stats["last_feedback_seq"]) == (4, seqs[-1])
    assert stats["per_llm"]["big"] == {"decisions": 2, "refined_feedback": 1, "binary_feedback": 2}


def test_a_failed_transaction_writes_nothing(router, store):
    route(router, store, 1)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.admit(conn, _admission(), time.time(), 0.0, 0, time.time(), time.time() + 60)
        raise RuntimeError("boom")
    assert store.stats()["decisions"] == 1
    assert store.open_calls(time.time()) == {"big": 1}


def _admission():
    from mixllm_cli.state.base import Admission

    return Admission(llm="mid", budget=None, lam=1.0, query_sha256="0" * 64, prompt_tokens=3,
                     predicted_response_tokens=10.0, predicted_cost_usd=1e-6)


def test_opening_is_idempotent_and_migrates_once(store_url):
    from mixllm_cli.state import open_store

    a, b = open_store(url=store_url), open_store(url=store_url)
    with a.transaction() as conn:
        a.admit(conn, _admission(), time.time(), 0.0, 0, time.time(), time.time() + 60)
    assert b.stats()["decisions"] == 1  # the second open found the schema and the row
    a.close()
    b.close()


def test_online_learning_through_the_store_is_shared(trained_home, store):
    """Feedback recorded through one router is learned, and a router loaded afterwards on the same
    store (another replica, with PostgreSQL) serves the same learned state."""
    from mixllm_cli.learning.feedback import Feedback, record_feedback
    from mixllm_cli.routing.router import Router

    r1 = Router.load(trained_home, store=store)
    assert r1.online is None
    u_offline = r1.predict([CODE[0]]).uncertainty[0, 0]
    ds = route(r1, store, 6)
    items = [(f"i{k}", Feedback(d.decision_id, good=k % 2 == 0)) for k, d in enumerate(ds)]
    results = record_feedback(r1, store, items, trained_home)
    assert [r.status for r in results] == ["recorded"] * 6
    r2 = Router.load(trained_home, store=store)
    assert r2.online is not None and r2.online.last_seq == store.stats()["last_feedback_seq"]
    assert r2.predict([CODE[0]]).uncertainty[0, 0] < u_offline  # A grew: the uncertainty shrank
    if store.shares_snapshot:
        assert not (trained_home / "online" / "snapshot.npz").exists()
        assert store.snapshot_seq() == r2.online.last_seq
        assert not store.write_snapshot(b"stale", r2.online.last_seq - 1)  # an older state never wins
        assert store.snapshot_seq() == r2.online.last_seq


WORKER = r"""
import sys, time
from mixllm_cli.routing.router import Router
from mixllm_cli.state import open_store
from mixllm_cli.core.latency import LatencyEstimate
home, url, seconds, tag, minimum = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
router = Router.load(home)
store = open_store(url=url)
preds = router.predict(["write a python function to sum two numbers"])
end = time.time() + seconds
i = 0
while i < minimum or time.time() < end:  # at least `minimum` rows however slow the machine
    d = router.decisions(preds, None, 50.0, [f"{tag}-{i}"], queries=[f"{tag}-{i}"], state=store)[0]
    print(d.decision_id, flush=True)  # acknowledged: committed before this line
    if i % 2 == 0:
        store.complete(d.decision_id, latency_ms=800.0, response_tokens=20, defaults=lambda l: LatencyEstimate(500, 20))
    i += 1
"""


def _workers(home, url, n, seconds, minimum=0):
    env = {**os.environ}
    return [subprocess.Popen([sys.executable, "-c", WORKER, str(home), url, str(seconds), f"w{k}", str(minimum)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for k in range(n)]


def _rows(store):
    c = store.conn
    stored = {r[0] for r in c.execute("SELECT id FROM decisions").fetchall()}
    jobs = c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    orphans = c.execute("SELECT COUNT(*) FROM jobs WHERE decision_id NOT IN (SELECT id FROM decisions)").fetchone()[0]
    open_jobs = c.execute("SELECT llm, slot, start_s, end_s FROM jobs WHERE done_s IS NULL "
                          "ORDER BY llm, slot, start_s").fetchall()
    return stored, jobs, orphans, open_jobs


def test_processes_at_once_lose_nothing_and_never_double_book(trained_home, store_url, store):
    procs = _workers(trained_home, store_url, 4, 3.0, minimum=8)
    acked = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err  # SQLite: waiting for the write lock never surfaces as an error
        acked += out.split()
    stored, jobs, orphans, open_jobs = _rows(store)
    assert len(acked) > 20 and set(acked) == stored and len(stored) == jobs and orphans == 0
    for (l1, s1, _, end1), (l2, s2, start2, _) in itertools.pairwise(open_jobs):
        if (l1, s1) == (l2, s2):
            assert start2 >= end1 - 1e-6  # calls still open never overlap on one slot


def test_a_killed_process_leaves_no_half_written_rows_and_no_lock(trained_home, store_url, store):
    (proc,) = _workers(trained_home, store_url, 1, 60.0)
    acked = []
    deadline = time.time() + 60
    while len(acked) < 15 and time.time() < deadline:
        acked.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)  # mid-loop: likely inside a transaction
    proc.wait()
    acked = [a for a in acked if a]
    time.sleep(0.2)
    stored, jobs, orphans, _ = _rows(store)
    assert set(acked) <= stored and jobs == len(stored) and orphans == 0
    if store_url.startswith("sqlite"):
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (proc2,) = _workers(trained_home, store_url, 1, 0.5)  # the lock died with the process
    out, err = proc2.communicate(timeout=60)
    assert proc2.returncode == 0 and out.split(), err


def test_the_cli_uses_the_store_named_by_mixllm_store(trained_home, cli, pg_url, monkeypatch):
    """`route`, `feedback`, `llms` and `stats` work on a PostgreSQL store too (MIXLLM_STORE), and
    nothing lands in the home's SQLite file."""
    monkeypatch.setenv("MIXLLM_STORE", pg_url)
    code, out, err = cli("route", CODE[0], "--json", "--lambda", "1000", "--max-wait-s", "1000")
    assert code == 0, err
    d = json.loads(out)
    code, out, err = cli("feedback", d["decision_id"], "--good", "--latency-ms", "900")
    assert code == 0 and json.loads(out)["status"] == "recorded", err
    stats = json.loads(cli("stats", "--json")[1])
    assert (stats["decisions"], stats["feedback"], stats["online"]["applied_through_seq"]) == (1, 1, 1)
    big = next(r for r in json.loads(cli("llms", "--json")[1]) if r["id"] == "big")
    assert big["latency_observations"] == 1
    assert not (trained_home / "state.sqlite3").exists()
    assert not (trained_home / "online" / "snapshot.npz").exists()


def test_store_url_errors_are_one_line(tmp_path):
    from mixllm_cli.errors import UsageError
    from mixllm_cli.state import open_store

    with pytest.raises(UsageError, match=r"^store: unknown store URL 'redis'; use postgresql://"):
        open_store(url="redis://localhost")
    store = open_store(url="postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(MixLLMError) as info:
        store.stats()
    msg = str(info.value)
    assert msg.startswith("postgresql://nobody:***@127.0.0.1:1/none: cannot connect to the state database (")
    assert "secret" not in msg and "\n" not in msg


def test_an_older_sqlite_state_migrates_in_place(tmp_path):
    """A state written by the previous schema (version 2) gains the in-flight index and keeps its rows."""
    import sqlite3

    from mixllm_cli.state.schema import steps
    from mixllm_cli.state.sqlite import StateStore

    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        for sql in steps("sqlite")[:2]:
            db.executescript(sql)
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO decisions (id, created_s, llm, lambda, query_sha256, prompt_tokens, "
                   "predicted_response_tokens, predicted_cost_usd, expected_wait_s) VALUES "
                   "('d1', 0, 'mid', 1, 'x', 3, 10, 0, 0)")
        db.execute("INSERT INTO jobs VALUES ('d1', 'mid', 0, 0, ?, NULL)", (time.time() + 60,))
    store = StateStore(path)
    assert store.schema_version() == len(steps("sqlite")) >= 3
    assert store.open_calls(time.time()) == {"mid": 1}
    plan = store.conn.execute("EXPLAIN QUERY PLAN SELECT llm, slot, end_s FROM jobs WHERE done_s IS NULL "
                              "AND end_s > ?", (time.time(),)).fetchall()
    assert "jobs_in_flight" in str(plan)
