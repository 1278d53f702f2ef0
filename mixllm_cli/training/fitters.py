"""Fitting heads: the head families (a name → fitter registry), one LLM's heads and A⁻¹, out-of-fold
predictions.

scikit-learn is imported inside the fitters and never on the routing path: every fitted estimator
is exported to a plain-numpy head of `core.heads`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..artifacts import LLMHeads
from ..core.heads import (
    LENGTH,
    LOGISTIC_C,
    MIN_OUTCOMES,
    QUALITY,
    RIDGE_ALPHA,
    ConstantHead,
    ForestHead,
    Head,
    KNNHead,
    LinearHead,
    MLPHead,
)
from ..errors import DataError

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestRegressor

# A fitter: (kind, features, target, seed, logistic C) → a head. The target is the quality, or
# log1p(response tokens) for length heads; it has at least MIN_OUTCOMES rows and is not constant.
Fitter = Callable[[str, np.ndarray, np.ndarray, int, float], Head]


def _soft_labels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Quality may be fractional: fit a classifier on (x, 1) with weight y and (x, 0) with 1 − y."""
    if np.isin(y, (0.0, 1.0)).all():
        return x, y, None  # the usual 0/1 case needs no doubling
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1.0 - y])
    keep = ww > 0
    return xx[keep], yy[keep], ww[keep]


def _fit_linear(kind: str, x: np.ndarray, target: np.ndarray, seed: int, c: float) -> Head:
    """Logistic regression for quality, ridge for log length (whichever of the two names was asked)."""
    if kind == QUALITY:
        from sklearn.linear_model import LogisticRegression

        xx, yy, ww = _soft_labels(x, target)
        est = LogisticRegression(C=c, max_iter=2000).fit(xx, yy, sample_weight=ww)
        return LinearHead(kind=kind, family="logistic", n_train=len(target), coef=est.coef_[0].astype(np.float32),
                          intercept=float(est.intercept_[0]), logistic=True)
    from sklearn.linear_model import Ridge

    ridge = Ridge(alpha=RIDGE_ALPHA).fit(x, target)
    return LinearHead(kind=kind, family="ridge", n_train=len(target), coef=ridge.coef_.astype(np.float32),
                      intercept=float(ridge.intercept_), logistic=False)


def _fit_forest(kind: str, x: np.ndarray, target: np.ndarray, seed: int, c: float) -> Head:
    from sklearn.ensemble import RandomForestRegressor

    est = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, max_features="sqrt",
                                n_jobs=-1, random_state=seed).fit(x, target)
    return _forest_head(kind, est, len(target))


def _forest_head(kind: str, est: RandomForestRegressor, n_train: int) -> ForestHead:
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
    offset = 0
    depth = 0
    for tree in est.estimators_:
        t = tree.tree_
        roots.append(offset)
        feats.append(t.feature.astype(np.int32))
        thrs.append(t.threshold.astype(np.float32))
        # Leaves point at themselves so the walk can run a fixed number of steps.
        idx = np.arange(t.node_count)
        lefts.append(np.where(t.children_left >= 0, t.children_left, idx).astype(np.int32) + offset)
        rights.append(np.where(t.children_right >= 0, t.children_right, idx).astype(np.int32) + offset)
        vals.append(t.value[:, 0, 0].astype(np.float32))
        depth = max(depth, int(t.max_depth))
        offset += t.node_count
    feature = np.concatenate(feats)
    feature[feature < 0] = -1
    return ForestHead(
        kind=kind,
        family="rf",
        n_train=n_train,
        feature=feature,
        threshold=np.concatenate(thrs),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        value=np.concatenate(vals),
        roots=np.array(roots, dtype=np.int32),
        max_depth=depth,
    )


def _fit_mlp(kind: str, x: np.ndarray, target: np.ndarray, seed: int, c: float) -> Head:
    from sklearn.neural_network import MLPRegressor

    est = MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-3, learning_rate_init=1e-3, max_iter=300,
                       early_stopping=True, random_state=seed).fit(x, target)
    return MLPHead(kind=kind, family="mlp", n_train=len(target), weights=[w.astype(np.float32) for w in est.coefs_],
                   biases=[b.astype(np.float32) for b in est.intercepts_], logistic=False)


def _fit_knn(kind: str, x: np.ndarray, target: np.ndarray, seed: int, c: float) -> Head:
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return KNNHead(kind=kind, family="knn", n_train=len(target), points=xn.astype(np.float32),
                   targets=target.astype(np.float32), k=20)


FITTERS: dict[str, Fitter] = {
    "logistic": _fit_linear,
    "ridge": _fit_linear,
    "rf": _fit_forest,
    "mlp": _fit_mlp,
    "knn": _fit_knn,
}
# The families train-offline offers per head (the linear one under its usual name for each kind).
QUALITY_FAMILIES = ("logistic", "rf", "mlp", "knn")
LENGTH_FAMILIES = ("ridge", "rf", "mlp", "knn")
DEFAULT_FAMILIES = {QUALITY: "logistic", LENGTH: "ridge"}


def fit_head(family: str, kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0, c: float = LOGISTIC_C) -> Head:
    """Fit one head with scikit-learn and export it to numpy. Length targets are raw tokens."""
    n = len(y)
    target = np.asarray(y, dtype=np.float64) if kind == QUALITY else np.log1p(np.maximum(y, 0.0))
    if n < MIN_OUTCOMES or np.ptp(target) == 0:
        return ConstantHead(kind=kind, family="constant", n_train=n, value=float(target.mean()) if n else 0.0)
    fitter = FITTERS.get(family)
    if fitter is None:
        raise DataError(f"unknown head family '{family}'")
    return fitter(kind, x, target, seed, c)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(n) % folds


def out_of_fold(family: str, kind: str, x: np.ndarray, y: np.ndarray, folds: np.ndarray, seed: int = 0,
                c: float = LOGISTIC_C) -> np.ndarray:
    """Predictions for every row from a head that did not see it (NaN where y is missing)."""
    pred = np.full(len(y), np.nan)
    known = ~np.isnan(y)
    for f in np.unique(folds):
        train = known & (folds != f)
        test = folds == f
        head = fit_head(family, kind, x[train], y[train], seed, c)
        pred[test] = head.predict(x[test])
    return pred


def a_inverse(embeddings: np.ndarray) -> np.ndarray:
    """A_l⁻¹ with A_l = I + Σ e·eᵀ over the queries LLM l has an outcome for."""
    e = np.asarray(embeddings, dtype=np.float64)
    a = np.eye(e.shape[1]) + e.T @ e
    return np.linalg.inv(a).astype(np.float32)


@dataclass(frozen=True)
class FittedLLM:
    """One LLM's heads and A⁻¹, with what its manifest entry states about the rows they saw."""

    heads: LLMHeads
    mean_quality: float | None  # None: no quality outcome at all
    mean_length: float | None
    n_rows: int  # rows with any outcome: what A⁻¹ sums over


def fit_llm(families: Mapping[str, str], x: np.ndarray, emb: np.ndarray, quality: np.ndarray,
            response_tokens: np.ndarray, seed: int = 0, length: Head | None = None) -> FittedLLM:
    """Each head on the rows that have its outcome (NaN: missing), A⁻¹ on the rows that have either;
    `length`, when given, is the length head already fitted on those rows (training/ridge.py)."""
    has_q, has_len = ~np.isnan(quality), ~np.isnan(response_tokens)
    seen = has_q | has_len
    if length is None:
        length = fit_head(families[LENGTH], LENGTH, _rows(x, has_len), response_tokens[has_len], seed)
    heads = LLMHeads(quality=fit_head(families[QUALITY], QUALITY, _rows(x, has_q), quality[has_q], seed),
                     length=length, a_inv=a_inverse(emb[seen]))
    return FittedLLM(heads, _mean(quality[has_q]), _mean(response_tokens[has_len]), int(seen.sum()))


def _rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """x[mask], without a copy when every row is kept (a 2,225 × 4,480 matrix is 40 MB)."""
    return x if mask.all() else x[mask]


def _mean(y: np.ndarray) -> float | None:
    return float(y.mean()) if len(y) else None
