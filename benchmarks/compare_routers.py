"""mixllm's cost–quality frontier beside the baselines, on RouterBench's test split (issue 6).

    python benchmarks/compare_routers.py [--write docs/out.md] [--plot-dir benchmarks/out]

The same harness as `mixllm evaluate data/routerbench/test.jsonl --sweep --baselines-from
data/routerbench/train.jsonl` (mixllm_cli.evaluation.sweep.sweep), run twice:
1. without waiting time (every answer counts);
2. with the time constraint: the split replayed as a stream at 10 queries/s, τ = 30 s, each LLM
   serving `slots` calls at once with service times from the recorded response tokens; an answer
   that waited longer than τ scores 0. mixllm sees the waits (its penalty term); the baselines
   that pick one LLM per query are replayed through the same queues, without looking at them.

Every learned baseline is fitted on data/routerbench/train.jsonl and reads the router's own
features (embedding + lexical bag). mixllm is the shipped default (an empty home: no feedback).
Shares are of always-GPT-4's total quality and cost with no waiting constraint; AIQ over cost
shares [0, 1]. Embeddings are cached under benchmarks/out/cache (content hash).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import OUT, ROOT

from mixllm_cli.dataset import read_dataset
from mixllm_cli.evaluation.sweep import sweep
from mixllm_cli.output import sweep_markdown
from mixllm_cli.routing.router import Router


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None, help="write the markdown tables to this file")
    ap.add_argument("--plot-dir", default=None, help="write frontier.png and frontier-stream.png here")
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--tolerance", type=float, default=30.0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:  # an empty home: the shipped default, no feedback
        router = Router.load(Path(home))
    test = read_dataset(ROOT / "data/routerbench/test.jsonl")
    train = read_dataset(ROOT / "data/routerbench/train.jsonl")
    cache = OUT / "cache"

    def progress(name: str) -> None:
        print(f"  fitting {name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    lines = []
    for title, rate in (("Without waiting time", None),
                        (f"With the time constraint: a stream at {args.rate:g} queries/s, τ = {args.tolerance:g} s",
                         args.rate)):
        r = sweep(router, test, train_records=train, cache=cache, rate_per_s=rate, tolerance_s=args.tolerance,
                  progress=progress)
        presets = ", ".join(f"{n} {100 * p['quality_share']:.2f}% at {100 * p['cost_share']:.2f}%"
                            for n, p in r["presets"].items())
        lines += [f"### {title}", "", *sweep_markdown(r), "", f"mixllm presets (quality at cost): {presets}", ""]
        print("\n".join(lines[-(len(r['curves']) + 6):]), flush=True)
        if args.plot_dir:
            from mixllm_cli.evaluation.plot import sweep_plot

            sweep_plot(r, Path(args.plot_dir) / ("frontier.png" if rate is None else "frontier-stream.png"))
    lines.append(f"({len(test)} test queries, {len(router.llm_ids)} LLMs, baselines fitted on {len(train)} training "
                 f"queries; {time.perf_counter() - t0:.0f} s.)")
    text = "\n".join(lines) + "\n"
    print(lines[-1])
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()
