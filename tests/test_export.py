"""`mixllm export-prompts`: the queries route / serve logged with --log-queries, as a prompt file
that `mixllm collect` reads; decisions logged without their text are counted and left out."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mixllm_cli.collect.from_log import parse_since
from mixllm_cli.collect.prompts import read_prompts
from mixllm_cli.state import open_store
from mixllm_cli.state.base import Admission

CODE_Q = "write a python function to sum two numbers"
CHAT_Q = "tell me a story about the dog"
OTHER_Q = "what is the capital of france"


@pytest.fixture
def trained(tiny, trained_home):
    return tiny


def route(cli, trained, query, *flags):
    code, out, err = cli("route", query, "--json", "--catalogue", trained / "models.yaml", *flags)
    assert code == 0, err
    return json.loads(out)["decision_id"]


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def traffic(trained, cli, tmp_path):
    """Four logged queries (one asked twice), a batch of two more, and two routed without their text."""
    ids = [route(cli, trained, q, "--log-queries") for q in (CODE_Q, CHAT_Q, CODE_Q, OTHER_Q)]
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"id": "b1", "query": "tell me about the cat"}) + "\n"
                     + json.dumps({"id": "b2", "query": "explain why the sky is blue"}) + "\n")
    code, out, err = cli("route", "--jsonl", batch, "--log-queries", "--catalogue", trained / "models.yaml")
    assert code == 0, err
    ids += [json.loads(line)["decision_id"] for line in out.splitlines()]
    route(cli, trained, "a query nobody should see")
    route(cli, trained, CHAT_Q)
    return ids


def test_export_writes_the_logged_queries_once_each(traffic, cli, tmp_path):
    out = tmp_path / "prompts.jsonl"
    code, stdout, err = cli("export-prompts", "--out", out)
    assert code == 0, err
    rows = lines_of(out)
    # oldest first; the batch's two decisions share one instant (their order is by decision id)
    assert [r["id"] for r in rows[:3]] == [traffic[0], traffic[1], traffic[3]]
    assert {r["id"] for r in rows[3:]} == {traffic[4], traffic[5]}
    assert [r["query"] for r in rows[:3]] == [CODE_Q, CHAT_Q, OTHER_Q]
    assert {r["query"] for r in rows[3:]} == {"tell me about the cat", "explain why the sky is blue"}
    assert all(set(r) == {"id", "query"} for r in rows)
    assert "a query nobody should see" not in out.read_text()
    report = json.loads(stdout)
    assert report == {"out": str(out), "prompts": 5, "decisions": 8, "duplicates": 1, "without_text": 2,
                      "skipped": 0, "truncated": False}
    assert ("2 decisions were logged without their text (route/serve without --log-queries): not exportable"
            in err)
    # collect reads it as it is
    prompts = read_prompts(out).prompts
    assert [(p.id, p.query) for p in prompts] == [(r["id"], r["query"]) for r in rows]


def test_export_keep_duplicates_limit_and_task(traffic, cli, tmp_path):
    out = tmp_path / "all.jsonl"
    code, _, err = cli("export-prompts", "--out", out, "--keep-duplicates", "--task", "traffic")
    assert code == 0, err
    rows = lines_of(out)
    assert [r["query"] for r in rows].count(CODE_Q) == 2 and len(rows) == 6
    assert {r["task"] for r in rows} == {"traffic"}
    assert [p.task for p in read_prompts(out).prompts] == ["traffic"] * 6

    code, stdout, err = cli("export-prompts", "--out", out, "--limit", "2")
    assert code == 0, err
    assert [r["id"] for r in lines_of(out)] == traffic[:2]  # the file was replaced
    assert json.loads(stdout)["truncated"] is True and "stopped at 2 prompts" in err


def test_export_since(traffic, cli, tmp_path):
    out = tmp_path / "recent.jsonl"
    code, _, err = cli("export-prompts", "--out", out, "--since", "1h")
    assert code == 0, err
    assert len(lines_of(out)) == 5
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    code, _, err = cli("export-prompts", "--out", tmp_path / "none.jsonl", "--since", tomorrow)
    assert code == 1
    assert err.startswith("Error: ") and "no decisions logged since" in err and "nothing to export" in err
    assert not (tmp_path / "none.jsonl").exists()
    code, _, err = cli("export-prompts", "--out", out, "--since", "last tuesday")
    assert code == 2
    assert err.startswith("Error: --since: 'last tuesday' is not a time; give an ISO date")


def test_nothing_exportable_is_an_error_that_says_why(trained, cli, tmp_path):
    route(cli, trained, CODE_Q)
    route(cli, trained, CHAT_Q)
    out = tmp_path / "prompts.jsonl"
    out.write_text("old content\n")
    code, stdout, err = cli("export-prompts", "--out", out)
    assert code == 1 and stdout == ""
    assert err.strip().endswith("nothing to export: 2 decisions were logged without their text "
                                "(route/serve without --log-queries): not exportable")
    assert out.read_text() == "old content\n"  # nothing written over it


def test_a_home_without_decisions(cli, tmp_path):
    code, _, err = cli("export-prompts", "--out", tmp_path / "p.jsonl", "--home", tmp_path / "empty-home")
    assert code == 1
    assert "no decisions logged yet; route or serve with --log-queries first" in err
    assert not (tmp_path / "empty-home" / "state.sqlite3").exists()  # looking created nothing


@pytest.mark.parametrize("text, expected", [
    ("1767225600", 1767225600.0), ("2026-01-01T00:00:00Z", 1767225600.0),
    ("2026-01-01T01:00:00+01:00", 1767225600.0), ("7d", 1_000_000.0 - 7 * 86400), ("12h", 1_000_000.0 - 12 * 3600),
    ("30m", 1_000_000.0 - 1800), ("2w", 1_000_000.0 - 14 * 86400),
])
def test_parse_since(text, expected):
    assert parse_since(text, now=1_000_000.0) == pytest.approx(expected)
    assert parse_since("2026-01-31") == dt.datetime(2026, 1, 31).timestamp()  # a date: local midnight


def test_logged_queries_on_each_backend(store_url):
    store = open_store(url=store_url)
    try:
        with store.transaction() as conn:
            for k, (text, at) in enumerate([("first", 100.0), (None, 200.0), ("third", 300.0)]):
                a = Admission(llm="big", budget=None, lam=1.0, query_sha256=f"{k:064d}", prompt_tokens=3,
                              predicted_response_tokens=10.0, predicted_cost_usd=0.001, query_text=text)
                store.admit(conn, a, now=at, wait_s=0.0, slot=0, start_s=at, end_s=at + 1)
        rows = list(store.logged_queries())
        assert [(t, text) for _, t, text in rows] == [(100.0, "first"), (200.0, None), (300.0, "third")]
        assert all(did.startswith("d") for did, _, _ in rows)
        assert [text for _, _, text in store.logged_queries(since=200.0)] == [None, "third"]
    finally:
        store.close()
