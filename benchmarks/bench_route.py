"""Speed and memory of routing on the shipped default (or --home).

    python benchmarks/bench_route.py [--home DIR] [--n-jsonl 1000]

Prints: cold `mixllm route` wall time (fresh process, median of 5 after one warm-up for the page
cache), warm in-process routing of one query (p50/p95 over 200 distinct queries), JSONL
throughput on 1,000 short queries (whole command, start-up included, and in-process), and the
peak RSS of the `route` and `route --jsonl` processes. Targets (issue 2): cold <= 1.0 s,
warm p50 <= 15 ms, >= 200 queries/s, peak RSS <= 400 MB.
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
# Like the `mixllm` command (cli.main): numpy's BLAS on one thread, so in-process numbers are the CLI's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

TOPICS = ["rainbows", "binary search", "the French revolution", "photosynthesis", "compound interest",
          "black holes", "TCP handshakes", "sourdough bread", "the Pythagorean theorem", "vaccines",
          "inflation", "recursion", "plate tectonics", "haiku", "SQL joins", "jazz", "gradient descent",
          "the water cycle", "supply and demand", "quantum entanglement"]
TEMPLATES = ["Explain {t} to a ten-year-old.", "Write a short poem about {t}.", "What is the history of {t}?",
             "Give three facts about {t}.", "Summarise {t} in one sentence.", "Write a python function about {t}.",
             "Why does {t} matter?", "Compare {t} with something everyday.", "List common mistakes about {t}.",
             "Quiz me on {t}: one multiple-choice question with answers A) to D)."]


def short_queries(n: int) -> list[str]:
    out = []
    i = 0
    while len(out) < n:
        t = TOPICS[i % len(TOPICS)]
        tpl = TEMPLATES[(i // len(TOPICS)) % len(TEMPLATES)]
        out.append(tpl.format(t=t) + ("" if i < 200 else f" (variant {i})"))
        i += 1
    return out


WRAPPER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "p = subprocess.run(sys.argv[2:], stdin=open(sys.argv[1], 'rb'), stdout=subprocess.DEVNULL); "
           "dt = time.perf_counter() - t; "
           "print(p.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(cmd: list[str], stdin: str = os.devnull) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh process running `cmd`."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, stdin, *cmd], capture_output=True, text=True, check=True)
    code, dt, rss_kb = out.stdout.split()
    if code != "0":
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}")
    return float(dt), int(rss_kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--n-jsonl", type=int, default=1000)
    args = ap.parse_args()
    if not args.home:  # routes record their queue state: keep it out of the user's own home
        os.environ["MIXLLM_HOME"] = tempfile.mkdtemp(prefix="mixllm-bench-")
    mixllm = [sys.executable, "-m", "mixllm_cli"]
    home = ["--home", args.home] if args.home else []
    results: dict[str, object] = {}

    query = "Write a haiku about rain on a tin roof."
    timed([*mixllm, "route", query, "--budget", "low", "--json", *home])  # warm the page cache
    cold = [timed([*mixllm, "route", query, "--budget", "low", "--json", *home]) for _ in range(5)]
    results["cold_route_s_median"] = round(statistics.median(c[0] for c in cold), 3)
    results["cold_route_s_min"] = round(min(c[0] for c in cold), 3)
    results["route_peak_rss_mb"] = round(max(c[1] for c in cold), 1)

    from mixllm_cli.routing.router import Router

    t0 = time.perf_counter()
    router = Router.load(args.home)
    router.route(["warm-up"], "low")
    results["in_process_load_and_first_route_s"] = round(time.perf_counter() - t0, 3)
    lat = []
    for q in short_queries(200):
        t = time.perf_counter()
        router.route([q], "low")
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    results["warm_route_ms_p50"] = round(lat[len(lat) // 2], 2)
    results["warm_route_ms_p95"] = round(lat[int(len(lat) * 0.95)], 2)

    # The waiting-time model and the SQLite round trip, per routed query (in process).
    from mixllm_cli.core.latency import QueueState, service_time_s
    from mixllm_cli.state.sqlite import StateStore

    est = list(router.latency_defaults().values())
    queue = QueueState.empty(router.llm_ids, router.slots, 0.0)
    t = time.perf_counter()
    for k in range(2000):
        queue.waits(k * 0.1)
        queue.admit(k % len(est), k * 0.1, float(service_time_s(est[k % len(est)], 50.0)))
    results["latency_model_us_per_query"] = round((time.perf_counter() - t) / 2000 * 1e6, 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp) / "state.sqlite3")
        name, lam = router.resolve_budget("low", None)
        with_state, without, predict = [], [], []
        for q in short_queries(200):
            timings: dict[str, float] = {}
            preds = router.predict([q], timings=timings)
            predict.append(timings["predict"] * 1000)
            t = time.perf_counter()
            router.decisions(preds, name, lam, queries=[q], state=store)
            with_state.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            router.decisions(preds, name, lam, queries=[q])
            without.append((time.perf_counter() - t) * 1000)
        results["predict_ms_p50"] = round(statistics.median(predict), 3)  # heads and uncertainty, after encoding
        results["decide_ms_p50_with_state"] = round(statistics.median(with_state), 3)
        results["decide_ms_p50_without_state"] = round(statistics.median(without), 3)
        results["state_round_trip_ms_p50"] = round(statistics.median(with_state) - statistics.median(without), 3)
        store.close()
    cold_dry = [timed([*mixllm, "route", query, "--budget", "low", "--json", "--no-queue", *home]) for _ in range(5)]
    results["cold_route_no_queue_s_median"] = round(statistics.median(c[0] for c in cold_dry), 3)

    queries = short_queries(args.n_jsonl)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i, q in enumerate(queries):
            f.write(json.dumps({"id": i, "query": q}) + "\n")
        path = f.name
    try:
        dt, rss = timed([*mixllm, "route", "--jsonl", "-", *home], stdin=path)
        results["jsonl_queries"] = len(queries)
        results["jsonl_command_s"] = round(dt, 2)
        results["jsonl_queries_per_s_whole_command"] = round(len(queries) / dt, 1)
        results["jsonl_peak_rss_mb"] = round(rss, 1)
        from mixllm_cli.output import json_line
        from mixllm_cli.routing.jsonl import route_jsonl

        with open(os.devnull, "w") as sink:
            t = time.perf_counter()
            route_jsonl(router, path, "low", None, emit=lambda obj: json_line(obj, sink))
            results["jsonl_queries_per_s_in_process"] = round(len(queries) / (time.perf_counter() - t), 1)
    finally:
        os.unlink(path)
    results["cpu_count"] = os.cpu_count()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
