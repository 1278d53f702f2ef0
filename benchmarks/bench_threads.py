"""Encoder threads and spinning, on an idle machine and with one core kept busy by another process.

    python benchmarks/bench_threads.py [--rounds 3] [--n-jsonl 1000] [--pin]

For each condition (idle; one busy core: a `while True: pass` process, pinned to the last CPU
with --pin) and each configuration (MIXLLM_THREADS 1, 2 and unset = the automatic choice, each
with the encoder's threads spinning between runs or not: MIXLLM_ENCODER_SPIN=1/0), a fresh
process loads the shipped router and measures what benchmarks/bench_route.py measures in
process: warm routing of one query (p50 over 200 distinct queries) and `route --jsonl`
throughput on `--n-jsonl` short queries. Configurations alternate within each round, so a
change in the machine's load hits them all alike; the table shows the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CONFIGS = [(threads, spin) for threads in ("1", "2", "auto") for spin in ("1", "0")]


def worker(n_jsonl: int) -> None:
    """One configuration, in this process (its settings come from the environment)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the `mixllm` command does
    from bench_route import short_queries

    from mixllm_cli.core.encoder import _thread_count
    from mixllm_cli.output import json_line
    from mixllm_cli.routing.jsonl import route_jsonl
    from mixllm_cli.routing.router import Router

    router = Router.load()
    router.route(["warm-up"], "low")
    lat = []
    for q in short_queries(200):
        t = time.perf_counter()
        router.route([q], "low")
        lat.append((time.perf_counter() - t) * 1000)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i, q in enumerate(short_queries(n_jsonl)):
            f.write(json.dumps({"id": i, "query": q}) + "\n")
    try:
        with open(os.devnull, "w") as sink:
            t = time.perf_counter()
            route_jsonl(router, f.name, "low", None, emit=lambda obj: json_line(obj, sink))
            qps = n_jsonl / (time.perf_counter() - t)
    finally:
        os.unlink(f.name)
    print(json.dumps({"threads": _thread_count(), "warm_p50_ms": statistics.median(lat), "jsonl_qps": qps}))


def run_config(threads: str, spin: str, n_jsonl: int, home: str) -> dict[str, float]:
    env = dict(os.environ, MIXLLM_HOME=home, MIXLLM_ENCODER_SPIN=spin, MIXLLM_PROGRESS="off")
    env.pop("MIXLLM_THREADS", None)
    if threads != "auto":
        env["MIXLLM_THREADS"] = threads
    out = subprocess.run([sys.executable, __file__, "--worker", "--n-jsonl", str(n_jsonl)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker failed (threads {threads}, spin {spin}):\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_hog(pin: bool) -> subprocess.Popen[bytes]:
    """Another process that keeps one core busy (pinned to the last CPU with --pin)."""
    code = "import os, sys\nif sys.argv[1] == '1': os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})\nwhile True: pass"
    return subprocess.Popen([sys.executable, "-c", code, "1" if pin else "0"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-jsonl", type=int, default=1000)
    ap.add_argument("--pin", action="store_true", help="pin the busy loop to the last CPU")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.n_jsonl)
        return
    from mixllm_cli.core.encoder import usable_cpus

    home = tempfile.mkdtemp(prefix="mixllm-bench-threads-")
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for condition in ("idle", "busy"):
            hog = start_hog(args.pin) if condition == "busy" else None
            try:
                time.sleep(0.5 if hog else 0.0)
                order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]
                for threads, spin in order:
                    results.setdefault((condition, threads, spin), []).append(run_config(threads, spin, args.n_jsonl, home))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    print(f"usable CPUs {usable_cpus()} (os.cpu_count() {os.cpu_count()}); {args.rounds} rounds; busy core "
          f"{'pinned' if args.pin else 'not pinned'}; medians over rounds")
    print(f"{'condition':9} {'threads':>7} {'spin':>4} {'(n)':>3} {'warm p50 ms':>11} {'JSONL q/s':>9}")
    for (condition, threads, spin), runs in results.items():
        p50 = statistics.median(x["warm_p50_ms"] for x in runs)
        qps = statistics.median(x["jsonl_qps"] for x in runs)
        print(f"{condition:9} {threads:>7} {spin:>4} {int(runs[0]['threads']):>3} {p50:11.2f} {qps:9.1f}")


if __name__ == "__main__":
    main()
