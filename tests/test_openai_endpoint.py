"""The OpenAI-compatible endpoint, end to end over loopback: the official `openai` client calls a
real `mixllm serve` app (uvicorn), which routes and forwards to a fake provider (uvicorn too)."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml
from conftest import CODE

openai = pytest.importorskip("openai")


@pytest.fixture
def upstream():
    from serving import fake_upstream, serving

    app, seen = fake_upstream()
    with serving(app) as url:
        yield url, seen


@pytest.fixture
def mixllm_url(trained_home, upstream, monkeypatch):
    """The tiny catalogue with every LLM behind the fake provider, each with its own upstream model name."""
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    monkeypatch.setenv("FAKE_KEY", "sk-test-123")
    cat = yaml.safe_load((trained_home / "models.yaml").read_text())
    for entry in cat["llms"]:
        entry.update(base_url=upstream[0] + "/v1", api_key_env="FAKE_KEY", upstream_model=upstream_name(entry["id"]))
    (trained_home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    with serving(create_app(Service(trained_home))) as url:
        yield url


@pytest.fixture
def client(mixllm_url):
    return openai.OpenAI(base_url=mixllm_url + "/v1", api_key="unused", max_retries=0)


PRICES = {"big": (10.0, 30.0), "vendor/small": (0.2, 0.2), "mid": (1.0, 2.0)}  # the tiny catalogue's


def upstream_name(llm):
    return llm.replace("/", "-") + "-2025"


def _store(home):
    from mixllm_cli.state.sqlite import StateStore

    return StateStore.for_home(home)


def test_a_completion_is_routed_forwarded_and_recorded(client, upstream, trained_home):
    raw = client.chat.completions.with_raw_response.create(
        model="mixllm:high", messages=[{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": CODE[0]}])
    completion = raw.parse()
    llm = raw.headers["x-mixllm-llm"]
    assert llm in PRICES
    assert completion.mixllm["llm"] == llm and completion.mixllm["budget"] == "high"
    assert completion.choices[0].message.content == f"answer from {upstream_name(llm)}"
    sent = upstream[1][-1]
    assert sent["body"]["model"] == upstream_name(llm) and sent["body"]["messages"][1]["content"] == CODE[0]
    assert sent["headers"]["authorization"] == "Bearer sk-test-123"
    decision_id = raw.headers["x-mixllm-decision-id"]
    assert completion.mixllm["decision_id"] == decision_id
    conn = _store(trained_home).conn
    deadline = time.time() + 10
    while time.time() < deadline and not conn.execute("SELECT 1 FROM feedback WHERE decision_id = ?",
                                                      (decision_id,)).fetchone():
        time.sleep(0.05)
    tokens, cost, latency = conn.execute("SELECT response_tokens, cost_usd, latency_ms FROM feedback "
                                         "WHERE decision_id = ?", (decision_id,)).fetchone()
    # the real usage (12 prompt, 3 completion tokens) at the chosen LLM's catalogue prices
    p_in, p_out = PRICES[llm]
    assert tokens == 3 and cost == pytest.approx((12 * p_in + 3 * p_out) / 1e6) and latency > 0
    obs = conn.execute("SELECT latency_ms, response_tokens FROM latency_observations WHERE decision_id = ?",
                       (decision_id,)).fetchone()
    assert obs[0] == pytest.approx(latency) and obs[1] == 3  # fed to the latency model; the slot is free
    assert conn.execute("SELECT done_s FROM jobs WHERE decision_id = ?", (decision_id,)).fetchone()[0] is not None


def test_a_streamed_completion_relays_every_chunk_and_records_usage(client, upstream, trained_home):
    with client.chat.completions.with_streaming_response.create(
            model="mixllm", stream=True, messages=[{"role": "user", "content": [{"type": "text", "text": CODE[0]}]}],
    ) as resp:
        llm = resp.headers["x-mixllm-llm"]
        decision_id = resp.headers["x-mixllm-decision-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"answer from {upstream_name(llm)}"
    assert all(c.mixllm["llm"] == llm for c in chunks)
    assert chunks[-1].usage.completion_tokens == 3
    assert upstream[1][-1]["body"]["stream_options"] == {"include_usage": True}
    conn = _store(trained_home).conn
    deadline = time.time() + 10
    row = None
    while time.time() < deadline and row is None:
        row = conn.execute("SELECT response_tokens, ttft_ms FROM latency_observations WHERE decision_id = ?",
                           (decision_id,)).fetchone()
        time.sleep(0.05)
    assert row[0] == 3 and row[1] > 0


def test_upstream_and_request_errors_are_openai_shaped(client, upstream, trained_home, mixllm_url, monkeypatch):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert "must be 'mixllm' or 'mixllm:<budget>'" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="mixllm", messages=[{"role": "system", "content": "hi"}])
    assert "no user message to route" in info.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="mixllm", messages=[])
    monkeypatch.delenv("FAKE_KEY")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="mixllm:high", messages=[{"role": "user", "content": CODE[0]}])
    assert info.value.status_code == 502
    assert info.value.message.endswith(": its endpoint is not configured on this server")  # the why: server log only
    assert "FAKE_KEY" not in info.value.message
    # the failed call freed its slot and taught the latency model nothing
    store = _store(trained_home)
    assert store.open_calls(time.time()) == {} and store.learned() == {}


def test_only_llms_with_an_endpoint_are_chosen(trained_home, upstream, monkeypatch):
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    cat = yaml.safe_load((trained_home / "models.yaml").read_text())
    cat["llms"][1]["base_url"] = upstream[0] + "/v1"  # only vendor/small has one
    (trained_home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    with serving(create_app(Service(trained_home))) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(model="mixllm:high",
                                                          messages=[{"role": "user", "content": CODE[0]}])
        assert raw.headers["x-mixllm-llm"] == "vendor/small"  # `big` would win, but has nowhere to go


def test_an_upstream_failure_is_a_502_naming_the_llm_and_frees_the_slot(trained_home, upstream):
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    cat = yaml.safe_load((trained_home / "models.yaml").read_text())
    cat["llms"][1].update(base_url=upstream[0] + "/v1", upstream_model="broken")
    (trained_home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    with serving(create_app(Service(trained_home))) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model="mixllm", messages=[{"role": "user", "content": CODE[0]}])
    assert info.value.status_code == 502
    assert info.value.body["message"] == "LLM 'vendor/small': its endpoint answered 500"  # never the endpoint's words
    assert _store(trained_home).open_calls(time.time()) == {}


def _serve_with(trained_home, upstream, models, **service_kw):
    """Serve the tiny catalogue with every LLM behind the fake provider under the given upstream model names."""
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    cat = yaml.safe_load((trained_home / "models.yaml").read_text())
    for entry in cat["llms"]:
        entry.update(base_url=upstream[0] + "/v1", upstream_model=models.get(entry["id"], upstream_name(entry["id"])))
    (trained_home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    return serving(create_app(Service(trained_home, **service_kw)))


def _ranking(home, query, budget):
    """The LLMs in the order the router prefers them for `query` (nothing queued)."""
    from mixllm_cli.routing.router import Router

    (d,) = Router.load(home).route([query], budget)
    return [c.llm for c in sorted(d.candidates, key=lambda c: -c.score)]


def test_a_failing_llm_falls_back_to_the_next_choice(trained_home, upstream):
    first, second, _ = _ranking(trained_home, CODE[0], "high")
    with _serve_with(trained_home, upstream, {first: "broken"}) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(model="mixllm:high",
                                                          messages=[{"role": "user", "content": CODE[0]}])
        metrics = httpx.get(url + "/metrics").text
    completion = raw.parse()
    assert raw.headers["x-mixllm-llm"] == second and completion.mixllm["llm"] == second
    assert completion.choices[0].message.content == f"answer from {upstream_name(second)}"
    assert raw.headers["x-mixllm-fallback-from"] == first
    assert completion.mixllm["fallback_from"] == [{"llm": first, "status": 500}]
    assert [s["body"]["model"] for s in upstream[1]] == ["broken", upstream_name(second)]
    assert f'mixllm_upstream_failures_total{{llm="{first}"}} 1.0' in metrics
    # two decisions, each with its own queue job; the failed one's slot is free and taught nothing
    conn = _store(trained_home).conn
    jobs = dict(conn.execute("SELECT llm, done_s IS NOT NULL FROM jobs").fetchall())
    assert set(jobs) == {first, second} and jobs[first] == 1
    assert conn.execute("SELECT latency_ms, ttft_ms FROM latency_observations WHERE llm = ?", (first,)).fetchall() \
        == [(None, None)]
    assert first not in _store(trained_home).learned()


def test_fallbacks_stop_at_the_limit_and_name_every_failure(trained_home, upstream):
    ranking = _ranking(trained_home, CODE[0], "high")
    with _serve_with(trained_home, upstream, dict.fromkeys(ranking, "broken"), fallbacks=1) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model="mixllm:high", messages=[{"role": "user", "content": CODE[0]}])
    assert info.value.status_code == 502
    headers = info.value.response.headers
    assert headers["x-mixllm-fallback-from"] == ranking[0] and headers["x-mixllm-llm"] == ranking[1]
    assert info.value.body["message"] == "; ".join(f"LLM {t!r}: its endpoint answered 500" for t in ranking[:2])
    assert len(upstream[1]) == 2  # one try and one fallback: the third LLM is never called
    assert _store(trained_home).open_calls(time.time()) == {}


def test_no_fallback_when_disabled_or_when_the_request_is_at_fault(trained_home, upstream):
    first = _ranking(trained_home, CODE[0], "high")[0]
    for models, kw, message in (({first: "broken"}, {"fallbacks": 0}, ": its endpoint answered 500"),
                                ({first: "picky"}, {}, ": its endpoint answered 400")):
        with _serve_with(trained_home, upstream, models, **kw) as url:
            c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            with pytest.raises(openai.APIStatusError) as info:
                c.chat.completions.create(model="mixllm:high", messages=[{"role": "user", "content": CODE[0]}])
        assert info.value.status_code == 502 and info.value.response.headers["x-mixllm-llm"] == first
        assert info.value.response.headers["x-mixllm-fallback-from"] == ""
        assert info.value.body["message"] == f"LLM {first!r}{message}"
    assert [s["body"]["model"] for s in upstream[1]] == ["broken", "picky"]  # one attempt each


def test_a_failed_llm_cools_down_then_is_tried_again(trained_home, upstream):
    first, second, third = _ranking(trained_home, CODE[0], "high")
    ask = {"model": "mixllm:high", "messages": [{"role": "user", "content": CODE[0]}]}
    with _serve_with(trained_home, upstream, {first: "broken"}, cooldown_s=30) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        assert c.chat.completions.with_raw_response.create(**ask).headers["x-mixllm-fallback-from"] == first
        raw = c.chat.completions.with_raw_response.create(**ask)  # `first` is skipped: no failed attempt
        assert raw.headers["x-mixllm-llm"] == second and raw.headers["x-mixllm-fallback-from"] == ""
    assert [s["body"]["model"] for s in upstream[1]] == ["broken"] + [upstream_name(second)] * 2
    upstream[1].clear()
    with _serve_with(trained_home, upstream, {first: "broken"}, cooldown_s=0) as url:  # never benched
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        for _ in range(2):
            assert c.chat.completions.with_raw_response.create(**ask).headers["x-mixllm-fallback-from"] == first
    assert [s["body"]["model"] for s in upstream[1]] == ["broken", upstream_name(second)] * 2
    upstream[1].clear()
    # every LLM failing: the cooling ones are still tried rather than refusing the request unseen
    with _serve_with(trained_home, upstream, dict.fromkeys((first, second, third), "broken"), cooldown_s=30) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.APIStatusError) as info:
                c.chat.completions.create(**ask)
            assert info.value.status_code == 502
    assert len(upstream[1]) == 6  # three attempts each time


def test_models_lists_mixllm_and_one_name_per_budget(client, trained_home):
    import json as _json

    ids = [m.id for m in client.models.list()]
    presets = _json.loads((trained_home / "artifacts" / "manifest.json").read_text())["presets"]
    assert ids[0] == "mixllm" and sorted(ids[1:]) == sorted(f"mixllm:{b}" for b in presets)
    assert ids[1:] == sorted(ids[1:], key=lambda m: presets[m.split(":")[1]]["lambda"])  # cheapest first


def test_no_llm_with_an_endpoint_is_a_clear_error_the_client_does_not_retry(trained_home):
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    with serving(create_app(Service(trained_home))) as url:  # the tiny catalogue has no base_url
        r = httpx.post(url + "/v1/chat/completions", timeout=30,
                       json={"model": "mixllm", "messages": [{"role": "user", "content": CODE[0]}]})
    assert r.status_code == 400  # never a 5xx: the openai clients retry those
    assert "mixllm set-endpoint" in r.json()["error"]["message"]
