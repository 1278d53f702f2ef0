"""API keys on `mixllm serve` (`serve.auth`, `state.keys`, `mixllm keys`): every path but /healthz
needs a key of the store; revoked keys stop within the cache bound; requests per minute and a USD
budget per key, shared by replicas; keys stored hashed and never shown again."""

from __future__ import annotations

import json
import threading

import pytest
import yaml
from conftest import CODE

pytest.importorskip("fastapi")

T0 = 1_800_000_001.0  # one second into a minute (1_800_000_000 is a multiple of 60)
PROTECTED = [("POST", "/v1/route", {"query": CODE[0]}), ("POST", "/v1/feedback", {"id": "dnope", "good": True}),
             ("POST", "/v1/chat/completions", {"model": "mixllm", "messages": [{"role": "user", "content": "hi"}]}),
             ("GET", "/v1/llms", None), ("GET", "/metrics", None), ("GET", "/docs", None),
             ("GET", "/openapi.json", None), ("GET", "/redoc", None), ("GET", "/no/such/path", None)]


class Clock:
    """A clock the test moves by hand (the auth cache's ages and the per-minute windows)."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


def _app(home, clock, store_url=None, **auth_kw):
    from mixllm_cli.serve.app import Service, create_app
    from mixllm_cli.serve.auth import Auth

    auth = Auth(home, store_url, clock=clock, **auth_kw)
    return create_app(Service(home, store_url=store_url), auth=auth)


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)


def _key(home, name="app", store_url=None, **limits):
    from mixllm_cli.state import open_store
    from mixllm_cli.state.keys import create_key

    store = open_store(home, store_url)
    try:
        return create_key(store, name, **limits)[1]
    finally:
        store.close()


def _revoke(home, name, store_url=None):
    from mixllm_cli.state import open_store
    from mixllm_cli.state.keys import revoke_key

    store = open_store(home, store_url)
    try:
        revoke_key(store, name)
    finally:
        store.close()


def _bearer(key):
    return {"authorization": f"Bearer {key}"}


def _openai_error(r, status, code):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code and err["param"] is None
    return err


@pytest.fixture
def keyed(trained_home, clock):
    key = _key(trained_home)
    with _client(_app(trained_home, clock)) as c:
        yield c, key


def test_every_path_but_healthz_needs_a_key(keyed):
    c, key = keyed
    for method, path, body in PROTECTED:
        r = c.request(method, path, json=body)
        err = _openai_error(r, 401, "missing_api_key")
        assert "Authorization: Bearer" in err["message"], path
        assert r.headers["www-authenticate"].startswith("Bearer")
        for bad in ("Bearer mxk_" + "x" * 43, "Bearer " + key[:-1], "Basic " + key, key, "Bearer  "):
            r = c.request(method, path, json=body, headers={"authorization": bad})
            assert r.status_code == 401, (path, bad)
    for path in ("/v1/llms", "/metrics", "/docs", "/openapi.json"):
        assert c.get(path, headers=_bearer(key)).status_code == 200, path
    assert c.post("/v1/route", json={"query": CODE[0]}, headers=_bearer(key)).json()["choice"]
    assert c.get("/v1/route", headers=_bearer(key)).status_code == 405  # a key reaches the router's own answers
    # /healthz stays open, GET and HEAD, and tells an anonymous caller nothing about the store
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = c.head("/healthz")
    assert r.status_code == 200 and r.content == b""


def test_the_key_is_checked_before_the_body_is_read(keyed):
    c, key = keyed
    r = c.post("/v1/route", content=b"{not json", headers={"content-type": "application/json"})
    _openai_error(r, 401, "missing_api_key")  # not 422: the body was never parsed
    r = c.post("/v1/route", content=b"x" * (5 * 1024 * 1024), headers={"content-type": "application/json"})
    _openai_error(r, 401, "missing_api_key")  # not 413: nor read
    r = c.post("/v1/route", content=b"{not json", headers={"content-type": "application/json", **_bearer(key)})
    assert r.status_code == 422


def test_head_healthz_answers_200_without_auth_too(trained_home):
    from mixllm_cli.serve.app import Service, create_app

    with _client(create_app(Service(trained_home))) as c:
        r = c.head("/healthz")
        assert r.status_code == 200 and r.content == b""
        assert c.get("/healthz").json()["status"] == "ok"


def test_a_revoked_key_is_refused_within_the_cache_bound(trained_home, clock):
    from mixllm_cli.serve.auth import TTL_S

    key = _key(trained_home, "app")
    other = _key(trained_home, "other")
    with _client(_app(trained_home, clock)) as c:
        assert c.get("/v1/llms", headers=_bearer(key)).status_code == 200
        _revoke(trained_home, "app")
        clock.t += 0.1  # served from the replica's table: no store round trip per request
        assert c.get("/v1/llms", headers=_bearer(key)).status_code == 200
        clock.t += TTL_S  # the table is now older than the bound: the next request re-reads it
        err = _openai_error(c.get("/v1/llms", headers=_bearer(key)), 401, "invalid_api_key")
        assert "revoked" in err["message"]
        assert c.get("/v1/llms", headers=_bearer(other)).status_code == 200  # other keys go on
        assert 'mixllm_auth_refused_total{reason="invalid_api_key"} 1.0' in c.get("/metrics", headers=_bearer(other)).text


def test_a_key_created_while_serving_works_on_its_first_request(trained_home, clock):
    from mixllm_cli.serve.auth import MISS_REFRESH_S

    with _client(_app(trained_home, clock)) as c:
        key = _key(trained_home, "late")
        clock.t += MISS_REFRESH_S
        assert c.get("/v1/llms", headers=_bearer(key)).status_code == 200


def test_requests_per_minute_answer_429_with_retry_after(trained_home, clock):
    key = _key(trained_home, "slow", rpm=3)
    free = _key(trained_home, "free")
    with _client(_app(trained_home, clock)) as c:
        assert [c.get("/v1/llms", headers=_bearer(key)).status_code for _ in range(3)] == [200] * 3
        r = c.get("/v1/llms", headers=_bearer(key))
        err = _openai_error(r, 429, "rate_limit_exceeded")
        assert r.headers["retry-after"] == "59" and "3 requests per minute" in err["message"]
        assert c.get("/v1/llms", headers=_bearer(free)).status_code == 200  # the limit is the key's
        clock.t += 59  # the next minute
        assert c.get("/v1/llms", headers=_bearer(key)).status_code == 200


def test_requests_per_minute_are_counted_across_replicas(trained_home, clock):
    from mixllm_cli.serve.auth import TTL_S

    key = _key(trained_home, "shared", rpm=4)
    with _client(_app(trained_home, clock)) as a, _client(_app(trained_home, clock)) as b:
        assert [a.get("/v1/llms", headers=_bearer(key)).status_code for _ in range(4)] == [200] * 4
        clock.t += TTL_S  # both replicas exchange their counts with the store on their next request
        _openai_error(a.get("/v1/llms", headers=_bearer(key)), 429, "rate_limit_exceeded")
        _openai_error(b.get("/v1/llms", headers=_bearer(key)), 429, "rate_limit_exceeded")  # B served none of them


@pytest.fixture
def upstream():
    from serving import fake_upstream, serving

    app, seen = fake_upstream()
    with serving(app) as url:
        yield url, seen


PRICES = {"big": (10.0, 30.0), "vendor/small": (0.2, 0.2), "mid": (1.0, 2.0)}  # the tiny catalogue's


def test_a_spent_budget_answers_402_on_every_replica(trained_home, upstream, clock):
    from mixllm_cli.state.sqlite import StateStore

    cat = yaml.safe_load((trained_home / "models.yaml").read_text())
    for entry in cat["llms"]:
        entry.update(base_url=upstream[0] + "/v1")
    (trained_home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    key = _key(trained_home, "capped", max_usd=1e-6)
    other = _key(trained_home, "other", max_usd=10.0)
    ask = {"model": "mixllm", "messages": [{"role": "user", "content": CODE[0]}]}
    with _client(_app(trained_home, clock)) as a, _client(_app(trained_home, clock)) as b:
        r = a.post("/v1/chat/completions", json=ask, headers=_bearer(key))
        assert r.status_code == 200, r.text
        p_in, p_out = PRICES[r.json()["mixllm"]["llm"]]
        cost = (12 * p_in + 3 * p_out) / 1e6  # the fake's real usage at the catalogue's prices
        assert cost > 1e-6
        (spent,) = StateStore.for_home(trained_home).conn.execute(
            "SELECT spent_usd FROM api_keys WHERE name = 'capped'").fetchone()
        assert spent == pytest.approx(cost)
        for c in (a, b):  # B never served this key: it reads the spend from the store
            err = _openai_error(c.post("/v1/chat/completions", json=ask, headers=_bearer(key)), 402, "budget_exceeded")
            assert "budget" in err["message"]
        assert len(upstream[1]) == 1  # refused before routing or forwarding
        assert a.post("/v1/route", json={"query": CODE[0]}, headers=_bearer(key)).status_code == 200  # route costs nothing
        assert b.post("/v1/chat/completions", json=ask, headers=_bearer(other)).status_code == 200


def test_spend_and_counts_add_up_under_concurrent_writers(store_url):
    """Spend is added in the database (spent = spent + ?): replicas charging at once lose nothing."""
    from mixllm_cli.state import open_store
    from mixllm_cli.state.keys import add_spend, count_requests, create_key, list_keys

    store = open_store(None, store_url)
    record, _ = create_key(store, "busy", max_usd=100.0)
    store.close()

    def worker() -> None:
        s = open_store(None, store_url)
        try:
            for _ in range(25):
                add_spend(s, record.id, 0.01)
                count_requests(s, 7, {record.id: 2})
        finally:
            s.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = open_store(None, store_url)
    try:
        assert list_keys(store)[0].spent_usd == pytest.approx(1.0)
        assert count_requests(store, 7, {}) == {record.id: 200}
        assert count_requests(store, 9, {record.id: 1}) == {record.id: 1}  # minute 7 is dropped on the way
        assert store.conn.execute("SELECT COUNT(*) FROM api_key_usage").fetchone()[0] == 1
    finally:
        store.close()


def test_keys_are_stored_hashed_and_never_shown_again(tmp_path, cli, store_url):
    import hashlib

    from mixllm_cli.state import open_store

    code, out, err = cli("keys", "create", "ci-bot", "--rpm", "60", "--max-usd", "5", "--store", store_url)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("mxk_") and len(key) == 47 and "shown this once" in err and key not in err
    store = open_store(None, store_url)
    try:
        rows = store.conn.execute("SELECT * FROM api_keys").fetchall()
    finally:
        store.close()
    assert len(rows) == 1
    assert all(key not in str(v) for v in rows[0])  # no column holds the key ...
    assert hashlib.sha256(key.encode()).hexdigest() in rows[0]  # ... only its sha256 (and an 8-character prefix)
    if store_url.startswith("sqlite:///"):
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("**/state.sqlite3*"))
        assert raw
        assert key.encode() not in raw and key[4:].encode() not in raw
    for args in (("keys", "list"), ("keys", "list", "--json"), ("keys", "revoke", "ci-bot"), ("keys", "list")):
        code, out, err = cli(*args, "--store", store_url)
        assert code == 0, err
        assert key not in out + err and key[12:20] not in out + err
    listed = json.loads(cli("keys", "list", "--json", "--store", store_url)[1])
    assert [(k["name"], k["rpm"], k["max_usd"], k["spent_usd"], k["revoked_s"] is not None) for k in listed] == [
        ("ci-bot", 60, 5.0, 0.0, True)]
    assert set(listed[0]) == {"id", "name", "prefix", "created_s", "rpm", "max_usd", "spent_usd", "revoked_s"}
    assert listed[0]["prefix"] == key[:12]


def test_keys_commands_refuse_bad_input_with_one_error_line(cli):
    assert cli("keys", "create", "a b")[2].startswith("Error: 'a b' is not a key name")
    assert cli("keys", "create", "x", "--rpm", "0") == (2, "", "Error: --rpm: must be between 1 and 1,000,000 (got 0)\n")
    code, _, err = cli("keys", "create", "x", "--max-usd", "inf")
    assert code == 2 and err.startswith("Error: --max-usd: must be a number of dollars above 0")
    assert cli("keys", "create", "dup")[0] == 0
    code, _, err = cli("keys", "create", "dup")
    assert code == 2 and err == ("Error: a key named 'dup' exists; revoke it first (mixllm keys revoke dup) or "
                                 "choose another name\n")
    assert cli("keys", "revoke", "nobody")[2] == "Error: no key named or with the id 'nobody'; see mixllm keys list\n"
    assert cli("keys", "revoke", "dup")[0] == 0
    code, _, err = cli("keys", "revoke", "dup")
    assert code == 0 and "already revoked" in err
    assert cli("keys", "create", "dup")[0] == 0  # a revoked key's name can be given again


def test_serve_refuses_no_auth_on_a_public_host(cli):
    code, out, err = cli("serve", "--no-auth", "--host", "0.0.0.0", "--port", "18080")
    assert code == 2 and out == ""
    assert err.startswith("Error: --no-auth: 0.0.0.0 is not a loopback address: without API keys anyone")
    code, _, err = cli("serve", "--allow-public-without-auth", "--port", "18080")
    assert code == 2 and err.startswith("Error: --allow-public-without-auth: only with --no-auth")


def test_exposure_rules():
    from mixllm_cli.errors import UsageError
    from mixllm_cli.serve.auth import check_exposure

    assert check_exposure("0.0.0.0", keys=True) is None
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"):
        assert "WITHOUT API keys" in check_exposure(host, keys=False)
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.org", ""):
        with pytest.raises(UsageError):
            check_exposure(host, keys=False)
        assert "ANYONE WHO CAN REACH THIS PORT" in check_exposure(host, keys=False, allow_public=True)


def test_mixllm_serve_asks_for_keys_by_default(trained_home, cli):
    """The real command, as an operator starts it: no flag means keys are required."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    key = cli("keys", "create", "ops")[1].strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mixllm_cli", "serve", "--port", str(port)],
                            env={**os.environ, "MIXLLM_HOME": str(trained_home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def get(path, headers=None, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if get("/healthz", method="HEAD") == 200:
                    break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.2)
        assert get("/v1/llms") == 401 and get("/metrics") == 401 and get("/docs") == 401
        assert get("/v1/llms", _bearer(key)) == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "API keys required (Authorization: Bearer <key>): 1 active in the store" in err.decode()
