"""Every LLM's ridge length head and its out-of-fold predictions from one Gram matrix.

Fitting the 11 length heads and their 5-fold out-of-fold copies one by one with scikit-learn
meant 66 fits that each recomputed X·Xᵀ of a 2,225 × 4,480 matrix: 60 of train-offline's 89
non-encoding seconds (docs/PROFILE.md). The math of scikit-learn's `Ridge(alpha)` with an
intercept is solved here directly, once per distinct set of rows, for all the LLMs that share it:

    centre X and y on the rows;  (Xc·Xcᵀ + αI)·a = yc;  w = Xcᵀ·a;  b = ȳ − x̄·w

(the dual form, which scikit-learn's cholesky solver uses whenever there are fewer rows than
features; with more rows the primal (XcᵀXc + αI)·w = Xcᵀyc gives the same w). The Gram matrix
of an LLM group's rows is computed once and each fold's is a slice of it, centred in place of
centring X. Results equal scikit-learn's up to float rounding (it works in float32 when given
float32; here float64): tests/test_ridge.py compares them.
"""

from __future__ import annotations

import numpy as np

from ..core.heads import LENGTH, MIN_OUTCOMES, ConstantHead, Head, LinearHead


def _solve(gram_c: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.linalg import cho_factor, cho_solve

    a = gram_c  # callers pass a matrix of their own (centred or reduced): solved in place
    a[np.diag_indices_from(a)] += alpha
    return np.asarray(cho_solve(cho_factor(a, overwrite_a=True, check_finite=False), yc, check_finite=False))


def _centred(k: np.ndarray) -> np.ndarray:
    """C·K·C for the centring matrix C: the Gram matrix of the centred rows (a new array)."""
    r = k.mean(axis=1)
    out = k - r[:, None]
    out -= r[None, :]
    out += r.mean()
    return out


class RidgeRows:
    """Ridge fits of targets on subsets of the rows of one feature matrix `x`, sharing its Gram."""

    def __init__(self, x: np.ndarray, rows: np.ndarray, alpha: float) -> None:
        self.x, self.rows, self.alpha = x, np.asarray(rows), float(alpha)
        self.dual = len(self.rows) <= x.shape[1]
        # dual: the rows' Gram (n × n); primal: Σ xᵢxᵢᵀ over the rows (d × d)
        self.gram = _gram(x, self.rows, self.dual)

    def fit(self, subset: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coef d × k, intercept k) on the rows `self.rows[subset]` (a boolean mask over them) for
        the targets `y` (len(subset) × k, on the same rows)."""
        idx = np.flatnonzero(subset)
        rows = self.rows[idx]
        ys = np.asarray(y[idx], dtype=np.float64)
        mean_x, mean_y = self.x[rows].mean(axis=0, dtype=np.float64), ys.mean(axis=0)
        yc = ys - mean_y
        if self.dual:
            coef = _xt_dot(self.x, rows, _solve(_centred(self.gram[np.ix_(idx, idx)]), yc, self.alpha))
        else:
            g = self.gram - _gram(self.x, self.rows[np.flatnonzero(~subset)], False)
            g -= len(idx) * np.outer(mean_x, mean_x)
            coef = _solve(g, _xt_dot(self.x, rows, yc), self.alpha)
        return coef, mean_y - mean_x @ coef


_CHUNK = 512  # columns (or rows) of x turned into float64 at a time: no float64 copy of all of x


def _gram(x: np.ndarray, rows: np.ndarray, dual: bool) -> np.ndarray:
    """x[rows]·x[rows]ᵀ (dual) or x[rows]ᵀ·x[rows] in float64, a slice of x at a time."""
    n, d = len(rows), x.shape[1]
    if dual:
        out = np.zeros((n, n))
        for c in range(0, d, _CHUNK):
            part = np.asarray(x[rows, c:c + _CHUNK], dtype=np.float64)
            out += part @ part.T
        return out
    out = np.zeros((d, d))
    for r in range(0, n, _CHUNK):
        part = np.asarray(x[rows[r:r + _CHUNK]], dtype=np.float64)
        out += part.T @ part
    return out


def _xt_dot(x: np.ndarray, rows: np.ndarray, a: np.ndarray) -> np.ndarray:
    """x[rows]ᵀ·a in float64, a slice of rows at a time."""
    out = np.zeros((x.shape[1], a.shape[1]))
    for r in range(0, len(rows), _CHUNK):
        out += np.asarray(x[rows[r:r + _CHUNK]], dtype=np.float64).T @ a[r:r + _CHUNK]
    return out


def length_heads(x: np.ndarray, response_tokens: np.ndarray, folds: np.ndarray,
                 alpha: float) -> tuple[list[Head], np.ndarray]:
    """Each column's ridge length head on its known rows, and out-of-fold predictions (n × m,
    NaN where no head could be fitted for the fold) as `fitters.out_of_fold` gives them."""
    n, m = response_tokens.shape
    heads: list[Head | None] = [None] * m
    oof = np.full((n, m), np.nan)
    known = ~np.isnan(response_tokens)
    groups: dict[bytes, list[int]] = {}
    for j in range(m):
        groups.setdefault(np.packbits(known[:, j]).tobytes(), []).append(j)
    for cols in groups.values():
        rows = np.flatnonzero(known[:, cols[0]])
        target = np.log1p(np.maximum(response_tokens[np.ix_(rows, np.asarray(cols))], 0.0))
        solver = RidgeRows(x, rows, alpha) if len(rows) else None
        for j, head in zip(cols, _heads(solver, np.ones(len(rows), bool), target)):
            heads[j] = head
        for f in np.unique(folds):
            test = folds == f
            for j, head in zip(cols, _heads(solver, folds[rows] != f, target)):
                oof[test, j] = head.predict(x[test])
    return [h for h in heads if h is not None], oof


def _heads(solver: RidgeRows | None, subset: np.ndarray, target: np.ndarray) -> list[Head]:
    """One head per target column on the subset: ridge, or constant where `fitters.fit_head` would
    give one (fewer than MIN_OUTCOMES rows, or a constant target)."""
    t = target[subset]
    n = len(t)
    fit = [j for j in range(target.shape[1]) if n >= MIN_OUTCOMES and np.ptp(t[:, j]) > 0]
    coef, intercept = (solver.fit(subset, target[:, fit]) if fit and solver is not None
                       else (np.zeros((0, 0)), np.zeros(0)))
    out: list[Head] = []
    for j in range(target.shape[1]):
        if j in fit:
            k = fit.index(j)
            out.append(LinearHead(kind=LENGTH, family="ridge", n_train=n, coef=coef[:, k].astype(np.float32),
                                  intercept=float(intercept[k]), logistic=False))
        else:
            out.append(ConstantHead(kind=LENGTH, family="constant", n_train=n,
                                    value=float(t[:, j].mean()) if n else 0.0))
    return out
