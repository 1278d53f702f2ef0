"""Choose the head families by measurement on the training split (5-fold out-of-fold).

    python benchmarks/compare_heads.py [--data data/routerbench/train.jsonl] [--write docs/HEADS.md]

For every quality family (logistic, rf, mlp, knn) and feature set (embedding alone, embedding +
lexical bag) it fits each LLM's quality head out of fold and reports the Brier score, the AUC and
what a router built on those predictions buys on the training split: the best % of the dearest
LLM's quality reachable within 10 / 20 / 25 % of its cost. Length families (ridge, rf, mlp, knn)
are compared by the error of log(1 + response tokens). The test split is never read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ROOT, encode_cached

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.core.decision import route_indices
from mixllm_cli.core.features import build_features, fit_feature_spec
from mixllm_cli.core.heads import LENGTH, QUALITY
from mixllm_cli.dataset import read_dataset
from mixllm_cli.training.fitters import fold_ids, out_of_fold
from mixllm_cli.training.pipeline import outcome_table
from mixllm_cli.training.presets import LAMBDA_GRID


def frontier(q_pred, c_pred, quality, cost, ref, caps=(0.10, 0.20, 0.25)):
    """Best quality share (of always-ref) within each cost-share cap, over the λ grid."""
    zeros = np.zeros_like(q_pred)
    rows = np.arange(len(quality))
    qref, cref = np.nansum(quality[:, ref]), cost[:, ref].sum()
    pts = []
    for lam in LAMBDA_GRID:
        idx, _ = route_indices(q_pred, c_pred, zeros, zeros, lam)
        pts.append((cost[rows, idx].sum() / cref, np.nansum(quality[rows, idx]) / qref))
    pts = np.array(pts)
    return [float(pts[pts[:, 0] <= cap, 1].max(initial=0.0)) for cap in caps]


def choices(table, enc, x, folds, p_in, p_out, scale, ref, L):
    """The two choices behind the shipped default: logistic C, and which length head prices queries."""
    from mixllm_cli.core.heads import LOGISTIC_C

    caps = (0.10, 0.15, 0.20, 0.25, 0.30)
    head = "| {} | Brier | " + " | ".join(f"≤{int(c * 100)}% cost" for c in caps) + " |"
    rule = "|---|---|" + "---|" * len(caps)
    lengths = {fam: np.stack([out_of_fold(fam, LENGTH, x, table.response_tokens[:, j], folds) for j in range(L)], 1)
               for fam in ("ridge", "rf")}
    cost = {fam: (enc.n_tokens[:, None] * p_in + v * p_out) / scale for fam, v in lengths.items()}
    cost["mean per LLM"] = np.broadcast_to(np.nanmean(table.cost_usd, axis=0) / scale, table.cost_usd.shape)
    out = ["### Regularisation of the logistic quality heads (embedding + lexical, ridge length head)", "",
           "% of the dearest LLM's quality reachable within each cost share, out of fold on train.", "",
           head.format("C"), rule]
    preds = {}
    for c in (0.1, 0.3, 1.0, 3.0):
        p = np.stack([out_of_fold("logistic", QUALITY, x, table.quality[:, j], folds, c=c) for j in range(L)], 1)
        preds[c] = p
        fr = frontier(np.nan_to_num(p), cost["ridge"], table.quality, table.cost_usd, ref, caps)
        out.append(f"| {c:g} | {np.nanmean((p - table.quality) ** 2):.4f} | " + " | ".join(f"{100 * v:.1f}" for v in fr)
                   + " |")
        print(out[-1], flush=True)
    out += ["", f"### Which cost estimate prices a query (logistic C={LOGISTIC_C:g} quality heads)", "",
            head.format("cost from"), rule]
    for name, cst in cost.items():
        fr = frontier(np.nan_to_num(preds[LOGISTIC_C]), cst, table.quality, table.cost_usd, ref, caps)
        out.append(f"| {name} | | " + " | ".join(f"{100 * v:.1f}" for v in fr) + " |")
        print(out[-1], flush=True)
    return out


def auc(y, p):
    from sklearn.metrics import roc_auc_score

    ok = ~np.isnan(y)
    return roc_auc_score(y[ok], p[ok]) if len(np.unique(y[ok])) == 2 else np.nan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data/routerbench/train.jsonl"))
    ap.add_argument("--write", default=None, help="write the markdown tables to this file")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--choices-only", action="store_true",
                    help="only the regularisation sweep and the length-head effect on routing (fast)")
    args = ap.parse_args()

    cat = load_catalogue(ROOT / "models.yaml")
    records = read_dataset(Path(args.data))
    table = outcome_table(records, list(cat.ids))
    enc = encode_cached(ROOT / "artifacts/encoder", table.queries)
    spec = fit_feature_spec(enc.token_ids, 4096)
    feats = {"embedding": build_features(enc.embeddings, enc.token_ids, None),
             "embedding + lexical": build_features(enc.embeddings, enc.token_ids, spec)}
    folds = fold_ids(len(records), args.folds, 0)
    ref = int(np.nanargmax(np.nanmean(table.cost_usd, axis=0)))
    scale = np.nanmean(table.cost_usd[:, ref])
    p_in = np.array([m.input_usd_per_mtok for m in cat.llms]) / 1e6
    p_out = np.array([m.output_usd_per_mtok for m in cat.llms]) / 1e6
    L = len(cat.ids)

    lines = []
    if args.choices_only:
        lines += choices(table, enc, feats["embedding + lexical"], folds, p_in, p_out, scale, ref, L)
        text = "\n".join(lines) + "\n"
        if args.write:
            Path(args.write).write_text(text)
        print(text)
        return
    # Length heads first: the routing metric needs predicted lengths.
    x = feats["embedding + lexical"]
    lines.append("### Length heads (out of fold, embedding + lexical)\n")
    lines.append("| family | MAE of log(1+tokens) | median abs. error (tokens) | fit time (s) |")
    lines.append("|---|---|---|---|")
    length_oof = {}
    for fam in ("ridge", "rf", "mlp", "knn"):
        t0 = time.perf_counter()
        pred = np.stack([out_of_fold(fam, LENGTH, x, table.response_tokens[:, j], folds) for j in range(L)], 1)
        dt = time.perf_counter() - t0
        y = table.response_tokens
        mae_log = np.nanmean(np.abs(np.log1p(pred) - np.log1p(y)))
        med = np.nanmedian(np.abs(pred - y))
        length_oof[fam] = pred
        lines.append(f"| {fam} | {mae_log:.3f} | {med:.1f} | {dt:.1f} |")
        print(lines[-1], flush=True)
    best_len = min(length_oof, key=lambda f: np.nanmean(np.abs(np.log1p(length_oof[f]) - np.log1p(table.response_tokens))))
    cost_pred = (enc.n_tokens[:, None] * p_in + length_oof[best_len] * p_out) / scale
    mean_cost = np.nanmean(table.cost_usd, axis=0) / scale

    lines.append(f"\n### Quality heads (out of fold; routing uses the {best_len} length head)\n")
    lines.append("| features | family | Brier | mean AUC | % quality at ≤10% cost | ≤20% | ≤25% | fit time (s) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for fname, x in feats.items():
        for fam in ("logistic", "rf", "mlp", "knn"):
            t0 = time.perf_counter()
            pred = np.stack([out_of_fold(fam, QUALITY, x, table.quality[:, j], folds) for j in range(L)], 1)
            dt = time.perf_counter() - t0
            y = table.quality
            brier = np.nanmean((pred - y) ** 2)
            aucs = np.nanmean([auc(y[:, j], pred[:, j]) for j in range(L)])
            fr = frontier(np.nan_to_num(pred), cost_pred, y, table.cost_usd, ref)
            lines.append(f"| {fname} | {fam} | {brier:.4f} | {aucs:.3f} | " + " | ".join(f"{100*v:.1f}" for v in fr)
                         + f" | {dt:.1f} |")
            print(lines[-1], flush=True)
        if fname == "embedding + lexical":
            pred = np.stack([out_of_fold("logistic", QUALITY, x, table.quality[:, j], folds) for j in range(L)], 1)
            fr = frontier(np.nan_to_num(pred), np.broadcast_to(mean_cost, pred.shape), table.quality, table.cost_usd, ref)
            lines.append(f"| {fname} | logistic, mean cost per LLM (no length head) | | | "
                         + " | ".join(f"{100*v:.1f}" for v in fr) + " | |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.write:
        Path(args.write).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
