"""Helpers for the serve benchmarks: start `mixllm serve` replicas, and a light HTTP/1.1 client.

The client speaks keep-alive HTTP/1.1 over asyncio streams by hand (a few dozen lines) so the
load generator costs far less CPU per request than the service it measures, on a 2-core box.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def start_replica(port: int, home: Path, store: str | None = None, log: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mixllm_cli", "serve", "--port", str(port), "--home", str(home), "--no-auth"]
    if store:
        cmd += ["--store", store]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if log is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=out, env=env)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"replica on port {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"replica on port {port} not ready after {timeout:.0f} s")


def get_json(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


def post_json(port: int, path: str, body: object) -> object:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                          b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}  # of the last response
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.partition(b":")
            self.headers[k.strip().lower().decode()] = v.strip().decode()
        return status, await self.reader.readexactly(int(self.headers.get("content-length", 0)))

    def server_timing(self) -> dict[str, float]:
        """The last response's Server-Timing header as {phase: milliseconds}."""
        out = {}
        for part in self.headers.get("server-timing", "").split(","):
            name, _, dur = part.strip().partition(";dur=")
            if dur:
                out[name] = float(dur)
        return out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


def queries(n: int) -> list[str]:
    """Real prompts: the RouterBench test split's queries, cycled, truncated to 2,000 characters."""
    texts = []
    with open(ROOT / "data" / "routerbench" / "test.jsonl") as f:
        for line in f:
            texts.append(json.loads(line)["query"][:2000])
    return [texts[i % len(texts)] for i in range(n)]
