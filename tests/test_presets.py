"""Budget presets: the training frontier, the target picks, and the rule that keeps presets distinct
and ordered on any pool (training/presets.py, docs/PRESETS.md)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mixllm_cli.errors import DataError
from mixllm_cli.manifest import PresetEntry
from mixllm_cli.training.presets import LAMBDA_GRID, PRESET_TARGETS, calibrate_presets, frontier_indices, spread

NAMES = ["very-low", "low", "medium", "high"]


def steps(*shares: float, n: int = len(LAMBDA_GRID)) -> np.ndarray:
    """A monotone step curve over the λ grid: the grid cut into len(shares) equal runs."""
    cuts = np.linspace(0, n, len(shares) + 1).astype(int)
    out = np.empty(n)
    for s, lo, hi in zip(shares, cuts[:-1], cuts[1:]):
        out[lo:hi] = s
    return out


def last_index_of(curve: np.ndarray, share: float) -> int:
    return int(np.nonzero(curve == share)[0][-1])


def old_rule(shares: np.ndarray) -> dict[str, tuple[float, float]]:
    """The rule of earlier versions: the largest λ whose share is within the target, else the first λ."""
    out = {}
    for name, target in PRESET_TARGETS.items():
        ok = np.nonzero(shares <= target)[0]
        i = int(ok[-1]) if len(ok) else 0
        out[name] = (float(LAMBDA_GRID[i]), float(shares[i]))
    return out


def lams_and_shares(cal) -> tuple[list[float], list[float]]:
    return [cal.presets[n].lam for n in NAMES], [cal.presets[n].train_cost_share for n in NAMES]


def strictly_increasing(xs: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(xs))


# --- the frontier -----------------------------------------------------------------------------


def test_frontier_of_a_step_curve_is_the_last_lambda_of_each_share() -> None:
    curve = steps(0.1, 0.1, 0.2, 0.3)
    assert list(frontier_indices(curve)) == [last_index_of(curve, 0.1), last_index_of(curve, 0.2), len(curve) - 1]


def test_frontier_leaves_out_points_a_larger_lambda_undercuts_and_nan() -> None:
    assert list(frontier_indices(np.array([0.1, 0.3, 0.2, 0.4]))) == [0, 2, 3]
    assert list(frontier_indices(np.array([np.nan, 0.1, np.nan, 0.5]))) == [1, 3]
    assert list(frontier_indices(np.array([np.nan, np.nan]))) == []


# --- spread: the least movement onto distinct points ------------------------------------------


def test_spread_keeps_increasing_picks_and_moves_collisions_least() -> None:
    assert spread([0, 2, 5, 9], 10) == [0, 2, 5, 9]
    assert spread([0, 0, 5, 9], 10) == [0, 1, 5, 9]  # nothing cheaper than 0: low moves up
    assert spread([2, 2, 3, 4], 6) == [1, 2, 3, 4]  # very-low moves down rather than three moving up
    assert spread([0, 0, 9, 9], 10) == [0, 1, 8, 9]
    assert spread([3, 3, 3, 3], 10) == [1, 2, 3, 4]  # equal movement (4): the cheaper placement
    assert spread([3, 3, 3, 3], 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        spread([0, 0, 0, 0], 3)


# --- calibrate_presets ------------------------------------------------------------------------


def test_normal_case_is_unchanged() -> None:
    curve = steps(0.01, 0.03, 0.08, 0.2, 0.4, 0.7, 1.0)
    cal = calibrate_presets(curve, reference="big")
    assert cal.warnings == []
    assert {n: (p.lam, p.train_cost_share) for n, p in cal.presets.items()} == old_rule(curve)
    assert [cal.presets[n].train_cost_share for n in NAMES] == [0.03, 0.08, 0.2, 0.4]
    assert all("note" not in p.to_json() for p in cal.presets.values())
    assert list(cal.presets) == NAMES


@pytest.mark.parametrize("monotone", [True, False])
def test_same_as_the_old_rule_whenever_its_picks_are_met_and_distinct(monotone: bool) -> None:
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(300):
        jumps = rng.exponential(0.02, len(LAMBDA_GRID)) * (rng.random(len(LAMBDA_GRID)) < 0.08)
        curve = rng.uniform(0, 0.06) + np.cumsum(jumps)
        if not monotone:
            curve = curve * rng.uniform(0.9, 1.1, len(curve))
        old = old_rule(curve)
        cal = calibrate_presets(curve, reference="big")
        lams, _shares = lams_and_shares(cal)
        old_lams, old_shares = [old[n][0] for n in NAMES], [old[n][1] for n in NAMES]
        feasible = all(old[n][1] <= PRESET_TARGETS[n] for n in NAMES)
        if feasible and strictly_increasing(old_shares):
            compared += 1
            assert lams == old_lams and cal.warnings == []
        if len(cal.frontier) >= 4:
            assert strictly_increasing(lams) and strictly_increasing([float(curve[np.searchsorted(LAMBDA_GRID, x)])
                                                                       for x in lams])
        # every preset off its old place says so
        moved = {n for n in NAMES if cal.presets[n].lam != old[n][0] or old[n][1] > PRESET_TARGETS[n]}
        assert {w.split(":")[0].removeprefix("preset ") for w in cal.warnings if w.startswith("preset ")} == moved
    assert compared > 30  # the comparison above ran on plenty of curves


def test_unreachable_targets_the_cheapest_llm_costs_12_percent() -> None:
    curve = steps(0.12, 0.15, 0.2, 0.3, 0.6, 1.0)
    cal = calibrate_presets(curve, reference="big")
    lams, shares = lams_and_shares(cal)
    assert shares == [0.12, 0.15, 0.2, 0.3]
    assert lams == [float(LAMBDA_GRID[last_index_of(curve, s)]) for s in (0.12, 0.15, 0.2, 0.3)]
    assert cal.warnings == [
        ("preset very-low: target 5% of big's cost is not reachable (the cheapest routing spends 12.0%); "
         f"using the cheapest frontier point (12.0%, λ={lams[0]:.4g})"),
        ("preset low: target 10% of big's cost is not reachable (the cheapest routing spends 12.0%); "
         f"using the nearest dearer frontier point so the presets stay distinct and ordered (15.0%, λ={lams[1]:.4g})"),
    ]
    note = cal.presets["very-low"].to_json()["note"]
    assert note == ("target 5% of big's cost is not reachable (the cheapest routing spends 12.0%); "
                    "using the cheapest frontier point (12.0%)")


def test_collapse_in_a_gap_moves_the_cheaper_preset_down() -> None:
    curve = steps(0.01, 0.03, 0.04, 0.2, 0.45, 1.0)  # 5% and 10% both pick 4%: nothing until 20%
    cal = calibrate_presets(curve, reference="big")
    lams, shares = lams_and_shares(cal)
    assert shares == [0.03, 0.04, 0.2, 0.45]
    assert cal.presets["low"].lam == old_rule(curve)["low"][0]
    assert cal.warnings == [
        ("preset very-low: target 5% of big's cost picks 4.0%, the same frontier point as low; using the nearest "
         f"cheaper frontier point so the presets stay distinct and ordered (3.0%, λ={lams[0]:.4g})")
    ]


def test_collapse_at_the_top_moves_medium_down() -> None:
    curve = steps(0.01, 0.02, 0.04, 0.08, 0.15, 0.2)  # nothing dearer than 20%: medium and high collide
    cal = calibrate_presets(curve, reference="big")
    lams, shares = lams_and_shares(cal)
    assert shares == [0.04, 0.08, 0.15, 0.2] and strictly_increasing(lams)
    assert [w.split(":")[0] for w in cal.warnings] == ["preset medium"]
    assert "the same frontier point as high" in cal.warnings[0]


def test_fewer_than_four_points_stay_ordered_and_say_so() -> None:
    curve = steps(0.2, 0.6, 1.0)
    cal = calibrate_presets(curve, reference="big")
    lams, shares = lams_and_shares(cal)
    assert shares == [0.2, 0.2, 0.2, 0.2]  # 50% picks 20% too: 60% is over it
    assert lams == sorted(lams)
    assert [w.split(":")[0] for w in cal.warnings] == ["preset very-low", "preset low", "presets"]
    assert cal.warnings[-1] == ("presets: the training frontier has only 3 distinct cost shares of big's cost "
                                "(20.0%, 60.0%, 100.0%); the 4 presets cannot all be distinct")
    one = calibrate_presets(steps(1.0), reference="big")
    assert len({p.lam for p in one.presets.values()}) == 1
    assert one.warnings[-1].startswith("presets: the training frontier has only 1 distinct cost share of big's")


def test_no_cost_at_all_is_a_data_error() -> None:
    with pytest.raises(DataError, match="big's total cost on the training data is 0"):
        calibrate_presets(np.full(len(LAMBDA_GRID), np.nan), reference="big")


def test_a_note_round_trips_through_the_manifest_and_old_entries_still_read() -> None:
    entry = calibrate_presets(steps(0.12, 0.15, 0.2, 0.3, 0.6)).presets["very-low"]
    again = PresetEntry.from_json(json.loads(json.dumps(entry.to_json())), "presets.very-low")
    assert again == entry and again.to_json() == entry.to_json()
    old = {"lambda": 0.5, "target_cost_share": 0.05, "train_cost_share": 0.0495}
    assert PresetEntry.from_json(old, "presets.very-low").to_json() == old


# --- train-offline on a pool whose cheapest LLM is dear -------------------------------------

PRICES = {"big": (10.0, 30.0), "vendor/small": (2.0, 6.0), "mid": (5.0, 15.0)}  # small: 20% of big


def test_train_offline_on_a_dear_pool_warns_and_keeps_presets_distinct(tiny: Path, cli, tmp_path: Path) -> None:
    from conftest import TINY_CATALOGUE, tiny_records

    catalogue = TINY_CATALOGUE
    for old, llm in (((0.2, 0.2), "vendor/small"), ((1.0, 2.0), "mid")):
        catalogue = catalogue.replace(f"input_usd_per_mtok: {old[0]}\n    output_usd_per_mtok: {old[1]}",
                                      f"input_usd_per_mtok: {PRICES[llm][0]}\n    output_usd_per_mtok: {PRICES[llm][1]}")
    (tmp_path / "models.yaml").write_text(catalogue)
    rows = tiny_records()
    for row in rows:
        for llm, o in row["outcomes"].items():
            o["cost_usd"] = (o["prompt_tokens"] * PRICES[llm][0] + o["response_tokens"] * PRICES[llm][1]) / 1e6
        row["annotator"] = "bob"  # data as users have it
    data = tmp_path / "dear.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    home = tmp_path / "home"

    code, out, err = cli("train-offline", data, "--catalogue", tmp_path / "models.yaml", "--home", home)
    assert code == 0, err
    assert out == ""
    warnings = [line for line in err.splitlines() if line.startswith("Warning: ")]
    assert f"Warning: {data}: ignored unknown keys 'annotator' (120 lines)" in warnings
    assert any(w.startswith("Warning: preset very-low: target 5% of big's cost is not reachable (the cheapest "
                            "routing spends 20.0%); using the cheapest frontier point (20.0%, λ=") for w in warnings)
    assert any(w.startswith("Warning: preset low: target 10% of big's cost is not reachable") for w in warnings)
    presets = json.loads((home / "artifacts" / "manifest.json").read_text())["presets"]
    lams = [presets[n]["lambda"] for n in NAMES]
    shares = [presets[n]["train_cost_share"] for n in NAMES]
    assert strictly_increasing(lams) and strictly_increasing(shares)
    assert shares[0] == pytest.approx(0.2, abs=0.005)  # routing only to the cheap LLM
    assert "not reachable" in presets["very-low"]["note"]

    # The set loads and routes with its (distinct) presets.
    code, out, err = cli("route", "tell me a story about the dog", "--budget", "low", "--json",
                         "--catalogue", tmp_path / "models.yaml", "--home", home)
    assert code == 0, err
    assert json.loads(out)["budget"] == "low"
