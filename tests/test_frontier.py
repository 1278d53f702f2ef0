"""The non-decreasing convex hull, AIQ and the read-outs, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_cli.errors import DataError
from mixllm_cli.evaluation.frontier import aiq, cost_to_reach, curve, lambda_grid, nondecreasing_hull, quality_at_cost


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
