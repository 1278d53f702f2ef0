"""How long /healthz and a small /v1/route wait while one maximum-size route batch is in flight.

    python benchmarks/bench_healthz_under_load.py [--src PATH] [--rounds 3] [--batch 64x15625 ...]

One replica of the shipped set on SQLite (a fresh home), started the way `mixllm serve` starts it
(`create_app(Service(home))` on uvicorn, with `limits.uvicorn_limits()` when the code has them), no
API keys. For each batch shape QUERIESxCHARS (default: 256x16000, the 4.1 MB batch issue 16 found
stalling a replica for 113 s, and 64x15625, 1,000,000 characters, the most one request may hold
since: `limits.MAX_ROUTE_CHARS`), `--rounds` times: one POST /v1/route of that batch (distinct
RouterBench test prompts, repeated to CHARS characters) while two pollers run back to back, each on
its own keep-alive connection: GET /healthz, and POST /v1/route of one short query, 10 ms apart.
Printed per shape: the batch's status and seconds, and the pollers' p50 / p99 / max in ms over the
requests answered while the batch was in flight (and idle /healthz for reference).
Target (issue 16): /healthz p99 <= 100 ms while a maximum-size batch is routed.

`--src` runs the server from another checkout (e.g. an export of the previous commit) for a
before/after comparison, back to back on the same machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys, uvicorn
from mixllm_cli.serve.app import Service, create_app
try:
    from mixllm_cli.serve.limits import uvicorn_limits
    bounds = uvicorn_limits()
except ImportError:  # code from before the connection limits
    bounds = {}
uvicorn.run(create_app(Service(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False, proxy_headers=False, **bounds)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


def prompts() -> list[str]:
    with open(ROOT / "data" / "routerbench" / "test.jsonl") as f:
        return [json.loads(line)["query"] for line in f]


def batch_body(n: int, chars: int, texts: list[str], round_no: int) -> bytes:
    queries = []
    for i in range(n):
        text, k = "", i
        while len(text) < chars:
            text += " ".join(texts[k % len(texts)].split()) + " "
            k += 97
        queries.append({"query": f"[{round_no}.{i}] {text}"[:chars], "id": str(i)})
    return json.dumps({"queries": queries}, ensure_ascii=False, separators=(",", ":")).encode()


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> int:
    conn.request(method, path, body, {"content-type": "application/json"} if body else {})
    r = conn.getresponse()
    r.read()
    return r.status


def poll(port: int, method: str, path: str, body: bytes | None, stop: threading.Event,
         out: list[tuple[float, float]]) -> None:
    """(sent at, seconds to the answer) per request, back to back 10 ms apart, until `stop`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    while not stop.is_set():
        t0 = time.perf_counter()
        status = request(conn, method, path, body)
        out.append((t0, time.perf_counter() - t0))
        assert status == 200, status
        time.sleep(0.01)
    conn.close()


def run_shape(port: int, n: int, chars: int, rounds: int, texts: list[str]) -> dict[str, object]:
    """The pollers' waits over the requests sent while the batch was in flight (one answered after
    the batch counts: it is the one the batch held up)."""
    health: list[float] = []
    small: list[float] = []
    batches: list[tuple[int, float]] = []
    small_body = json.dumps({"query": "What is the capital of France?"}).encode()
    for r in range(rounds):
        body = batch_body(n, chars, texts, r)
        stop = threading.Event()
        got: dict[str, list[tuple[float, float]]] = {"health": [], "small": []}
        pollers = [threading.Thread(target=poll, args=(port, "GET", "/healthz", None, stop, got["health"])),
                   threading.Thread(target=poll, args=(port, "POST", "/v1/route", small_body, stop, got["small"]))]
        for t in pollers:
            t.start()
        time.sleep(0.2)  # the pollers are connected and running
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        t0 = time.perf_counter()
        try:
            status = request(conn, "POST", "/v1/route", body)
        except ConnectionError:
            status = 0  # refused and closed before the whole body was sent
        t1 = time.perf_counter()
        batches.append((status, t1 - t0))
        conn.close()
        stop.set()
        for t in pollers:
            t.join()
        health += [d for sent, d in got["health"] if t0 <= sent <= t1]
        small += [d for sent, d in got["small"] if t0 <= sent <= t1]
    return {"batch": f"{n}x{chars}", "mb": round(len(batch_body(n, chars, texts, 0)) / 1e6, 2),
            "status": sorted({s for s, _ in batches}), "batch_s": [round(s, 2) for _, s in batches],
            "healthz_ms_p50_p99_max": [round(1000 * percentile(health, q), 1) for q in (50, 99, 100)],
            "healthz_n": len(health),
            "small_route_ms_p50_p99_max": [round(1000 * percentile(small, q), 1) for q in (50, 99, 100)],
            "small_n": len(small)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=ROOT, help="checkout whose mixllm_cli serves (default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", action="append", help="QUERIESxCHARS (repeatable); default 256x16000 and 64x15625")
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in b.split("x")) for b in (args.batch or ["256x16000", "64x15625"])]
    home = Path(tempfile.mkdtemp(prefix="mixllm-healthz-"))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve()), "OPENBLAS_NUM_THREADS": "1"}
    with open(home / "server.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(port)], env=env, stdout=log,
                                stderr=log, cwd=home)
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}); see {home / 'server.log'}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                if request(conn, "GET", "/healthz") == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the server did not start in 120 s") from None
                time.sleep(0.2)
        idle: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(200):
            t0 = time.perf_counter()
            request(conn, "GET", "/healthz")
            idle.append(time.perf_counter() - t0)
        conn.close()
        texts = prompts()
        print(json.dumps({"src": str(args.src), "idle_healthz_ms": [round(1000 * percentile(idle, q), 2)
                                                                     for q in (50, 99, 100)]}))
        for n, chars in shapes:
            print(json.dumps(run_shape(port, n, chars, args.rounds, texts)), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
