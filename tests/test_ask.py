"""`mixllm ask` end to end with real parts: a trained tiny home whose catalogue points at the fake
OpenAI-compatible provider (tests/fake_openai.py, uvicorn on a free loopback port): the query is
routed and recorded, the chosen fake's answer streams to stdout, its real usage, latency and cost
land as the decision's feedback, and failures before the first token fall back to the next choice."""

from __future__ import annotations

import io
import json
import socket
import time

import pytest
import yaml
from conftest import CHAT, CODE
from fake_openai import FakeOpenAI, answer_text, serve_fake

pytest.importorskip("httpx")

UPSTREAM = {"big": "fake-strong", "vendor/small": "fake-cheap", "mid": "fake-mid"}  # the tiny pool behind the fakes
PRICES = {"big": (10.0, 30.0), "vendor/small": (0.2, 0.2), "mid": (1.0, 2.0)}  # the tiny catalogue's
SECRET = "sk-live-0123456789abcdefSECRET"  # the right key, in the environment
WRONG = "sk-wrong-9876543210zyxwvuWRONG"  # a key the fake refuses (and quotes back in its 401)


@pytest.fixture
def fake():
    with serve_fake() as (url, app):
        yield url, app


def _endpoints(home, url, **entries):
    """Every LLM of the home's catalogue behind the fake at `url`; `entries` override fields per LLM."""
    cat = yaml.safe_load((home / "models.yaml").read_text())
    for entry in cat["llms"]:
        entry.update(base_url=url, upstream_model=UPSTREAM[entry["id"]])
        entry.update(entries.get(entry["id"], {}))
    (home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))


def _ranking(home, query, budget):
    """The LLMs in the order the router prefers them for `query` (a dry run: nothing queued)."""
    from mixllm_cli.routing.router import Router

    (d,) = Router.load(home).route([query], budget)
    return [c.llm for c in sorted(d.candidates, key=lambda c: -c.score)]


def _conn(home):
    from mixllm_cli.state.sqlite import StateStore

    return StateStore.for_home(home).conn


def _closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/v1"


def _expected(llm, query):
    text = answer_text(UPSTREAM[llm], query)
    completion = len(text.split())
    prompt = len(query.split()) + 3
    p_in, p_out = PRICES[llm]
    return text, completion, (prompt * p_in + completion * p_out) / 1e6


def test_ask_streams_the_answer_and_records_the_decision_and_its_cost(trained_home, fake, cli):
    _endpoints(trained_home, fake[0])
    code, out, err = cli("ask", CODE[0], "--budget", "high")
    assert code == 0, err
    llm = _ranking(trained_home, CODE[0], "high")[0]
    text, tokens, cost = _expected(llm, CODE[0])
    assert out == text + "\n"  # the answer alone on stdout
    decision_id = err.split("; decision ")[1].split()[0]
    assert f"answered by {llm} in " in err and f"{tokens} tokens, ${cost:.6f}; decision {decision_id}" in err
    assert f"feedback: mixllm feedback {decision_id} --good  # or --bad / --quality 0.8" in err
    sent = fake[1].bodies[-1]
    assert sent["model"] == UPSTREAM[llm] and sent["messages"] == [{"role": "user", "content": CODE[0]}]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 1024
    conn = _conn(trained_home)
    assert conn.execute("SELECT llm, budget FROM decisions WHERE id = ?", (decision_id,)).fetchone() == (llm, "high")
    kind, got_tokens, got_cost, latency, quality = conn.execute(
        "SELECT kind, response_tokens, cost_usd, latency_ms, quality FROM feedback WHERE decision_id = ?",
        (decision_id,)).fetchone()
    assert (kind, got_tokens, quality) == ("refined", tokens, None) and got_cost == pytest.approx(cost)
    assert latency > 0
    obs = conn.execute("SELECT latency_ms, ttft_ms, response_tokens FROM latency_observations WHERE decision_id = ?",
                       (decision_id,)).fetchone()
    assert obs[0] == pytest.approx(latency) and 0 < obs[1] <= obs[0] and obs[2] == tokens  # the latency model learns
    assert conn.execute("SELECT done_s FROM jobs WHERE decision_id = ?", (decision_id,)).fetchone()[0] is not None
    code, out, err = cli("feedback", decision_id, "--good")  # the line ask suggested
    assert code == 0, err
    assert json.loads(out) == {"id": decision_id, "llm": llm, "kind": "binary", "status": "recorded"}


def test_json_is_the_route_decision_plus_the_answer(trained_home, fake, cli):
    _endpoints(trained_home, fake[0])
    code, out, err = cli("ask", CHAT[0], "--json", "--lambda", "2", "--max-tokens", "5")
    assert code == 0, err
    obj = json.loads(out)  # exactly one object, nothing streamed before it
    code, routed, _ = cli("route", CHAT[0], "--json", "--lambda", "2")
    assert set(obj) == set(json.loads(routed)) | {"llm", "answer", "usage", "cost_usd", "latency_ms", "ttft_ms",
                                                  "fallback_from"}
    assert obj["llm"] == obj["choice"] and obj["lambda"] == 2 and obj["budget"] is None
    text = answer_text(UPSTREAM[obj["llm"]], CHAT[0])
    assert obj["answer"] == " ".join(text.split(" ")[:5])  # --max-tokens reached the endpoint
    assert obj["usage"]["completion_tokens"] == 5 and obj["fallback_from"] == []
    p_in, p_out = PRICES[obj["llm"]]
    assert obj["cost_usd"] == pytest.approx((obj["usage"]["prompt_tokens"] * p_in + 5 * p_out) / 1e6, rel=1e-5)
    assert obj["latency_ms"] >= obj["ttft_ms"] > 0
    assert "feedback:" not in err


def test_the_answer_arrives_in_pieces_and_a_query_can_come_from_stdin(trained_home, fake, cli, monkeypatch):
    from mixllm_cli.asking import ask
    from mixllm_cli.routing.router import Router
    from mixllm_cli.state import open_store

    _endpoints(trained_home, fake[0])
    store = open_store(trained_home)
    pieces: list[str] = []
    answer = ask(Router.load(trained_home, store=store), store, trained_home, CHAT[1], on_delta=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == answer.text == answer_text(UPSTREAM[answer.llm], CHAT[1])
    monkeypatch.setattr("sys.stdin", io.StringIO(CHAT[2] + "\n"))
    code, out, err = cli("ask", "-", "--quiet")
    assert code == 0, err
    assert fake[1].bodies[-1]["messages"][0]["content"] == CHAT[2]
    assert out.strip() and err == ""  # --quiet: the answer only


@pytest.mark.parametrize("failure", ["500", "unreachable", "401"])
def test_a_failing_llm_falls_back_to_the_next_choice_and_its_slot_is_freed(trained_home, cli, monkeypatch, failure):
    monkeypatch.setenv("GOOD_KEY", SECRET)
    monkeypatch.setenv("WRONG_KEY", WRONG)
    with serve_fake(FakeOpenAI(api_key=SECRET)) as (url, _):
        first, second, _ = _ranking(trained_home, CODE[0], "high")
        broken = {"500": {"upstream_model": UPSTREAM[first] + "@500"}, "unreachable": {"base_url": _closed_port_url()},
                  "401": {"api_key_env": "WRONG_KEY"}}[failure]
        everyone = {llm: {"api_key_env": "GOOD_KEY"} for llm in UPSTREAM}
        _endpoints(trained_home, url, **{**everyone, first: {**everyone[first], **broken}})
        code, out, err = cli("ask", CODE[0], "--budget", "high")
        code_json, out_json, _ = cli("ask", CODE[0], "--budget", "high", "--json")
    assert code == 0 and code_json == 0, err
    assert out == answer_text(UPSTREAM[second], CODE[0]) + "\n"
    assert f"answered by {second} after {first} failed in " in err
    status = {"500": 500, "unreachable": None, "401": 401}[failure]
    said = {"500": f"LLM {first!r}: its endpoint answered 500",
            "unreachable": f"LLM {first!r}: its endpoint could not be reached (ConnectError; check its base_url)",
            "401": f"LLM {first!r}: its endpoint refused our key (401; check api_key_env WRONG_KEY)"}[failure]
    assert f"Warning: {said}; falling back to another LLM" in err
    assert json.loads(out_json)["fallback_from"] == [{"llm": first, "status": status}]
    for secret in (SECRET, WRONG):  # never shown, though the fake quotes the wrong key back in its 401
        assert secret not in out + err + out_json
    conn = _conn(trained_home)
    jobs = conn.execute("SELECT llm, done_s IS NOT NULL FROM jobs ORDER BY start_s").fetchall()
    assert [llm for llm, _ in jobs] == [first, second] * 2 and all(done for _, done in jobs)
    # the failed attempts freed their slots and taught nothing; the answers taught the latency model
    assert conn.execute("SELECT latency_ms, ttft_ms FROM latency_observations WHERE llm = ?", (first,)).fetchall() \
        == [(None, None)] * 2
    assert conn.execute("SELECT COUNT(*) FROM feedback WHERE llm = ?", (first,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM feedback WHERE llm = ?", (second,)).fetchone()[0] == 2


def test_when_no_llm_answers_every_failure_is_named_and_every_slot_freed(trained_home, fake, cli):
    ranking = _ranking(trained_home, CODE[0], "high")
    _endpoints(trained_home, fake[0], **{llm: {"upstream_model": UPSTREAM[llm] + "@500"} for llm in ranking})
    code, out, err = cli("ask", CODE[0], "--budget", "high")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == "Error: " + "; ".join(f"LLM {llm!r}: its endpoint answered 500" for llm in ranking) \
        + " (no other LLM with an endpoint is left)"
    assert sum(fake[1].calls.values()) == 3  # one try and two fallbacks (upstream.DEFAULT_FALLBACKS)
    from mixllm_cli.state.sqlite import StateStore

    assert StateStore.for_home(trained_home).open_calls(time.time()) == {}


def test_the_requests_own_fault_is_not_retried(trained_home, fake, cli):
    first = _ranking(trained_home, CODE[0], "high")[0]
    _endpoints(trained_home, fake[0], **{first: {"upstream_model": "no-such-model"}})
    code, out, err = cli("ask", CODE[0], "--budget", "high")
    assert code == 1 and out == ""
    assert f"Warning: LLM {first!r}: its endpoint answered 404; not retried (the request's fault). It said: " in err
    assert err.splitlines()[-1] == f"Error: LLM {first!r}: its endpoint answered 404"
    assert sum(fake[1].calls.values()) == 1


def test_a_stream_that_breaks_after_its_first_token_is_an_error_recorded_as_the_proxy_does(trained_home, fake, cli):
    query = CODE[0] + " [fake:cut]"
    _endpoints(trained_home, fake[0])
    code, out, err = cli("ask", query, "--budget", "high")
    assert code == 1
    llm = _ranking(trained_home, query, "high")[0]
    full = answer_text(UPSTREAM[llm], query)
    assert out.strip() and full.startswith(out.rstrip("\n")) and len(out.strip()) < len(full)  # what came, shown
    assert "Error: LLM" in err and "the answer broke off after" in err
    assert sum(fake[1].calls.values()) == 1  # never a second call once text was shown
    conn = _conn(trained_home)
    ((did, done),) = conn.execute("SELECT decision_id, done_s IS NOT NULL FROM jobs").fetchall()
    assert done and did in err
    latency, ttft = conn.execute("SELECT latency_ms, ttft_ms FROM latency_observations").fetchone()
    assert latency > 0 and ttft > 0  # as observed up to the break; no usage came, so no tokens or cost
    assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0


def test_ctrl_c_mid_stream_exits_130_and_frees_the_slot(trained_home, fake, cli, monkeypatch):
    _endpoints(trained_home, fake[0])

    def interrupt(text):
        raise KeyboardInterrupt

    monkeypatch.setattr("mixllm_cli.cli.ask._write", interrupt)
    code, _, _ = cli("ask", CHAT[0])
    assert code == 130
    conn = _conn(trained_home)
    assert conn.execute("SELECT done_s IS NOT NULL FROM jobs").fetchall() == [(1,)]
    assert conn.execute("SELECT latency_ms, ttft_ms FROM latency_observations").fetchall() == [(None, None)]


def test_no_llm_with_an_endpoint_is_one_error_before_anything_is_recorded(trained_home, cli):
    code, out, err = cli("ask", CODE[0])  # the tiny catalogue has no base_url
    assert code == 1 and out == ""
    assert err == ("Error: no LLM of the pool has an endpoint to ask; add one with `mixllm set-endpoint ID "
                   "--base-url URL [--api-key-env VAR]` (`mixllm llms` lists the pool)\n")
    assert _conn(trained_home).execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0


@pytest.mark.parametrize("args, message", [
    (["--budget", "low", "--lambda", "2"], "Error: --budget and --lambda: give one, not both"),
    (["--max-tokens", "0"], "Invalid value for '--max-tokens'"),
    (["--budget", "cheapest"], "Error: --budget: unknown budget 'cheapest'"),
])
def test_usage_errors_exit_2(trained_home, fake, cli, args, message):
    _endpoints(trained_home, fake[0])
    code, out, err = cli("ask", CODE[0], *args)
    assert code == 2 and out == "" and message in err
    assert sum(fake[1].calls.values()) == 0


def test_the_python_api_asks_too(trained_home, fake):
    import mixllm

    with mixllm.load() as router:
        with pytest.raises(mixllm.UpstreamError, match="no LLM of the pool has an endpoint"):
            router.ask(CHAT[0])  # the tiny catalogue has no base_url yet: nothing recorded
        for bad in ({"query": b"bytes"}, {"query": CHAT[0], "on_delta": "print"},
                    {"query": CHAT[0], "max_tokens": 1.5}):
            with pytest.raises(TypeError):
                router.ask(**bad)
        with pytest.raises(mixllm.UsageError) as info:
            router.ask(CHAT[0], max_tokens=0)
        assert info.value.param == "max_tokens"
    assert _conn(trained_home).execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    _endpoints(trained_home, fake[0])
    pieces: list[str] = []
    with mixllm.load() as router:
        answer = router.ask(CHAT[3], "low", on_delta=pieces.append)
        assert isinstance(answer, mixllm.Answer) and isinstance(answer.decision, mixllm.Decision)
        assert "".join(pieces) == answer.text == answer_text(UPSTREAM[answer.llm], CHAT[3])
        assert answer.decision.budget == "low" and answer.to_dict()["answer"] == answer.text
        assert router.feedback(answer.decision, good=True).status == "recorded"
