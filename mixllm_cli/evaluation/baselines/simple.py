"""Policies without a learned model: one fixed LLM, random choices, and the oracle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import DataError
from ..frontier import lambda_grid
from .base import Baseline, Outcome, picks_outcome, trade_picks


class SingleLLM(Baseline):
    """Always the same LLM."""

    kind = "point"
    faithful_to = "RouterBench's single-model points; exact."

    def __init__(self, j: int, llm_id: str = "") -> None:
        super().__init__()
        self.j = int(j)
        self.name = f"always {llm_id or j}"

    def default_params(self) -> np.ndarray:
        return np.array([float(self.j)])

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        if not 0 <= self.j < self.m:
            raise DataError(f"{self.name}: no LLM {self.j} among {self.m}")
        return [np.full(len(x), self.j) for _ in params]


class RandomRouter(Baseline):
    """Uniformly random LLM per query, scored by its exact expectation (no sampling noise)."""

    kind = "point"
    name = "random (uniform)"
    faithful_to = ("RouterBench's random router; reported as the expectation over draws: per query the mean "
                   "of the m LLMs' recorded quality and cost.")

    def default_params(self) -> np.ndarray:
        return np.array([np.nan])

    def sweep(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        return [Outcome(float("nan"), np.nan_to_num(q, nan=0.0).mean(axis=1), c.mean(axis=1))]


class RandomMix(Baseline):
    """The cheapest LLM, or with probability p the best one; expectation per query, p swept over [0, 1]."""

    name = "random mix cheapest/best"
    faithful_to = ("A random router restricted to the two extreme LLMs of the training split (lowest mean cost, "
                   "highest mean quality): the straight line a query-blind router can always reach. Expected "
                   "values, no sampling noise.")

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> RandomMix:
        self._fit_stats(x, quality, cost_usd)
        self.cheap = int(np.argmin(self.mean_cost))
        self.best = int(np.argmax(self.mean_quality))
        return self

    def default_params(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, 21)

    def sweep(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        q = np.nan_to_num(q, nan=0.0)
        return [Outcome(float(p), (1 - p) * q[:, self.cheap] + p * q[:, self.best],
                        (1 - p) * c[:, self.cheap] + p * c[:, self.best]) for p in self.params(params)]


class Oracle(Baseline):
    """Knows every recorded outcome: per query argmax of q − ĉ/λ on the truth; λ = ∞ is the usual oracle."""

    name = "oracle"
    faithful_to = ("RouterBench's Oracle (per query the best-quality LLM, the cheapest among ties) at λ = ∞; "
                   "smaller λ trade true quality against true normalised cost. Reads the scored split's outcomes.")

    def default_params(self) -> np.ndarray:
        return np.append(lambda_grid(50), np.inf)

    def sweep(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        truth = np.nan_to_num(q, nan=0.0)
        # at λ = ∞ the cost term vanishes and ties go to the cheaper LLM
        return [picks_outcome(lam, trade_picks(truth, c / self.cost_scale, float(lam)), q, c)
                for lam in self.params(params)]
