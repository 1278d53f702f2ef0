"""Long jobs, old build against new, alternating in one run: train-offline, add-llm --data and
evaluate --sweep --baselines-from on RouterBench (issue 18).

    python benchmarks/bench_long_jobs.py --old /path/to/old/checkout [--repeats 1] [--only train,add,sweep]

Each case runs as a fresh `python -m mixllm_cli` process (wall time and the child's peak RSS from
wait4), old then new, `--repeats` times; the machine is shared, so only numbers from the same run
are compared. Cases:
- train, --no-cache: encodes every query (the encoder's time plus the rest);
- train, fresh home: the new build seeds the home's cache from the shipped training rows;
- train, again in the same home: every query already embedded;
- add-llm --data with claude-v1's outcomes on the 2,225 training queries, in a fresh home (after
  remove-llm claude-v1): the shipped default's queries;
- evaluate test --sweep --baselines-from train, cache warm (a first run fills it, not timed).
Targets (issue 18): train empty cache <= 75 s, warm <= 20 s; add-llm <= 10 s; sweep warm <= 30 s;
peak RSS of train-offline <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "data" / "routerbench" / "train.jsonl"
TEST = ROOT / "data" / "routerbench" / "test.jsonl"


def run(build: Path, args: list[str], home: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of `mixllm ARGS` from `build`, in `home`."""
    env = {**os.environ, "PYTHONPATH": str(build), "MIXLLM_HOME": str(home), "MIXLLM_PROGRESS": "off",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MIXLLM_DEFAULT_ARTIFACTS", None)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mixllm_cli", *args], cwd=build, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{build}: mixllm {' '.join(args)} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def cases(only: set[str]) -> list[tuple[str, list[list[str]], list[str]]]:
    """(name, set-up commands not timed, the timed command) per case; {home} is the case's home."""
    train = ["train-offline", str(TRAIN)]
    out = []
    if "train" in only:
        out += [("train --no-cache", [], [*train, "--no-cache"]),
                ("train, fresh home", [], train),
                ("train, all embedded", [train], train)]
    if "add" in only:
        out.append(("add-llm --data (shipped queries, fresh home)", [["remove-llm", "claude-v1"]],
                    ["add-llm", "claude-v1", "--input-usd-per-mtok", "8", "--output-usd-per-mtok", "24",
                     "--data", str(TRAIN)]))
    if "sweep" in only:
        sweep = ["evaluate", str(TEST), "--sweep", "--json", "--baselines-from", str(TRAIN)]
        out.append(("sweep --baselines-from, warm cache", [sweep], sweep))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="a checkout of the old build")
    ap.add_argument("--new", type=Path, default=ROOT)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", default="train,add,sweep")
    args = ap.parse_args()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, setup, timed in cases(set(args.only.split(","))):
        for _ in range(args.repeats):
            for label, build in (("old", args.old), ("new", args.new)):
                home = Path(tempfile.mkdtemp(prefix="mixllm-bench-"))
                try:
                    for cmd in setup:
                        run(build, cmd, home)
                    wall, rss = run(build, timed, home)
                finally:
                    shutil.rmtree(home, ignore_errors=True)
                results.setdefault(name, {}).setdefault(label, []).append((wall, rss))
                print(f"{name:48} {label}: {wall:7.1f} s  peak RSS {rss:6.0f} MB", flush=True)
    print(json.dumps({name: {label: [{"seconds": round(w, 1), "peak_rss_mb": round(r)} for w, r in runs]
                             for label, runs in by.items()} for name, by in results.items()}))


if __name__ == "__main__":
    main()
