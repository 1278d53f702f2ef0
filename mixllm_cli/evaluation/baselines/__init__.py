"""Baseline routing policies replayed on recorded outcomes, and their frontiers beside mixllm's.

Every baseline has one interface:

- `fit(x, quality, cost_usd)` on the training split: `x` (n, d) query features, `quality` (n, m)
  recorded outcomes in [0, 1] with NaN where missing, `cost_usd` (n, m) the real cost of each call.
- `sweep(x, quality, cost_usd, params=None) -> list[Outcome]` on the split being scored: for each
  value of the baseline's own parameter (λ, a threshold, a mixing share) the per-query quality
  obtained and USD paid. Decisions read `x` only; `quality` and `cost_usd` only score them (the
  oracle alone decides from `quality`, which is what makes it the oracle).

Scoring convention (as `evaluation`): a missing quality scores 0 and the cost of every call placed
is paid. A policy that picks one LLM pays that call; the cascade pays every LLM it tried.

Cost in the trade-offs is normalised like mixllm's ĉ: USD divided by the mean per-query cost of
the dearest LLM on the training split, so a λ means the same for every policy (score
q̂ − ĉ/λ ≡ λ/(λ+1)·q̂ − 1/(λ+1)·ĉ, mixllm's trade term without its uncertainty bonus).

Training targets skip missing cells (RouterBench's kNN and MLP routers do the same), except where
a label compares two LLMs (the threshold router), where a missing quality counts as 0.

Modules: `base` (Outcome, split checks, the Baseline class), `simple` (single LLM, random, oracle),
`learned` (kNN, MLP, linear bandit, threshold, cascade), `harness` (the list of baselines and
`compare`). scikit-learn is imported inside `fit` only; importing this package costs numpy alone.
"""

from __future__ import annotations

from .base import Baseline, Outcome, check_split, picks_outcome, trade_picks
from .harness import HULL_OF_SINGLES, compare, default_baselines, outcome_points, reference_llm
from .learned import CHEAP_SHARE, KNN_K, Cascade, KNNRouter, LinearBandit, MLPRouter, PredictiveRouter, ThresholdRouter
from .simple import Oracle, RandomMix, RandomRouter, SingleLLM

__all__ = [
    "CHEAP_SHARE",
    "HULL_OF_SINGLES",
    "KNN_K",
    "Baseline",
    "Cascade",
    "KNNRouter",
    "LinearBandit",
    "MLPRouter",
    "Oracle",
    "Outcome",
    "PredictiveRouter",
    "RandomMix",
    "RandomRouter",
    "SingleLLM",
    "ThresholdRouter",
    "check_split",
    "compare",
    "default_baselines",
    "outcome_points",
    "picks_outcome",
    "reference_llm",
    "trade_picks",
]
