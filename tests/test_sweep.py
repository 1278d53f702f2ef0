"""`mixllm evaluate --sweep`: the router's frontier beside the baselines, on the tiny world."""

from __future__ import annotations

import importlib.util
import json

import pytest


def sweep(cli, tiny, *extra):
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--sweep", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_sweep_reports_the_routers_curve_presets_and_reference_policies(trained_home, tiny, cli):
    r = sweep(cli, tiny, "--lambdas", "12")
    names = [c["name"] for c in r["curves"]]
    assert names[0] == "mixllm" and len(r["curves"][0]["points"]) == 12 and len(r["lambdas"]) == 12
    assert {"oracle", "always big", "always vendor/small", "always mid"} <= set(names)
    mix = r["curves"][0]
    oracle = next(c for c in r["curves"] if c["name"] == "oracle")
    assert 0 < mix["aiq"] <= oracle["aiq"]  # nothing beats knowing the outcomes
    # the cheapest λ picks the cheap LLM everywhere, the dearest reaches the best LLM's quality
    costs = [p[0] for p in mix["points"]]
    assert min(costs) < 0.1 and mix["cost_share_to_reach_quality_share"]["1"] is not None
    assert set(r["presets"]) == {"very-low", "low", "medium", "high"}
    for p in r["presets"].values():
        assert 0 <= p["cost_share"] <= 1.0 + 1e-9 and 0 <= p["quality_share"]
    # the best LLM is the reference: always-big sits at (1, 1)
    assert next(c for c in r["curves"] if c["name"] == "always big")["points"] == [[1.0, 1.0]]


def test_sweep_with_baselines_fits_them_on_the_given_split(trained_home, tiny, cli):
    r = sweep(cli, tiny, "--lambdas", "8", "--baselines-from", tiny / "train.jsonl")
    names = {c["name"] for c in r["curves"]}
    assert {"kNN router (k=40)", "MLP router", "linear bandit (MetaLLM-style)"} <= names
    assert r["baselines_trained_on"] == 120


def test_sweep_as_a_stream_and_as_a_table(trained_home, tiny, cli):
    r = sweep(cli, tiny, "--lambdas", "5", "--rate", "50/s", "--max-wait-s", "5")
    assert r["curves"][0]["name"].startswith("mixllm (stream 50/s") and r["stream"]["tolerance_s"] == 5
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--sweep", "--lambdas", "5")
    assert code == 0, err
    assert "AIQ" in out and "presets (quality at cost)" in out


@pytest.mark.parametrize("args, message", [
    (["--lambdas", "1"], "Error: --lambdas: need at least 2 values"),
    (["--plot", "x.png"], "Error: --baselines-from and --plot go with --sweep"),
])
def test_sweep_usage_errors(trained_home, tiny, cli, args, message):
    extra = ["--sweep"] if args[0] == "--lambdas" else []
    code, out, err = cli("evaluate", tiny / "train.jsonl", *extra, *args)
    assert code == 2 and out == "" and err.startswith(message)


def test_plot_writes_a_png_or_says_what_is_missing(trained_home, tiny, cli, tmp_path):
    png = tmp_path / "f.png"
    code, _, err = cli("evaluate", tiny / "train.jsonl", "--sweep", "--lambdas", "4", "--plot", png)
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 2 and "needs matplotlib" in err and not png.exists()
    else:
        assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
