"""The tag-enhanced embedding's losses, their gradient, and what training does to the geometry."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_cli.core.projection import Problem, Projection, fit_projection, initial_weight, loss_and_grad, losses
from mixllm_cli.errors import ArtifactError


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n_per=40, k=3, d=12, spread=1.2, seed=0):
    """k noisy groups of unit vectors around random directions."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((k, d)))
    y = np.repeat(np.arange(k), n_per)
    e = unit(centres[y] + spread * rng.standard_normal((len(y), d)) / np.sqrt(d))
    return e, y


@pytest.mark.parametrize("form,dim", [("residual", None), ("linear", 5), ("linear", 12)])
def test_gradient_matches_finite_differences(form, dim):
    rng = np.random.default_rng(1)
    e, y = clustered(n_per=6, k=3, d=7)
    w0 = initial_weight(e, form, dim if dim != 12 else 7)
    problem = Problem(e=e, y=y, k=3, form=form, tau=0.3, inter_weight=0.7, reg=0.05, w0=w0)
    theta = np.concatenate([w0.ravel(), rng.standard_normal(3 * w0.shape[1])]) + 0.2 * rng.standard_normal(
        w0.size + 3 * w0.shape[1])
    _, grad = loss_and_grad(problem, theta)
    h = 1e-6
    numeric = np.array([(loss_and_grad(problem, theta + h * v)[0] - loss_and_grad(problem, theta - h * v)[0]) / (2 * h)
                        for v in np.eye(len(theta))])
    np.testing.assert_allclose(grad, numeric, atol=1e-7, rtol=1e-5)


def test_training_lowers_the_losses_and_pulls_queries_to_their_centre():
    e, y = clustered()
    proj, report = fit_projection(e, y, 3, form="residual", tau=0.1, inter_weight=1.0, reg=0.01, max_iter=60)
    assert report["after"]["total"] < report["before"]["total"]
    assert report["after"]["intra"] < report["before"]["intra"]
    assert report["after"]["inter"] < report["before"]["inter"]

    def own_centre_cosine(z):
        centres = unit(np.stack([z[y == j].mean(axis=0) for j in range(3)]))
        return float(np.mean(np.sum(z * centres[y], axis=1))), centres

    before, c0 = own_centre_cosine(e)
    after, _ = own_centre_cosine(proj.apply(e))
    assert after > before + 0.05  # intra: queries gather around their domain's centre
    off = ~np.eye(3, dtype=bool)
    assert (proj.centres @ proj.centres.T)[off].max() < (c0 @ c0.T)[off].max()  # inter: centres move apart
    # the router's embedding now tells the domains apart
    assert (np.argmax(proj.domain_scores(proj.apply(e)), axis=1) == y).mean() > 0.95


def test_the_regulariser_keeps_the_projection_near_the_general_embedding():
    e, y = clustered()
    loose, _ = fit_projection(e, y, 3, reg=1e-4, max_iter=60)
    tight, _ = fit_projection(e, y, 3, reg=10.0, max_iter=60)
    def cos(p):
        return float(np.mean(np.sum(p.apply(e) * e, axis=1)))

    assert cos(tight) > 0.99 > cos(loose)


def test_the_inter_term_spreads_the_centres():
    e, y = clustered(k=4)
    with_inter, rep = fit_projection(e, y, 4, form="residual", tau=0.5, reg=1.0, max_iter=40, inter_weight=5.0)
    assert rep["after"]["inter"] < rep["before"]["inter"]
    g = with_inter.centres @ with_inter.centres.T
    assert g[~np.eye(4, dtype=bool)].max() < 0.5


def test_apply_is_normalised_deterministic_and_survives_a_round_trip():
    e, y = clustered()
    proj, _ = fit_projection(e, y, 3, form="linear", dim=5, max_iter=10)
    z = proj.apply(e)
    assert z.shape == (len(e), 5) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    back = Projection.from_arrays(proj.to_arrays())
    np.testing.assert_array_equal(back.apply(e), z)
    with pytest.raises(ArtifactError, match="expects 12-d embeddings"):
        proj.apply(e[:, :4])


def test_zero_iterations_is_the_general_embedding():
    e, y = clustered()
    proj, report = fit_projection(e, y, 3, max_iter=0)
    np.testing.assert_allclose(proj.apply(e), e, atol=1e-6)
    assert report["before"] == report["after"]
    expected = losses(
        Problem(e=e, y=y, k=3, form="residual", tau=0.1, inter_weight=1.0, reg=0.01, w0=np.zeros((12, 12))),
        np.concatenate([np.zeros(144), unit(np.stack([e[y == j].sum(0) for j in range(3)])).ravel()]))
    assert report["after"] == pytest.approx(expected)
