"""The non-decreasing convex hull, AIQ and the read-outs, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_cli.errors import DataError
from mixllm_cli.evaluation.frontier import (
    aiq,
    cost_to_reach,
    curve,
    lambda_grid,
    nondecreasing_hull,
    quality_at_cost,
    refine_lambdas,
)


def test_lambda_grid_is_log_spaced_and_inclusive():
    g = lambda_grid(13, 1e-6, 1e6)
    assert len(g) == 13
    assert g[0] == pytest.approx(1e-6) and g[-1] == pytest.approx(1e6)
    assert np.allclose(np.diff(np.log10(g)), 1.0)
    assert len(lambda_grid()) == 50
    with pytest.raises(DataError):
        lambda_grid(5, 0.0, 1.0)


def test_points_below_the_hull_and_dominated_points_are_dropped():
    pts = [(0.1, 0.5), (0.2, 0.6), (0.3, 0.9), (0.5, 0.8), (0.6, 0.95), (1.0, 0.9)]
    # (0.2, 0.6) lies below the chord (0.1, 0.5)–(0.3, 0.9) (0.7 there); (0.5, 0.8) below (0.3, 0.9)–(0.6, 0.95);
    # (1.0, 0.9) is dearer and worse than (0.6, 0.95): cut after the peak.
    hull = nondecreasing_hull(pts)
    assert hull.tolist() == [[0.1, 0.5], [0.3, 0.9], [0.6, 0.95]]


def test_collinear_points_and_equal_costs():
    hull = nondecreasing_hull([(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.5, 0.2), (np.nan, 3.0)])
    assert hull.tolist() == [[0.0, 0.0], [1.0, 1.0]]  # the middle point is on the chord; NaN rows are ignored


def test_peak_first_then_flat():
    hull = nondecreasing_hull([(0.2, 0.9), (0.5, 0.9), (0.8, 0.7)])
    assert hull.tolist() == [[0.2, 0.9]]
    assert quality_at_cost([(0.2, 0.9), (0.5, 0.9)], (0.1, 0.2, 0.7)) == {0.1: None, 0.2: 0.9, 0.7: 0.9}


def test_aiq_by_hand():
    # Hull (0.2, 0.5) → (0.6, 0.9), flat to 1: area = 0 on [0, 0.2] + 0.4·0.7 + 0.4·0.9 = 0.64.
    pts = [(0.2, 0.5), (0.6, 0.9), (0.4, 0.6)]
    assert aiq(pts) == pytest.approx(0.64)
    # Over [0.4, 1]: 0.2·(0.7 + 0.9)/2 + 0.4·0.9 = 0.52, width 0.6.
    assert aiq(pts, (0.4, 1.0)) == pytest.approx(0.52 / 0.6)
    # A range left of the curve scores 0, one right of it the flat peak.
    assert aiq(pts, (0.0, 0.1)) == 0.0
    assert aiq(pts, (2.0, 3.0)) == pytest.approx(0.9)
    # A single point: its quality times the reachable part of the range.
    assert aiq([(0.25, 0.8)]) == pytest.approx(0.75 * 0.8)
    with pytest.raises(DataError):
        aiq(pts, (1.0, 1.0))


def test_quality_at_cost_interpolates_between_vertices():
    pts = [(0.1, 0.5), (0.3, 0.9), (0.6, 0.95)]
    got = quality_at_cost(pts, (0.05, 0.1, 0.2, 0.45, 0.6, 2.0))
    assert got[0.05] is None
    assert got[0.1] == pytest.approx(0.5)
    assert got[0.2] == pytest.approx(0.7)
    assert got[0.45] == pytest.approx(0.925)
    assert got[0.6] == pytest.approx(0.95) and got[2.0] == pytest.approx(0.95)


def test_cost_to_reach_inverts_the_rising_hull():
    pts = [(0.1, 0.5), (0.3, 0.9), (0.6, 0.95)]
    got = cost_to_reach(pts, (0.4, 0.7, 0.9, 0.925, 0.95, 1.0))
    assert got[0.4] == pytest.approx(0.1)  # the cheapest point already reaches it
    assert got[0.7] == pytest.approx(0.2)
    assert got[0.9] == pytest.approx(0.3)
    assert got[0.925] == pytest.approx(0.45)
    assert got[0.95] == pytest.approx(0.6)
    assert got[1.0] is None
    # A share that is 1 up to rounding counts as reaching 1.
    assert cost_to_reach([(1.0, 1.0 - 1e-12)], (1.0,))[1.0] == pytest.approx(1.0)


def test_curve_bundles_everything_and_serialises():
    c = curve("r", [(0.1, 0.5), (0.3, 0.9), (0.2, 0.6)], shares=(0.2,), targets=(0.9,))
    assert c.hull.tolist() == [[0.1, 0.5], [0.3, 0.9]]
    assert c.quality_at == {0.2: pytest.approx(0.7)} and c.cost_to == {0.9: pytest.approx(0.3)}
    # 0.2·0.7 + 0.7·0.9 = 0.77
    assert c.aiq == pytest.approx(0.77)
    d = c.to_dict()
    assert d["name"] == "r" and d["aiq_cost_range"] == [0.0, 1.0] and len(d["points"]) == 3


@pytest.mark.parametrize("bad", [[], np.zeros((0, 2)), [(np.nan, 0.5)], [(1.0, 2.0, 3.0)]])
def test_empty_or_malformed_input_is_an_error(bad):
    with pytest.raises(DataError):
        nondecreasing_hull(bad)
    with pytest.raises(DataError):
        aiq(bad)


def test_a_single_point_has_an_aiq_only_when_it_lies_inside_the_range():
    # One LLM at cost c0 < 1 with quality q: q on [c0, 1], nothing below c0.
    cheap = curve("always cheap", [(0.25, 0.8)])
    assert cheap.in_range and cheap.aiq == pytest.approx(0.8 * 0.75)
    assert cheap.to_dict()["aiq"] == pytest.approx(0.6)
    # The reference itself (cost share 1) and a dearer LLM reach no part of [0, 1]: no AIQ, not 0.
    for pts in ([(1.0, 1.0)], [(1.7, 0.9)]):
        cv = curve("always dear", pts)
        assert not cv.in_range and cv.to_dict()["aiq"] is None
    # A wider range brings them in.
    assert curve("always dear", [(1.0, 1.0)], cost_range=(0.0, 2.0)).to_dict()["aiq"] == pytest.approx(0.5)


def step(threshold: float, calls: list[float]):
    """A router whose cost jumps from 0.1 to 0.9 (quality 0.6 to 0.95) at λ = threshold, linear in
    log λ over a decade around it."""
    def point(lam: float) -> tuple[float, float]:
        calls.append(lam)
        t = float(np.clip((np.log10(lam) - np.log10(threshold)) + 0.5, 0.0, 1.0))
        return 0.1 + 0.8 * t, 0.6 + 0.35 * t
    return point


def test_refine_fills_the_jump_a_coarse_grid_steps_over():
    calls: list[float] = []
    coarse = lambda_grid(7, 1e-3, 1e3)  # one λ per decade: the jump's decade holds one grid point at most
    lams, pts = refine_lambdas(coarse, step(3.0, calls), max_gap=0.05, max_new=60)
    assert list(lams) == sorted(lams) and len(lams) == len(pts) == len(calls)
    assert set(coarse) <= set(lams) and len(lams) > len(coarse)
    gaps = np.abs(np.diff(pts, axis=0)).max(axis=1)
    assert gaps.max() <= 0.05  # every neighbouring pair now within the gap
    # the added λ sit in the decade of the jump, none where the curve is flat
    added = sorted(set(lams) - set(coarse))
    assert all(3.0 / 10 ** 0.6 <= v <= 3.0 * 10 ** 0.6 for v in added)


def test_refine_respects_its_budget_and_true_jumps():
    calls: list[float] = []

    def cliff(lam: float) -> tuple[float, float]:  # a true discontinuity: no λ shows a point between
        calls.append(lam)
        return (0.1, 0.6) if lam < 2.0 else (0.9, 0.95)

    lams, _ = refine_lambdas([1e-2, 1e2], cliff, max_new=1000)
    assert len(lams) < 40  # bisection stops at λ ratios of 10**0.001, far before the budget
    assert min(v for v in lams if v >= 2.0) / max(v for v in lams if v < 2.0) < 10 ** 0.002
    lams, _ = refine_lambdas([1e-2, 1e2], cliff, max_new=3)
    assert len(lams) == 5
    assert refine_lambdas([1e-2, 1e2], cliff, max_new=0)[0].tolist() == [1e-2, 1e2]
    # presets join the grid: duplicates merge, λ = 0 is allowed
    lams, pts = refine_lambdas([0.0, 1.0, 1.0, 5.0], cliff, max_new=0)
    assert lams.tolist() == [0.0, 1.0, 5.0] and pts.tolist() == [[0.1, 0.6], [0.1, 0.6], [0.9, 0.95]]
    for bad in ([], [-1.0, 2.0], [np.inf]):
        with pytest.raises(DataError):
            refine_lambdas(bad, cliff)
