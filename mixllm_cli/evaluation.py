"""Replay a labelled split: the router at each budget beside single LLMs and the oracle.

Quality is the recorded outcome of the LLM a policy picks; cost is that call's real USD cost.
Every row is scored. A call whose quality was not recorded (RouterBench has 62 such cells in
its test split, all on a few duplicated ARC prompts) scores 0, as a call that produced no
gradable answer; this is RouterBench's own convention and gives its published single-LLM shares.
The report says how many rows hold such a cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError
from .training import outcome_table


@dataclass(frozen=True)
class PolicyResult:
    name: str
    mean_quality: float
    total_cost_usd: float
    quality_share: float  # of the best single LLM's total quality
    cost_share: float  # of the best single LLM's total cost
    picks: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "mean_quality": round(self.mean_quality, 6),
            "total_cost_usd": round(self.total_cost_usd, 6),
            "quality_pct_of_best": round(100 * self.quality_share, 2),
            "cost_pct_of_best": round(100 * self.cost_share, 2),
            "picks": self.picks,
        }


def _result(name: str, idx: np.ndarray, quality: np.ndarray, cost: np.ndarray, best: int,
            llm_ids: Sequence[str]) -> PolicyResult:
    rows = np.arange(len(idx))
    q, c = quality[rows, idx], cost[rows, idx]
    counts = np.bincount(idx, minlength=len(llm_ids))
    return PolicyResult(
        name=name,
        mean_quality=float(q.mean()),
        total_cost_usd=float(c.sum()),
        quality_share=float(q.sum() / quality[:, best].sum()),
        cost_share=float(c.sum() / cost[:, best].sum()),
        picks={llm_ids[j]: int(k) for j, k in enumerate(counts) if k},
    )


def oracle_indices(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per query, the cheapest LLM among those with the highest recorded quality."""
    best_q = quality.max(axis=1, keepdims=True)
    return np.where(quality >= best_q, cost, np.inf).argmin(axis=1)


def evaluate(router: Any, records: Sequence[Any], lambdas: dict[str, float] | None = None) -> dict[str, Any]:
    """Score the router's presets (or the given named λ values) and the baselines on `records`."""
    llm_ids = list(router.llm_ids)
    table = outcome_table(records, llm_ids)
    missing = np.isnan(table.quality).any(axis=1)
    if np.isnan(table.cost_usd).any():
        bad = int(np.nonzero(np.isnan(table.cost_usd).any(axis=1))[0][0])
        raise DataError(f"{table.ids[bad]}: every LLM of the pool needs an outcome with a cost to evaluate")
    quality, cost = np.nan_to_num(table.quality, nan=0.0), table.cost_usd
    best = int(np.argmax(quality.mean(axis=0)))
    cheapest = int(np.argmin(cost.sum(axis=0)))

    preds = router.predict(table.queries)
    if lambdas is None:
        lambdas = {name: p.lam for name, p in router.artifacts.presets.items()}
    results = []
    for name, lam in lambdas.items():
        idx, _ = router.decide(preds, lam)
        results.append(_result(f"mixllm {name} (λ={lam:.3g})", idx, quality, cost, best, llm_ids))
    n = len(records)
    results.append(_result(f"always {llm_ids[best]}", np.full(n, best), quality, cost, best, llm_ids))
    results.append(_result(f"always {llm_ids[cheapest]} (cheapest)", np.full(n, cheapest), quality, cost, best, llm_ids))
    results.append(_result("oracle", oracle_indices(quality, cost), quality, cost, best, llm_ids))
    return {
        "rows": len(records),
        "rows_with_missing_quality": int(missing.sum()),
        "best_llm": llm_ids[best],
        "results": [r.to_dict() for r in results],
    }
