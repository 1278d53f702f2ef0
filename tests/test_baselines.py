"""Baselines on synthetic splits where the right routing is known."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from mixllm_cli.errors import DataError
from mixllm_cli.evaluation.baselines import (
    Cascade,
    KNNRouter,
    LinearBandit,
    MLPRouter,
    Oracle,
    RandomMix,
    RandomRouter,
    SingleLLM,
    ThresholdRouter,
    compare,
    outcome_points,
    picks_outcome,
    reference_llm,
    trade_picks,
)
from mixllm_cli.evaluation.frontier import aiq, curve, quality_at_cost

PRICES = np.array([1e-4, 5e-4, 1e-2])  # cheap, mid, strong: USD per call


def make_split(n: int, seed: int, missing: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cluster z ∈ {0, 1, 2} is readable from x. The cheap LLM solves z=0, the mid one z ≤ 1, the strong one
    any query with probability 0.9. The ideal router sends z to LLM z: ~97 % of the strong LLM's quality for
    ~35 % of its cost."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    x = np.hstack([3.0 * np.eye(3)[z], np.zeros((n, 5))]) + rng.normal(0, 0.3, (n, 8))
    q = np.stack([z == 0, z <= 1, rng.random(n) < 0.9], axis=1).astype(np.float64)
    c = PRICES * rng.uniform(0.8, 1.2, (n, 3))
    if missing:
        q[rng.choice(n, missing, replace=False), rng.integers(0, 3, missing)] = np.nan
    return x, q, c, z


@pytest.fixture(scope="module")
def data():
    train = make_split(600, 0, missing=12)
    test = make_split(300, 1)
    return train, test


def frontier_of(b, train, test):
    x, q, c, _ = train
    tx, tq, tc, _ = test
    b.fit(x, q, c)
    return curve(b.name, outcome_points(b.sweep(tx, tq, tc), tq, tc, reference_llm(tq)))


def test_picks_outcome_scores_missing_quality_as_zero_and_pays_the_call():
    q = np.array([[np.nan, 1.0], [0.5, 0.0]])
    c = np.array([[1.0, 2.0], [3.0, 4.0]])
    o = picks_outcome(7.0, np.array([0, 0]), q, c)
    assert o.quality.tolist() == [0.0, 0.5] and o.cost.tolist() == [1.0, 3.0] and o.param == 7.0


def test_trade_picks_weighs_cost_by_one_over_lambda_and_breaks_ties_to_the_cheaper_llm():
    q_hat = np.array([[1.0, 1.0, 0.0], [0.9, 0.85, 0.0]])
    c = np.array([2.0, 1.0, 0.0])
    assert trade_picks(q_hat, c, np.inf).tolist() == [1, 0]  # equal quality: the cheaper one, not the first
    assert trade_picks(q_hat, c, 100.0).tolist() == [1, 0]  # row 2: 0.9 − 0.02 > 0.85 − 0.01
    assert trade_picks(q_hat, c, 10.0).tolist() == [1, 1]  # row 2: 0.9 − 0.2 < 0.85 − 0.1
    assert trade_picks(q_hat, c, 1e-6).tolist() == [2, 2]  # cost dominates


def test_oracle_reaches_the_row_max_at_the_cheapest_tied_llm(data):
    train, (tx, tq, tc, _) = data
    oracle = Oracle().fit(*train[:3])
    outs = oracle.sweep(tx, tq, tc)
    top = outs[-1]  # λ = ∞
    assert np.isinf(top.param)
    assert np.array_equal(top.quality, tq.max(axis=1))
    solved = tq.max(axis=1) == 1
    first = np.argmax(tq == 1, axis=1)  # the cheapest LLM that solves it (LLMs are ordered by price)
    assert np.allclose(top.cost[solved], tc[solved, first[solved]])
    assert np.allclose(top.cost[~solved], tc[~solved, 0])  # nobody solves it: the cheapest call
    # Lower λ never costs more.
    totals = [o.cost.sum() for o in outs]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(totals))


def test_single_and_random_policies(data):
    train, (tx, tq, tc, _) = data
    s = SingleLLM(2, "strong").fit(*train[:3]).sweep(tx, tq, tc)
    assert len(s) == 1 and np.array_equal(s[0].quality, tq[:, 2]) and np.array_equal(s[0].cost, tc[:, 2])
    r = RandomRouter().fit(*train[:3]).sweep(tx, tq, tc)[0]
    assert r.quality.sum() == pytest.approx(tq.sum() / 3) and r.cost.sum() == pytest.approx(tc.sum() / 3)
    mix = RandomMix().fit(*train[:3])
    assert (mix.cheap, mix.best) == (0, 2)
    outs = mix.sweep(tx, tq, tc, params=[0.0, 0.5, 1.0])
    assert outs[0].cost.sum() == pytest.approx(tc[:, 0].sum()) and outs[2].quality.sum() == pytest.approx(tq[:, 2].sum())
    assert outs[1].quality.sum() == pytest.approx((tq[:, 0].sum() + tq[:, 2].sum()) / 2)


@pytest.mark.parametrize("make", [KNNRouter, MLPRouter, LinearBandit, ThresholdRouter])
def test_learned_routers_beat_random_mixing_at_equal_cost(data, make):
    train, test = data
    learned = frontier_of(make(), train, test)
    random_mix = frontier_of(RandomMix(), train, test)
    at = 0.4  # the ideal router needs ~35 % of the strong LLM's cost
    got, base = quality_at_cost(learned.points, (at,))[at], quality_at_cost(random_mix.points, (at,))[at]
    assert got is not None and base is not None
    assert got > base + 0.2, (make.__name__, got, base)
    assert learned.aiq > random_mix.aiq + 0.1


def test_predictive_routers_pick_the_llm_of_the_cluster(data):
    train, (tx, tq, _, z) = data
    knn = KNNRouter(k=15).fit(*train[:3])
    q_hat = knn.quality_hat(tx)
    assert np.abs(q_hat[:, :2] - tq[:, :2]).mean() < 0.05
    # A moderate λ: worth paying for quality, but not for the strong LLM when a cheaper one solves it.
    idx = knn.route(tx, np.array([50.0]))[0]
    assert (idx == z).mean() > 0.95


def test_knn_skips_missing_neighbours():
    x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    q = np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 0.0]])
    c = np.ones((3, 2))
    knn = KNNRouter(k=2).fit(x, q, c)
    assert knn.quality_hat(np.array([[1.0, 0.05]])).tolist() == [[0.0, 1.0]]  # the NaN neighbour is ignored


def test_threshold_router_picks_weak_and_strong_and_is_monotone(data):
    train, (tx, tq, tc, z) = data
    tr = ThresholdRouter().fit(*train[:3])
    assert (tr.strong, tr.weak) == (2, 1)  # mid costs 5 % of the strong one and beats the cheap one
    outs = tr.sweep(tx, tq, tc)
    assert np.isneginf(outs[0].param) and np.isposinf(outs[-1].param)
    assert np.allclose(outs[0].cost, tc[:, 2]) and np.allclose(outs[-1].cost, tc[:, 1])
    costs = [o.cost.sum() for o in outs]
    assert all(a >= b for a, b in itertools.pairwise(costs))
    # The strong LLM wins exactly on z = 2: that is where P(strong wins) is high.
    p = tr.strong_win_prob(tx)
    assert p[z == 2].min() > p[z != 2].max()


def test_cascade_pays_every_llm_tried_and_escalates_with_the_threshold(data):
    train, (tx, tq, tc, z) = data
    cas = Cascade().fit(*train[:3])
    assert cas.chain == [0, 1, 2]  # the Pareto front by mean cost and quality
    ts = np.array([0.0, 0.3, 0.5, 0.7, 1.01])
    outs = cas.sweep(tx, tq, tc, params=ts)
    stages = cas.accepted_stage(tx, ts)
    for o, stage in zip(outs, stages):
        tried = np.arange(3)[None, :] <= stage[:, None]
        assert np.allclose(o.cost, (tc * tried).sum(axis=1))
        assert np.array_equal(o.quality, tq[np.arange(len(tq)), stage])
    assert np.allclose(outs[0].cost, tc[:, 0])  # threshold 0: the first answer is always accepted
    assert np.allclose(outs[-1].cost, tc.sum(axis=1))  # above 1: every LLM is tried
    for a, b in itertools.pairwise(stages):  # a higher threshold never stops earlier
        assert (b >= a).all()
    # With a good predictor the middle thresholds accept the cheap answer on z = 0 and escalate elsewhere.
    assert (stages[2][z == 0] == 0).mean() > 0.95 and (stages[2][z == 2] == 2).mean() > 0.95


def test_cascade_with_a_given_chain():
    x, q, c, _ = make_split(100, 3)
    cas = Cascade(chain=[2]).fit(x, q, c)
    o = cas.sweep(x, q, c, params=[0.5])[0]
    assert np.allclose(o.cost, c[:, 2])
    with pytest.raises(DataError):
        Cascade(chain=[5]).fit(x, q, c)


def test_compare_builds_a_curve_per_policy(data):
    (x, q, c, _), (tx, tq, tc, _) = data
    extra = {"mine": [picks_outcome(1.0, np.full(len(tq), 2), tq, tc)]}
    bs = [SingleLLM(0, "cheap"), SingleLLM(2, "strong"), RandomMix(), Oracle()]
    curves = compare(x, q, c, tx, tq, tc, ["cheap", "mid", "strong"], extra=extra, baselines=bs)
    names = [cv.name for cv in curves]
    assert names[0] == "mine" and "always strong" in names and names[-1].startswith("single LLMs")
    mine = curves[0]
    assert mine.points.tolist() == [[1.0, 1.0]] and mine.aiq == pytest.approx(0.0)
    by = {cv.name: cv for cv in curves}
    assert by["always strong"].points.tolist() == [[1.0, 1.0]]
    assert by["single LLMs (hull; RouterBench zero router)"].hull.shape[0] == 2
    assert by["oracle"].aiq > by["random mix cheapest/best"].aiq
    assert aiq(by["oracle"].points) == pytest.approx(by["oracle"].aiq)


def test_bad_input_is_a_data_error(data):
    (x, q, c, _), _ = data
    with pytest.raises(DataError):
        KNNRouter().sweep(x, q, c)  # not fitted
    bad = c.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError):
        KNNRouter().fit(x, q, bad)
    with pytest.raises(DataError):
        KNNRouter().fit(x[:-1], q, c)
    knn = KNNRouter().fit(x, q, c)
    with pytest.raises(DataError):
        knn.sweep(x, q[:, :2], c[:, :2])
    with pytest.raises(DataError):
        compare(x, q, c, x, q, c, ["a", "b"])


def test_importing_baselines_does_not_import_sklearn():
    code = "import sys, mixllm_cli.evaluation.baselines; sys.exit('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=".", check=False).returncode == 0
