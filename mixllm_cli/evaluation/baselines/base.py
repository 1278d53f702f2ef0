"""What every baseline shares: the `Outcome` of one setting, split checks, and the `Baseline` base class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from ..frontier import lambda_grid


@dataclass(frozen=True)
class Outcome:
    """What one setting of a policy obtained: per-query quality (missing → 0) and USD paid."""

    param: float
    quality: np.ndarray  # (n,)
    cost: np.ndarray  # (n,)

    def point(self, ref_quality: float, ref_cost: float) -> tuple[float, float]:
        """(total cost / ref_cost, total quality / ref_quality): the frontier's coordinates."""
        return float(self.cost.sum() / ref_cost), float(self.quality.sum() / ref_quality)


def check_split(x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a split; return (quality with NaN kept, cost) as float arrays. DataError if malformed."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost_usd, dtype=np.float64)
    if q.ndim != 2 or q.shape != c.shape or q.shape[0] == 0 or q.shape[1] == 0:
        raise DataError(f"quality and cost must be non-empty (n, m) arrays of one shape (got {q.shape}, {c.shape})")
    if x is not None:
        xa = np.asarray(x)
        if xa.ndim != 2 or len(xa) != len(q):
            raise DataError(f"features must be (n, d) with one row per query (got {xa.shape} for {len(q)} queries)")
        if not np.isfinite(xa).all():
            raise DataError("features hold a non-finite value")
    if not (np.isfinite(c).all() and (c >= 0).all()):
        raise DataError("every call needs a finite, non-negative cost_usd")
    known = q[~np.isnan(q)]
    if ((known < 0) | (known > 1)).any():
        raise DataError("quality must lie in [0, 1] (or be missing)")
    return q, c


def picks_outcome(param: float, idx: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> Outcome:
    """The outcome of calling LLM idx[i] for query i: its recorded quality (missing → 0) and cost."""
    rows = np.arange(len(idx))
    return Outcome(float(param), np.nan_to_num(quality[rows, idx], nan=0.0), cost_usd[rows, idx].astype(np.float64))


def trade_picks(q_hat: np.ndarray, c_norm: np.ndarray, lam: float) -> np.ndarray:
    """argmax over LLMs of q̂ − ĉ/λ per query; exact ties go to the cheaper LLM, then the lower index."""
    c = np.broadcast_to(c_norm, q_hat.shape)
    score = q_hat - c / lam
    best = score.max(axis=1, keepdims=True)
    return np.where(score >= best, c, np.inf).argmin(axis=1)


class Baseline:
    """Base class: training statistics every baseline may use, and `sweep` for policies that pick one LLM.

    `x` may be None for the policies that never read features (the oracle, the random ones).
    """

    name: str = "baseline"
    faithful_to: str = ""
    kind: str = "sweep"  # "sweep" (a curve), "point" (one setting)

    def __init__(self) -> None:
        self.m = 0
        self.mean_quality = np.zeros(0)  # per LLM, missing → 0 (the scoring convention)
        self.mean_cost = np.zeros(0)  # per LLM, USD per query
        self.cost_scale = 1.0  # the dearest LLM's mean cost: ĉ = USD / cost_scale

    def _fit_stats(self, x: np.ndarray | None, quality: np.ndarray,
                   cost_usd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, c = check_split(x, quality, cost_usd)
        self.m = q.shape[1]
        self.mean_quality = np.nan_to_num(q, nan=0.0).mean(axis=0)
        self.mean_cost = c.mean(axis=0)
        self.cost_scale = float(self.mean_cost.max()) or 1.0
        return q, c

    def features(self, x: np.ndarray | None) -> np.ndarray:
        """`x` as an array; DataError when a policy that reads features is given none."""
        if x is None:
            raise DataError(f"{self.name}: needs the query features")
        return np.asarray(x)

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> Baseline:
        self._fit_stats(x, quality, cost_usd)
        return self

    def default_params(self) -> np.ndarray:
        return lambda_grid(50)

    def params(self, params: Sequence[float] | None) -> np.ndarray:
        """The parameter values to sweep: `params`, or the policy's own grid."""
        return self.default_params() if params is None else np.asarray(params, dtype=np.float64)

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - abstract
        """The LLM index per query for each parameter value."""
        raise NotImplementedError

    def _check_sweep(self, x: np.ndarray | None, quality: np.ndarray,
                     cost_usd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.m == 0:
            raise DataError(f"{self.name}: fit it before sweeping")
        q, c = check_split(x, quality, cost_usd)
        if q.shape[1] != self.m:
            raise DataError(f"{self.name}: fitted on {self.m} LLMs, asked to route among {q.shape[1]}")
        return q, c

    def sweep(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        """One Outcome per parameter value: route on `x`, score with the recorded quality and cost."""
        q, c = self._check_sweep(x, quality, cost_usd)
        ps = self.params(params)
        return [picks_outcome(p, idx, q, c) for p, idx in zip(ps, self.route(self.features(x), ps))]
