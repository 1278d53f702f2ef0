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

scikit-learn is imported inside `fit` only; importing this module costs numpy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .frontier import DEFAULT_COST_RANGE, DEFAULT_SHARES, DEFAULT_TARGETS, Curve, curve, lambda_grid

CHEAP_SHARE = 0.10  # the threshold router's weak LLM costs at most this share of the strong one's mean cost
KNN_K = 40


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
    """Base class: training statistics every baseline may use, and `sweep` for policies that pick one LLM."""

    name: str = "baseline"
    faithful_to: str = ""
    kind: str = "sweep"  # "sweep" (a curve), "point" (one setting)

    def __init__(self) -> None:
        self.m = 0
        self.mean_quality = np.zeros(0)  # per LLM, missing → 0 (the scoring convention)
        self.mean_cost = np.zeros(0)  # per LLM, USD per query
        self.cost_scale = 1.0  # the dearest LLM's mean cost: ĉ = USD / cost_scale

    def _fit_stats(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, c = check_split(x, quality, cost_usd)
        self.m = q.shape[1]
        self.mean_quality = np.nan_to_num(q, nan=0.0).mean(axis=0)
        self.mean_cost = c.mean(axis=0)
        self.cost_scale = float(self.mean_cost.max()) or 1.0
        return q, c

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> Baseline:
        self._fit_stats(x, quality, cost_usd)
        return self

    def default_params(self) -> np.ndarray:
        return lambda_grid(50)

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - abstract
        """The LLM index per query for each parameter value."""
        raise NotImplementedError

    def _check_sweep(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.m == 0:
            raise DataError(f"{self.name}: fit it before sweeping")
        q, c = check_split(x, quality, cost_usd)
        if q.shape[1] != self.m:
            raise DataError(f"{self.name}: fitted on {self.m} LLMs, asked to route among {q.shape[1]}")
        return q, c

    def sweep(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        """One Outcome per parameter value: route on `x`, score with the recorded quality and cost."""
        q, c = self._check_sweep(x, quality, cost_usd)
        ps = self.default_params() if params is None else np.asarray(params, dtype=np.float64)
        return [picks_outcome(p, idx, q, c) for p, idx in zip(ps, self.route(np.asarray(x), ps))]


# ---------------------------------------------------------------- policies without a model


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

    def sweep(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        return [Outcome(float("nan"), np.nan_to_num(q, nan=0.0).mean(axis=1), c.mean(axis=1))]


class RandomMix(Baseline):
    """The cheapest LLM, or with probability p the best one; expectation per query, p swept over [0, 1]."""

    name = "random mix cheapest/best"
    faithful_to = ("A random router restricted to the two extreme LLMs of the training split (lowest mean cost, "
                   "highest mean quality): the straight line a query-blind router can always reach. Expected "
                   "values, no sampling noise.")

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> RandomMix:
        self._fit_stats(x, quality, cost_usd)
        self.cheap = int(np.argmin(self.mean_cost))
        self.best = int(np.argmax(self.mean_quality))
        return self

    def default_params(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, 21)

    def sweep(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        q = np.nan_to_num(q, nan=0.0)
        ps = self.default_params() if params is None else np.asarray(params, dtype=np.float64)
        return [Outcome(float(p), (1 - p) * q[:, self.cheap] + p * q[:, self.best],
                        (1 - p) * c[:, self.cheap] + p * c[:, self.best]) for p in ps]


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
        ps = self.default_params() if params is None else np.asarray(params, dtype=np.float64)
        out = []
        for lam in ps:  # at λ = ∞ the cost term vanishes and ties go to the cheaper LLM
            out.append(picks_outcome(lam, trade_picks(truth, c / self.cost_scale, float(lam)), q, c))
        return out


# ---------------------------------------------------------------- predictive routers (RouterBench)


def _fit_quality_heads(family: str, x: np.ndarray, q: np.ndarray, seed: int) -> list[Any]:
    """One mixllm quality head per LLM, fitted on the rows where its quality is known."""
    from ..core.heads import QUALITY
    from ..training.pipeline import fit_head

    heads = []
    for j in range(q.shape[1]):
        known = ~np.isnan(q[:, j])
        heads.append(fit_head(family, QUALITY, x[known], q[known, j], seed=seed))
    return heads


class PredictiveRouter(Baseline):
    """RouterBench's predictive router: argmax of q̂(x) − ĉ/λ with ĉ the LLM's mean training cost per query."""

    def quality_hat(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Predicted quality (n, m)."""
        raise NotImplementedError

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        q_hat = self.quality_hat(x)
        c_norm = self.mean_cost / self.cost_scale
        return [trade_picks(q_hat, c_norm, float(lam)) for lam in params]


class KNNRouter(PredictiveRouter):
    """q̂_j(x) = mean known quality of LLM j over the k training queries most cosine-similar to x."""

    faithful_to = ("RouterBench knn_router.py: cosine k-nearest neighbours (k=50 there, 40 here), the mean "
                   "neighbour quality per LLM with missing cells skipped, argmax of λ·q̂ − cost. RouterBench "
                   "prices an LLM from its per-token prices and mean response length; here by its mean training "
                   "cost per query (the same quantity, measured). Features are mixllm's (embedding + lexical "
                   "bag), not RouterBench's embeddings.")

    def __init__(self, k: int = KNN_K) -> None:
        super().__init__()
        self.k = int(k)
        self.name = f"kNN router (k={self.k})"

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> KNNRouter:
        q, _ = self._fit_stats(x, quality, cost_usd)
        xa = np.asarray(x, dtype=np.float32)
        self.points = xa / np.maximum(np.linalg.norm(xa, axis=1, keepdims=True), 1e-12)
        self.targets = q
        return self

    def quality_hat(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        xa = np.asarray(x, dtype=np.float32)
        xn = xa / np.maximum(np.linalg.norm(xa, axis=1, keepdims=True), 1e-12)
        k = min(self.k, len(self.points))
        fallback = np.nan_to_num(np.nanmean(self.targets, axis=0), nan=0.0)
        out = np.empty((len(xn), self.m))
        for s in range(0, len(xn), chunk):
            sims = xn[s:s + chunk] @ self.points.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            vals = self.targets[top]  # (rows, k, m)
            known = ~np.isnan(vals)
            cnt = known.sum(axis=1)
            mean = np.where(known, vals, 0.0).sum(axis=1) / np.maximum(cnt, 1)
            out[s:s + chunk] = np.where(cnt > 0, mean, fallback)
        return out


class MLPRouter(PredictiveRouter):
    """q̂_j(x) from one small MLP regressor per LLM (mixllm's `mlp` head family), clipped to [0, 1]."""

    name = "MLP router"
    faithful_to = ("RouterBench mlp_router.py: one sklearn MLPRegressor per LLM on its known outcomes, argmax of "
                   "λ·q̂ − cost. RouterBench uses 3 hidden layers of 100 and 200 epochs; here mixllm's `mlp` head "
                   "(one hidden layer of 64, early stopping) on mixllm's features, priced by mean training cost.")

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> MLPRouter:
        q, _ = self._fit_stats(x, quality, cost_usd)
        self.heads = _fit_quality_heads("mlp", np.asarray(x, dtype=np.float32), q, self.seed)
        return self

    def quality_hat(self, x: np.ndarray) -> np.ndarray:
        xa = np.asarray(x, dtype=np.float32)
        return np.stack([h.predict(xa) for h in self.heads], axis=1)


# ---------------------------------------------------------------- MetaLLM, RouteLLM, cascade


class LinearBandit(Baseline):
    """MetaLLM-style: a linear reward model per LLM, reward = quality − p·ĉ, greedy argmax; p swept.

    Ridge is linear in its targets, so the ridge fit of quality − p·ĉ equals ridge(quality) −
    p·ridge(ĉ): two ridge fits per LLM serve every p. p runs over 1/λ for λ on the shared grid.
    """

    name = "linear bandit (MetaLLM-style)"
    faithful_to = ("MetaLLM (Nguyen et al. 2024): per-arm linear reward model of accuracy − p·cost, pick the "
                   "argmax, sweep p. MetaLLM learns online with a UCB bonus; here the reward models are ridge "
                   "regressions (alpha=1) fitted offline on the full-feedback training split and used greedily. "
                   "The cost model is per query (ridge on normalised cost), as the reward is.")

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def default_params(self) -> np.ndarray:
        return 1.0 / lambda_grid(50)

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> LinearBandit:
        from sklearn.linear_model import Ridge

        q, c = self._fit_stats(x, quality, cost_usd)
        xa = np.asarray(x, dtype=np.float64)
        self.models = []
        for j in range(self.m):
            known = ~np.isnan(q[:, j])
            targets = np.stack([q[known, j], c[known, j] / self.cost_scale], axis=1)
            self.models.append(Ridge(alpha=self.alpha).fit(xa[known], targets))
        return self

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        xa = np.asarray(x, dtype=np.float64)
        pred = np.stack([mdl.predict(xa) for mdl in self.models], axis=1)  # (n, m, 2)
        q_hat, c_hat = pred[:, :, 0], pred[:, :, 1]
        out = []
        for p in params:
            score = q_hat - float(p) * c_hat
            out.append(score.argmax(axis=1))
        return out


class ThresholdRouter(Baseline):
    """RouteLLM-style: P(strong LLM beats the weak one | x) from a classifier; strong when P > threshold."""

    name = "threshold router (RouteLLM-style)"
    faithful_to = ("RouteLLM (Ong et al. 2024): two LLMs, a learned P(strong wins), route to the strong one when it "
                   "exceeds a threshold; thresholds at quantiles of P on the training split, as RouteLLM "
                   "calibrates them. Strong = best mean training quality; weak = best mean quality among LLMs "
                   "costing at most 10% of the strong one's mean. The label is 'strong strictly better than "
                   "weak' on recorded outcomes (a missing quality counts 0), not human preference data; the "
                   "classifier is mixllm's logistic head, not RouteLLM's BERT / matrix factorisation.")

    def __init__(self, cheap_share: float = CHEAP_SHARE, seed: int = 0) -> None:
        super().__init__()
        self.cheap_share = float(cheap_share)
        self.seed = seed

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> ThresholdRouter:
        from ..core.heads import QUALITY
        from ..training.pipeline import fit_head

        q, _ = self._fit_stats(x, quality, cost_usd)
        self.strong = int(np.argmax(self.mean_quality))
        cheap = np.nonzero(self.mean_cost <= self.cheap_share * self.mean_cost[self.strong])[0]
        cheap = cheap[cheap != self.strong]
        if len(cheap) == 0:
            cheap = np.array([int(np.argmin(self.mean_cost))])
        self.weak = int(cheap[np.argmax(self.mean_quality[cheap])])
        qz = np.nan_to_num(q, nan=0.0)
        label = (qz[:, self.strong] > qz[:, self.weak]).astype(np.float64)
        xa = np.asarray(x, dtype=np.float32)
        self.head = fit_head("logistic", QUALITY, xa, label, seed=self.seed)
        p_train = self.head.predict(xa)
        self.thresholds = np.unique(np.concatenate([[-np.inf], np.quantile(p_train, np.linspace(0, 1, 51)),
                                                    [np.inf]]))
        return self

    def default_params(self) -> np.ndarray:
        return self.thresholds

    def strong_win_prob(self, x: np.ndarray) -> np.ndarray:
        return self.head.predict(np.asarray(x, dtype=np.float32))

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        p = self.strong_win_prob(x)
        return [np.where(p > t, self.strong, self.weak) for t in params]


class Cascade(Baseline):
    """Try LLMs from cheapest to dearest; accept the first whose predicted success probability ≥ threshold.

    The chain is the LLMs on the training split's (mean cost, mean quality) Pareto front, cheapest
    first (an LLM both dearer and no better than a cheaper one is never worth trying). The last LLM
    always accepts. A query's cost is the SUM of the costs of every LLM tried; its quality is the
    recorded quality of the accepted answer (missing → 0).
    """

    name = "cascade (FrugalGPT/AutoMix-style)"
    faithful_to = ("FrugalGPT (Chen et al. 2023) / AutoMix (Madaan et al. 2023) in spirit: an LLM chain by cost "
                   "and a per-stage acceptance score, every call tried is paid. Differences: the score is a "
                   "per-LLM logistic success predictor that sees the query only (mixllm's routing datasets hold no answer "
                   "text, so no answer-aware scorer or self-verification), one threshold shared by all stages, and "
                   "the chain is the training Pareto front rather than FrugalGPT's searched permutation. A "
                   "query-only score makes the cascade a router that also pays for the rejected calls.")

    def __init__(self, chain: Sequence[int] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.chain_given = None if chain is None else [int(j) for j in chain]
        self.seed = seed

    def fit(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray) -> Cascade:
        q, _ = self._fit_stats(x, quality, cost_usd)
        if self.chain_given is not None:
            if not self.chain_given or any(not 0 <= j < self.m for j in self.chain_given):
                raise DataError(f"{self.name}: chain must list LLM indices in [0, {self.m})")
            self.chain = list(self.chain_given)
        else:
            self.chain = []
            for j in np.lexsort((-self.mean_quality, self.mean_cost)):
                if not self.chain or self.mean_quality[j] > self.mean_quality[self.chain[-1]]:
                    self.chain.append(int(j))
        xa = np.asarray(x, dtype=np.float32)
        self.heads = _fit_quality_heads("logistic", xa, q[:, self.chain[:-1]], self.seed)
        return self

    def default_params(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, 51)

    def accepted_stage(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        """For each threshold, the chain position (0-based) whose answer each query accepts."""
        xa = np.asarray(x, dtype=np.float32)
        last = len(self.chain) - 1
        if last == 0:
            return [np.zeros(len(xa), dtype=np.int64) for _ in params]
        conf = np.stack([h.predict(xa) for h in self.heads], axis=1)  # (n, stages − 1)
        out = []
        for t in params:
            ok = np.concatenate([conf >= t, np.ones((len(xa), 1), dtype=bool)], axis=1)
            out.append(ok.argmax(axis=1))
        return out

    def sweep(self, x: np.ndarray, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        ps = self.default_params() if params is None else np.asarray(params, dtype=np.float64)
        chain = np.array(self.chain)
        paid = np.cumsum(c[:, chain], axis=1)  # paid[i, s]: cost of trying stages 0..s
        rows = np.arange(len(q))
        out = []
        for t, stage in zip(ps, self.accepted_stage(np.asarray(x), ps)):
            out.append(Outcome(float(t), np.nan_to_num(q[rows, chain[stage]], nan=0.0), paid[rows, stage]))
        return out


# ---------------------------------------------------------------- the harness


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
            targets: Sequence[float] = DEFAULT_TARGETS, progress: Any = None,
            replay: Any = None) -> list[Curve]:
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
    kw = {"cost_range": cost_range, "shares": shares, "targets": targets}
    curves = [curve(name, outcome_points(outs, tq, tc, ref), **kw) for name, outs in (extra or {}).items()]
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
        curves.append(curve(name, pts, **kw))
    if singles:
        curves.append(curve("single LLMs (hull; RouterBench zero router)", np.vstack(singles), **kw))
    return curves
