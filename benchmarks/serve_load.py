"""Two `mixllm serve` replicas sharing one PostgreSQL, under a bounded load; one is SIGKILLed mid-load.

    python benchmarks/serve_load.py [--requests 20000] [--concurrency 32] [--kill-at 0.5]

Starts a throwaway PostgreSQL cluster (tests/pgcluster.py) and two replicas of the shipped
default on loopback, checks that a query routed on replica A raises the wait replica B sees,
then sends `--requests` requests from `--concurrency` keep-alive connections (half to each
replica; 1 in 5 is a feedback for an earlier decision of the same connection: quality, latency,
tokens). When `--kill-at` of the requests are done, replica A is SIGKILLed; its connections move
to B. It stops by itself. Prints throughput and client-side p50/p99 of /v1/route (before the
kill, after it, overall), then counts rows in PostgreSQL: every acknowledged decision and
feedback is stored, no job without its decision, no decision without its job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path

from _serve import Conn, get_json, percentile, post_json, start_replica, wait_ready
from bench_route import short_queries


async def load(ports: list[int], n: int, concurrency: int, kill_at: float, victim, texts: list[str],
               feedback_every: int) -> dict:
    state = {"next": 0, "done": 0, "killed_at": None}
    acked_decisions: set[str] = set()
    acked_feedback: list[str] = []
    lat_before: list[float] = []
    lat_after: list[float] = []
    errors: dict[str, int] = {}
    rng = random.Random(0)

    async def worker(k: int) -> None:
        port = ports[k % 2]
        conn = Conn(port)
        mine: list[str] = []
        while state["next"] < n:
            i = state["next"]
            state["next"] += 1
            if state["killed_at"] is None and state["done"] >= kill_at * n:
                state["killed_at"] = time.perf_counter()
                victim.send_signal(signal.SIGKILL)
            feedback = feedback_every > 0 and i % feedback_every == feedback_every - 1 and bool(mine)
            if feedback:
                did = mine.pop(rng.randrange(len(mine)))
                body = {"id": did, "quality": round(rng.random(), 3), "latency_ms": round(rng.uniform(200, 4000), 1),
                        "response_tokens": rng.randrange(10, 500)}
                path = "/v1/feedback"
            else:
                body = {"query": texts[i % len(texts)], "budget": ("low", "medium", "high")[i % 3]}
                path = "/v1/route"
            t0 = time.perf_counter()
            try:
                status, raw = await conn.post(path, json.dumps(body).encode())
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                conn.close()
                if port == ports[0] and state["killed_at"] is not None:
                    port = ports[1]  # the replica is gone: move to the survivor
                    conn = Conn(port)
                state["done"] += 1
                continue
            dt = time.perf_counter() - t0
            state["done"] += 1
            if status != 200:
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
                continue
            out = json.loads(raw)
            if feedback:
                if out["status"] == "recorded":
                    acked_feedback.append(did)
            else:
                if "decision_id" not in out:
                    raise SystemExit(f"unexpected answer to {path}: {raw[:300]!r}")
                acked_decisions.add(out["decision_id"])
                mine.append(out["decision_id"])
                (lat_before if state["killed_at"] is None else lat_after).append(dt)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"wall": wall, "t0": t0, "killed_at": state["killed_at"], "acked_decisions": acked_decisions,
            "acked_feedback": acked_feedback, "lat_before": lat_before, "lat_after": lat_after, "errors": errors}


def fmt_ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--kill-at", type=float, default=0.5)
    ap.add_argument("--feedback-every", type=int, default=5, help="1 request in N is a feedback (0: none)")
    args = ap.parse_args()

    import psycopg
    from pgcluster import Cluster

    cluster = Cluster().start()
    procs = []
    tmp = Path(tempfile.mkdtemp(prefix="mixllm-serve-load-"))
    try:
        ports = [18431, 18432]
        for k, port in enumerate(ports):
            procs.append(start_replica(port, tmp / f"home{k}", cluster.url, tmp / f"replica{k}.log"))
        for port, proc in zip(ports, procs):
            wait_ready(port, proc)
        print(f"PostgreSQL {cluster.url}; replicas A :{ports[0]} (pid {procs[0].pid}) and B :{ports[1]} "
              f"(pid {procs[1].pid}), both on the shipped default")

        # Queue state is shared: calls routed on A raise the wait B sees.
        probe = {"query": "Write a python function that checks whether a number is prime.", "lambda": 1000,
                 "max_wait_s": 1000}
        first = post_json(ports[1], "/v1/route", probe)
        llm = first["choice"]
        slots = next(r["slots"] for r in get_json(ports[1], "/v1/llms") if r["id"] == llm)
        for _ in range(slots):
            post_json(ports[0], "/v1/route", probe)
        after = post_json(ports[1], "/v1/route", probe)
        wait = next(c["expected_wait_ms"] for c in after["candidates"] if c["llm"] == llm)
        depth_b = next(r["calls_in_flight"] for r in get_json(ports[1], "/v1/llms") if r["id"] == llm)
        print(f"consistency: B routed to {llm} ({slots} slots), A routed {slots} more; B now sees "
              f"{depth_b} calls in flight and expected_wait_ms {wait:.0f} for {llm} (was "
              f"{next(c['expected_wait_ms'] for c in first['candidates'] if c['llm'] == llm):.0f})")
        for d in (first, after):  # free the probe's slots so they do not skew the load
            post_json(ports[1], "/v1/feedback", {"id": d["decision_id"], "latency_ms": 1.0})

        texts = short_queries(2000)
        r = asyncio.run(load(ports, args.requests, args.concurrency, args.kill_at, procs[0], texts,
                              args.feedback_every))
        procs[0].wait()
        routes = len(r["lat_before"]) + len(r["lat_after"])
        print(f"load: {args.requests} requests ({routes} routes acknowledged, {len(r['acked_feedback'])} feedback "
              f"recorded), {args.concurrency} connections, {r['wall']:.1f} s wall, "
              f"{(routes + len(r['acked_feedback'])) / r['wall']:.0f} requests/s, {routes / r['wall']:.0f} routes/s")
        killed = r["killed_at"] - r["t0"] if r["killed_at"] else None
        print(f"/v1/route before the kill (2 replicas, {killed:.1f} s): {len(r['lat_before'])} routes, "
              f"{len(r['lat_before']) / killed:.0f}/s, {fmt_ms(r['lat_before'])}")
        print(f"/v1/route after SIGKILL of A (B alone, {r['wall'] - killed:.1f} s): {len(r['lat_after'])} routes, "
              f"{len(r['lat_after']) / (r['wall'] - killed):.0f}/s, {fmt_ms(r['lat_after'])}")
        print(f"/v1/route overall: {fmt_ms(r['lat_before'] + r['lat_after'])}")
        print(f"client-side failures (requests in flight on A when it died, or refused): {r['errors'] or 'none'}")
        print(f"replica B still alive after the load: {procs[1].poll() is None}; "
              f"/healthz {get_json(ports[1], '/healthz')['status']}")

        with psycopg.connect(cluster.url) as db:
            def q(sql: str) -> int:
                return db.execute(sql).fetchone()[0]

            # The snapshot folds the log at most once a second: give B's last pass time to land.
            waited = time.perf_counter()
            while (q("SELECT COALESCE(MAX(last_seq), 0) FROM online_snapshot") < q("SELECT MAX(seq) FROM feedback")
                   and time.perf_counter() - waited < 15):
                time.sleep(0.1)
            waited = time.perf_counter() - waited
            stored = {row[0] for row in db.execute("SELECT id FROM decisions")}
            fb = q("SELECT COUNT(*) FROM feedback")
            missing = r["acked_decisions"] - stored
            print(f"rows: {len(stored)} decisions ({len(r['acked_decisions'])} acknowledged + 2 probes + "
                  f"{slots} consistency routes; {len(missing)} acknowledged but missing; "
                  f"{len(stored - r['acked_decisions']) - slots - 2} committed but never acknowledged, i.e. in "
                  f"flight at the kill), {fb} feedback rows ({len(r['acked_feedback'])} acknowledged as recorded, "
                  f"{fb - len(r['acked_feedback'])} committed but never acknowledged, i.e. in flight at the kill)")
            print(f"half-written: {q('SELECT COUNT(*) FROM decisions d LEFT JOIN jobs j ON j.decision_id = d.id WHERE j.decision_id IS NULL')} "
                  f"decisions without a job, {q('SELECT COUNT(*) FROM jobs j LEFT JOIN decisions d ON d.id = j.decision_id WHERE d.id IS NULL')} "
                  f"jobs without a decision, {q('SELECT COUNT(*) FROM latency_observations o LEFT JOIN jobs j ON j.decision_id = o.decision_id WHERE j.done_s IS NULL')} "
                  f"latency reports whose slot is still open; online snapshot last_seq "
                  f"{q('SELECT COALESCE(MAX(last_seq), 0) FROM online_snapshot')} of {q('SELECT MAX(seq) FROM feedback')} "
                  f"({waited:.1f} s after the load ended)")
            acked_fb_ids = set(r["acked_feedback"])
            stored_fb = {row[0] for row in db.execute("SELECT decision_id FROM feedback")}
            print(f"feedback acknowledged but missing: {len(acked_fb_ids - stored_fb)}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except Exception:  # noqa: BLE001
                    p.kill()
        cluster.stop()
        if not os.environ.get("KEEP"):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
