"""What API keys cost `/v1/route`: two `mixllm serve` replicas side by side, one with keys (the
default) and one with --no-auth, asked the same queries back to back.

    python benchmarks/bench_auth.py [--n 1000] [--rounds 2]

Each query goes to three replicas in turn: one with keys and two without (the second pair is the
control: what two identical replicas differ by, the noise floor). The order rotates every query,
so no replica always runs on a cache another just warmed; one keep-alive connection each, nothing
else in flight. Per request: the round trip, and the overhead beyond the encoder (the round trip
minus the encoder time the server reports in its Server-Timing header). Printed: the p50 of each,
and the p50 of the per-query differences (keys − no keys, and the control's). The key has a
requests-per-minute limit (set high enough never to refuse) so the counting path runs too.
Target: <= 0.2 ms added at p50.

Then, in process: `Auth.authorize` on a cached key, per call (the whole of what a request pays
when the key table is fresh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _serve import ROOT, percentile, wait_ready
from bench_route import short_queries


def start(port: int, home: Path, *flags: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mixllm_cli", "serve", "--port", str(port), "--home", str(home), *flags]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(ROOT)})


class Client:
    """One keep-alive HTTP/1.1 connection that can send an Authorization header."""

    def __init__(self, port: int, key: str | None):
        self.port = port
        self.auth = b"" if key is None else b"authorization: Bearer " + key.encode() + b"\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n%s"
                          b"content-length: %d\r\n\r\n%s" % (path.encode(), self.auth, len(body), body))
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        await self.reader.readexactly(int(headers.get("content-length", 0)))
        return status, headers

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def encode_ms(headers: dict[str, str]) -> float:
    for part in headers.get("server-timing", "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == "encode":
            return float(dur)
    raise ValueError("no encode phase in Server-Timing")


NAMES = ("keys", "none", "control")


async def measure(ports: tuple[int, ...], key: str, texts: list[str]) -> dict[str, list[float]]:
    clients = {name: Client(port, key if name == "keys" else None) for name, port in zip(NAMES, ports)}
    out: dict[str, list[float]] = {f"{n}_{k}": [] for n in NAMES for k in ("rt", "over")}
    for i, t in enumerate(texts):
        body = json.dumps({"query": t}).encode()
        for name in NAMES[i % 3:] + NAMES[:i % 3]:
            t0 = time.perf_counter()
            status, headers = await clients[name].post("/v1/route", body)
            rt = (time.perf_counter() - t0) * 1000
            assert status == 200, (name, status)
            out[f"{name}_rt"].append(rt)
            out[f"{name}_over"].append(rt - encode_ms(headers))
    for c in clients.values():
        c.close()
    return out


def in_process(n: int = 20000) -> float:
    """µs per `Auth.authorize` call on a cached key with an rpm limit."""
    from mixllm_cli.serve.auth import Auth
    from mixllm_cli.state import open_store
    from mixllm_cli.state.keys import create_key

    home = Path(tempfile.mkdtemp(prefix="mixllm-bench-auth-"))
    store = open_store(home)
    key = create_key(store, "bench", rpm=1_000_000)[1]
    store.close()
    auth = Auth(home)
    header = b"Bearer " + key.encode()

    async def run() -> float:
        await auth.refresh()
        assert not hasattr(await auth.authorize(header, "/v1/route"), "status")
        t0 = time.perf_counter()
        for _ in range(n):
            await auth.authorize(header, "/v1/route")
        return (time.perf_counter() - t0) / n * 1e6

    try:
        return asyncio.run(run())
    finally:
        auth.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mixllm-bench-auth-"))
    ports = (18461, 18462, 18463)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    key = subprocess.run([sys.executable, "-m", "mixllm_cli", "keys", "create", "bench", "--rpm", "1000000",
                          "--home", str(tmp / "keys-home")], check=True, capture_output=True, text=True,
                         env=env).stdout.strip()
    procs = [start(ports[0], tmp / "keys-home", log=tmp / "keys.log"),
             start(ports[1], tmp / "none-home", "--no-auth", log=tmp / "none.log"),
             start(ports[2], tmp / "control-home", "--no-auth", log=tmp / "control.log")]
    try:
        for port, proc in zip(ports, procs):
            wait_ready(port, proc)
        texts = short_queries(args.n + 50)
        asyncio.run(measure(ports, key, texts[-50:]))  # warm both
        for r in range(args.rounds):
            m = asyncio.run(measure(ports, key, texts[:args.n]))
            med = {k: statistics.median(v) for k, v in m.items()}

            def paired(a: str, b: str, what: str, m: dict[str, list[float]] = m) -> float:
                return statistics.median([x - y for x, y in zip(m[f"{a}_{what}"], m[f"{b}_{what}"])])

            print(f"round {r + 1}, {args.n} queries, p50 ms (keys / no keys / control with no keys): round trip "
                  f"{med['keys_rt']:.3f} / {med['none_rt']:.3f} / {med['control_rt']:.3f}; beyond the encoder "
                  f"{med['keys_over']:.3f} / {med['none_over']:.3f} / {med['control_over']:.3f}")
            print(f"  keys − no keys: difference of p50s beyond the encoder {med['keys_over'] - med['none_over']:+.3f}"
                  f" ms, p50 of per-query differences {paired('keys', 'none', 'over'):+.3f} ms (round trip "
                  f"{paired('keys', 'none', 'rt'):+.3f}); control − no keys (the noise floor): "
                  f"{med['control_over'] - med['none_over']:+.3f} ms, {paired('control', 'none', 'over'):+.3f} ms "
                  f"(round trip {paired('control', 'none', 'rt'):+.3f}); p99 round trip "
                  f"{percentile(m['keys_rt'], 99):.2f} / {percentile(m['none_rt'], 99):.2f} / "
                  f"{percentile(m['control_rt'], 99):.2f} ms")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    print(f"in process: Auth.authorize on a cached key with an rpm limit: {in_process():.2f} µs per call")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
