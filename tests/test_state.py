"""The queue state that outlives a process: route calls see each other's load; feedback frees
slots and teaches the latency model; concurrent processes and kills leave a consistent store."""

from __future__ import annotations

import json

import pytest
from conftest import CODE

FLOOD = ["route", CODE[0], "--json", "--lambda", "1000", "--max-wait-s", "1000"]


@pytest.fixture
def home(trained_home):
    return trained_home


def route(cli, *extra):
    code, out, err = cli(*FLOOD, *extra)
    assert code == 0, err
    return json.loads(out)


def wait_of(d, llm):
    return next(c["expected_wait_ms"] for c in d["candidates"] if c["llm"] == llm)


def test_consecutive_routes_see_each_others_load(home, cli):
    # `big` has 4 slots and takes ~10 s per code answer (200 tokens at 20 tok/s): the 5th call queues.
    ds = [route(cli) for _ in range(5)]
    assert all(d["choice"] == "big" for d in ds)
    assert [wait_of(d, "big") for d in ds[:4]] == [0.0] * 4
    assert wait_of(ds[4], "big") > 5000
    assert len({d["decision_id"] for d in ds}) == 5


def test_dry_run_records_nothing(home, cli):
    for _ in range(6):
        d = route(cli, "--no-queue")
        assert d["decision_id"] is None and wait_of(d, "big") == 0.0
    assert not (home / "state.sqlite3").exists()


def test_feedback_frees_the_slot_and_teaches_the_latency_model(home, cli):
    ds = [route(cli) for _ in range(4)]
    assert wait_of(route(cli, "--no-queue"), "big") == 0.0  # a dry run never queues
    code, out, _ = cli("feedback", ds[0]["decision_id"], "--latency-ms", "1500", "--response-tokens", "100")
    assert code == 0 and json.loads(out)["status"] == "recorded"
    # one of four slots is free again: the next call does not wait
    assert wait_of(route(cli), "big") == 0.0
    again = json.loads(cli("feedback", ds[0]["decision_id"], "--latency-ms", "1500", "--response-tokens", "100")[1])
    assert again == {"id": ds[0]["decision_id"], "llm": "big", "kind": "refined", "status": "duplicate"}
    _, out, _ = cli("llms", "--json")
    big = next(r for r in json.loads(out) if r["id"] == "big")
    # 100 tokens in 1.0 s after the catalogue's 500 ms TTFT: 100 tok/s observed, counted as at most 3x
    # the estimate (core.latency.CLIP_FACTOR), EWM 0.2 from 20
    assert big["learned_output_tokens_per_s"] == pytest.approx(0.8 * 20 + 0.2 * min(100, 3 * 20))
    assert big["latency_observations"] == 1 and big["latency_p50_p95_ms"] == [1500.0, 1500.0]
    assert big["ttft_ms"] == 500  # the catalogue is never overwritten


def test_feedback_errors(home, cli):
    code, _, err = cli("feedback", "dnope", "--latency-ms", "10")
    assert (code, err) == (1, "Error: unknown decision id 'dnope'\n")
    code, _, err = cli("feedback", "dnope")
    assert code == 1 and "nothing to record" in err
    code, _, err = cli("feedback", "dnope", "--latency-ms", "-5")
    assert (code, err) == (1, "Error: feedback: latency_ms: must be >= 0 (got -5.0)\n")


def test_strict_wait_never_picks_a_late_llm_when_another_meets_tau(home, cli):
    for _ in range(4):
        route(cli)
    d = route(cli, "--max-wait-s", "2", "--strict-wait")
    assert d["choice"] != "big"
    assert wait_of(d, d["choice"]) <= 2000
    big = next(c for c in d["candidates"] if c["llm"] == "big")
    assert big["score"] is None  # masked out by the hard rule
    soft = route(cli, "--max-wait-s", "2")
    pen = {c["llm"]: c["penalty"] for c in soft["candidates"]}
    assert pen["big"] > pen["mid"]  # without the rule, the penalty still counts the wait


def test_jsonl_batch_builds_the_queue_in_line_order(home, cli, tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps({"id": i, "query": CODE[0], "lambda": 1000}) + "\n" for i in range(6)))
    _code, out, _ = cli("route", "--jsonl", src, "--max-wait-s", "1000")
    rows = [json.loads(x) for x in out.splitlines()]
    waits = [wait_of(r, "big") for r in rows if r["choice"] == "big"]
    assert waits[:4] == [0.0] * 4 and waits[4] > 0


# Several processes at once and a process killed mid-transaction: tests/test_store_backends.py
# (the same tests on SQLite and PostgreSQL).


def test_stream_evaluation_penalty_and_lateness(tiny, tiny_trained, cli, monkeypatch):
    monkeypatch.setenv("MIXLLM_HOME", str(tiny_trained))
    args = ["evaluate", tiny / "train.jsonl", "--json", "--catalogue", tiny / "models.yaml", "--rate", "5/s",
            "--max-wait-s", "5"]
    code, out, err = cli(*args)
    assert code == 0, err
    on = json.loads(out)
    always_big = next(r for r in on["results"] if r["policy"] == "always big")
    assert always_big["late"] > 0 and always_big["quality_pct_of_best"] < 100
    # A generous budget floods `big`: without the penalty its queue overflows τ, with it the
    # router spreads the load and loses far fewer answers.
    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.dataset import read_dataset
    from mixllm_cli.evaluation.replay import evaluate_stream
    from mixllm_cli.routing.router import Router

    router = Router.load(tiny_trained, tiny / "models.yaml")
    records = read_dataset(tiny / "train.jsonl")
    assert load_catalogue(tiny / "models.yaml").get("big").slots == 4

    def late(penalty):
        rep = evaluate_stream(router, records, rate_per_s=5.0, tolerance_s=5.0, lambdas={"x": 1000.0},
                              penalty=penalty)
        return rep["results"][0]["late"], rep["results"][0]["quality_pct_of_best"]

    (late_off, q_off), (late_on, q_on) = late(False), late(True)
    assert late_off > 10
    assert late_on < late_off / 2 and q_on > q_off
    code, _, err = cli("evaluate", tiny / "train.jsonl", "--rate", "fast")
    assert code == 2 and err == "Error: --rate: must be a positive rate like 10/s (got 'fast')\n"


def test_stream_from_arrival_times_in_the_data(tiny, trained_home, cli, tmp_path):
    """A burst (every query at t = 0) is replayed from arrival_s without --rate."""
    src = tmp_path / "burst.jsonl"
    lines = (tiny / "train.jsonl").read_text().splitlines()[:40]
    src.write_text("".join(json.dumps({**json.loads(x), "arrival_s": 0.0}) + "\n" for x in lines))
    code, out, err = cli("evaluate", src, "--json", "--max-wait-s", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["rate_per_s"] is None
    always_big = next(r for r in report["results"] if r["policy"] == "always big")
    assert always_big["late"] > 0  # 40 calls at once on 4 slots of ~10 s each
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**json.loads(lines[0]), "arrival_s": -1}) + "\n")
    code, _, err = cli("evaluate", bad)
    assert code == 1 and err == f"Error: {bad}:1: arrival_s: must be a number of seconds >= 0 (got -1)\n"


def test_a_corrupt_state_database_is_one_error_line(home, cli):
    (home / "state.sqlite3").write_bytes(b"not a database " * 40)
    code, out, err = cli(*FLOOD)
    assert (code, out) == (1, "")
    assert err == f"Error: {home / 'state.sqlite3'}: cannot open the state database (file is not a database)\n"
    assert cli(*FLOOD, "--no-queue")[0] == 0  # a dry run does not need it
