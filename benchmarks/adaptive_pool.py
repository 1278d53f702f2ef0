"""The paper's adaptive-training study on our data: add two LLMs without retraining the rest.

    python benchmarks/adaptive_pool.py [--write docs/ADAPTIVE.md]

1. train-offline on the train split with a 9-LLM catalogue (Mixtral-8x7B and Yi-34B held out);
2. evaluate the test split at each preset;
3. add-llm both, each from its own outcomes in the train split (only their heads are trained);
4. evaluate again, then time remove-llm.
Runs the real CLI in a temporary home and prints a markdown table plus timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import ROOT, emit

HELD_OUT = {
    "mistralai/mixtral-8x7b-chat": (0.6, 0.6),
    "zero-one-ai/Yi-34B-Chat": (0.8, 0.8),
}


def mixllm(*args: str, home: Path) -> str:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mixllm_cli", *args, "--home", str(home)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"mixllm {' '.join(args)} failed:\n{proc.stderr}")
    mixllm.last_seconds = time.perf_counter() - t0
    return proc.stdout


def presets(report: dict) -> dict[str, dict]:
    return {r["policy"].split(" (")[0].replace("mixllm ", ""): r for r in report["results"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mixllm-adaptive-"))
    full = yaml.safe_load((ROOT / "models.yaml").read_text())
    held = {m["id"]: m for m in full["llms"] if m["id"] in HELD_OUT}
    nine = {**full, "llms": [m for m in full["llms"] if m["id"] not in HELD_OUT]}
    (home / "models.yaml").write_text(yaml.safe_dump(nine, sort_keys=False))
    train, test = str(ROOT / "data/routerbench/train.jsonl"), str(ROOT / "data/routerbench/test.jsonl")

    mixllm("train-offline", train, home=home)
    t_train = mixllm.last_seconds
    before = presets(json.loads(mixllm("evaluate", test, "--json", home=home)))

    adds = []
    for llm_id, (p_in, p_out) in HELD_OUT.items():
        m = held[llm_id]
        out = mixllm("add-llm", llm_id, "--input-usd-per-mtok", str(p_in), "--output-usd-per-mtok", str(p_out),
                     "--ttft-ms", str(m["ttft_ms"]), "--output-tokens-per-s", str(m["output_tokens_per_s"]),
                     "--slots", str(m["slots"]), "--name", m["name"], "--data", train, home=home)
        report = json.loads(out)
        report["seconds_command"] = round(mixllm.last_seconds, 2)
        adds.append(report)
    after = presets(json.loads(mixllm("evaluate", test, "--json", home=home)))

    removed = json.loads(mixllm("remove-llm", "zero-one-ai/Yi-34B-Chat", home=home))
    t_remove = mixllm.last_seconds

    lines = ["| budget | before: % GPT-4 quality | before: % GPT-4 cost | after: % quality | after: % cost |",
             "|---|---|---|---|---|"]
    for name in ("very-low", "low", "medium", "high"):
        b, a = before[name], after[name]
        lines.append(f"| {name} | {b['quality_pct_of_best']:.2f} | {b['cost_pct_of_best']:.2f} | "
                     f"{a['quality_pct_of_best']:.2f} | {a['cost_pct_of_best']:.2f} |")
    o_b, o_a = before["oracle"], after["oracle"]
    lines.append(f"| oracle of the pool | {o_b['quality_pct_of_best']:.2f} | {o_b['cost_pct_of_best']:.2f} | "
                 f"{o_a['quality_pct_of_best']:.2f} | {o_a['cost_pct_of_best']:.2f} |")
    lines.append("")
    lines.append(f"train-offline (9 LLMs, whole command): {t_train:.1f} s")
    for r in adds:
        lines.append(f"add-llm {r['llm']}: {r['outcomes']} outcomes; embedding {r['seconds_embedding']:.1f} s, "
                     f"fitting {r['seconds_fit']:.2f} s, library call {r['seconds_total']:.1f} s, "
                     f"whole command {r['seconds_command']:.1f} s (start-up included)")
    lines.append(f"remove-llm zero-one-ai/Yi-34B-Chat: library call {removed['seconds_total']:.3f} s, "
                 f"whole command {t_remove:.2f} s (start-up included)")
    emit(lines, args.write)


if __name__ == "__main__":
    main()
