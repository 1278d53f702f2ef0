"""The decision rule is pure: these tests pin its arithmetic and its tie-breaking."""

import numpy as np
import pytest

from mixllm_cli.core import decision
from mixllm_cli.errors import UsageError


def test_score_matches_the_formula_term_by_term():
    q = np.array([[0.9, 0.6]])
    c = np.array([[1.0, 0.1]])
    u = np.array([[0.5, 2.0]])
    w = np.array([[40.0, 0.0]])
    w8 = decision.Weights(alpha=0.01, beta=0.1, gamma_per_s=0.2, xi=0.5, tolerance_s=30.0)
    s = decision.score(q, c, u, w, lam=3.0, weights=w8)
    expected_trade = 3 / 4 * q - 1 / 4 * c
    expected_pen = 0.1 * np.exp(0.2 * (w - 15.0))
    np.testing.assert_allclose(s.trade, expected_trade)
    np.testing.assert_allclose(s.uncertainty, 0.01 * u)
    np.testing.assert_allclose(s.penalty, expected_pen)
    np.testing.assert_allclose(s.total, expected_trade + 0.01 * u - expected_pen)


@pytest.mark.parametrize("lam, expected", [(0.0, 1), (0.5, 1), (10.0, 0), (1e6, 0)])
def test_lambda_moves_the_choice_from_cheap_to_good(lam, expected):
    # LLM 0: better (0.9) but dear (1.0); LLM 1: worse (0.6) and cheap (0.1).
    # LLM 0 wins iff λ·0.3 > 0.9, i.e. λ > 3.
    idx, _ = decision.route_indices([[0.9, 0.6]], [[1.0, 0.1]], 0.0, 0.0, lam)
    assert idx[0] == expected


def test_waiting_penalty_can_overturn_quality():
    q, c = [[0.9, 0.85]], [[0.1, 0.1]]
    idx, _ = decision.route_indices(q, c, 0.0, [[0.0, 0.0]], 10.0)
    assert idx[0] == 0
    idx, _ = decision.route_indices(q, c, 0.0, [[45.0, 0.0]], 10.0)
    assert idx[0] == 1


def test_uncertainty_bonus_favours_the_less_known_llm():
    idx, _ = decision.route_indices([[0.5, 0.5]], [[0.2, 0.2]], [[0.0, 1.0]], 0.0, 1.0)
    assert idx[0] == 1


def test_exact_tie_goes_to_the_cheaper_llm():
    # Same score (λ=1: 0.5·0.8−0.5·0.2 = 0.5·0.7−0.5·0.1), the second is cheaper.
    idx, s = decision.route_indices([[0.8, 0.7]], [[0.2, 0.1]], 0.0, 0.0, 1.0)
    assert s.total[0, 0] == pytest.approx(s.total[0, 1])
    assert idx[0] == 1


def test_many_queries_at_once():
    rng = np.random.default_rng(0)
    q, c = rng.random((50, 5)), rng.random((50, 5))
    idx, _ = decision.route_indices(q, c, 0.0, 0.0, 2.0)
    assert idx.shape == (50,)
    np.testing.assert_array_equal(idx, (2 * q - c).argmax(axis=1))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_lambda_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="^lambda: must be a finite number"):
        decision.score([[0.5]], [[0.5]], 0.0, 0.0, bad)


def test_huge_wait_stays_finite():
    pen = decision.waiting_penalty(np.array([1e9]), decision.Weights())
    assert np.isfinite(pen).all()
