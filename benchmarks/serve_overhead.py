"""One `mixllm serve` replica on SQLite: what HTTP adds beyond the encoder, and throughput against
the in-process JSONL path.

    python benchmarks/serve_overhead.py [--n 300] [--n-load 2000] [--concurrency 32]

Latency: for each of `--n` distinct short queries, in turn, (a) the encoder alone in process
(`Encoder.encode([q])`), (b) in-process routing with the queue state (`Router.predict` +
`Router.decisions` on a SQLite store: what `mixllm route` does after start-up), (c) one POST
/v1/route from a keep-alive client (sequential, nothing else in flight). Interleaving keeps a
busy machine's drift out of the differences. Overhead = p50 over queries of (c − the encoder time
the server reports for that request in its Server-Timing header); target <= 3 ms. Also printed:
c − a and c − b, which compare two processes (the benchmark's warm caches against the server's,
which the benchmark's own encoder call has just evicted). Then the same queries again, back to
back with nothing run between them (the server's caches stay warm, as with a remote client):
the same overhead statistic. Both sides run the encoder with
MIXLLM_ENCODER_SPIN=0 (the server's default) and numpy's BLAS on one thread (the CLI's default).
Throughput: `route_jsonl` in process on `--n-load` queries with the state (batches of 64), then
the server under `--concurrency` keep-alive connections on the same queries, twice each,
alternating; target: server >= 80% of in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from _serve import Conn, percentile, start_replica, wait_ready
from bench_route import short_queries


async def sequential(port: int, texts: list[str]) -> list[tuple[float, dict[str, float]]]:
    """POST each text in turn, back to back: (round trip in s, the server's Server-Timing in ms) per request."""
    conn, out = Conn(port), []
    for t in texts:
        t0 = time.perf_counter()
        status, _ = await conn.post("/v1/route", json.dumps({"query": t}).encode())
        out.append((time.perf_counter() - t0, conn.server_timing()))
        assert status == 200
    conn.close()
    return out


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of a process (Linux /proc)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            comm, rest = f.read().rsplit(")", 1)
        fields = rest.split()
        name = "event loop" if int(tid) == pid else f"{comm.split('(', 1)[1]} {tid}"  # the others: onnxruntime's, executors
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


async def concurrent(port: int, texts: list[str], concurrency: int) -> float:
    state = {"next": 0}

    async def worker() -> None:
        conn = Conn(port)
        while state["next"] < len(texts):
            i = state["next"]
            state["next"] += 1
            status, _ = await conn.post("/v1/route", json.dumps({"query": texts[i]}).encode())
            assert status == 200
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    # Like the server (which sets it for itself), the in-process baseline runs its encoder without
    # busy-waiting threads, so the comparison is like for like (override: MIXLLM_ENCODER_SPIN=1).
    os.environ.setdefault("MIXLLM_ENCODER_SPIN", "0")
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--n-load", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()

    from mixllm_cli.output import json_line
    from mixllm_cli.routing.jsonl import route_jsonl
    from mixllm_cli.routing.router import Router
    from mixllm_cli.state.sqlite import StateStore

    tmp = Path(tempfile.mkdtemp(prefix="mixllm-serve-overhead-"))
    port = 18451
    proc = start_replica(port, tmp / "server-home", None, tmp / "replica.log")
    try:
        wait_ready(port, proc)
        router = Router.load(tmp / "inproc-home")
        store = StateStore(tmp / "inproc-home" / "state.sqlite3")
        texts = short_queries(args.n + args.n_load + 50)
        warm = texts[-50:]
        for t in warm[:20]:
            router.decisions(router.predict([t]), "medium", router.preset("medium").lam, queries=[t], state=store)
        asyncio.run(sequential(port, warm[20:]))

        async def interleaved() -> tuple[list[float], list[float], list[float], list[float]]:
            enc, inproc, served, served_enc = [], [], [], []
            conn = Conn(port)  # one keep-alive connection, one event loop
            for t in texts[:args.n]:
                t0 = time.perf_counter()
                router.encoder.encode([t])
                enc.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                router.decisions(router.predict([t]), "medium", router.preset("medium").lam, queries=[t],
                                 state=store)
                inproc.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                status, _ = await conn.post("/v1/route", json.dumps({"query": t}).encode())
                served.append(time.perf_counter() - t0)
                assert status == 200
                served_enc.append(conn.server_timing()["encode"] / 1000)
            conn.close()
            return enc, inproc, served, served_enc

        enc, inproc, served, served_enc = asyncio.run(interleaved())
        ms = lambda v: statistics.median(v) * 1000
        diff = [s - e for s, e in zip(served, enc)]
        diff_route = [s - r for s, r in zip(served, inproc)]
        diff_own = [s - e for s, e in zip(served, served_enc)]
        print(f"latency over {args.n} queries, one at a time (p50 / p99 ms): encoder alone {ms(enc):.2f} / "
              f"{percentile(enc, 99) * 1000:.2f}; in-process route with state {ms(inproc):.2f} / "
              f"{percentile(inproc, 99) * 1000:.2f}; POST /v1/route {ms(served):.2f} / "
              f"{percentile(served, 99) * 1000:.2f}")
        print(f"overhead beyond the encoder: p50 {ms(diff_own):.2f} ms (target <= 3 ms), the round trip minus the "
              f"server's own encoder time for that request (Server-Timing; server-side encoder p50 "
              f"{ms(served_enc):.2f} ms)")
        print(f"  across processes: round trip minus the benchmark's own encoder call on the same query p50 "
              f"{ms(diff):.2f} ms; minus in-process routing (heads, decision, SQLite write in both) p50 "
              f"{ms(diff_route):.2f} ms")
        b2b = asyncio.run(sequential(port, texts[:args.n]))
        print(f"  back to back (the same queries again, nothing run between requests, so the server's caches stay "
              f"warm): round trip p50 {ms([r for r, _ in b2b]):.2f} ms, overhead beyond the server's own encoder "
              f"time p50 {ms([r - st['encode'] / 1000 for r, st in b2b]):.2f} ms (server-side encoder p50 "
              f"{ms([st['encode'] / 1000 for _, st in b2b]):.2f} ms)")
        parts = {k: statistics.median(st[k] for _, st in b2b) for k in ("encode", "predict", "decide", "total")}
        print(f"    its Server-Timing p50 (ms): encode {parts['encode']:.2f}, predict {parts['predict']:.2f}, decide "
              f"{parts['decide']:.2f}, total {parts['total']:.2f}; round trip beyond the server's total "
              f"{ms([r - st['total'] / 1000 for r, st in b2b]):.2f}")

        load = texts[args.n:args.n + args.n_load]
        src = tmp / "load.jsonl"
        src.write_text("".join(json.dumps({"query": t}) + "\n" for t in load))
        for attempt in (1, 2):
            t0 = time.perf_counter()
            sink = io.StringIO()
            route_jsonl(router, str(src), None, None, state=store, emit=lambda obj, sink=sink: json_line(obj, sink))
            inproc_qps = len(load) / (time.perf_counter() - t0)
            before = thread_cpu_s(proc.pid)
            server_qps = asyncio.run(concurrent(port, load, args.concurrency))
            after = thread_cpu_s(proc.pid)
            per_thread = sorted(((after[k] - before.get(k, 0.0)) / len(load) * 1000, k) for k in after)
            busy = [f"{k} {ms:.2f}" for ms, k in reversed(per_thread) if ms >= 0.05]
            print(f"throughput run {attempt}: in-process route_jsonl (batches of 64, with state) {inproc_qps:.0f} "
                  f"queries/s; server, {args.concurrency} connections {server_qps:.0f} queries/s = "
                  f"{100 * server_qps / inproc_qps:.0f}% (target >= 80%)")
            print(f"  server CPU per routed query {sum(ms for ms, _ in per_thread):.2f} ms; by thread (ms): "
                  f"{', '.join(busy)}")
        print(f"machine load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
