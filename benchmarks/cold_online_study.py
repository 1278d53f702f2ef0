"""When should a cold LLM's online heads take over from its prior? (docs/ONLINE.md, "A cold LLM learns online")

    python benchmarks/cold_online_study.py [--draws 6] [--budgets low,medium,high]

On the shipped set's training rows (11 LLMs, 2,217 queries), each LLM in turn plays the new one.
700 queries are held out; its heads are fitted on n random other rows with the fitter the online
path uses (`learning.updates._fit_or_constant`: logistic with the offline C, exact ridge on log1p
tokens; numpy only).

1. Accuracy: the held-out Brier score of the quality head against the constant fitted on the same
   n outcomes (their mean) and against the cold LLM's optimistic prior; the length head's squared
   error on log1p tokens against its constant.
2. Routing: every LLM's heads refitted on the same 1,517 non-held-out rows (so the held-out queries
   are out of sample for all), route the held-out queries at a preset's λ with the new LLM
   (a) cold as the router serves it (best pool mean quality, median length, A = I, offered on 5%
   of queries), (b) warm with heads and A⁻¹ from n outcomes, (c) with heads from all 1,517 rows;
   report the realised utility λ/(λ+1)·quality − cost/(λ+1) (the score the router maximises,
   cost normalised by the set's cost scale), quality, cost and the new LLM's share of queries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mixllm_cli.artifacts import load_artifact_set
from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.core import decision
from mixllm_cli.core.features import build_features
from mixllm_cli.learning.updates import _fit_or_constant
from mixllm_cli.training_rows import load_training_rows

EXPLORE_SHARE = 0.05


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--accuracy-n", default="5,10,20,30,60,100,200,400")
    ap.add_argument("--routing-n", default="10,20,30,45,60,100,200")
    ap.add_argument("--budgets", default="low,medium,high")
    args = ap.parse_args()
    arts = load_artifact_set(ROOT / "artifacts")
    catalogue = load_catalogue(ROOT / "models.yaml")
    rows = load_training_rows(ROOT / "artifacts" / "training_rows.npz")
    e = arts.embed(rows.embeddings).astype(np.float64)
    x = build_features(e, rows.token_ids, arts.features).astype(np.float64)
    ids = rows.llm_ids
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    test, pool = perm[:700], perm[700:]
    keys = rng.random(len(test))  # which held-out queries fall in the exploration share

    def draw(n: int, r: int) -> np.ndarray:
        return np.random.default_rng(1000 * r + n).choice(pool, n, replace=False)

    # ---------------------------------------------------------------- 1. accuracy
    print("1. accuracy: mean over LLMs and draws (held-out Brier; length: squared error on log1p tokens)")
    print("n | Brier head | Brier constant(mean of n) | Brier optimistic prior | head beats constant | "
          "length head | length constant | head beats constant")
    for n in [int(v) for v in args.accuracy_n.split(",")]:
        out = []
        for j in range(len(ids)):
            q, tok = rows.quality[:, j], rows.response_tokens[:, j]
            prior = max(np.nanmean(rows.quality[:, k]) for k in range(len(ids)) if k != j)
            tq, tl = test[~np.isnan(q[test])], test[~np.isnan(tok[test])]
            for r in range(args.draws):
                s = draw(n, r)
                sq, sl = s[~np.isnan(q[s])], s[~np.isnan(tok[s])]
                w, b = _fit_or_constant(x[sq], q[sq], logistic=True)
                brier = np.mean((sigmoid(x[tq] @ w + b) - q[tq]) ** 2)
                const = np.mean((q[sq].mean() - q[tq]) ** 2)
                w, b = _fit_or_constant(x[sl], np.log1p(tok[sl]), logistic=False)
                y = np.log1p(tok[tl])
                out.append((brier, const, np.mean((prior - q[tq]) ** 2), np.mean((x[tl] @ w + b - y) ** 2),
                            np.mean((np.log1p(tok[sl]).mean() - y) ** 2)))
        a = np.array(out)
        print(n, *(f"{v:.4f}" for v in a[:, :3].mean(axis=0)), f"{(a[:, 0] < a[:, 1]).mean():.0%}",
              *(f"{v:.3f}" for v in a[:, 3:].mean(axis=0)), f"{(a[:, 3] < a[:, 4]).mean():.0%}", flush=True)

    # ---------------------------------------------------------------- 2. routing
    p_tok = np.array([len(t) for t in rows.token_ids], dtype=np.float64)[test]
    pin = np.array([catalogue.get(i).input_usd_per_mtok for i in ids]) / 1e6
    pout = np.array([catalogue.get(i).output_usd_per_mtok for i in ids]) / 1e6
    true_q = np.nan_to_num(rows.quality[test], nan=0.0)
    true_tok = np.where(np.isnan(rows.response_tokens[test]), np.nanmedian(rows.response_tokens),
                        rows.response_tokens[test])
    true_cost = (p_tok[:, None] * pin + true_tok * pout) / arts.cost_scale_usd
    qhat, lhat = np.zeros((len(test), len(ids))), np.zeros((len(test), len(ids)))
    for k in range(len(ids)):
        ok = pool[~np.isnan(rows.quality[pool, k])]
        w, b = _fit_or_constant(x[ok], rows.quality[ok, k], logistic=True)
        qhat[:, k] = sigmoid(x[test] @ w + b)
        ok = pool[~np.isnan(rows.response_tokens[pool, k])]
        w, b = _fit_or_constant(x[ok], np.log1p(rows.response_tokens[ok, k]), logistic=False)
        lhat[:, k] = np.expm1(np.clip(x[test] @ w + b, 0, 20))
    a_pool = np.linalg.inv(np.eye(e.shape[1]) + e[pool].T @ e[pool])
    unc = np.repeat(((e[test] @ a_pool) * e[test]).sum(axis=1)[:, None], len(ids), axis=1)
    mean_q, mean_len = np.nanmean(rows.quality[pool], axis=0), np.nanmean(rows.response_tokens[pool], axis=0)
    ns = [int(v) for v in args.routing_n.split(",")]
    for budget in args.budgets.split(","):
        lam = arts.presets[budget].lam
        res: dict[str, list[tuple[float, float, float, float]]] = {}

        def route(j: int, qj: np.ndarray, lj: np.ndarray, uj: np.ndarray, offered: np.ndarray | bool,
                  lam: float = lam) -> tuple[float, float, float, float]:
            q, ln, u = qhat.copy(), lhat.copy(), unc.copy()
            q[:, j], ln[:, j], u[:, j] = qj, lj, uj
            cost = (p_tok[:, None] * pin + ln * pout) / arts.cost_scale_usd
            avail = np.ones_like(q, dtype=bool)
            avail[:, j] = offered
            idx, _ = decision.route_indices(q, cost, u, np.zeros_like(q), lam, decision.Weights(), avail)
            r = np.arange(len(test))
            got_q, got_c = true_q[r, idx], true_cost[r, idx]
            return (float(np.mean(lam * got_q - got_c) / (lam + 1)), float(got_q.mean()), float(got_c.mean()),
                    float(np.mean(idx == j)))

        for j in range(len(ids)):
            others = [k for k in range(len(ids)) if k != j]
            res.setdefault("cold", []).append(route(
                j, np.full(len(test), mean_q[others].max()), np.full(len(test), np.median(mean_len[others])),
                (e[test] ** 2).sum(axis=1), keys < EXPLORE_SHARE))
            res.setdefault("all rows", []).append(route(j, qhat[:, j], lhat[:, j], unc[:, j], True))
            for n in ns:
                for r in range(args.draws):
                    s = draw(n, r)
                    wq, bq = _fit_or_constant(x[s], np.nan_to_num(rows.quality[s, j]), logistic=True)
                    tok = np.where(np.isnan(rows.response_tokens[s, j]), np.nanmedian(rows.response_tokens),
                                   rows.response_tokens[s, j])
                    wl, bl = _fit_or_constant(x[s], np.log1p(tok), logistic=False)
                    a_inv = np.linalg.inv(np.eye(e.shape[1]) + e[s].T @ e[s])
                    res.setdefault(f"n={n}", []).append(route(
                        j, sigmoid(x[test] @ wq + bq), np.expm1(np.clip(x[test] @ wl + bl, 0, 20)),
                        ((e[test] @ a_inv) * e[test]).sum(axis=1), True))
        print(f"\n2. routing at {budget} (λ = {lam:.3g}): mean over the 11 LLMs as the new one")
        print("new LLM's heads | utility ×100 | quality ×100 | cost | its share of queries")
        for name, v in res.items():
            a = np.array(v)
            print(name, f"{100 * a[:, 0].mean():.2f}", f"{100 * a[:, 1].mean():.2f}", f"{a[:, 2].mean():.3f}",
                  f"{a[:, 3].mean():.1%}", flush=True)


if __name__ == "__main__":
    main()
