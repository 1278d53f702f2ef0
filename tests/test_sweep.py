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
    # 12 log-spaced λ, the 4 presets' λ, and up to 48 more where the curve jumps; one point per λ
    assert names[0] == "mixllm" and r["lambdas_start"] == 12 and r["dataset"] == str(tiny / "train.jsonl")
    assert 12 + 4 <= len(r["lambdas"]) <= 12 + 4 + 48 and len(r["curves"][0]["points"]) == len(r["lambdas"])
    assert r["lambdas"] == sorted(r["lambdas"])
    assert {p["lambda"] for p in r["presets"].values()} <= set(r["lambdas"])
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
    # the presets sit on the curve: each one's point is one of the curve's points
    points = {tuple(p) for p in mix["points"]}
    assert all((p["cost_share"], p["quality_share"]) in points for p in r["presets"].values())
    # the best LLM is the reference: always-big sits at (1, 1), and has no AIQ over [0, 1] (not 0)
    ref = next(c for c in r["curves"] if c["name"] == "always big")
    assert ref["points"] == [[1.0, 1.0]] and ref["aiq"] is None
    small = next(c for c in r["curves"] if c["name"] == "always vendor/small")
    (c0, q0), = small["points"]
    assert small["aiq"] == pytest.approx(q0 * (1 - c0), abs=1e-5)


def test_refinement_adds_points_where_the_coarse_curve_jumps(trained_home, tiny):
    """On the same split, the refined curve holds every coarse point and more, and its hull lies
    above the coarse one's (the tiny world's coarse grid steps over points the router reaches)."""
    from mixllm_cli.dataset import read_dataset
    from mixllm_cli.evaluation.sweep import sweep as run_sweep
    from mixllm_cli.routing.router import Router

    router = Router.load(None, tiny / "models.yaml")
    records = read_dataset(tiny / "train.jsonl")
    coarse = run_sweep(router, records, n_lambdas=6, refine=False)
    fine = run_sweep(router, records, n_lambdas=6)
    assert len(coarse["lambdas"]) == 6 + 4 < len(fine["lambdas"]) <= 6 + 4 + 24
    assert set(coarse["lambdas"]) <= set(fine["lambdas"])
    assert {tuple(p) for p in coarse["curves"][0]["points"]} <= {tuple(p) for p in fine["curves"][0]["points"]}
    assert fine["curves"][0]["aiq"] > coarse["curves"][0]["aiq"]


def test_sweep_with_baselines_fits_them_on_the_given_split(trained_home, tiny, cli):
    r = sweep(cli, tiny, "--lambdas", "8", "--baselines-from", tiny / "train.jsonl")
    names = {c["name"] for c in r["curves"]}
    assert {"kNN router (k=40)", "MLP router", "linear bandit (MetaLLM-style)"} <= names
    assert r["baselines_trained_on"] == 120


def test_sweep_as_a_stream_and_as_a_table(trained_home, tiny, cli):
    r = sweep(cli, tiny, "--lambdas", "5", "--rate", "50/s", "--max-wait-s", "5")
    assert r["curves"][0]["name"].startswith("mixllm (stream 50/s") and r["stream"]["tolerance_s"] == 5
    assert 5 + 4 <= len(r["lambdas"]) <= 5 + 4 + 5  # each λ of a stream is a simulation: fewer added
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--sweep", "--lambdas", "5")
    assert code == 0, err
    assert "AIQ" in out and "presets (quality at cost)" in out
    # the reference LLM has no point inside the AIQ range: "—", never "0.0"
    (row,) = [line for line in out.splitlines() if line.split("│")[0].strip() == "always big"]
    assert row.split("│")[1].strip() == "—"


@pytest.mark.parametrize("args, message", [
    (["--lambdas", "1"], "Error: --lambdas: need at least 2 values"),
    (["--plot", "x.png"], "Error: --lambdas, --baselines-from and --plot go with --sweep"),
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


def _overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_labels_are_placed_clear_of_each_other_and_of_every_point():
    from mixllm_cli.evaluation.plot import place_labels

    # eight points within a few pixels of each other, as the cheap LLMs and the low presets sit
    anchors = [(100.0 + 3 * k, 100.0 + 2 * (k % 3)) for k in range(8)]
    sizes = [(60.0, 10.0)] * 8
    marks = [(x - 4, y - 4, x + 4, y + 4) for x, y in anchors]
    bounds = (0.0, 0.0, 400.0, 300.0)
    placed = place_labels(anchors, sizes, marks, bounds)
    assert all(p.clear for p in placed)
    boxes = [p.box for p in placed]
    for i, a in enumerate(boxes):
        assert bounds[0] <= a[0] and a[2] <= bounds[2] and bounds[1] <= a[1] and a[3] <= bounds[3]
        assert not any(_overlap(a, m) for m in marks)
        assert not any(_overlap(a, b) for b in boxes[i + 1:])
    # a lone point keeps its label right beside it, to the right
    (alone,) = place_labels([(50.0, 50.0)], [(30.0, 8.0)], [(46, 46, 54, 54)], bounds)
    assert alone.ha == "left" and 0 < alone.dx < 10 and alone.dy == 0


def crowded_report() -> dict:
    """A RouterBench-like sweep: nine single LLMs and two presets within 10% of the reference's cost."""
    def cv(name, pts, aiq=0.9):
        return {"name": name, "aiq": aiq, "points": pts, "hull": pts}
    singles = [(0.016, 0.673), (0.025, 0.643), (0.049, 0.850), (0.062, 0.697), (0.066, 0.886), (0.073, 0.778),
               (0.075, 0.715), (0.084, 0.856), (0.709, 0.839), (0.755, 0.646), (1.0, 1.0)]
    curves = [cv("mixllm", [[0.016, 0.673], [0.05, 0.87], [0.097, 0.93], [0.23, 0.96], [0.46, 0.98], [1.0, 1.0]]),
              cv("oracle", [[0.018, 0.9], [0.03, 1.11]], 1.09)]
    curves += [cv(f"always vendor-{k}/model-{k}-chat-v1.{k}", [list(p)], None if p[0] >= 1 else 0.5)
               for k, p in enumerate(singles)]
    return {"dataset": "data/routerbench/test.jsonl", "rows": 953, "best_llm": "vendor-10/model-10-chat-v1.10",
            "stream": None, "curves": curves,
            "presets": {"very-low": {"cost_share": 0.049, "quality_share": 0.868},
                        "low": {"cost_share": 0.097, "quality_share": 0.932},
                        "medium": {"cost_share": 0.229, "quality_share": 0.959},
                        "high": {"cost_share": 0.463, "quality_share": 0.982}}}


def test_the_plot_names_its_split_and_reference_and_hides_nothing(tmp_path):
    pytest.importorskip("matplotlib")
    from mixllm_cli.evaluation.plot import sweep_plot

    png = tmp_path / "f.png"
    drawn = sweep_plot(crowded_report(), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data/routerbench/test.jsonl" in drawn["title"] and "always-vendor-10/model-10-chat-v1.10" in drawn["title"]
    labels = drawn["labels"]
    assert {t for t, _, _ in labels} >= {"very-low", "low", "medium", "high", "vendor-0/model-0-chat-v1.0"}
    assert all(clear for _, _, clear in labels)
    boxes = [b for _, b, _ in labels]
    ax = drawn["axes"]
    for i, box in enumerate(boxes):
        assert not any(_overlap(box, other) for other in boxes[i + 1:]), labels[i][0]
        assert ax[0] <= box[0] and box[2] <= ax[2] and ax[1] <= box[1] and box[3] <= ax[3]
        for x, y in drawn["points"]:
            assert not (box[0] < x < box[2] and box[1] < y < box[3]), labels[i][0]  # no label on a point
    legend = drawn["legend"]
    assert legend[0] >= ax[2]  # outside the axes, right of them: it covers no point or curve
