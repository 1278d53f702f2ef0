"""Refitting heads without scikit-learn: the same objectives, the same optimum."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixllm_cli.core.optim import lbfgs, logistic_objective, refit_linear, ridge_objective
from mixllm_cli.training_rows import TrainingRows, load_training_rows, save_training_rows


def _data(n=300, d=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    p = 1 / (1 + np.exp(-(x @ w - 0.5)))
    return x, (rng.random(n) < p).astype(float), x @ w + 2.0 + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("make", [lambda x, yb, yr: logistic_objective(x, yb, 0.3),
                                  lambda x, yb, yr: ridge_objective(x, yr, 1.0)])
def test_objective_gradients_match_finite_differences(make):
    x, yb, yr = _data(n=40, d=5)
    fun = make(x, yb, yr)
    theta = np.random.default_rng(1).normal(size=6)
    _, g = fun(theta)
    h = 1e-6
    num = np.array([(fun(theta + h * e)[0] - fun(theta - h * e)[0]) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)


def test_logistic_refit_reaches_scikit_learns_optimum():
    from sklearn.linear_model import LogisticRegression

    x, y, _ = _data()
    ref = LogisticRegression(C=0.3, tol=1e-10, max_iter=10_000).fit(x, y)
    w, b = refit_linear(x, y, logistic=True, coef=np.zeros(x.shape[1]), intercept=0.0, c=0.3)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-4)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_soft_labels_match_the_doubled_rows_fit():
    """A fractional quality y is the same as a 1-row with weight y and a 0-row with weight 1 − y."""
    from sklearn.linear_model import LogisticRegression

    x, _, _ = _data(n=200, d=8)
    y = np.random.default_rng(2).random(200)
    ref = LogisticRegression(C=0.3, tol=1e-10, max_iter=10_000).fit(
        np.vstack([x, x]), np.r_[np.ones(200), np.zeros(200)], sample_weight=np.r_[y, 1 - y])
    w, b = refit_linear(x, y, logistic=True, coef=np.zeros(8), intercept=0.0, c=0.3)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-4)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_ridge_refit_reaches_scikit_learns_optimum_from_a_warm_start():
    from sklearn.linear_model import Ridge

    x, _, y = _data()
    ref = Ridge(alpha=1.0).fit(x, y)
    w, b = refit_linear(x, y, logistic=False, coef=ref.coef_ + 0.3, intercept=0.0, alpha=1.0)
    np.testing.assert_allclose(w, ref.coef_, atol=1e-5)
    assert b == pytest.approx(ref.intercept_, abs=1e-5)


def test_lbfgs_minimises_an_ill_conditioned_quadratic():
    scales = np.logspace(0, 4, 10)

    def fun(t):
        return float(0.5 * (scales * (t - 1) ** 2).sum()), scales * (t - 1)

    np.testing.assert_allclose(lbfgs(fun, np.zeros(10), max_iter=500, tol=1e-10), np.ones(10), atol=1e-6)


def test_training_rows_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = TrainingRows(llm_ids=["a", "b/c"], embeddings=rng.normal(size=(3, 4)).astype(np.float32),
                        token_ids=[np.array([101, 7, 102]), np.array([101, 102]), np.array([101, 65000, 5, 102])],
                        quality=np.array([[1, np.nan], [0, 0.5], [1, 1]]),
                        response_tokens=np.array([[10, 20], [np.nan, 3], [4, 5]]))
    save_training_rows(tmp_path / "r.npz", rows)
    back = load_training_rows(tmp_path / "r.npz")
    assert back.llm_ids == ["a", "b/c"]
    np.testing.assert_allclose(back.embeddings, rows.embeddings, atol=1e-3)  # stored as float16
    assert [t.tolist() for t in back.token_ids] == [t.tolist() for t in rows.token_ids]
    q, r = back.column("b/c")
    np.testing.assert_array_equal(q, [np.nan, 0.5, 1])
    np.testing.assert_array_equal(r, [20, 3, 5])


def test_train_offline_ships_its_training_rows(tiny_trained):
    manifest = json.loads((tiny_trained / "artifacts" / "manifest.json").read_text())
    entry = manifest["training_rows"]
    rows = load_training_rows(tiny_trained / "artifacts" / entry["file"])
    assert entry["llms"] == rows.llm_ids == ["big", "vendor/small", "mid"]
    assert len(rows.token_ids) == 120 and rows.quality.shape == (120, 3)


def test_a_refit_on_the_offline_rows_alone_gives_back_the_offline_head(tiny, tiny_trained):
    """The refit minimises the objective the offline fit minimised (float16 storage aside)."""
    from mixllm_cli.artifacts import load_artifact_set
    from mixllm_cli.core.features import build_features

    arts = load_artifact_set(tiny_trained / "artifacts")
    rows = load_training_rows(tiny_trained / "artifacts" / "training_rows.npz")
    x = build_features(rows.embeddings, rows.token_ids, arts.features)
    head = arts.heads["mid"].quality
    q, _ = rows.column("mid")
    w, b = refit_linear(x, q, logistic=True, coef=np.zeros_like(head.coef), intercept=0.0)
    p_refit = 1 / (1 + np.exp(-(x @ w + b)))
    np.testing.assert_allclose(p_refit, head.predict(x), atol=0.02)
