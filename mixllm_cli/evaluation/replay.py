"""Replay a labelled split: the router at each budget beside single LLMs and the oracle, at once
or as a stream with waiting times (the λ sweep and the learned baselines are in sweep.py).

Quality is the recorded outcome of the LLM a policy picks; cost is that call's real USD cost.
Every row is scored. A call whose quality was not recorded (RouterBench has 62 such cells in
its test split, all on a few duplicated ARC prompts) scores 0, as a call that produced no
gradable answer; this is RouterBench's own convention and gives its published single-LLM shares.
The report says how many rows hold such a cell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, UsageError
from ..training.pipeline import outcome_table

if TYPE_CHECKING:
    from ..core.latency import LatencyEstimate
    from ..dataset import Record
    from ..routing.results import Predictions
    from ..routing.router import Router

# choose(i, waits) -> the LLM index query i is sent to, given each LLM's current wait (s)
Choose = Callable[[int, np.ndarray], int]


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


def evaluate(router: Router, records: Sequence[Record], lambdas: dict[str, float] | None = None,
             cache: Path | None = None, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Score the router's presets (or the given named λ values) and the baselines on `records`;
    `cache` is an embedding-cache folder (embcache) or None; `progress` hears of the encoding."""
    llm_ids = list(router.llm_ids)
    table = outcome_table(records, llm_ids)
    missing = np.isnan(table.quality).any(axis=1)
    if np.isnan(table.cost_usd).any():
        bad = int(np.nonzero(np.isnan(table.cost_usd).any(axis=1))[0][0])
        raise DataError(f"{table.ids[bad]}: every LLM of the pool needs an outcome with a cost to evaluate")
    quality, cost = np.nan_to_num(table.quality, nan=0.0), table.cost_usd
    best = int(np.argmax(quality.mean(axis=0)))
    cheapest = int(np.argmin(cost.sum(axis=0)))

    preds = router.predict(table.queries, cache, progress=progress)
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


# ---------------------------------------------------------------- streams with waiting time


def parse_rate(text: str) -> float:
    """'10/s', '10', '600/min' → queries per second."""
    raw = text.strip().lower()
    unit = 1.0
    for suffix, scale in (("/s", 1.0), ("/min", 1 / 60), ("/h", 1 / 3600)):
        if raw.endswith(suffix):
            raw, unit = raw[: -len(suffix)], scale
            break
    try:
        value = float(raw) * unit
    except ValueError:
        value = -1.0
    if not value > 0 or not np.isfinite(value):
        raise UsageError(f"must be a positive rate like 10/s (got {text!r})", param="rate")
    return value


def arrival_times(records: Sequence[Record], rate_per_s: float | None) -> np.ndarray:
    """Each record's `arrival_s` if every record has one, else evenly spaced at `rate_per_s`."""
    given = [r.arrival_s for r in records]
    if all(a is not None for a in given):
        return np.array(given, dtype=np.float64)
    if rate_per_s is None:
        raise DataError("a stream needs --rate or an arrival_s on every line")
    return np.arange(len(records)) / rate_per_s


def simulate(choose: Choose, arrivals: np.ndarray, quality: np.ndarray, cost: np.ndarray,
             response_tokens: np.ndarray, llm_ids: Sequence[str], estimates: Sequence[LatencyEstimate],
             slots: Sequence[int], tolerance_s: float) -> dict[str, Any]:
    """Replay a stream on a simulated clock. `choose(i, waits) -> j` picks the LLM of query i.

    Service times come from the recorded response tokens; a query that waits longer than the
    tolerance scores quality 0 (its cost is still paid: the call was placed).
    """
    from ..core.latency import QueueState, service_time_s

    queue = QueueState.empty(tuple(llm_ids), list(slots), 0.0)
    n = len(arrivals)
    picks = np.zeros(n, dtype=np.int64)
    waited = np.zeros(n)
    for i in np.argsort(arrivals, kind="stable"):
        now = float(arrivals[i])
        waits = queue.waits(now)
        j = int(choose(i, waits))
        tokens = response_tokens[i, j] if np.isfinite(response_tokens[i, j]) else np.nanmean(response_tokens[:, j])
        queue.admit(j, now, float(service_time_s(estimates[j], tokens)))
        picks[i], waited[i] = j, waits[j]
    late = waited > tolerance_s
    rows = np.arange(n)
    q = np.where(late, 0.0, quality[rows, picks])
    return {"quality": q, "cost": cost[rows, picks], "picks": picks, "late": int(late.sum()),
            "wait_p95_s": float(np.percentile(waited, 95)), "wait_max_s": float(waited.max())}


def evaluate_stream(router: Router, records: Sequence[Record], *, rate_per_s: float | None,
                    tolerance_s: float = 30.0, lambdas: dict[str, float] | None = None, penalty: bool = True,
                    strict: bool = False, preds: Predictions | None = None,
                    cache: Path | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """The router at each budget and the baselines, replayed as a stream under a waiting tolerance;
    `progress` hears of the encoding."""
    from dataclasses import replace

    from ..routing.request import WaitPolicy

    llm_ids = list(router.llm_ids)
    table = outcome_table(records, llm_ids)
    quality, cost = np.nan_to_num(table.quality, nan=0.0), table.cost_usd
    if np.isnan(cost).any():
        raise DataError("every LLM of the pool needs an outcome with a cost to evaluate")
    arrivals = arrival_times(records, rate_per_s)
    est_map = router.latency_defaults()
    estimates = [est_map[i] for i in llm_ids]
    slots = router.slots
    best = int(np.argmax(quality.mean(axis=0)))
    preds = preds if preds is not None else router.predict(table.queries, cache, progress=progress)
    weights = replace(router.weights, tolerance_s=tolerance_s, beta=router.weights.beta if penalty else 0.0)
    ref_q, ref_c = quality[:, best].sum(), cost[:, best].sum()

    def run(name: str, choose: Choose) -> dict[str, Any]:
        sim = simulate(choose, arrivals, quality, cost, table.response_tokens, llm_ids, estimates, slots, tolerance_s)
        counts = np.bincount(sim["picks"], minlength=len(llm_ids))
        return {"policy": name, "mean_quality": round(float(sim["quality"].mean()), 6),
                "total_cost_usd": round(float(sim["cost"].sum()), 6),
                "quality_pct_of_best": round(100 * float(sim["quality"].sum() / ref_q), 2),
                "cost_pct_of_best": round(100 * float(sim["cost"].sum() / ref_c), 2),
                "late": sim["late"], "wait_p95_s": round(sim["wait_p95_s"], 2),
                "picks": {llm_ids[j]: int(k) for j, k in enumerate(counts) if k}}

    policy = WaitPolicy(tolerance_s=tolerance_s, strict=strict)

    def router_choice(lam: float) -> Choose:
        return lambda i, waits: router.choose_one(preds, i, waits, lam, weights, policy)[0]

    if lambdas is None:
        lambdas = {name: p.lam for name, p in router.artifacts.presets.items()}
    results = [run(f"mixllm {name} (λ={lam:.3g})", router_choice(lam)) for name, lam in lambdas.items()]
    results.append(run(f"always {llm_ids[best]}", lambda i, w: best))
    oracle = oracle_indices(quality, cost)
    results.append(run("oracle (ignores waits)", lambda i, w: int(oracle[i])))
    return {"rows": len(records), "best_llm": llm_ids[best], "tolerance_s": tolerance_s, "penalty": penalty,
            "strict_wait": strict, "rate_per_s": rate_per_s, "results": results,
            "note": "percentages are of the best LLM's quality and cost with no waiting constraint"}
