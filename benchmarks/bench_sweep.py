"""Time `mixllm evaluate data/routerbench/test.jsonl --sweep` (50 λ, 953 queries), whole command.

    python benchmarks/bench_sweep.py [--runs 3]

Run 1 starts from an empty home (the embedding cache is filled); the next runs reuse the cache
(keyed by the encoder's and every query's sha256). Also times the stream sweep (--rate 10/s).
Target (issue 6): <= 60 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

from _common import ROOT


def timed(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(["mixllm", *args], check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MIXLLM_HOME": home}
        sweep = ["evaluate", "data/routerbench/test.jsonl", "--sweep", "--lambdas", "50", "--json"]
        cold = timed(sweep, env)
        warm = [timed(sweep, env) for _ in range(args.runs)]
        stream = [timed([*sweep, "--rate", "10/s"], env) for _ in range(args.runs)]
    print(f"evaluate --sweep (50 λ, 953 queries): empty cache {cold:.1f} s; cached "
          f"min {min(warm):.1f} s / max {max(warm):.1f} s; stream sweep at 10/s cached min {min(stream):.1f} s "
          f"/ max {max(stream):.1f} s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
