"""Tag-enhanced vs general embedding on RouterBench (issue 7): validation, test, timing.

    python benchmarks/tags_study.py [--write benchmarks/out/tags_study.md] [--quick]

1. Validation (the training split only; the test split is not read here). Tags, domains and the
   projection are fitted on the 2,225 training queries (they never see an outcome, so no label
   leaks into the folds, like the idf weights); the heads (logistic quality, ridge length, as
   shipped) are fitted 5-fold out of fold, on [embedding ; lexical bag] with the general or the
   projected embedding. Each row is a λ sweep of those out-of-fold predictions. The setting with
   the best validation AIQ is the one tested (and, for contrast, the setting with the best
   validation ≤5 % band when that differs and beats the general embedding there). Also: how much routing information the domains
   carry, measured by routers that only know a group's mean quality per LLM (out of fold).
2. Test: `train_offline` on train with --no-tags and with --tags (the chosen setting), each
   replayed on the 953 test queries over a λ sweep (no waiting time, no uncertainty term).
3. Timing: the tag pipeline inside train_offline (tag derivation including the encoding of the
   tag phrases, domains, projection; the queries' own embeddings come from the cache because
   both variants need them) and the routing latency the projection adds per query.

Bands: the best share of always-GPT-4's quality reachable (non-decreasing convex hull of the
sweep, mixllm_cli/evaluation/frontier.py) at ≤5 % (very low), ≤10 % (low), ≤25 % (medium) and ≤50 % (high)
of always-GPT-4's cost. AIQ: the hull's mean quality share over cost shares [0, 1].
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import OUT, ROOT, encode_cached

from mixllm_cli.artifacts import load_artifact_set
from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.core.decision import route_indices
from mixllm_cli.core.encoder import Encoder
from mixllm_cli.core.features import build_features, fit_feature_spec
from mixllm_cli.core.projection import fit_projection
from mixllm_cli.core.tagging import TagSettings, fit_tag_pipeline
from mixllm_cli.dataset import read_dataset
from mixllm_cli.evaluation.frontier import curve, lambda_grid
from mixllm_cli.routing.router import Router
from mixllm_cli.training.fitters import fold_ids, out_of_fold
from mixllm_cli.training.pipeline import outcome_table, train_offline

TRAIN = ROOT / "data/routerbench/train.jsonl"
TEST = ROOT / "data/routerbench/test.jsonl"
BANDS = (0.05, 0.10, 0.25, 0.50)
LAMBDAS = lambda_grid(121)
BOOTSTRAP = 300
GRID = [
    TagSettings(form="residual", tau=0.1, reg=0.03),
    TagSettings(form="residual", tau=0.1, reg=0.003),
    TagSettings(form="residual", tau=0.1, reg=0.3),
    TagSettings(form="residual", tau=1.0, reg=0.03),  # the paper's literal loss (no temperature)
    TagSettings(form="residual", tau=0.1, reg=0.03, inter_weight=0.0),
    TagSettings(form="linear", dim=128, tau=0.1, reg=0.03),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_out(points: list[tuple[float, float]]) -> dict[str, float]:
    cv = curve("x", points, shares=BANDS)
    out = {f"≤{100 * s:g}%": (100 * v if v is not None else float("nan")) for s, v in cv.quality_at.items()}
    out["AIQ"] = 100 * cv.aiq
    return out


def picks(q_hat: np.ndarray, c_hat: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per λ and query: the recorded quality (missing → 0) and cost of the LLM the router picks."""
    zeros = np.zeros_like(q_hat)
    rows = np.arange(len(q_hat))
    qual = np.nan_to_num(quality, nan=0.0)
    got_q, got_c = [], []
    for lam in LAMBDAS:
        idx, _ = route_indices(q_hat, c_hat, zeros, zeros, lam)
        got_q.append(qual[rows, idx])
        got_c.append(cost[rows, idx])
    return np.array(got_q), np.array(got_c)


def points(got: tuple[np.ndarray, np.ndarray], quality: np.ndarray, cost: np.ndarray, ref: int,
           rows: np.ndarray | None = None) -> list:
    """(cost share, quality share) of always-`ref` at each λ, over `rows` (all queries by default)."""
    rows = np.arange(quality.shape[0]) if rows is None else rows
    gq, gc = got[0][:, rows], got[1][:, rows]
    qref, cref = np.nan_to_num(quality[rows, ref], nan=0.0).sum(), cost[rows, ref].sum()
    return list(zip(gc.sum(axis=1) / cref, gq.sum(axis=1) / qref))


def sweep(q_hat: np.ndarray, c_hat: np.ndarray, quality: np.ndarray, cost: np.ndarray, ref: int) -> list:
    return points(picks(q_hat, c_hat, quality, cost), quality, cost, ref)


def row(name: str, r: dict[str, float], extra: str = "") -> str:
    cells = [name] + [f"{r[f'≤{100 * s:g}%']:.2f}" for s in BANDS] + [f"{r['AIQ']:.2f}"]
    return "| " + " | ".join(cells) + " |" + (f" {extra} |" if extra else "")


HEAD = "| embedding | ≤5% cost | ≤10% (low) | ≤25% (medium) | ≤50% (high) | AIQ |"
RULE = "|---|---|---|---|---|---|"


def describe(s: TagSettings) -> str:
    dim = "" if s.form == "residual" else f", dim {s.dim}"
    return f"tags: {s.form}{dim}, τ {s.tau:g}, ρ {s.reg:g}, a {s.inter_weight:g}"


# ---------------------------------------------------------------- 1. validation


def low_band_gain(general: dict[str, float], results: list) -> bool:
    """Does some setting beat the general embedding in the ≤5% band on validation?"""
    return any(r["≤5%"] > general["≤5%"] for _, r, _ in results)


def validation(cat, quick: bool) -> tuple[list[str], TagSettings]:
    recs = read_dataset(TRAIN)
    tab = outcome_table(recs, list(cat.ids))
    enc = encode_cached(ROOT / "artifacts/encoder", tab.queries)
    lex = build_features(enc.embeddings, enc.token_ids, fit_feature_spec(enc.token_ids, 4096))[:, enc.embeddings.shape[1]:]
    m = len(tab.llm_ids)
    p_in = np.array([cat.get(i).input_usd_per_mtok for i in tab.llm_ids]) / 1e6
    p_out = np.array([cat.get(i).output_usd_per_mtok for i in tab.llm_ids]) / 1e6
    mean_cost = np.nanmean(tab.cost_usd, axis=0)
    ref = int(np.nanargmax(mean_cost))
    real_cost = np.where(np.isnan(tab.cost_usd), mean_cost, tab.cost_usd)
    folds = fold_ids(len(recs), 5, 0)

    def oof(emb: np.ndarray, lexical: bool = True) -> tuple[np.ndarray, np.ndarray]:
        x = np.hstack([emb.astype(np.float32), lex]) if lexical else emb.astype(np.float32)
        q = np.stack([out_of_fold("logistic", "quality", x, tab.quality[:, j], folds) for j in range(m)], 1)
        ln = np.stack([out_of_fold("ridge", "length", x, tab.response_tokens[:, j], folds) for j in range(m)], 1)
        c = (enc.n_tokens[:, None] * p_in + np.nan_to_num(ln) * p_out) / mean_cost[ref]
        return np.nan_to_num(q), c

    t0 = time.perf_counter()
    q_gen, c_gen = oof(enc.embeddings)
    general = read_out(sweep(q_gen, c_gen, tab.quality, real_cost, ref))
    log(f"validation: general ({time.perf_counter() - t0:.0f} s)")
    encoder = Encoder.from_dir(ROOT / "artifacts/encoder")
    run = fit_tag_pipeline(tab.queries, enc.embeddings, lambda t: encoder.encode(t).embeddings,
                           tasks=tab.tasks, settings=TagSettings(max_iter=0))
    k, y = run.model.domains.k, run.domains
    results = []
    for s in GRID[:2] if quick else GRID:
        t1 = time.perf_counter()
        proj, rep = fit_projection(enc.embeddings, y, k, form=s.form, dim=s.dim, tau=s.tau,
                                   inter_weight=s.inter_weight, reg=s.reg, max_iter=s.max_iter)
        q, c = oof(proj.apply(enc.embeddings))
        r = read_out(sweep(q, c, tab.quality, real_cost, ref))
        results.append((s, r, rep))
        log(f"validation: {describe(s)}: AIQ {r['AIQ']:.2f} ({time.perf_counter() - t1:.0f} s)")
    best = max(results, key=lambda t: t[1]["AIQ"])[0]
    low = max(results, key=lambda t: t[1]["≤5%"])[0]
    contrast = low if low != best and low_band_gain(general, results) else None
    # The paper's heads read the embedding alone: does the projection help when no lexical bag
    # stands beside it? (Not a candidate for the default: the shipped heads read both.)
    emb_only = [("general, heads on the embedding alone", read_out(sweep(*oof(enc.embeddings, False), tab.quality,
                                                                            real_cost, ref)))]
    if not quick:
        s = GRID[0]
        proj, _ = fit_projection(enc.embeddings, y, k, form=s.form, dim=s.dim, tau=s.tau,
                                 inter_weight=s.inter_weight, reg=s.reg, max_iter=s.max_iter)
        emb_only.append((describe(s) + ", heads on the embedding alone",
                         read_out(sweep(*oof(proj.apply(enc.embeddings), False), tab.quality, real_cost, ref))))
    log(f"validation: embedding-only heads done ({time.perf_counter() - t0:.0f} s)")

    # How much routing information do the domains carry? Routers that know only a group's
    # out-of-fold mean quality per LLM (shrunk to the LLM's overall mean with weight 5).
    def group_router(groups: np.ndarray) -> dict[str, float]:
        q = np.zeros((len(recs), m))
        for f in range(5):
            tr, te = folds != f, folds == f
            for j in range(m):
                known = tr & ~np.isnan(tab.quality[:, j])
                overall = tab.quality[known, j].mean()
                for g in np.unique(groups):
                    mask = known & (groups == g)
                    q[te & (groups == g), j] = (tab.quality[mask, j].sum() + 5 * overall) / (mask.sum() + 5)
        return read_out(sweep(q, c_gen, tab.quality, real_cost, ref))

    task = np.unique([t or "" for t in tab.tasks], return_inverse=True)[1]
    lines = [f"### Validation: train split, 5-fold out of fold ({len(recs)} queries; k = {k} domains)", "",
             HEAD + " intra / inter loss after (before) |", RULE + "---|",
             row("general (encoder as is)", general, "")]
    for s, r, rep in results:
        loss = (f"{rep['after']['intra']:.3f} / {rep['after']['inter']:.3f} "
                f"({rep['before']['intra']:.3f} / {rep['before']['inter']:.3f})")
        lines.append(row(describe(s) + (" **(chosen)**" if s == best else ""), r, loss))
    lines += [row(name, r, "") for name, r in emb_only]
    lines += ["", "Routers that know only a group's out-of-fold mean quality per LLM (heads' cost estimates):", "",
              HEAD.replace("embedding", "grouping"), RULE,
              row("none (one mean per LLM)", group_router(np.zeros(len(recs), dtype=int))),
              row("task (3 groups)", group_router(task)),
              row(f"tag domain ({k} groups)", group_router(y)),
              row(f"task × tag domain ({len(np.unique(task * 1000 + y))} groups)", group_router(task * 1000 + y)),
              row("per-LLM heads, general embedding (above)", general)]
    lines += ["", "Tag pipeline on train: " + json.dumps({key: run.report[key] for key in (
        "vocabulary", "distinct_tags", "k", "domain_sizes")}, ensure_ascii=False),
              "", "k selection (silhouette of the distinct tags; smallest domain in queries): "
              + ", ".join(f"k={kk}: {v['silhouette']:.3f} / {v['smallest_domain']}" for kk, v in run.report["k_scores"].items()),
              "", "Domains (most central tags): " + "; ".join(f"{j}: {lab}" for j, lab in enumerate(run.model.domains.labels))]
    return lines, best, contrast


# ---------------------------------------------------------------- 2. test and 3. timing


def test_split(cat, settings: TagSettings, contrast: TagSettings | None) -> list[str]:
    """Train general, tags (the chosen setting) and, if given, a contrast setting; replay test."""
    recs = read_dataset(TEST)
    cache = OUT / "cache"
    reports, curves, routers = {}, {}, {}
    from mixllm_cli.embcache import encode_cached as cache_encode

    train_queries = [r.query for r in read_dataset(TRAIN)]
    encoder = Encoder.from_dir(ROOT / "artifacts/encoder")
    cache_encode(encoder.encode, ROOT / "artifacts/encoder", train_queries, cache)  # every run reads the cache
    variants = {"general": None, "tags": settings, **({"contrast": contrast} if contrast else {})}
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in variants.items():
            t0 = time.perf_counter()
            out = Path(tmp) / name
            reports[name] = train_offline(TRAIN, cat, out, ROOT / "artifacts/encoder",
                                          cache=cache, tags=s is not None, tag_settings=s)
            log(f"test: trained {name} in {time.perf_counter() - t0:.0f} s")
            routers[name] = Router(load_artifact_set(out), cat)
        tab = outcome_table(recs, list(routers["general"].llm_ids))
        enc = encode_cached(ROOT / "artifacts/encoder", tab.queries)
        mean_cost = np.nanmean(tab.cost_usd, axis=0)
        ref = int(np.nanargmax(mean_cost))
        real_cost = np.where(np.isnan(tab.cost_usd), mean_cost, tab.cost_usd)
        got = {}
        for name, router in routers.items():
            p = router.predict_encoded(enc.embeddings, enc.token_ids, enc.n_tokens)
            got[name] = picks(p.quality, p.cost_norm, tab.quality, real_cost)
            curves[name] = read_out(points(got[name], tab.quality, real_cost, ref))
        latency = routing_latency(routers, enc)
    g = curves["general"]
    lines = [f"### Test split ({len(recs)} queries), heads trained on all of train", "", HEAD, RULE,
             row("general (`--no-tags`, the default)", g)]
    for name, s in variants.items():
        if s is None:
            continue
        t = curves[name]
        rel = {k: 100 * (t[k] / g[k] - 1) for k in g}
        # Paired bootstrap over test queries: how far the difference could move by the luck of the split.
        rng = np.random.default_rng(0)
        boot = []
        for _ in range(BOOTSTRAP):
            rows = rng.integers(0, len(recs), len(recs))
            bg = read_out(points(got["general"], tab.quality, real_cost, ref, rows))
            bt = read_out(points(got[name], tab.quality, real_cost, ref, rows))
            boot.append([100 * (bt[k] / bg[k] - 1) for k in g])
        lo, hi = np.nanpercentile(np.array(boot), [2.5, 97.5], axis=0)
        label = (describe(s) + (" (`--tags`: chosen on validation AIQ)" if name == "tags" else
                                " (not chosen: the best validation ≤5% band)"))
        lines += [row(label, t),
                  "| relative change vs general (%) | " + " | ".join(f"{rel[f'≤{100 * b:g}%']:+.2f}" for b in BANDS)
                  + f" | {rel['AIQ']:+.2f} |",
                  f"| 95% interval (paired bootstrap, {BOOTSTRAP}×) | "
                  + " | ".join(f"{a:+.2f} … {b:+.2f}" for a, b in zip(lo, hi)) + " |"]
    tag_seconds = reports["tags"]["tags"]["seconds"]
    lines += ["", "### Timing (this 2-core machine, shared)", "",
              (f"- tag pipeline on the train split ({len(train_queries):,} queries; "
               f"k = {reports['tags']['tags']['k']}): {tag_seconds['total']:.1f} s = tags {tag_seconds['tags']:.1f} s "
               f"(candidate phrases, encoding the tag vocabulary, picking) + domains {tag_seconds['domains']:.1f} s "
               f"(k-means over the k grid, silhouettes) + projection {tag_seconds['projection']:.1f} s; whole "
               f"train-offline {reports['tags']['seconds']:.0f} s with tags vs {reports['general']['seconds']:.0f} s "
               "without (query embeddings from the cache in both)"),
              (f"- projection applied to one query: median {latency['apply_us']:.1f} µs; "
               f"`predict_encoded` on one query: median {latency['general_ms']:.3f} ms general, "
               f"{latency['tags_ms']:.3f} ms with tags ({latency['tags_ms'] - latency['general_ms']:+.3f} ms)")]
    return lines


def routing_latency(routers: dict[str, Router], enc, n: int = 300) -> dict[str, float]:
    """Median time per single query: the projection alone, and the whole prediction with and without it."""
    e1 = enc.embeddings[:1]
    proj = routers["tags"].artifacts.projection
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        proj.apply(e1)
        times.append(time.perf_counter() - t)
    out = {"apply_us": 1e6 * float(np.median(times))}
    for name, router in routers.items():
        times = []
        for i in range(n):
            t = time.perf_counter()
            router.predict_encoded(enc.embeddings[i:i + 1], enc.token_ids[i:i + 1], enc.n_tokens[i:i + 1])
            times.append(time.perf_counter() - t)
        out[f"{name}_ms"] = 1e3 * float(np.median(times))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None, help="write the markdown tables to this file")
    ap.add_argument("--quick", action="store_true", help="validate only the first two settings")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cat = load_catalogue(ROOT / "models.yaml")
    lines, best, contrast = validation(cat, args.quick)
    lines += [""] + test_split(cat, best, contrast)
    text = "\n".join(lines) + "\n"
    print(text)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()
