"""mixllm's cost–quality frontier beside the baselines, on RouterBench's test split.

    python benchmarks/compare_routers.py [--write PATH] [--plot out.png]

Every policy is fitted on data/routerbench/train.jsonl and replayed on test.jsonl with the
recorded outcomes (a missing quality scores 0; every call placed is paid, the cascade pays every
LLM it tried). mixllm is the shipped default router (its heads were fitted on the same training
split), swept over λ ∈ lambda_grid(50) = 50 log-spaced values in [1e-6, 1e6], without waiting
time. Baselines read the router's own features (embedding + lexical bag) and are swept over their
own parameter (see mixllm_cli/baselines.py for what each copies and where it differs).

Shares are of the test split's best single LLM (GPT-4) totals. AIQ is the area under the
non-decreasing convex hull over cost shares [0, 1], divided by 1 (0 below a policy's cheapest
point, flat after its best; mixllm_cli/frontier.py). "q@10%" is the hull's quality share at 10 %
of the cost; "c→90%" the least cost share whose hull reaches 90 % of the quality (— never).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, encode_cached

from mixllm_cli.baselines import compare, default_baselines, picks_outcome
from mixllm_cli.dataset import read_dataset
from mixllm_cli.features import build_features
from mixllm_cli.frontier import DEFAULT_COST_RANGE, DEFAULT_SHARES, DEFAULT_TARGETS, Curve, lambda_grid
from mixllm_cli.router import Router
from mixllm_cli.training import outcome_table


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def table(curves: list[Curve]) -> list[str]:
    head = (["policy", "AIQ [0,1]"] + [f"q@{100 * s:g}%" for s in DEFAULT_SHARES]
            + [f"c→{100 * t:g}%" for t in DEFAULT_TARGETS] + ["points"])
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for cv in curves:
        cells = ([cv.name, pct(cv.aiq)] + [pct(cv.quality_at[s]) for s in DEFAULT_SHARES]
                 + [pct(cv.cost_to[t]) for t in DEFAULT_TARGETS] + [str(len(cv.points))])
        out.append("| " + " | ".join(cells) + " |")
    return out


def plot(curves: list[Curve], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not installed; no plot written", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(9, 6))
    for cv in curves:
        if cv.name.startswith("always "):
            ax.plot(cv.points[:, 0], cv.points[:, 1], "k.", ms=6)
            ax.annotate(cv.name[7:], cv.points[0], fontsize=6)
            continue
        hull = np.vstack([cv.hull, [max(1.0, cv.hull[-1, 0]), cv.hull[-1, 1]]])
        ax.plot(hull[:, 0], hull[:, 1], label=f"{cv.name} (AIQ {100 * cv.aiq:.1f})")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("cost share of the best LLM")
    ax.set_ylabel("quality share of the best LLM")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    print(f"plot written to {path}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None, help="write the markdown table to this file")
    ap.add_argument("--plot", default=None, help="write a PNG of the hulls (needs matplotlib)")
    args = ap.parse_args()
    t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as home:  # an empty home: the shipped default, no feedback
        router = Router.load(Path(home))
    llm_ids = list(router.llm_ids)
    splits = {}
    for name in ("train", "test"):
        records = read_dataset(ROOT / f"data/routerbench/{name}.jsonl")
        tab = outcome_table(records, llm_ids)
        enc = encode_cached(router.artifacts.encoder_dir, tab.queries)
        x = build_features(enc.embeddings, enc.token_ids, router.artifacts.features)
        splits[name] = (tab, enc, x)
        print(f"{name}: {len(records)} queries encoded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    train, _, x_tr = splits["train"]
    test, enc_te, x_te = splits["test"]
    preds = router.predict_encoded(enc_te.embeddings, enc_te.token_ids, enc_te.n_tokens)
    lams = lambda_grid(50)
    mixllm = [picks_outcome(lam, router.decide(preds, lam)[0], test.quality, test.cost_usd) for lam in lams]

    def progress(name: str) -> None:
        print(f"  fitting {name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    baselines = default_baselines(llm_ids)
    curves = compare(x_tr, train.quality, train.cost_usd, x_te, test.quality, test.cost_usd, llm_ids,
                     extra={"mixllm (shipped default)": mixllm}, baselines=baselines,
                     cost_range=DEFAULT_COST_RANGE, progress=progress)
    curves = [c for c in curves if not c.name.startswith("always ")] + \
             [c for c in curves if c.name.startswith("always ")]
    best = llm_ids[int(np.argmax(np.nan_to_num(test.quality, nan=0.0).mean(axis=0)))]
    lines = [(f"RouterBench test split: {len(test.ids)} queries, {len(llm_ids)} LLMs; fitted on {len(train.ids)} "
              f"training queries. Shares (%) of always-{best}'s total quality and cost; AIQ over cost share "
              f"[{DEFAULT_COST_RANGE[0]:g}, {DEFAULT_COST_RANGE[1]:g}]; mixllm swept over {len(lams)} λ in "
              f"[{lams[0]:.0e}, {lams[-1]:.0e}], no waiting time."), ""]
    lines += table(curves)
    by_type = {type(b).__name__: b for b in baselines}
    thr, cas = by_type["ThresholdRouter"], by_type["Cascade"]
    lines += ["", (f"Threshold router: strong {llm_ids[thr.strong]}, weak {llm_ids[thr.weak]}. "
                   f"Cascade chain: {' → '.join(llm_ids[j] for j in cas.chain)}.")]
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.write:
        Path(args.write).write_text(text)
    if args.plot:
        plot(curves, Path(args.plot))


if __name__ == "__main__":
    main()
