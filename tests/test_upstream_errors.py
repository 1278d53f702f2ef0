"""Upstream failures told safely (`serve.proxy`): the caller gets the LLM, the endpoint's status and a
generic message, never the endpoint's words (which can quote our key back); those go to the server
log with anything key-like masked. 401/403 mean the endpoint refused our key: that LLM fails, the
query falls back to another, and the LLM cools down, with one log line saying what to check.

(No `from __future__ import annotations`: FastAPI must see the fake provider's real `Request` type.)"""

import logging

import pytest
import yaml
from conftest import CODE

pytest.importorskip("fastapi")

SECRET = "sk-live-0123456789abcdefSECRET"  # what the operator's environment holds for the upstream


def echo_upstream():
    """A provider that fails on demand (by upstream model name) and quotes the caller's Authorization
    header back in its error bodies, as real providers do; any other model answers. Returns (app, models seen)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    app = FastAPI()
    seen: list[str] = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        auth = request.headers.get("authorization", "")
        model = body["model"]
        seen.append(model)
        if model in ("refuse401", "refuse403"):
            status = int(model[-3:])
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_key"}},
                                status_code=status)
        if model == "fire500":
            return PlainTextResponse(f"Traceback ... while calling with {auth} (key {auth[7:]})", status_code=500)
        if model == "bad400":
            return JSONResponse({"error": {"message": f"bad request for {auth[7:]}"}}, status_code=400)
        return {"id": "x", "object": "chat.completion", "model": model,
                "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi there"}}]}

    return app, seen


@pytest.fixture
def upstream():
    from serving import serving

    app, seen = echo_upstream()
    with serving(app) as url:
        yield url + "/v1", seen


def _ranking(home, query, budget):
    from mixllm_cli.routing.router import Router

    (d,) = Router.load(home).route([query], budget)
    return [c.llm for c in sorted(d.candidates, key=lambda c: -c.score)]


def _client(home, base_url, models, monkeypatch, key_env="UPSTREAM_KEY", **service_kw):
    """The tiny catalogue behind `base_url`, each LLM asking for the upstream model `models[id]` (default ok)."""
    from fastapi.testclient import TestClient

    from mixllm_cli.serve.app import Service, create_app

    monkeypatch.setenv("UPSTREAM_KEY", SECRET)
    cat = yaml.safe_load((home / "models.yaml").read_text())
    for entry in cat["llms"]:
        entry.update(base_url=base_url, api_key_env=key_env, upstream_model=models.get(entry["id"], "ok"))
    (home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    return TestClient(create_app(Service(home, **service_kw)), raise_server_exceptions=False)


ASK = {"model": "mixllm:high", "messages": [{"role": "user", "content": CODE[0]}]}


def _no_secret(text: str) -> None:
    assert SECRET not in text and SECRET[8:24] not in text and "Incorrect API key" not in text


@pytest.mark.parametrize("status", [401, 403])
def test_an_endpoint_refusing_our_key_falls_back_cools_down_and_tells_only_the_log(trained_home, upstream,
                                                                                   monkeypatch, caplog, status):
    first, second, _ = _ranking(trained_home, CODE[0], "high")
    caplog.set_level(logging.WARNING, logger="mixllm.serve")
    with _client(trained_home, upstream[0], {first: f"refuse{status}"}, monkeypatch) as c:
        r = c.post("/v1/chat/completions", json=ASK)
        assert r.status_code == 200, r.text  # served by another LLM
        _no_secret(r.text + str(r.headers))
        assert r.headers["x-mixllm-llm"] == second and r.headers["x-mixllm-fallback-from"] == first
        assert r.json()["mixllm"]["fallback_from"] == [{"llm": first, "status": status}]  # no words
        r = c.post("/v1/chat/completions", json=ASK)  # `first` cools down: not tried again
        assert r.status_code == 200 and r.headers["x-mixllm-fallback-from"] == ""
    assert upstream[1] == [f"refuse{status}", "ok", "ok"]
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "mixllm.serve"]
    assert len(lines) == 1
    assert lines[0].startswith(f"LLM {first!r}: its endpoint refused our key ({status}); check api_key_env "
                               "UPSTREAM_KEY; cooling down 30 s; falling back to another LLM. It said: ")
    assert "Incorrect API key provided: Bearer ***" in lines[0]  # the body, in the log only, masked
    _no_secret(lines[0].replace("Incorrect API key", ""))


def test_failures_give_the_caller_statuses_and_the_log_the_masked_body(trained_home, upstream, monkeypatch, caplog):
    ranking = _ranking(trained_home, CODE[0], "high")
    caplog.set_level(logging.WARNING, logger="mixllm.serve")
    with _client(trained_home, upstream[0], dict.fromkeys(ranking, "fire500"), monkeypatch) as c:
        r = c.post("/v1/chat/completions", json=ASK)
    assert r.status_code == 502
    _no_secret(r.text + str(r.headers))
    assert r.json()["error"]["message"] == "; ".join(f"LLM {t!r}: its endpoint answered 500" for t in ranking)
    assert r.json()["error"]["type"] == "upstream_error"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "mixllm.serve"]
    assert [line.split(". It said:")[0] for line in lines] == [
        f"LLM {t!r}: its endpoint answered 500; cooling down 30 s; "
        + ("no fallback left" if t == ranking[-1] else "falling back to another LLM") for t in ranking]
    assert "while calling with Bearer *** (key ***)" in lines[0]
    assert not any(SECRET in line or SECRET[8:24] in line for line in lines)


def test_a_request_refused_by_the_endpoint_is_not_retried_nor_quoted(trained_home, upstream, monkeypatch):
    first = _ranking(trained_home, CODE[0], "high")[0]
    with _client(trained_home, upstream[0], {first: "bad400"}, monkeypatch) as c:
        r = c.post("/v1/chat/completions", json=ASK)
    assert r.status_code == 502 and r.json()["error"]["message"] == f"LLM {first!r}: its endpoint answered 400"
    _no_secret(r.text)
    assert "bad request" not in r.text and upstream[1] == ["bad400"]


def test_configuration_and_network_failures_are_generic_for_the_caller(trained_home, upstream, monkeypatch, caplog):
    import socket

    caplog.set_level(logging.WARNING, logger="mixllm.serve")
    with _client(trained_home, upstream[0], {}, monkeypatch, key_env="NOT_SET_ANYWHERE", fallbacks=0) as c:
        r = c.post("/v1/chat/completions", json=ASK)
    assert r.status_code == 502 and r.json()["error"]["message"].endswith(
        ": its endpoint is not configured on this server")
    assert "NOT_SET_ANYWHERE" not in r.text
    assert any("NOT_SET_ANYWHERE" in rec.getMessage() for rec in caplog.records)  # the operator learns why
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once the socket is closed
    with _client(trained_home, closed, {}, monkeypatch, fallbacks=0) as c:
        r = c.post("/v1/chat/completions", json=ASK)
    assert r.status_code == 502 and r.json()["error"]["message"].endswith(
        ": its endpoint could not be reached (ConnectError)")
    assert "127.0.0.1" not in r.json()["error"]["message"]


def test_scrub_masks_what_looks_like_a_key():
    from mixllm_cli.serve.proxy import scrub

    text = ('{"error": "Incorrect API key provided: Bearer sk-proj-AbCdEf0123456789xyz. bearer abc.def", '
            '"hint": "key mxk_Zz9yY8xX7wW6vV5u and token_987654321abc", "id": "QWxhZGRpbjpvcGVuIHNlc2FtZQ1234abcd", '
            f'"raw": "{SECRET[:-6]}", "ok": "model gpt-4o answered 401 at 12:00"}}')
    out = scrub(text, (SECRET[:-6],))
    for leak in ("sk-proj-AbCdEf", "abc.def", "Zz9yY8xX", "987654321", "QWxhZGRpbjpv", "0123456789abcdef"):
        assert leak not in out, leak
    assert "Bearer ***" in out and "model gpt-4o answered 401 at 12:00" in out
