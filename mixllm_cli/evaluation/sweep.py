"""The λ sweep: the router's quality–cost curve beside the baselines' curves, on the same split and features.

Without training records only the baselines that need no training are shown (each single LLM,
their hull, the oracle); with them, every baseline of `baselines.default_baselines` is fitted on
the training records (scikit-learn needed). With a rate the router's points are stream replays
under the waiting tolerance (as `replay.evaluate_stream`); the baselines that pick one LLM per
query go through the same queues, the others are reported as swept, marked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, UsageError
from ..routing.request import WaitPolicy
from ..training.pipeline import outcome_table
from . import baselines as bl
from .frontier import Curve, curve, lambda_grid, refine_lambdas
from .replay import Choose, arrival_times, simulate

if TYPE_CHECKING:
    from ..dataset import Record
    from ..routing.results import Predictions
    from ..routing.router import Router
    from ..training.pipeline import OutcomeTable

WAITS_NOT_SIMULATED = " (waits not simulated)"
Progress = Callable[[str, int, int], None]


class StreamReplay:
    """Sweep outcomes replayed as a stream: every policy's picks go through the same simulated queues."""

    def __init__(self, router: Router, records: Sequence[Record], table: OutcomeTable, preds: Predictions,
                 rate_per_s: float, tolerance_s: float, penalty: bool) -> None:
        self.router, self.table, self.preds = router, table, preds
        self.tolerance_s = tolerance_s
        self.arrivals = arrival_times(records, rate_per_s)
        est_map = router.latency_defaults()
        self.estimates = [est_map[i] for i in table.llm_ids]
        self.weights = replace(router.weights, tolerance_s=tolerance_s, beta=router.weights.beta if penalty else 0.0)
        self.policy = WaitPolicy(tolerance_s=tolerance_s)
        self.quality0 = np.nan_to_num(table.quality, nan=0.0)

    def outcome(self, param: float, choose: Choose) -> bl.Outcome:
        sim = simulate(choose, self.arrivals, self.quality0, self.table.cost_usd, self.table.response_tokens,
                       self.table.llm_ids, self.estimates, self.router.slots, self.tolerance_s)
        return bl.Outcome(param, sim["quality"], sim["cost"])

    def router_outcome(self, lam: float) -> bl.Outcome:
        router, preds, weights, policy = self.router, self.preds, self.weights, self.policy
        return self.outcome(lam, lambda i, w: router.choose_one(preds, i, w, lam, weights, policy)[0])

    def baseline(self, b: bl.Baseline, x: np.ndarray) -> tuple[str, list[bl.Outcome]]:
        """A baseline that picks one LLM per query is replayed through the queues (it does not look
        at waits); one with its own `sweep` (random mixes, the cascade) is reported as swept, marked."""
        if type(b).sweep is not bl.Baseline.sweep:
            return b.name + WAITS_NOT_SIMULATED, b.sweep(x, self.table.quality, self.table.cost_usd)
        params = b.default_params()
        return b.name, [self.outcome(p, _follow(idx)) for p, idx in zip(params, b.route(x, params))]


def sweep(router: Router, records: Sequence[Record], *, n_lambdas: int = 50,
          train_records: Sequence[Record] | None = None, cache: Path | None = None,
          rate_per_s: float | None = None, tolerance_s: float = 30.0, penalty: bool = True,
          progress: Progress | None = None, refine: bool = True,
          dataset: str | None = None) -> dict[str, Any]:
    """The router's quality–cost curve, its presets as points, and the baselines' curves on the same
    split and the same features (module docstring).

    The curve starts from `n_lambdas` log-spaced λ in [1e-6, 1e6] and the presets' λ; with `refine`
    up to 4 × `n_lambdas` more (1 × in a stream replay, where each λ is a simulation) are added
    where neighbouring points lie far apart (`frontier.refine_lambdas`), so the curve passes
    through the points the presets reach. `dataset` names the split in the report.

    `progress(stage, done, total)` hears of each phase as it goes: "encode" (the split, then the
    training split), "λ sweep" (points evaluated, of at most how many) and "baselines" (fitted).
    """
    if n_lambdas < 2:
        raise UsageError(f"need at least 2 values (got {n_lambdas})", param="lambdas")
    llm_ids = list(router.llm_ids)
    table = outcome_table(records, llm_ids)
    if np.isnan(table.cost_usd).any():
        raise DataError("every LLM of the pool needs an outcome with a cost to evaluate")
    quality, cost = table.quality, table.cost_usd
    preds = router.predict(table.queries, cache, progress=progress)
    ref = bl.reference_llm(quality)
    stream = None
    if rate_per_s is not None:
        stream = StreamReplay(router, records, table, preds, rate_per_s, tolerance_s, penalty)
    ref_q, ref_c = float(np.nan_to_num(quality[:, ref]).sum()), float(cost[:, ref].sum())
    if ref_q <= 0 or ref_c <= 0:
        raise DataError("the reference LLM needs a positive total quality and cost to express shares")
    outcomes: dict[float, bl.Outcome] = {}

    preset_lams = {name: float(p.lam) for name, p in router.artifacts.presets.items()}
    start = [*lambda_grid(n_lambdas), *preset_lams.values()]
    extra = 0 if not refine else (1 if stream is not None else 4) * n_lambdas  # a stream λ is a simulation
    at_most = len(set(start)) + extra

    def point(lam: float) -> tuple[float, float]:
        if lam not in outcomes:
            if progress is not None:
                progress("λ sweep", len(outcomes), at_most)
            outcomes[lam] = (stream.router_outcome(lam) if stream is not None
                             else bl.picks_outcome(lam, router.decide(preds, lam)[0], quality, cost))
        return outcomes[lam].point(ref_q, ref_c)

    lams, points = refine_lambdas(start, point, max_new=extra)
    if progress is not None:
        progress("λ sweep", len(outcomes), len(outcomes))
    presets = {name: outcomes[lam] for name, lam in preset_lams.items()}
    label = "mixllm" if rate_per_s is None else f"mixllm (stream {rate_per_s:g}/s, τ {tolerance_s:g} s)"
    curves = [curve(label, points)]
    notes: dict[str, str] = {}
    if train_records is not None:
        fitted, notes = learned_baselines(router, preds, train_records, quality, cost, cache=cache,
                                          progress=progress, stream=stream)
        curves += fitted
    else:
        curves += fixed_baselines(table, ref, stream)
    return {
        "dataset": dataset,
        "rows": len(records),
        "best_llm": llm_ids[ref],
        "baselines": notes,
        "lambdas": [float(v) for v in lams],
        "lambdas_start": n_lambdas,
        "stream": None if rate_per_s is None else {"rate_per_s": rate_per_s, "tolerance_s": tolerance_s,
                                                   "penalty": penalty},
        "presets": preset_points(router, presets, quality, cost, ref),
        "curves": [c.to_dict() for c in curves],
        "baselines_trained_on": None if train_records is None else len(train_records),
    }


def preset_points(router: Router, presets: dict[str, bl.Outcome], quality: np.ndarray, cost: np.ndarray,
                  ref: int) -> dict[str, dict[str, float]]:
    """Each preset's λ and its (cost, quality) as shares of the reference LLM's totals."""
    ref_q, ref_c = float(np.nan_to_num(quality[:, ref]).sum()), float(cost[:, ref].sum())
    return {name: {"lambda": router.artifacts.presets[name].lam,
                   "cost_share": round(float(o.cost.sum() / ref_c), 6),
                   "quality_share": round(float(o.quality.sum() / ref_q), 6)}
            for name, o in presets.items()}


def fixed_baselines(table: OutcomeTable, ref: int, stream: StreamReplay | None) -> list[Curve]:
    """The baselines that need no training: the hull of the single LLMs, the oracle, each single LLM."""
    quality, cost, llm_ids = table.quality, table.cost_usd, table.llm_ids
    if stream is None:
        singles = [bl.picks_outcome(j, np.full(len(quality), j), quality, cost) for j in range(len(llm_ids))]
    else:
        singles = [stream.outcome(j, _always(j)) for j in range(len(llm_ids))]
    pts = bl.outcome_points(singles, quality, cost, ref)
    curves = [curve(bl.HULL_OF_SINGLES, pts)]
    oracle = bl.Oracle().fit(None, quality, cost)
    curves.append(curve(oracle.name + ("" if stream is None else WAITS_NOT_SIMULATED),
                        bl.outcome_points(oracle.sweep(None, quality, cost), quality, cost, ref)))
    curves += [curve(f"always {llm}", pts[j:j + 1]) for j, llm in enumerate(llm_ids)]
    return curves


def learned_baselines(router: Router, preds: Predictions, train_records: Sequence[Record], quality: np.ndarray,
                      cost: np.ndarray, *, cache: Path | None, progress: Progress | None,
                      stream: StreamReplay | None) -> tuple[list[Curve], dict[str, str]]:
    """Every baseline fitted on the training records' features, swept on the split's: (curves, notes).

    Curves come learned baselines first, then the hull of the single LLMs and the oracle, the
    single LLMs last; notes say how each baseline follows its source, and its fitted choices.
    """
    llm_ids = list(router.llm_ids)
    train = outcome_table(train_records, llm_ids)
    x_tr = _features(router, router.predict(train.queries, cache, progress=progress))
    x_te = _features(router, preds)
    policies = bl.default_baselines(llm_ids)
    fitting: list[str] = []

    def fitting_one(name: str) -> None:
        if progress is not None:
            progress("baselines", len(fitting), len(policies))
        fitting.append(name)

    fitted = bl.compare(x_tr, train.quality, train.cost_usd, x_te, quality, cost, llm_ids, progress=fitting_one,
                        replay=None if stream is None else stream.baseline, baselines=policies)
    if progress is not None:
        progress("baselines", len(policies), len(policies))
    notes = {b.name: b.faithful_to for b in policies if not isinstance(b, bl.SingleLLM)}
    for b in policies:
        if isinstance(b, bl.ThresholdRouter):
            notes[b.name] += f" Here: strong {llm_ids[b.strong]}, weak {llm_ids[b.weak]}."
        if isinstance(b, bl.Cascade):
            notes[b.name] += f" Here the chain is {' → '.join(llm_ids[j] for j in b.chain)}."
    order = sorted(fitted, key=lambda c: (c.name.startswith("always "), c.name.startswith(("single", "oracle"))))
    return order, notes


def _follow(idx: np.ndarray) -> Choose:
    """Send query i to LLM idx[i] whatever the waits."""
    return lambda i, waits: int(idx[i])


def _always(j: int) -> Choose:
    """Send every query to LLM j whatever the waits."""
    return lambda i, waits: j


def _features(router: Router, preds: Predictions) -> np.ndarray:
    """The features the heads read (embedding + lexical bag) of predicted queries."""
    from ..core.features import build_features

    if preds.embeddings is None or preds.token_ids is None:
        raise DataError("sweep: the router's predictions hold no embeddings to fit the baselines on")
    return build_features(preds.embeddings, preds.token_ids, router.artifacts.features)
