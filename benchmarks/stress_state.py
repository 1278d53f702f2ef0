"""Concurrency of the home's state: N processes route and report latencies at once.

    python benchmarks/stress_state.py [--processes 4] [--seconds 30]

Each process loads the shipped default, then loops: admit one decision to the queue (one
BEGIN IMMEDIATE transaction: read the queue, decide, write), print its id once committed, and
report a completion for every other decision, with no pause between calls (far harsher than
real `route` calls, which spend milliseconds encoding). Afterwards the parent checks that every
acknowledged decision is stored, that no process failed (no "database is locked"), and prints
throughput and admission-time percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mixllm-stress-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = ROOT / "benchmarks" / "_stress_worker.py"
    procs = [subprocess.Popen([sys.executable, str(worker), str(home), str(args.seconds), f"p{k}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for k in range(args.processes)]
    acked, times, failures = [], [], []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            failures.append(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
        lines = out.splitlines()
        summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
        acked += [x for x in lines if not x.startswith("{")]
        times += summary.get("admission_ms", [])
    with sqlite3.connect(home / "state.sqlite3") as db:
        stored = {r[0] for r in db.execute("SELECT id FROM decisions")}
        feedback = db.execute("SELECT COUNT(*) FROM latency_observations").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    print(json.dumps({
        "processes": args.processes,
        "seconds": args.seconds,
        "decisions_acknowledged": len(acked),
        "decisions_stored": len(stored),
        "acknowledged_but_missing": len(set(acked) - stored),
        "latency_reports_stored": feedback,
        "failed_processes": failures,
        "database_locked_errors": sum("locked" in f for f in failures),
        "decisions_per_s_total": round(len(acked) / args.seconds, 1),
        "admission_ms_p50": round(float(np.percentile(times, 50)), 2) if times else None,
        "admission_ms_p99": round(float(np.percentile(times, 99)), 2) if times else None,
        "admission_ms_max": round(max(times), 1) if times else None,
        "integrity_check": integrity,
    }, indent=2))


if __name__ == "__main__":
    main()
