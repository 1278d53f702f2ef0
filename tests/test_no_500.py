"""Never a 500 for a request's content (issue 16): lone surrogates, huge integers, NaN and infinity,
deep nesting and strings where booleans go are refused with a 4xx in the JSON error shape before
anything is committed; the CLI refuses the same values in one line; and a PostgreSQL restart costs
no request (the first statement on a stale connection used to be a 503)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import CODE

pytest.importorskip("fastapi")


def make_client(home, store_url=None):
    from fastapi.testclient import TestClient

    from mixllm_cli.serve.app import Service, create_app

    return TestClient(create_app(Service(home, store_url=store_url)), raise_server_exceptions=False)


@pytest.fixture
def client(trained_home):
    with make_client(trained_home) as c:
        yield c


def post(client, path, raw: str):
    """POST a body exactly as written (JSON's `\\udfff`, `NaN`, 400-digit integers and all)."""
    return client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


def decisions(home) -> int:
    from mixllm_cli.state.sqlite import StateStore

    store = StateStore.for_home(home)
    try:
        return int(store.stats()["decisions"])
    finally:
        store.close()


def assert_error(r, status, message=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["type"] == "invalid_request_error"
    if message is not None:
        assert err["message"] == message, err


@pytest.mark.parametrize(("path", "raw", "message"), [
    ("/v1/route", '{"query": "abc", "id": "\\udfff"}', "id: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/route", '{"queries": [{"query": "abc"}, {"query": "abc", "id": "x\\ud800y"}]}',
     "queries[1].id: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/route", '{"query": "abc\\udfff"}', "query: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/route", '{"query": "abc", "budget": "\\udfff"}', "budget: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/route", '{"query": "abc", "\\udfff": 1}', "body: a key is not valid UTF-8 (a lone surrogate)"),
    ("/v1/route", '{"query": "abc", "lambda": NaN}', "lambda: must be a finite number (not NaN or infinite)"),
    ("/v1/route", '{"query": "abc", "max_wait_s": Infinity}',
     "max_wait_s: must be a finite number (not NaN or infinite)"),
    ("/v1/route", '{"query": "abc", "max_wait_s": 1e400}', "max_wait_s: must be a finite number (not NaN or infinite)"),
    ("/v1/route", '{"query": "abc", "lambda": ' + "9" * 400 + "}", "lambda: integer out of range (beyond 64 bits)"),
    ("/v1/route", '{"query": "abc", "x": ' + "[" * 80 + "]" * 80 + "}", None),
    ("/v1/route", '{"query": "abc", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", None),
    ("/v1/feedback", '{"id": "\\udfff", "quality": 1}', "id: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/feedback", '{"id": "d1", "response_tokens": ' + str(10**30) + "}",
     "response_tokens: integer out of range (beyond 64 bits)"),
    ("/v1/feedback", '{"items": [{"id": "d1", "ttft_ms": -Infinity}]}',
     "items[0].ttft_ms: must be a finite number (not NaN or infinite)"),
    ("/v1/chat/completions",
     '{"model": "mixllm", "messages": [{"role": "system", "content": "\\udfff"}, {"role": "user", "content": "hi"}]}',
     "messages[0].content: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/chat/completions", '{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
     "model: is not valid UTF-8 (a lone surrogate)"),
    ("/v1/chat/completions", '{"model": "mixllm", "messages": [{"role": "user", "content": "hi"}], "seed": '
     + str(10**20) + "}", "seed: integer out of range (beyond 64 bits)"),
], ids=["route-id", "batch-id", "query", "budget", "key", "nan", "infinity", "1e400", "huge-int", "deep",
        "very-deep", "feedback-id", "tokens-1e30", "batch-ttft", "chat-message", "chat-model", "chat-seed"])
def test_bad_content_is_a_400_and_nothing_is_committed(client, trained_home, path, raw, message):
    assert_error(post(client, path, raw), 400, message)
    assert decisions(trained_home) == 0


def test_feedback_with_a_huge_integer_for_a_real_decision_is_a_400_not_an_overflow(client, trained_home):
    """The issue's attack: `"response_tokens": 10**30` reached SQLite (OverflowError, a plain-text 500)."""
    d = client.post("/v1/route", json={"query": CODE[0]}).json()
    for tokens in (10**30, 2**63 - 1, 10**8):
        assert_error(post(client, "/v1/feedback", f'{{"id": "{d["decision_id"]}", "response_tokens": {tokens}}}'),
                     400)
    r = client.post("/v1/feedback", json={"id": d["decision_id"], "response_tokens": 10**7})
    assert r.status_code == 200 and r.json()["status"] == "recorded"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/route", {"query": "abc", "strict_wait": "yes"}, "strict_wait"),
    ("/v1/route", {"query": "abc", "strict_wait": 1}, "strict_wait"),
    ("/v1/route", {"query": "abc", "lambda": "1.5"}, "lambda"),
    ("/v1/route", {"query": "abc", "max_wait_s": "30"}, "max_wait_s"),
    ("/v1/route", {"query": "abc", "id": True}, "id"),
    ("/v1/feedback", {"id": "d1", "good": "yes"}, "good"),
    ("/v1/feedback", {"id": "d1", "quality": "0.5"}, "quality"),
    ("/v1/feedback", {"id": "d1", "response_tokens": True}, "response_tokens"),
    ("/v1/chat/completions", {"model": "mixllm", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
     "stream"),
])
def test_booleans_and_numbers_are_never_coerced_from_other_types(client, trained_home, path, body, field):
    """`strict_wait: "yes"` used to count as true; strings are not numbers either."""
    r = client.post(path, json=body)
    assert_error(r, 422)
    assert field in r.json()["error"]["message"]
    assert decisions(trained_home) == 0
    ok = client.post("/v1/route", json={"query": "abc", "strict_wait": True, "lambda": 2, "max_wait_s": 30})
    assert ok.status_code == 200, ok.text


def test_the_cli_refuses_the_same_values_in_one_line(trained_home, cli, tmp_path):
    code, out, err = cli("route", CODE[0], "--json")
    assert code == 0, err
    did = json.loads(out)["decision_id"]
    src = tmp_path / "fb.jsonl"
    src.write_text('{"id": "\\udfff", "quality": 1}\n'
                   f'{{"id": "{did}", "response_tokens": {10**30}}}\n'
                   f'{{"id": "{did}", "response_tokens": {10**400}}}\n'
                   f'{{"id": "{did}", "latency_ms": NaN}}\n'
                   f'{{"id": "{did}", "quality": 0.5}}\n')
    code, out, err = cli("feedback", "--jsonl", src)
    assert code == 1 and err == f"Error: {src}: 4 line(s) not recorded; see the error objects in the output\n"
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in lines] == ["error", "error", "error", "error", "recorded"]
    assert lines[0] == {"line": 1, "status": "error", "error": f"{src}:1: id: is not valid UTF-8 (a lone surrogate)"}
    assert lines[1]["error"].startswith(f"{src}:2: response_tokens: must be <= 10,000,000 (got 1000")
    assert lines[3]["error"] == f"{src}:4: latency_ms: must be a finite number (got nan)"
    from mixllm_cli.state.sqlite import StateStore

    assert StateStore.for_home(trained_home).stats()["feedback"] == 1
    code, out, err = cli("feedback", "\udcff", "--quality", "1")  # argv bytes that are not UTF-8
    assert (code, out) == (1, "") and err == "Error: feedback: id: is not valid UTF-8 (a lone surrogate)\n"


def test_route_jsonl_refuses_a_lone_surrogate_id_before_routing(trained_home, cli, tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text('{"query": "abc", "id": "\\udfff"}\n{"query": "abc", "id": "fine"}\n')
    code, out, err = cli("route", "--jsonl", src)
    assert code == 1 and "1 line(s) could not be routed" in err
    bad, good = (json.loads(line) for line in out.splitlines())
    assert "id: is not valid UTF-8" in bad["error"] and good["id"] == "fine"
    assert decisions(trained_home) == 1


def _restart(cluster) -> None:
    """Stop PostgreSQL (fast: every session is told to go and closed) and start it again with the options
    it ran with (`pg_ctl restart` reads them from postmaster.opts)."""
    proc = subprocess.run([*cluster.prefix, str(cluster.bin / "pg_ctl"), "-D", str(cluster.dir / "data"), "-m", "fast",
                           "-w", "-t", "60", "restart", "-l", str(cluster.dir / "log")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_postgresql_restart_costs_no_request(trained_home, pg_cluster, pg_url):
    """Every connection the server holds (routing, feedback, reads) is stale after the restart: none of the
    requests after it gets a 503."""
    with make_client(trained_home, store_url=pg_url) as client:
        d = client.post("/v1/route", json={"query": CODE[0]}).json()
        assert client.post("/v1/feedback", json={"id": d["decision_id"], "quality": 1.0}).status_code == 200
        assert client.get("/healthz").status_code == 200
        for _ in range(2):
            _restart(pg_cluster)
            r = client.post("/v1/route", json={"query": CODE[0]})
            assert r.status_code == 200, r.text
            f = client.post("/v1/feedback", json={"id": r.json()["decision_id"], "quality": 0.5})
            assert f.status_code == 200, f.text
            h = client.get("/healthz")
            assert h.status_code == 200 and h.json()["decisions"] >= 2, h.text


def test_a_stale_connection_is_replaced_for_reads_and_transactions(pg_cluster, pg_url):
    from mixllm_cli.state.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        assert store.stats()["decisions"] == 0
        _restart(pg_cluster)
        with store.transaction() as conn:  # BEGIN on the dead connection: replaced, opened again
            assert conn.execute("SELECT 1").fetchone() == (1,)
        _restart(pg_cluster)
        assert store.stats()["decisions"] == 0  # a plain read likewise
    finally:
        store.close()
