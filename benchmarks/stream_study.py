"""Waiting time in the decision: the test split as a stream, with the penalty on and off.

    python benchmarks/stream_study.py [--rate 10/s] [--max-wait-s 30] [--write docs/LATENCY.md.table]

Replays data/routerbench/test.jsonl on a simulated clock (the paper's 100 queries per 10 s):
each LLM serves `slots` calls at once, service time = TTFT + recorded response tokens / tokens
per second (catalogue figures), an answer that waited more than τ scores 0. Prints the presets
and a λ sweep with the penalty off, on, and on with the hard rule, as % of always-GPT-4 with no
waiting constraint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import emit

from mixllm_cli.dataset import read_dataset
from mixllm_cli.evaluation.replay import evaluate_stream, parse_rate
from mixllm_cli.routing.router import Router


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="10/s")
    ap.add_argument("--max-wait-s", type=float, default=30.0)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    router = Router.load(ROOT / "no-such-home")
    records = read_dataset(ROOT / "data/routerbench/test.jsonl")
    preds = router.predict([r.query for r in records])
    rate = parse_rate(args.rate)
    modes = {"penalty off": {"penalty": False}, "penalty on": {"penalty": True},
             "penalty on + hard rule": {"penalty": True, "strict": True}}

    def run(lambdas, **kw):
        return evaluate_stream(router, records, rate_per_s=rate, tolerance_s=args.max_wait_s, lambdas=lambdas,
                               preds=preds, **kw)["results"]

    lines = [(f"Stream: {len(records)} test queries at {rate:g}/s, τ = {args.max_wait_s:g} s. "
             "Quality and cost as % of always-GPT-4 with no waiting constraint."), ""]
    presets = {name: p.lam for name, p in router.artifacts.presets.items()}
    lines += ["| policy | " + " | ".join(f"{m}: % quality / % cost / late" for m in modes) + " |",
              "|---|" + "---|" * len(modes)]
    by_mode = {m: run(presets, **kw) for m, kw in modes.items()}
    for k in range(len(by_mode["penalty off"])):
        name = by_mode["penalty off"][k]["policy"]
        cells = [f"{r[k]['quality_pct_of_best']:.2f} / {r[k]['cost_pct_of_best']:.2f} / {r[k]['late']}"
                 for r in by_mode.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")

    grid = {f"{lam:.3g}": float(lam) for lam in np.logspace(-1, 3, 17)}
    sweep = {m: run(grid, **kw)[:len(grid)] for m, kw in modes.items()}
    lines += ["λ sweep:", "", "| λ | " + " | ".join(f"{m}: % quality / % cost / late" for m in modes) + " |",
              "|---|" + "---|" * len(modes)]
    for k, lam in enumerate(grid):
        cells = [f"{sweep[m][k]['quality_pct_of_best']:.2f} / {sweep[m][k]['cost_pct_of_best']:.2f} / "
                 f"{sweep[m][k]['late']}" for m in modes]
        lines.append(f"| {lam} | " + " | ".join(cells) + " |")
    for m in modes:
        q = np.array([r["quality_pct_of_best"] for r in sweep[m]])
        peak = int(q.argmax())
        drops = float(q[peak] - q[-1])
        lines.append("")
        lines.append(f"{m}: quality peaks at λ = {list(grid)[peak]} ({q[peak]:.2f}%), ends at {q[-1]:.2f}% "
                     f"(a fall of {drops:.2f} points); largest step down along the sweep: "
                     f"{float(np.max(-np.diff(q), initial=0)):.2f} points")
    emit(lines, args.write)


if __name__ == "__main__":
    main()
