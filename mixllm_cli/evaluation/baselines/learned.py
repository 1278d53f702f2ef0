"""Baselines that learn from the training split: RouterBench's kNN and MLP routers, a MetaLLM-style
linear bandit, a RouteLLM-style threshold router and a FrugalGPT/AutoMix-style cascade.

scikit-learn (and the head fitters that use it) is imported inside `fit` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ...errors import DataError
from ..frontier import lambda_grid
from .base import Baseline, Outcome, trade_picks

if TYPE_CHECKING:
    from ...core.heads import Head

CHEAP_SHARE = 0.10  # the threshold router's weak LLM costs at most this share of the strong one's mean cost
KNN_K = 40


# ---------------------------------------------------------------- predictive routers (RouterBench)


def _fit_quality_heads(family: str, x: np.ndarray, q: np.ndarray, seed: int) -> list[Head]:
    """One mixllm quality head per LLM, fitted on the rows where its quality is known, on up to
    `fit_threads()` threads (each fit is independent and seeded: the heads do not depend on it)."""
    from concurrent.futures import ThreadPoolExecutor

    from ...core.heads import QUALITY
    from ...training.fitters import fit_head
    from ...training.pipeline import fit_threads

    def one(j: int) -> Head:
        known = ~np.isnan(q[:, j])
        return fit_head(family, QUALITY, x if known.all() else x[known], q[known, j], seed=seed)

    with ThreadPoolExecutor(max_workers=fit_threads()) as pool:
        return list(pool.map(one, range(q.shape[1])))


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

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> KNNRouter:
        q, _ = self._fit_stats(x, quality, cost_usd)
        xa = np.asarray(self.features(x), dtype=np.float32)
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

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> MLPRouter:
        q, _ = self._fit_stats(x, quality, cost_usd)
        self.heads = _fit_quality_heads("mlp", np.asarray(self.features(x), dtype=np.float32), q, self.seed)
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

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> LinearBandit:
        """scikit-learn's Ridge(alpha) per LLM on (quality, normalised cost), solved for every LLM
        whose quality is known on the same rows at once from one Gram matrix (training/ridge.py)."""
        from ...training.ridge import RidgeRows

        q, c = self._fit_stats(x, quality, cost_usd)
        xa = np.asarray(self.features(x))
        known = ~np.isnan(q)
        self.coef = np.zeros((xa.shape[1], self.m, 2))
        self.intercept = np.zeros((self.m, 2))
        groups: dict[bytes, list[int]] = {}
        for j in range(self.m):
            groups.setdefault(np.packbits(known[:, j]).tobytes(), []).append(j)
        for cols in groups.values():
            rows, at = np.flatnonzero(known[:, cols[0]]), np.asarray(cols)
            targets = np.concatenate([q[np.ix_(rows, at)], c[np.ix_(rows, at)] / self.cost_scale], axis=1)
            coef, intercept = RidgeRows(xa, rows, self.alpha).fit(np.ones(len(rows), bool), targets)
            k = len(cols)
            self.coef[:, cols, 0], self.coef[:, cols, 1] = coef[:, :k], coef[:, k:]
            self.intercept[cols, 0], self.intercept[cols, 1] = intercept[:k], intercept[k:]
        return self

    def route(self, x: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        xa = np.asarray(x, dtype=np.float64)
        pred = np.einsum("nd,dmt->nmt", xa, self.coef) + self.intercept  # (n, m, 2)
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

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> ThresholdRouter:
        from ...core.heads import QUALITY
        from ...training.fitters import fit_head

        q, _ = self._fit_stats(x, quality, cost_usd)
        self.strong = int(np.argmax(self.mean_quality))
        cheap = np.nonzero(self.mean_cost <= self.cheap_share * self.mean_cost[self.strong])[0]
        cheap = cheap[cheap != self.strong]
        if len(cheap) == 0:
            cheap = np.array([int(np.argmin(self.mean_cost))])
        self.weak = int(cheap[np.argmax(self.mean_quality[cheap])])
        qz = np.nan_to_num(q, nan=0.0)
        label = (qz[:, self.strong] > qz[:, self.weak]).astype(np.float64)
        xa = np.asarray(self.features(x), dtype=np.float32)
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

    def fit(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray) -> Cascade:
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
        xa = np.asarray(self.features(x), dtype=np.float32)
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

    def sweep(self, x: np.ndarray | None, quality: np.ndarray, cost_usd: np.ndarray,
              params: Sequence[float] | None = None) -> list[Outcome]:
        q, c = self._check_sweep(x, quality, cost_usd)
        ps = self.params(params)
        chain = np.array(self.chain)
        paid = np.cumsum(c[:, chain], axis=1)  # paid[i, s]: cost of trying stages 0..s
        rows = np.arange(len(q))
        out = []
        for t, stage in zip(ps, self.accepted_stage(self.features(x), ps)):
            out.append(Outcome(float(t), np.nan_to_num(q[rows, chain[stage]], nan=0.0), paid[rows, stage]))
        return out
