"""The comparison: fit every baseline on train, sweep it on test, read each off as a frontier `Curve`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...errors import DataError
from ..frontier import DEFAULT_COST_RANGE, DEFAULT_SHARES, DEFAULT_TARGETS, Curve, curve
from .base import Baseline, Outcome, check_split
from .learned import Cascade, KNNRouter, LinearBandit, MLPRouter, ThresholdRouter
from .simple import Oracle, RandomMix, RandomRouter, SingleLLM

# `replay(baseline, test_x)`: (name, outcomes) computed another way, or None to keep `baseline.sweep`
Replay = Callable[[Baseline, np.ndarray], tuple[str, Sequence[Outcome]] | None]

HULL_OF_SINGLES = "single LLMs (hull; RouterBench zero router)"


def default_baselines(llm_ids: Sequence[str], seed: int = 0) -> list[Baseline]:
    """Every baseline of the comparison, unfitted: each single LLM, random, oracle and the learned routers."""
    out: list[Baseline] = [SingleLLM(j, llm) for j, llm in enumerate(llm_ids)]
    out += [RandomRouter(), RandomMix(), Oracle(), KNNRouter(), MLPRouter(seed), LinearBandit(),
            ThresholdRouter(seed=seed), Cascade(seed=seed)]
    return out


def reference_llm(quality: np.ndarray) -> int:
    """The best single LLM of a split: highest mean quality, missing → 0 (as `evaluation`)."""
    return int(np.argmax(np.nan_to_num(np.asarray(quality, dtype=np.float64), nan=0.0).mean(axis=0)))


def outcome_points(outcomes: Sequence[Outcome], quality: np.ndarray, cost_usd: np.ndarray,
                   ref: int) -> np.ndarray:
    """(cost_share, quality_share) of each outcome, as shares of LLM `ref`'s totals on the split."""
    ref_q = float(np.nan_to_num(quality[:, ref], nan=0.0).sum())
    ref_c = float(cost_usd[:, ref].sum())
    if ref_q <= 0 or ref_c <= 0:
        raise DataError("the reference LLM needs a positive total quality and cost to express shares")
    return np.array([o.point(ref_q, ref_c) for o in outcomes])


def compare(train_x: np.ndarray, train_q: np.ndarray, train_c: np.ndarray,
            test_x: np.ndarray, test_q: np.ndarray, test_c: np.ndarray,
            llm_ids: Sequence[str], extra: dict[str, Sequence[Outcome]] | None = None,
            baselines: Sequence[Baseline] | None = None,
            cost_range: tuple[float, float] = DEFAULT_COST_RANGE, shares: Sequence[float] = DEFAULT_SHARES,
            targets: Sequence[float] = DEFAULT_TARGETS, progress: Callable[[str], object] | None = None,
            replay: Replay | None = None) -> list[Curve]:
    """Fit every baseline on train, sweep it on test, and return one `Curve` per policy.

    `extra` holds outcomes computed elsewhere on the same test split (mixllm's λ sweep) and comes
    first. Shares are of the test split's best single LLM (`reference_llm`). Single LLMs give one
    curve each (a point) plus "single LLMs (hull)": the hull of all of them, RouterBench's Zero router
    (random mixes of fixed LLMs, no query information).

    `replay(baseline, test_x) -> (name, outcomes) | None` may replace a baseline's own sweep (the
    stream evaluation replays picks through the waiting-time simulator); None keeps `sweep`.
    """
    tq, tc = check_split(test_x, test_q, test_c)
    check_split(train_x, train_q, train_c)
    if tq.shape[1] != len(llm_ids) or np.shape(train_q)[1] != len(llm_ids):
        raise DataError(f"{len(llm_ids)} LLM ids for quality tables of {np.shape(train_q)[1]} and {tq.shape[1]} LLMs")
    ref = reference_llm(tq)

    def frontier(name: str, pts: np.ndarray) -> Curve:
        return curve(name, pts, cost_range=cost_range, shares=shares, targets=targets)

    curves = [frontier(name, outcome_points(outs, tq, tc, ref)) for name, outs in (extra or {}).items()]
    singles = []
    for b in baselines if baselines is not None else default_baselines(llm_ids):
        if progress is not None:
            progress(b.name)
        b.fit(train_x, train_q, train_c)
        replayed = replay(b, test_x) if replay is not None else None
        name, outs = replayed if replayed is not None else (b.name, b.sweep(test_x, tq, tc))
        pts = outcome_points(outs, tq, tc, ref)
        if isinstance(b, SingleLLM):
            singles.append(pts)
        curves.append(frontier(name, pts))
    if singles:
        curves.append(frontier(HULL_OF_SINGLES, np.vstack(singles)))
    return curves
