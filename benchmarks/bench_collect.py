"""`mixllm collect` against the local fake provider: throughput and mixllm's own CPU per call.

    python benchmarks/bench_collect.py [--n 1000] [--concurrency 32] [--repeat 3] [--cli]

Starts `tests/fake_openai.py` in a subprocess (no artificial latency: the fake answers as fast as
it can), writes N generated arithmetic prompts (30% hard) and a catalogue of the three fake LLMs
(slots 32 each), then runs `collect` in this process on N prompts × 3 LLMs with --concurrency,
streaming, the `number` grader, a fresh journal each time. Reported per run:

- calls/s: calls answered per second of wall time;
- CPU ms per call of this process (user + system from `resource.getrusage(RUSAGE_SELF)`: the
  event loop, httpx, the journal writes and the grader threads), target <= 2 ms;
- the fake's CPU ms per call (from /proc), to show which side is the bottleneck: the side whose
  CPU per call is larger saturates its core first (2 cores: one each);
- wall time of the whole run (prompt file read, calls, grading, dataset written).

With --delay-scale S the fakes sleep as slow LLMs would (S × their ttft and per-token times): the
run is then bound by the fake's latency (calls/s ≈ concurrency / latency), as against a real endpoint.

With --cli the same run is also timed as a user runs it, `python -m mixllm_cli collect ...` in a
subprocess (start-up and import included).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import catalogue_yaml, write_prompts


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_fake(delay_scale: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", "0",
                             "--delay-scale", str(delay_scale)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit("the fake server did not start")
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="prompts (each called on 3 LLMs)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="also time the command as a subprocess")
    ap.add_argument("--delay-scale", type=float, default=0.0,
                    help="the fakes' latencies (ttft 100-400 ms, 40-200 tokens/s) times this; 0: none")
    args = ap.parse_args()

    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.collect.runner import CollectOptions, collect

    fake, url = start_fake(args.delay_scale)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            write_prompts(d / "prompts.jsonl", args.n, hard_fraction=0.3, seed=1)
            (d / "models.yaml").write_text(catalogue_yaml(url, slots=32))
            catalogue = load_catalogue(d / "models.yaml")
            options = CollectOptions(concurrency=args.concurrency, grader="number")
            # Warm up: imports, connections, the fake's first requests.
            collect(d / "prompts.jsonl", d / "warm.jsonl", catalogue, options=options)
            rows = []
            for k in range(args.repeat):
                out = d / f"run{k}.jsonl"
                cpu0, fake0, t0 = self_cpu_s(), proc_cpu_s(fake.pid), time.perf_counter()
                report = collect(d / "prompts.jsonl", out, catalogue, options=options)
                wall = time.perf_counter() - t0
                cpu, fake_cpu = self_cpu_s() - cpu0, proc_cpu_s(fake.pid) - fake0
                calls = report.answered_run
                assert calls == 3 * args.n and report.complete, report.problem()
                rows.append((calls / wall, 1000 * cpu / calls, 1000 * fake_cpu / calls, wall))
                print(f"run {k + 1}: {calls} calls in {wall:.2f} s = {calls / wall:.0f} calls/s; CPU per call: "
                      f"collect {1000 * cpu / calls:.2f} ms, fake {1000 * fake_cpu / calls:.2f} ms", flush=True)
            med = [statistics.median(r[i] for r in rows) for i in range(4)]
            print(f"median of {args.repeat}: {med[0]:.0f} calls/s, collect CPU {med[1]:.2f} ms/call (target <= 2), "
                  f"fake CPU {med[2]:.2f} ms/call, wall {med[3]:.2f} s for {args.n} prompts x 3 LLMs "
                  f"at concurrency {args.concurrency}, fake delay scale {args.delay_scale:g}")
            if args.cli:
                env = {**os.environ, "MIXLLM_HOME": str(d / "home")}
                cmd = [sys.executable, "-m", "mixllm_cli", "collect", str(d / "prompts.jsonl"), "--out",
                       str(d / "cli.jsonl"), "--catalogue", str(d / "models.yaml"), "--grader", "number",
                       "--concurrency", str(args.concurrency)]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, check=False, env=env, cwd=ROOT, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if done.returncode != 0:
                    raise SystemExit(f"the command failed:\n{done.stderr}")
                print(f"`mixllm collect` as a command: {wall:.2f} s wall for {args.n} prompts x 3 LLMs "
                      "(start-up included)")
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
