"""The README's "Route your own LLMs" path, end to end with real parts: a catalogue with ids, prices
and endpoints only → `collect` against three fake OpenAI-compatible LLMs (loopback) → `train-offline`
with the shipped encoder → `route` sends easy items to the cheap LLM and hard ones to the strong
one → `serve` forwards a chat completion to the chosen fake → `feedback` on its decision.
"""

from __future__ import annotations

import json

import pytest
from fake_openai import catalogue_yaml, serve_fake, write_prompts

pytest.importorskip("httpx")
pytest.importorskip("sklearn")

EASY = "What is 12 plus 30?"
HARD = "Compute the product 4821 × 9377 and then subtract 1234; give only the final number."


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """Collect on 300 prompts and train on 240 of them, once for the module; yields the pieces."""
    from mixllm_cli.cli import run

    root = tmp_path_factory.mktemp("journey")
    home = root / "home"
    with serve_fake(delay_scale=0.0) as (url, fake):
        catalogue = root / "models.yaml"
        catalogue.write_text(catalogue_yaml(url, full=False))  # ids, prices, endpoints: nothing else
        write_prompts(root / "prompts.jsonl", 300, hard_fraction=0.4, seed=3)
        code = run(["collect", str(root / "prompts.jsonl"), "--out", str(root / "data.jsonl"),
                    "--catalogue", str(catalogue), "--home", str(home)])
        assert code == 0
        calls = sum(fake.calls.values())
        lines = (root / "data.jsonl").read_text().splitlines()
        (root / "train.jsonl").write_text("".join(line + "\n" for line in lines[:240]))
        (root / "test.jsonl").write_text("".join(line + "\n" for line in lines[240:]))
        code = run(["train-offline", str(root / "train.jsonl"), "--catalogue", str(catalogue), "--home", str(home)])
        assert code == 0
        yield {"root": root, "home": home, "url": url, "fake": fake, "calls": calls, "records": lines}


def test_collect_wrote_every_outcome_with_real_usage(journey):
    from fake_openai import PRICES

    assert journey["calls"] == 300 * 3  # each (prompt, LLM) pair called once
    records = [json.loads(line) for line in journey["records"]]
    assert len(records) == 300
    for rec in records:
        assert set(rec["outcomes"]) == {"fake-strong", "fake-mid", "fake-cheap"}
        for llm, o in rec["outcomes"].items():
            p_in, p_out = PRICES[llm]
            assert o["quality"] in (0.0, 1.0)
            assert o["cost_usd"] == pytest.approx((o["prompt_tokens"] * p_in + o["response_tokens"] * p_out) / 1e6)
    hard = [r for r in records if r["task"] == "hard"]
    cheap_right = sum(r["outcomes"]["fake-cheap"]["quality"] for r in hard) / len(hard)
    strong_right = sum(r["outcomes"]["fake-strong"]["quality"] for r in hard) / len(hard)
    assert strong_right > cheap_right + 0.3  # the fakes' accuracies came through the graders


def _route(cli, home, query, budget):
    code, out, err = cli("route", query, "--home", home, "--budget", budget, "--json")
    assert code == 0, err
    return json.loads(out)["choice"]


def test_route_sends_easy_items_to_the_cheap_llm_and_hard_ones_to_the_strong_one(journey, cli):
    home = journey["home"]
    # The home kept the catalogue: no --catalogue from here on.
    assert _route(cli, home, EASY, "high") == "fake-cheap"
    assert _route(cli, home, HARD, "high") == "fake-strong"


def test_the_trained_router_beats_the_single_llms_on_held_out_items(journey, cli):
    code, out, err = cli("evaluate", journey["root"] / "test.jsonl", "--home", journey["home"], "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == 60
    by = {r["policy"].split(" (")[0]: r for r in report["results"]}
    high, strong, cheap = by["mixllm high"], by["always fake-strong"], by["always fake-cheap"]
    assert high["mean_quality"] > cheap["mean_quality"] + 0.1  # it pays for the hard items...
    assert high["total_cost_usd"] < 0.75 * strong["total_cost_usd"]  # ... and not for the easy ones


def test_serve_forwards_to_the_chosen_fake_and_feedback_lands(journey, cli):
    pytest.importorskip("fastapi")
    import httpx
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    fake = journey["fake"]
    with serving(create_app(Service(journey["home"]))) as url:
        before = {k: v for k, v in fake.calls.items() if k[0] == "fake-cheap"}
        r = httpx.post(url + "/v1/chat/completions", timeout=60,
                       json={"model": "mixllm:high", "messages": [{"role": "user", "content": EASY}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["message"]["content"].strip()
        assert r.headers["x-mixllm-llm"] == "fake-cheap"
        after = {k: v for k, v in fake.calls.items() if k[0] == "fake-cheap"}
        assert sum(after.values()) == sum(before.values()) + 1
        decision = r.headers["x-mixllm-decision-id"]
    code, out, err = cli("feedback", decision, "--good", "--home", journey["home"])
    assert code == 0, err
    event = json.loads(out)
    assert event["id"] == decision and event["llm"] == "fake-cheap"
