"""Exported numpy heads must predict what the scikit-learn estimators they came from predict."""

import numpy as np
import pytest

from mixllm_cli.artifacts import load_head, save_head
from mixllm_cli.core.heads import LENGTH, QUALITY, ConstantHead

sklearn = pytest.importorskip("sklearn")
from mixllm_cli.training.fitters import fit_head, fold_ids, out_of_fold


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    q = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(float)
    tokens = np.exp(3 + x[:, 1]).round()
    return x, q, tokens


def test_forest_export_matches_sklearn(data):
    from sklearn.ensemble import RandomForestRegressor

    x, q, _ = data
    head = fit_head("rf", QUALITY, x, q, seed=1)
    ref = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, max_features="sqrt", random_state=1).fit(x, q)
    np.testing.assert_allclose(head.predict(x), np.clip(ref.predict(x), 0, 1), atol=1e-5)


def test_mlp_export_matches_sklearn(data):
    from sklearn.neural_network import MLPRegressor

    x, _, tokens = data
    head = fit_head("mlp", LENGTH, x, tokens, seed=0)
    ref = MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-3, learning_rate_init=1e-3, max_iter=300,
                       early_stopping=True, random_state=0).fit(x, np.log1p(tokens))
    np.testing.assert_allclose(head.predict(x), np.expm1(np.clip(ref.predict(x), 0, 20)), rtol=1e-4)


def test_logistic_quality_is_a_probability_and_learns_the_signal(data):
    x, q, _ = data
    head = fit_head("logistic", QUALITY, x, q)
    p = head.predict(x)
    assert ((p >= 0) & (p <= 1)).all()
    assert p[q == 1].mean() > p[q == 0].mean() + 0.3


def test_fractional_quality_is_accepted(data):
    x, q, _ = data
    head = fit_head("logistic", QUALITY, x, 0.25 + 0.5 * q)
    p = head.predict(x)
    assert 0.25 < p.mean() < 0.75


@pytest.mark.parametrize("family", ["ridge", "rf", "mlp", "knn"])
def test_length_heads_predict_tokens_in_a_sane_range(data, family):
    x, _, tokens = data
    pred = fit_head(family, LENGTH, x, tokens).predict(x)
    assert (pred >= 0).all()
    # Within a factor of 3 of the truth for most rows: the signal is learnable.
    ratio = (pred + 1) / (tokens + 1)
    assert np.mean((ratio > 1 / 3) & (ratio < 3)) > 0.8


def test_knn_quality(data):
    x, q, _ = data
    p = fit_head("knn", QUALITY, x, q).predict(x)
    assert p[q == 1].mean() > p[q == 0].mean()


def test_too_few_outcomes_give_a_constant_prior():
    x = np.zeros((5, 3), np.float32)
    head = fit_head("rf", QUALITY, x, np.array([1, 0, 1, 1, 0.0]))
    assert isinstance(head, ConstantHead)
    np.testing.assert_allclose(head.predict(np.ones((2, 3))), 0.6)


def test_out_of_fold_never_sees_its_own_row(data):
    x, q, _ = data
    # kNN with k=1 would reproduce its training labels exactly; out of fold it cannot.
    folds = fold_ids(len(q), 5, 0)
    y = q.copy()
    y[:3] = np.nan
    oof = out_of_fold("knn", QUALITY, x, y, folds)
    assert not np.isnan(oof).any()
    assert oof.shape == q.shape


def test_save_and_load_round_trip(tmp_path, data):
    x, q, _ = data
    head = fit_head("rf", QUALITY, x, q)
    save_head(head, tmp_path / "h.joblib")
    again = load_head(tmp_path / "h.joblib")
    np.testing.assert_array_equal(again.predict(x), head.predict(x))


def test_a_head_bank_predicts_what_each_of_its_heads_does(data):
    from mixllm_cli.core.heads import HeadBank

    x, q, tokens = data
    heads = [fit_head("logistic", QUALITY, x, q), fit_head("ridge", LENGTH, x, tokens),
             fit_head("knn", QUALITY, x, q), fit_head("logistic", QUALITY, x, 1 - q),
             ConstantHead(kind=LENGTH, family="constant", n_train=0, value=3.0)]
    bank = HeadBank(heads)
    got = bank.predict(x)
    assert got.shape == (len(x), len(heads))
    for j, h in enumerate(heads):
        np.testing.assert_allclose(got[:, j], h.predict(x), rtol=1e-5, atol=1e-6)
    assert bank.same_heads(list(heads))
    refit = list(heads)
    refit[1] = fit_head("ridge", LENGTH, x, tokens)  # an equal head, but another object: a refit
    assert not bank.same_heads(refit) and not bank.same_heads(heads[:-1])


def test_the_router_rebuilds_its_head_bank_when_a_head_is_replaced(trained_home):
    from dataclasses import replace

    from mixllm_cli.routing.router import Router

    router = Router.load(trained_home)
    before = router.predict(["write a python function"])
    llm = next(i for i in router.llm_ids if i in router.artifacts.heads)
    h = router.artifacts.heads[llm]
    router.artifacts.heads[llm] = replace(h, quality=ConstantHead(kind=QUALITY, family="constant", n_train=0,
                                                                   value=0.123))
    after = router.predict(["write a python function"])
    j = router.llm_ids.index(llm)
    assert after.quality[0, j] == pytest.approx(0.123) and before.quality[0, j] != pytest.approx(0.123)
    others = [k for k in range(len(router.llm_ids)) if k != j]
    np.testing.assert_allclose(after.quality[0, others], before.quality[0, others])
