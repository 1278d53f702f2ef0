"""The length heads of training/ridge.py equal scikit-learn's Ridge, fitted one by one."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_cli.core.heads import RIDGE_ALPHA
from mixllm_cli.training.fitters import fit_head, fold_ids, out_of_fold
from mixllm_cli.training.ridge import length_heads


def _data(n: int, d: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, m))
    tokens = np.expm1(np.clip(3 + x @ w * 0.1 + rng.normal(size=(n, m)) * 0.3, 0, 8))
    tokens[rng.random((n, m)) < 0.1] = np.nan  # missing outcomes: LLM groups with different rows
    tokens[:, 1] = tokens[:, 0]  # two LLMs sharing their rows (one solve for both)
    return x, tokens


@pytest.mark.parametrize(("n", "d"), [(120, 300), (300, 40)])  # fewer rows than features (dual), more (primal)
def test_heads_and_out_of_fold_predictions_equal_sklearn_one_by_one(n, d):
    x, tokens = _data(n, d, 4)
    tokens[:, 3] = 7.0  # a constant target: a constant head, as fit_head gives
    folds = fold_ids(n, 5, 0)
    heads, oof = length_heads(x, tokens, folds, RIDGE_ALPHA)
    for j in range(tokens.shape[1]):
        known = ~np.isnan(tokens[:, j])
        ref = fit_head("ridge", "length", x[known], tokens[known, j])
        assert type(heads[j]) is type(ref) and heads[j].n_train == ref.n_train
        # on the log-length scale the heads fit: sklearn solves in float32 when given float32
        np.testing.assert_allclose(np.log1p(heads[j].predict(x)), np.log1p(ref.predict(x)), atol=1e-4)
        ref_oof = out_of_fold("ridge", "length", x, tokens[:, j], folds)
        np.testing.assert_allclose(np.log1p(oof[:, j]), np.log1p(ref_oof), atol=1e-4)


def test_too_few_rows_give_constant_heads():
    x, tokens = _data(30, 10, 2)
    tokens[5:, 0] = np.nan  # 5 known rows: under MIN_OUTCOMES
    heads, _ = length_heads(x, tokens, fold_ids(30, 5, 0), RIDGE_ALPHA)
    assert heads[0].family == "constant" and heads[1].family == "ridge"


def test_the_linear_bandit_equals_sklearn_ridge_per_llm():
    from sklearn.linear_model import Ridge

    from mixllm_cli.evaluation.baselines import LinearBandit

    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 60))
    quality = (rng.random((150, 3)) < 0.6).astype(float)
    quality[rng.random((150, 3)) < 0.1] = np.nan  # each LLM its own rows
    cost = rng.random((150, 3)) * np.array([1.0, 0.1, 0.01])
    bandit = LinearBandit().fit(x, quality, cost)
    for j in range(3):
        known = ~np.isnan(quality[:, j])
        ref = Ridge(alpha=1.0).fit(x[known], np.stack([quality[known, j], cost[known, j] / bandit.cost_scale], 1))
        np.testing.assert_allclose(x @ bandit.coef[:, j, :] + bandit.intercept[j], ref.predict(x), atol=1e-9)
