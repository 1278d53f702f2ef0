"""One process of benchmarks/stress_state.py (run by it; not a test)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import fields, replace

from mixllm_cli.routing.router import Router
from mixllm_cli.state.sqlite import StateStore


def one_row(preds, k):
    return replace(preds, **{f.name: getattr(preds, f.name)[k:k + 1] for f in fields(preds) if f.name != "llm_ids"})


def main() -> None:
    home, seconds, tag = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    router = Router.load(home)
    store = StateStore.for_home(home)
    defaults = router.latency_defaults()
    queries = [f"{tag} question {i}: explain topic {i % 17} in detail" for i in range(50)]
    preds = router.predict(queries)  # the loop exercises the state, not the encoder
    lam = router.preset("high").lam
    end = time.time() + seconds
    i, times = 0, []
    while time.time() < end:
        k = i % len(queries)
        t = time.perf_counter()
        d = router.decisions(one_row(preds, k), "high", lam, queries=[queries[k]], state=store)[0]
        times.append((time.perf_counter() - t) * 1000)
        print(d.decision_id, flush=True)  # acknowledged: committed before this line
        if i % 2 == 0:
            store.complete(d.decision_id, latency_ms=900.0, response_tokens=30, defaults=defaults.get)
        i += 1
    print(json.dumps({"admission_ms": [round(x, 3) for x in times]}), flush=True)


if __name__ == "__main__":
    main()
