"""`mixllm serve`: the library over HTTP. Real app, real store (SQLite, and PostgreSQL where it
matters), real uvicorn on loopback for the OpenAI-compatible endpoint with the official `openai`
client as the caller and a fake upstream provider."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from conftest import CHAT, CODE

pytest.importorskip("fastapi")

FLOOD = {"query": CODE[0], "lambda": 1000, "max_wait_s": 1000}


def make_client(home, store_url=None):
    from fastapi.testclient import TestClient

    from mixllm_cli.serve.app import Service, create_app

    return TestClient(create_app(Service(home, store_url=store_url)), raise_server_exceptions=False)


@pytest.fixture
def client(trained_home):
    with make_client(trained_home) as c:
        yield c


def wait_of(d, llm):
    return next(c["expected_wait_ms"] for c in d["candidates"] if c["llm"] == llm)


def test_route_returns_the_decision_route_json_prints_and_builds_the_queue(client, cli):
    ds = [client.post("/v1/route", json=FLOOD) for _ in range(5)]
    assert all(r.status_code == 200 for r in ds)
    ds = [r.json() for r in ds]
    _code, out, _ = cli("route", CODE[0], "--json", "--lambda", "1000", "--max-wait-s", "1000", "--no-queue")
    cli_d = json.loads(out)
    assert set(ds[0]) == set(cli_d)
    assert [c["predicted_quality"] for c in ds[0]["candidates"]] == [c["predicted_quality"] for c in cli_d["candidates"]]
    assert [d["choice"] for d in ds] == ["big"] * 5
    assert [wait_of(d, "big") for d in ds[:4]] == [0.0] * 4 and wait_of(ds[4], "big") > 5000
    assert len({d["decision_id"] for d in ds}) == 5
    # the CLI on the same home sees the server's calls in the queue
    _code, out, _ = cli("route", CODE[0], "--json", "--lambda", "1000", "--max-wait-s", "1000")
    assert wait_of(json.loads(out), "big") > 5000


def test_a_batch_keeps_order_ids_and_per_query_budgets(client):
    body = {"queries": [{"id": "a", "query": CODE[0], "lambda": 1000}, {"id": 7, "query": CHAT[0]},
                        {"query": CHAT[1], "budget": "low"}], "budget": "very-low"}
    r = client.post("/v1/route", json=body)
    assert r.status_code == 200, r.text
    ds = r.json()["decisions"]
    assert [d["id"] for d in ds] == ["a", "7", None]
    assert (ds[0]["lambda"], ds[0]["budget"]) == (1000, None)
    assert ds[1]["budget"] == "very-low" and ds[2]["budget"] == "low"
    assert all(d["decision_id"] for d in ds)
    # Server-Timing says where the time went: the phases of the batch and the whole request
    phases = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert set(phases) == {"encode", "predict", "decide", "total"}
    assert 0 < float(phases["encode"]) < float(phases["total"])


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON decode error"),
        ({"content": b"query=hello"}, 422, "Input should be a valid dictionary"),
        ({"json": [1, 2]}, 422, "Input should be a valid dictionary"),
        ({"json": {"query": CODE[0], "queries": [{"query": "x"}]}}, 422,
         "Value error, give either query or queries, not both and not neither"),
        ({"json": {"query": CODE[0], "lambda": -1}}, 422, "lambda: Input should be greater than or equal to 0"),
        ({"json": {"query": CODE[0], "colour": "red"}}, 422, "colour: Extra inputs are not permitted"),
        ({"json": {"query": "   "}}, 400, "query: is empty"),
        ({"json": {"queries": [{"query": CODE[0]}, {"query": " "}]}}, 400, "queries[1].query: is empty"),
        ({"json": {"query": CODE[0], "budget": "lavish"}}, 400,
         "budget: unknown budget 'lavish'; choose one of: very-low, low, medium, high"),
        ({"json": {"query": CODE[0], "budget": "low", "lambda": 2}}, 400, "budget and lambda: give one, not both"),
        ({"json": {"query": "x" * 100_001}}, 422, "query: String should have at most 100000 characters"),
    ],
)
def test_malformed_route_requests_get_a_4xx_json_error(client, kwargs, status, message):
    r = client.post("/v1/route", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


def test_oversized_bodies_are_refused_with_413_declared_or_chunked(client):
    big = b'{"query": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    r = client.post("/v1/route", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"

    def chunks():
        yield b'{"query": "'
        for _ in range(80):
            yield b"a" * 65536
        yield b'"}'

    r = client.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/v1/route", json=FLOOD).status_code == 200  # and the service keeps working


def test_unknown_paths_and_methods_are_json_errors(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = client.get("/v1/route")
    assert r.status_code == 405 and "error" in r.json()


def test_feedback_has_the_cli_semantics(client, trained_home):
    d = client.post("/v1/route", json=FLOOD).json()
    r = client.post("/v1/feedback", json={"id": d["decision_id"], "quality": 0.8, "latency_ms": 1500,
                                          "response_tokens": 100})
    assert r.status_code == 200 and r.json() == {"id": d["decision_id"], "llm": "big", "kind": "refined",
                                                 "status": "recorded"}
    again = client.post("/v1/feedback", json={"id": d["decision_id"], "quality": 0.8, "latency_ms": 1500,
                                              "response_tokens": 100})
    assert again.json()["status"] == "duplicate"
    r = client.post("/v1/feedback", json={"id": "dnope", "good": True})
    assert r.status_code == 404 and r.json()["error"]["message"] == "unknown decision id 'dnope'"
    r = client.post("/v1/feedback", json={"id": d["decision_id"], "quality": 1.5})
    assert r.status_code == 400 and r.json()["error"]["message"] == "quality: must be in [0, 1] (got 1.5)"
    r = client.post("/v1/feedback", json={"id": d["decision_id"]})
    assert r.status_code == 400 and "nothing to record" in r.json()["error"]["message"]
    r = client.post("/v1/feedback", json={"items": [{"id": d["decision_id"], "good": False},
                                                    {"id": d["decision_id"], "quality": 2}]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["status"] == "recorded" and res[1]["status"] == "error"
    assert res[1]["error"] == "items[1]: quality: must be in [0, 1] (got 2.0)"
    llms = {row["id"]: row for row in client.get("/v1/llms").json()}
    assert llms["big"]["latency_observations"] == 1  # the latency report freed the slot and taught the model
    from mixllm_cli.state.sqlite import StateStore

    assert StateStore.for_home(trained_home).stats()["feedback"] == 2


def test_feedback_reaches_the_online_state_that_routing_serves(client, trained_home):
    before = client.post("/v1/route", json=FLOOD).json()
    u0 = next(c["uncertainty"] for c in before["candidates"] if c["llm"] == "big")
    ids = [client.post("/v1/route", json=FLOOD).json()["decision_id"] for _ in range(6)]
    r = client.post("/v1/feedback", json={"items": [{"id": i, "good": True} for i in ids]})
    assert [x["status"] for x in r.json()["results"]] == ["recorded"] * 6
    deadline, u = time.time() + 20, u0
    while time.time() < deadline and u >= u0:
        time.sleep(0.3)
        d = client.post("/v1/route", json=FLOOD).json()
        u = next(c["uncertainty"] for c in d["candidates"] if c["llm"] == "big")
    assert u < u0  # the learned A⁻¹ is served without a restart
    assert (trained_home / "online" / "snapshot.npz").is_file()


def test_llms_healthz_metrics_and_the_openapi_schema(client):
    for _ in range(3):
        client.post("/v1/route", json=FLOOD)
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["decisions"] == 3 and h["llms"] == ["big", "vendor/small", "mid"]
    llms = client.get("/v1/llms").json()
    assert [r["id"] for r in llms] == ["big", "vendor/small", "mid"]
    assert next(r for r in llms if r["id"] == "big")["calls_in_flight"] == 3
    text = client.get("/metrics").text
    assert 'mixllm_routed_total{llm="big"} 3.0' in text
    assert 'mixllm_queue_depth{llm="big"} 3.0' in text and 'mixllm_queue_depth{llm="mid"} 0.0' in text
    assert "mixllm_route_latency_seconds_count 3.0" in text
    assert "mixllm_route_latency_seconds_bucket" in text
    client.post("/v1/feedback", json={"id": "dnope", "good": True})
    assert 'mixllm_feedback_total{status="error"} 1.0' in client.get("/metrics").text
    schema = client.get("/openapi.json").json()
    assert {"/v1/route", "/v1/feedback", "/v1/llms", "/v1/chat/completions", "/healthz", "/metrics"} <= set(
        schema["paths"])


def test_two_replicas_on_postgresql_share_the_queue_and_the_learned_state(trained_home, pg_url):
    with make_client(trained_home, pg_url) as a, make_client(trained_home, pg_url) as b:
        da = [a.post("/v1/route", json=FLOOD).json() for _ in range(4)]
        assert [wait_of(d, "big") for d in da] == [0.0] * 4
        db = b.post("/v1/route", json=FLOOD).json()
        assert db["choice"] == "big" and wait_of(db, "big") > 5000  # A's calls raise the wait B sees
        assert a.get("/metrics").text.count('mixllm_queue_depth{llm="big"} 5.0') == 1
        u0 = next(c["uncertainty"] for c in db["candidates"] if c["llm"] == "big")
        r = a.post("/v1/feedback", json={"items": [{"id": d["decision_id"], "good": True} for d in da]})
        assert all(x["status"] == "recorded" for x in r.json()["results"])
        assert b.post("/v1/feedback", json={"id": da[0]["decision_id"], "good": True}).json()["status"] == "duplicate"
        deadline, u = time.time() + 20, u0
        while time.time() < deadline and u >= u0:
            time.sleep(0.3)
            d = b.post("/v1/route", json=FLOOD).json()
            u = next(c["uncertainty"] for c in d["candidates"] if c["llm"] == "big")
        assert u < u0  # feedback given to A is learned by B, through the snapshot in PostgreSQL
    assert not (trained_home / "online" / "snapshot.npz").exists()


def test_serve_refuses_an_unreachable_store_with_one_error_line(trained_home, cli):
    code, out, err = cli("serve", "--store", "postgresql://nobody@127.0.0.1:1/none", "--port", "18080")
    assert code == 1 and out == ""
    assert err.startswith("Error: postgresql://nobody@127.0.0.1:1/none: cannot connect to the state database (")
    code, _, err = cli("serve", "--store", "mysql://x", "--port", "18080")
    assert code == 2 and err.startswith("Error: --store: unknown store URL 'mysql'")


def test_two_real_replicas_one_killed_mid_load(trained_home, tiny, pg_url):
    """Two `mixllm serve` processes on one PostgreSQL: a call routed on A raises B's wait; A is
    SIGKILLed while requests are in flight; B keeps serving; no half-written rows."""
    import concurrent.futures
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    import psycopg

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def post(port, body, timeout=30):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/route", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    ports = [free_port(), free_port()]
    env = {**os.environ, "MIXLLM_HOME": str(trained_home)}
    procs = [subprocess.Popen([sys.executable, "-m", "mixllm_cli", "serve", "--port", str(p), "--store", pg_url,
                               "--no-auth"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for p in ports]
    try:
        for port, proc in zip(ports, procs):
            deadline = time.time() + 90
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                    break
                except OSError:
                    assert time.time() < deadline
                    time.sleep(0.2)
        acked = [post(ports[0], FLOOD)["decision_id"] for _ in range(4)]
        d = post(ports[1], FLOOD)
        assert wait_of(d, "big") > 5000  # A's four calls fill big's four slots for B too
        acked.append(d["decision_id"])

        def hammer(k):
            try:
                return post(ports[0], {"query": f"{CODE[k % 5]} {k}", "lambda": 1.0})["decision_id"]
            except (urllib.error.URLError, ConnectionError, OSError, http.client.HTTPException, ValueError):
                return None  # in flight at the kill: refused, reset, or cut mid-answer (IncompleteRead)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(hammer, k) for k in range(200)]
            time.sleep(0.5)
            procs[0].send_signal(signal.SIGKILL)  # mid-load
            acked += [x for x in (f.result() for f in futures) if x]
        procs[0].wait()
        after = post(ports[1], FLOOD)  # B keeps serving
        acked.append(after["decision_id"])
        with psycopg.connect(pg_url) as db:
            stored = {r[0] for r in db.execute("SELECT id FROM decisions")}
            no_job = db.execute("SELECT COUNT(*) FROM decisions d LEFT JOIN jobs j ON j.decision_id = d.id "
                                "WHERE j.decision_id IS NULL").fetchone()[0]
        assert set(acked) <= stored and no_job == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)


def test_one_batch_with_several_waiting_policies_decides_each_like_alone(trained_home):
    """Requests gathered into one encoder batch keep their own budget and waiting policy."""
    import asyncio

    from mixllm_cli.routing.router import Router, RouteRequest, WaitPolicy
    from mixllm_cli.serve.service import Service, _Pending

    service = Service(trained_home)
    try:
        loop = asyncio.new_event_loop()
        strict = WaitPolicy(2.0, strict=True)
        batch = [_Pending([RouteRequest(CODE[0], lam=1000.0, policy=WaitPolicy(1000.0))] * 5, loop.create_future()),
                 _Pending([RouteRequest(CHAT[0], "c", "very-low", policy=strict)], loop.create_future()),
                 _Pending([RouteRequest(CODE[0], "s", lam=1000.0, policy=strict)], loop.create_future())]
        (first, chat, strict), timings = service._route_batch(batch)
        loop.close()
    finally:
        service.close()
    assert set(timings) == {"encode", "predict", "decide"} and all(v > 0 for v in timings.values())
    assert [d.choice for d in first] == ["big"] * 5  # the first group filled big's four slots, then queued
    assert chat[0].id == "c" and chat[0].budget == "very-low"
    assert chat[0].choice == Router.load(trained_home).route([CHAT[0]], "very-low")[0].choice
    # the strict group saw the first group's load: big's wait exceeds τ = 2 s, so it was not chosen
    assert strict[0].choice != "big"
    assert next(c for c in strict[0].candidates if c.llm == "big").wait_ms > 2000


@pytest.mark.parametrize("env_s", [None, "1", "600"])
def test_max_wait_env_changes_the_servers_decisions_as_it_changes_the_clis(trained_home, cli, tmp_path, monkeypatch,
                                                                          env_s):
    """$MIXLLM_MAX_WAIT_S is the waiting tolerance of the server's routes as of the CLI's: the same queries on the
    same (empty) queue, at the same clock, get the same decisions from both, candidate by candidate."""
    if env_s is None:
        monkeypatch.delenv("MIXLLM_MAX_WAIT_S", raising=False)
    else:
        monkeypatch.setenv("MIXLLM_MAX_WAIT_S", env_s)
    monkeypatch.setattr(time, "time", lambda: 1.8e9)  # one clock for both: the queue drains alike
    with make_client(trained_home, store_url=f"sqlite:///{tmp_path / 'server.sqlite3'}") as client:
        served = [client.post("/v1/route", json={"query": CODE[0], "lambda": 1000}).json() for _ in range(6)]
    monkeypatch.setenv("MIXLLM_STORE", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    by_cli = [json.loads(cli("route", CODE[0], "--json", "--lambda", "1000")[1]) for _ in range(6)]

    def decided(d):
        return d["choice"], d["candidates"]

    assert [decided(d) for d in served] == [decided(d) for d in by_cli]
    tolerance = 30.0 if env_s is None else float(env_s)
    # the tolerance reached the score: an idle LLM pays β·exp(−γ·ξ·τ) (decision.py)
    idle = next(c for c in served[0]["candidates"] if c["expected_wait_ms"] == 0)
    assert idle["penalty"] == pytest.approx(0.1 * 2.718281828 ** (-0.2 * 0.5 * tolerance), rel=1e-3)
    if env_s == "1":  # big's four slots are full after four calls: with τ = 1 s the rest go elsewhere
        assert [d["choice"] for d in served][:4] == ["big"] * 4 and "big" not in [d["choice"] for d in served][4:]
    if env_s == "600":
        assert [d["choice"] for d in served] == ["big"] * 6


def test_serve_on_a_busy_port_is_one_error_line(trained_home, cli):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = cli("serve", "--port", port, "--no-auth", "--home", trained_home)
    assert (code, out) == (1, "")
    assert err.strip() == f"Error: --port: cannot listen on 127.0.0.1:{port}: Address already in use"
