"""Feedback throughput in batch mode: `mixllm feedback --jsonl` on 1,000 events.

    python benchmarks/bench_feedback.py [--n 1000]

Routes N short queries with `mixllm route --jsonl` into a fresh home (recording N decisions),
then sends one refined feedback event per decision in one `mixllm feedback --jsonl` call and
times it (whole command, start-up, logging and the online update included). Target: >= 500
events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_route import short_queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="mixllm-fb-")
    env = {**os.environ, "MIXLLM_HOME": home}
    queries = "".join(json.dumps({"query": q}) + "\n" for q in short_queries(args.n))
    routed = subprocess.run([sys.executable, "-m", "mixllm_cli", "route", "--jsonl", "-", "--max-wait-s", "1e9"],
                            input=queries, capture_output=True, text=True, env=env, check=True)
    rng = random.Random(0)
    events = "".join(json.dumps({"id": json.loads(line)["decision_id"], "quality": rng.choice([0.0, 1.0]),
                                 "response_tokens": rng.randint(1, 300)}) + "\n"
                     for line in routed.stdout.splitlines())
    path = Path(home) / "feedback.jsonl"
    path.write_text(events)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mixllm_cli", "feedback", "--jsonl", str(path)],
                         capture_output=True, text=True, env=env, check=True)
    dt = time.perf_counter() - t
    statuses = [json.loads(x)["status"] for x in out.stdout.splitlines()]
    print(json.dumps({"events": len(statuses), "recorded": statuses.count("recorded"), "seconds": round(dt, 3),
                      "events_per_s_whole_command": round(len(statuses) / dt, 1)}, indent=2))


if __name__ == "__main__":
    main()
