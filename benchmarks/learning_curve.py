"""Is the issue-6 target (97.25% of GPT-4's quality at ≤ 20% of its cost) limited by data?

    python benchmarks/learning_curve.py [--write benchmarks/out/learning_curve.md] [--no-oof]

The shipped recipe throughout: the lexical spec (idf) fitted on the training rows of each fit,
features from build_features, one logistic quality head per LLM (C = LOGISTIC_C) and one ridge
length head per LLM pricing the query, with one cost unit for all fits (the mean cost of a GPT-4
call on train, as in head_variants.py and the shipped artifact). The router's λ is swept over
training.presets.LAMBDA_GRID and the `frontier` helper of compare_heads.py (as in head_variants.py) gives
the best % of always-GPT-4's quality reachable within 10/15/20/25% of its cost. Measurement only:
nothing is chosen here.

1. Learning curve on test: heads fitted on 25/50/75/100% of data/routerbench/train.jsonl (three
   random subsets per fraction below 100%: mean and min–max), scored on the test split. The q@X%
   columns are the frontier helper's best point within the cap; "hull q@20%" is q@20% on the
   convex hull of the swept points (mixllm_cli.evaluation.frontier, the statistic docs/RESULTS.md reports);
   the bootstrap SE (500 resamples of the test queries) is the noise of one q@20% measurement.
2. The same on train out of fold (5 folds, seed 0): each fold's heads see a random fraction of
   the other four folds (skip with --no-oof).
3. A "more data" ceiling: 5 folds over test; each fold's heads are fitted on all of train plus
   the other four fifths of test and predict the held-out fifth; the concatenated predictions
   are scored on test (~2,990 training queries instead of 2,225).
4. A least-squares line q@20% = a + b·ln(n) through every run of each curve, the n it puts at
   97.25% (with its slope, and with the slope plus two standard errors), and what the test line
   predicts at the ceiling's n (a rough extrapolation, nothing more).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from _common import ROOT, emit, encode_cached
from compare_heads import frontier

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.core.decision import route_indices
from mixllm_cli.core.features import build_features, fit_feature_spec
from mixllm_cli.core.heads import LENGTH, LOGISTIC_C, QUALITY
from mixllm_cli.dataset import read_dataset
from mixllm_cli.evaluation.frontier import quality_at_cost
from mixllm_cli.training.fitters import fit_head, fold_ids
from mixllm_cli.training.pipeline import outcome_table
from mixllm_cli.training.presets import LAMBDA_GRID

CAPS = (0.10, 0.15, 0.20, 0.25)
FRACTIONS = (0.25, 0.50, 0.75, 1.0)
SEEDS = (0, 1, 2)
TARGET = 0.9725
BOOTSTRAPS = 500


@dataclass
class Pool:
    """Train and test rows side by side (train first), as the heads and the scorer need them."""

    emb: np.ndarray
    tok: list[np.ndarray]
    n_tokens: np.ndarray
    quality: np.ndarray
    tokens_out: np.ndarray
    cost: np.ndarray
    n_train: int


def load_pool(cat) -> Pool:
    parts = []
    for split in ("train", "test"):
        t = outcome_table(read_dataset(ROOT / f"data/routerbench/{split}.jsonl"), list(cat.ids))
        parts.append((t, encode_cached(ROOT / "artifacts/encoder", t.queries)))
    (tr, etr), (te, ete) = parts
    return Pool(emb=np.vstack([etr.embeddings, ete.embeddings]), tok=list(etr.token_ids) + list(ete.token_ids),
                n_tokens=np.concatenate([etr.n_tokens, ete.n_tokens]).astype(np.float64),
                quality=np.vstack([tr.quality, te.quality]), tokens_out=np.vstack([tr.response_tokens, te.response_tokens]),
                cost=np.vstack([tr.cost_usd, te.cost_usd]), n_train=len(tr.ids))


def fit_predict(p: Pool, fit: np.ndarray, pred: np.ndarray, p_in: np.ndarray, p_out: np.ndarray, scale: float):
    """The shipped recipe fitted on rows `fit`: (quality, normalised cost) predictions for rows `pred`."""
    spec = fit_feature_spec([p.tok[i] for i in fit], 4096)
    xf = build_features(p.emb[fit], [p.tok[i] for i in fit], spec)
    xp = build_features(p.emb[pred], [p.tok[i] for i in pred], spec)
    n_llm = p.quality.shape[1]
    q, length = np.zeros((len(pred), n_llm)), np.zeros((len(pred), n_llm))
    for j in range(n_llm):
        yq, yl = p.quality[fit, j], p.tokens_out[fit, j]
        ok = ~np.isnan(yq)
        q[:, j] = fit_head("logistic", QUALITY, xf[ok], yq[ok], c=LOGISTIC_C).predict(xp)
        ok = ~np.isnan(yl)
        length[:, j] = fit_head("ridge", LENGTH, xf[ok], yl[ok]).predict(xp)
    return q, (p.n_tokens[pred, None] * p_in + length * p_out) / scale


def choices(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The LLM picked for every row at every λ of the grid: (n_λ, n_rows)."""
    zeros = np.zeros_like(q)
    return np.stack([route_indices(q, c, zeros, zeros, lam)[0] for lam in LAMBDA_GRID])


def score(q: np.ndarray, c: np.ndarray, quality: np.ndarray, cost: np.ndarray, ref: int) -> dict:
    """Frontier (best point within each cap), hull q@20% and a bootstrap SE of the frontier q@20%."""
    fr = frontier(q, c, quality, cost, ref, CAPS)
    idx, rows = choices(q, c), np.arange(len(quality))
    qq, cc = np.nan_to_num(quality[rows, idx]), cost[rows, idx]  # (n_λ, n_rows)
    pts = np.stack([cc.sum(1) / cost[:, ref].sum(), qq.sum(1) / np.nansum(quality[:, ref])], 1)
    w = np.random.default_rng(0).multinomial(len(rows), np.full(len(rows), 1 / len(rows)), BOOTSTRAPS).T
    bc = (cc @ w) / (cost[:, ref] @ w)
    bq = (qq @ w) / (np.nan_to_num(quality[:, ref]) @ w)
    boot = np.where(bc <= 0.20, bq, 0.0).max(0)
    return {"fr": fr, "hull20": quality_at_cost(pts, [0.20])[0.20], "se20": float(boot.std())}


def fmt(vals: list[dict], key: str, i: int | None = None) -> str:
    v = np.array([r[key] if i is None else r[key][i] for r in vals], dtype=float) * 100
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ({v.min():.1f}–{v.max():.1f})"


def line_fit(ns: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float]:
    """The centroid (mean ln n, mean y), the slope b and its standard error of ys = a + b·ln(ns) (OLS)."""
    x = np.log(ns)
    b, a = np.polyfit(x, ys, 1)
    resid = ys - (a + b * x)
    se = np.sqrt(resid @ resid / max(len(x) - 2, 1) / ((x - x.mean()) @ (x - x.mean())))
    return float(x.mean()), float(ys.mean()), float(b), float(se)


def needed(x0: float, y0: float, b: float, n_now: int) -> str:
    """The n at which the line through the centroid (x0, y0) with slope b reaches the target (× n_now)."""
    if b <= 0:
        return "never (slope ≤ 0)"
    n = float(np.exp(x0 + (TARGET - y0) / b))
    return f"{n:,.0f} (×{n / n_now:,.1f})" if n < 1e12 else f"> 10¹² (×{n / n_now:.0e})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None)
    ap.add_argument("--no-oof", action="store_true", help="skip the train out-of-fold curve")
    args = ap.parse_args()
    started = time.perf_counter()
    cat = load_catalogue(ROOT / "models.yaml")
    p = load_pool(cat)
    ref = 0  # gpt-4-1106-preview, the dearest LLM (as in head_variants.py)
    p_in = np.array([m.input_usd_per_mtok for m in cat.llms]) / 1e6
    p_out = np.array([m.output_usd_per_mtok for m in cat.llms]) / 1e6
    train, test = np.arange(p.n_train), np.arange(p.n_train, len(p.quality))
    # One cost unit for every fit: the mean cost of a GPT-4 call on train (the shipped artifact's
    # cost_scale_usd). A unit per fit would give the same λ a different meaning in each fold.
    scale = float(np.nanmean(p.cost[train, ref]))
    qt, ct = p.quality[test], p.cost[test]
    head = ("| training queries | " + " | ".join(f"q@{int(100 * c)}%" for c in CAPS)
            + " | hull q@20% | bootstrap SE of q@20% |")
    rule = "|---|" + "---|" * (len(CAPS) + 2)

    lines = ["#### 1. Learning curve, scored on test (953 queries)", "",
             ("Heads fitted on a random fraction of train (3 subsets below 100%: mean (min–max)); % of "
             "always-GPT-4's quality on test within each cost share."), "", head, rule]
    curve = []
    for frac in FRACTIONS:
        res = []
        for seed in SEEDS if frac < 1 else (0,):
            sub = np.sort(np.random.default_rng(seed).permutation(train)[: round(frac * len(train))])
            res.append(score(*fit_predict(p, sub, test, p_in, p_out, scale), qt, ct, ref))
        n = round(frac * len(train))
        curve.append((n, res))
        lines.append(f"| {n} ({100 * frac:.0f}% of train) | " + " | ".join(fmt(res, "fr", i) for i in range(len(CAPS)))
                     + f" | {fmt(res, 'hull20')} | {100 * np.mean([r['se20'] for r in res]):.1f} |")
        print(lines[-1], flush=True)

    folds = fold_ids(len(test), 5, 0)
    q_ceil, c_ceil = np.zeros((len(test), len(cat.ids))), np.zeros((len(test), len(cat.ids)))
    for f in range(5):
        fit = np.concatenate([train, test[folds != f]])
        q_ceil[folds == f], c_ceil[folds == f] = fit_predict(p, fit, test[folds == f], p_in, p_out, scale)
    ceil = score(q_ceil, c_ceil, qt, ct, ref)
    n_ceil = len(train) + round(0.8 * len(test))
    lines.append(f"| {n_ceil} (ceiling: all train + 4/5 of test, 5 folds over test) | "
                 + " | ".join(fmt([ceil], "fr", i) for i in range(len(CAPS)))
                 + f" | {fmt([ceil], 'hull20')} | {100 * ceil['se20']:.1f} |")
    print(lines[-1], flush=True)

    oof_curve = []
    if not args.no_oof:
        lines += ["", "#### 2. Learning curve on train, out of fold (5 folds, seed 0)", "",
                  "Each fold's heads see a random fraction of the other four folds (3 subsets below 100%).", "",
                  head.replace(" | bootstrap SE of q@20% |", " |"), rule[:-4]]
        tfolds = fold_ids(len(train), 5, 0)
        qtr, ctr = p.quality[train], p.cost[train]
        for frac in FRACTIONS:
            res = []
            for seed in SEEDS if frac < 1 else (0,):
                rng = np.random.default_rng(seed)
                q_oof, c_oof = np.zeros_like(qtr), np.zeros_like(qtr)
                for f in range(5):
                    rest = train[tfolds != f]
                    sub = np.sort(rng.permutation(rest)[: round(frac * len(rest))])
                    q_oof[tfolds == f], c_oof[tfolds == f] = fit_predict(p, sub, train[tfolds == f], p_in, p_out, scale)
                res.append(score(q_oof, c_oof, qtr, ctr, ref))
            n = round(frac * 0.8 * len(train))
            oof_curve.append((n, res))
            lines.append(f"| {n} ({100 * frac:.0f}% of 4/5 of train) | "
                         + " | ".join(fmt(res, "fr", i) for i in range(len(CAPS))) + f" | {fmt(res, 'hull20')} |")
            print(lines[-1], flush=True)

    lines += ["", "#### 3. A rough extrapolation: q@20% = a + b·ln(n), least squares through every run", "",
              ("b ± its standard error (ordinary least squares over the individual runs: 3 subsets per fraction "
              "below 100%, 1 at 100%); the n the line puts at 97.25%, with the fitted slope and with an "
              "optimistic slope b + 2·SE pivoting on the runs' centroid."), "",
              ("| curve | statistic | means by n | b·ln 2 ± SE (points per doubling of n) | line at the ceiling's n "
              "| n for 97.25% (slope b) | n for 97.25% (slope b + 2·SE) |"), "|---|---|---|---|---|---|---|"]
    for name, pts in (("test", curve), ("train out of fold", oof_curve)):
        for stat, get in (("frontier q@20%", lambda r: r["fr"][2]), ("hull q@20%", lambda r: r["hull20"])):
            if not pts:
                continue
            ns = np.array([n for n, res in pts for _ in res], dtype=float)
            ys = np.array([get(r) for _, res in pts for r in res])
            x0, y0, b, se = line_fit(ns, ys)
            at_ceil = ("— (another split)" if name != "test" else
                       f"{100 * (y0 + b * (np.log(n_ceil) - x0)):.1f} (measured {100 * get(ceil):.1f})")
            means = ", ".join(f"{n}: {100 * np.mean([get(r) for r in res]):.1f}" for n, res in pts)
            lines.append(f"| {name} | {stat} | {means} | {100 * b * np.log(2):+.2f} ± {100 * se * np.log(2):.2f} | "
                         f"{at_ceil} | {needed(x0, y0, b, pts[-1][0])} | {needed(x0, y0, b + 2 * se, pts[-1][0])} |")
            print(lines[-1], flush=True)
    lines += ["", (f"({len(train)} train / {len(test)} test queries, {len(cat.ids)} LLMs; "
              f"{time.perf_counter() - started:.0f} s.)")]
    emit(lines, args.write)


if __name__ == "__main__":
    main()
