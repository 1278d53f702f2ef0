"""The tag-enhanced embedding: a projection on top of the frozen encoder, trained with MixLLM's losses.

Given each training query's domain (tagging.py), the projection is trained so that queries gather
around their domain's centre and the centres stay apart (MixLLM, eqs. for L_intra and L_inter):

    ẑ_i = normalise(e_i + e_i·W)         ("residual": W is d×d, W = 0 is the general embedding)
    ẑ_i = normalise(e_i·W)               ("linear":   W is d×p, starts from the top-p principal axes)
    μ_j = normalise(m_j)                 learnable centres, one per domain
    L_intra = −(1/|Q|) Σ_i log softmax_j(ẑ_i·μ_j / τ)[domain of i]
    L_inter =  (1/|D|) Σ_j log Σ_{k≠j} exp(μ_j·μ_k / τ)
    L = L_intra + a·L_inter + ρ·‖W − W₀‖²

τ is a temperature the paper does not have (τ = 1 is its literal form): with unit vectors the
logits lie in [−1/τ, 1/τ], and at τ = 1 a softmax over 20 domains can barely tell them apart. The
ρ term keeps the projection near where it started, so the heads still see what the general
embedding told them beyond the domain (without it the intra loss would collapse each domain to
a point). Every setting is chosen on a validation split of train (docs/TAGS.md).

The analytic gradient is checked against finite differences in tests/test_projection.py; the
optimiser is the numpy L-BFGS of optim.py (full batch, deterministic). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ArtifactError, DataError

FORMS = ("residual", "linear")


@dataclass(frozen=True)
class Projection:
    """A trained transform of encoder embeddings; `apply` is the one function training and routing share."""

    form: str
    weight: np.ndarray  # (d, p) float32
    centres: np.ndarray  # (K, p) unit rows: the learned domain centres μ
    tau: float

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        """The tag-enhanced embedding of encoder vectors (n, d) → (n, p), L2-normalised, float32."""
        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2 or e.shape[1] != self.weight.shape[0]:
            raise ArtifactError(f"projection: expects {self.weight.shape[0]}-d embeddings (got shape {e.shape})")
        z = e @ self.weight
        if self.form == "residual":
            z = z + e
        return _normalise(z).astype(np.float32)

    def domain_scores(self, transformed: np.ndarray) -> np.ndarray:
        """softmax_j(ẑ·μ_j / τ) for transformed embeddings: the domain the router's embedding sees."""
        s = np.asarray(transformed, dtype=np.float64) @ self.centres.T / self.tau
        s = np.exp(s - s.max(axis=1, keepdims=True))
        return s / s.sum(axis=1, keepdims=True)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"form": np.array(self.form), "weight": self.weight.astype(np.float32),
                "centres": self.centres.astype(np.float32), "tau": np.array(self.tau)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Projection:
        form = str(arrays["form"])
        if form not in FORMS:
            raise ArtifactError(f"projection: unknown form {form!r}")
        return cls(form=form, weight=np.asarray(arrays["weight"], dtype=np.float32),
                   centres=np.asarray(arrays["centres"], dtype=np.float32), tau=float(arrays["tau"]))


def transform_embeddings(projection: Projection | None, embeddings: np.ndarray) -> np.ndarray:
    """What every consumer of "the embedding" reads (heads, A⁻¹, the feedback net): the projected
    vector when the artifact set has a projection, else the encoder's vector unchanged."""
    if projection is None:
        return np.asarray(embeddings, dtype=np.float32)
    return projection.apply(embeddings)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- the losses and their gradient


@dataclass(frozen=True)
class Problem:
    """Data and settings of one projection fit; θ packs W (d×p) then M (K×p)."""

    e: np.ndarray  # (n, d) encoder embeddings
    y: np.ndarray  # (n,) domain ids in [0, K)
    k: int
    form: str
    tau: float
    inter_weight: float
    reg: float
    w0: np.ndarray  # (d, p) where the regulariser pulls W

    @property
    def shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        d, p = self.w0.shape
        return (d, p), (self.k, p)

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (d, p), (k, _) = self.shapes
        return theta[: d * p].reshape(d, p), theta[d * p:].reshape(k, p)


def losses(problem: Problem, theta: np.ndarray) -> dict[str, float]:
    """The three terms and the total at θ (no gradient): for reports and tests."""
    _, parts = _loss_grad(problem, theta, with_grad=False)
    return parts


def loss_and_grad(problem: Problem, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """The total loss at θ and its gradient (what L-BFGS minimises)."""
    grad, parts = _loss_grad(problem, theta, with_grad=True)
    assert grad is not None  # with_grad=True always computes it
    return parts["total"], grad


def _loss_grad(problem: Problem, theta: np.ndarray, with_grad: bool) -> tuple[np.ndarray | None, dict[str, float]]:
    pr = problem
    w, m = pr.unpack(theta)
    e = pr.e
    n = len(e)
    z = e @ w + (e if pr.form == "residual" else 0.0)
    r = np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    zh = z / r
    nm = np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    mu = m / nm

    s = zh @ mu.T / pr.tau  # (n, K)
    s_max = s.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(s - s_max).sum(axis=1, keepdims=True)) + s_max
    logp = s - log_norm
    rows = np.arange(n)
    intra = float(-logp[rows, pr.y].mean())

    inter = 0.0
    q = None
    if pr.k >= 2:
        g = mu @ mu.T / pr.tau
        np.fill_diagonal(g, -np.inf)
        g_max = g.max(axis=1, keepdims=True)
        lse = np.log(np.exp(g - g_max).sum(axis=1, keepdims=True)) + g_max
        inter = float(lse.mean())
        q = np.exp(g - lse)  # row-softmax over k ≠ j (the diagonal is exp(−inf) = 0)
    dw_ = w - pr.w0
    reg = float(pr.reg * np.sum(dw_ * dw_))
    total = intra + pr.inter_weight * inter + reg
    parts = {"intra": intra, "inter": inter, "reg": reg, "total": total}
    if not with_grad:
        return None, parts

    ds = np.exp(logp)
    ds[rows, pr.y] -= 1.0
    ds /= n  # dL_intra / dS
    d_zh = ds @ mu / pr.tau
    d_mu = ds.T @ zh / pr.tau
    if q is not None:
        a = pr.inter_weight * q / (pr.k * pr.tau)  # dL / d(μμᵀ)
        d_mu += (a + a.T) @ mu
    dz = (d_zh - zh * np.sum(zh * d_zh, axis=1, keepdims=True)) / r
    gw = e.T @ dz + 2.0 * pr.reg * dw_
    gm = (d_mu - mu * np.sum(mu * d_mu, axis=1, keepdims=True)) / nm
    return np.concatenate([gw.ravel(), gm.ravel()]), parts


# ---------------------------------------------------------------- fitting


def initial_weight(e: np.ndarray, form: str, dim: int | None) -> np.ndarray:
    """W₀: zeros for the residual form (the general embedding), the top-`dim` principal axes for the linear one."""
    d = e.shape[1]
    if form == "residual":
        return np.zeros((d, d))
    if form != "linear":
        raise DataError(f"projection: unknown form {form!r}; choose one of: {', '.join(FORMS)}")
    p = d if dim is None else int(dim)
    if not 1 <= p <= d:
        raise DataError(f"projection: dim must be in [1, {d}] (got {dim})")
    if p == d:
        return np.eye(d)
    _, _, vt = np.linalg.svd(np.asarray(e, dtype=np.float64), full_matrices=False)
    return vt[:p].T.copy()


def fit_projection(
    embeddings: np.ndarray,
    domains: np.ndarray,
    k: int,
    *,
    form: str = "residual",
    dim: int | None = None,
    tau: float = 0.1,
    inter_weight: float = 1.0,
    reg: float = 0.3,
    max_iter: int = 100,
) -> tuple[Projection, dict[str, Any]]:
    """Train W and the centres by L-BFGS from W₀ and the domains' mean projected vectors.

    Deterministic (no randomness). Returns the projection and a report: the losses before and
    after, the iterations run.
    """
    from .optim import lbfgs

    e = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(domains, dtype=np.int64)
    if len(e) != len(y) or len(e) == 0:
        raise DataError(f"projection: need one domain per embedding (got {len(e)} embeddings, {len(y)} domains)")
    if y.min() < 0 or y.max() >= k:
        raise DataError(f"projection: domain ids must be in [0, {k})")
    w0 = initial_weight(e, form, dim)
    z0 = _normalise(e @ w0 + (e if form == "residual" else 0.0))
    m0 = np.zeros((k, w0.shape[1]))
    np.add.at(m0, y, z0)
    empty = np.linalg.norm(m0, axis=1) < 1e-12
    m0[empty] = z0.mean(axis=0)  # a domain with no query: start at the overall mean
    m0 = _normalise(m0)
    problem = Problem(e=e, y=y, k=k, form=form, tau=float(tau), inter_weight=float(inter_weight),
                      reg=float(reg), w0=w0)
    theta0 = np.concatenate([w0.ravel(), m0.ravel()])
    calls = [0]

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        calls[0] += 1
        return loss_and_grad(problem, theta)

    theta = lbfgs(fun, theta0, max_iter=max_iter, tol=1e-6) if max_iter > 0 else theta0
    w, m = problem.unpack(theta)
    proj = Projection(form=form, weight=w.astype(np.float32), centres=_normalise(m).astype(np.float32), tau=float(tau))
    report = {"before": losses(problem, theta0), "after": losses(problem, theta), "evaluations": calls[0]}
    return proj, report
