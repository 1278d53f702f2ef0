"""Write the demo page's sample queries (mixllm_cli/serve/static/samples.json) from the RouterBench
test split: the two shortest queries of each task, whole (the router sees the whole prompt, few-shot
examples included), each labelled with its last question. The package never reads data/ itself.

    python tools/make_demo_samples.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("arc-challenge", "winogrande", "mbpp")
PER_TASK = 2


def label(query: str) -> str:
    """The question a few-shot prompt ends with: the first line of its last block, cut to 90 characters."""
    line = query.strip().split("\n\n")[-1].strip().splitlines()[0].strip()
    return line if len(line) <= 90 else line[:87] + "..."


def main() -> None:
    by_task: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(ROOT / "data" / "routerbench" / "test.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec["task"] in TASKS:
                by_task[rec["task"]].append({"id": rec["id"], "task": rec["task"], "query": rec["query"]})
    samples = []
    for task in TASKS:
        for rec in sorted(by_task[task], key=lambda r: (len(r["query"]), r["id"]))[:PER_TASK]:
            samples.append({**rec, "label": label(rec["query"])})
    out = ROOT / "mixllm_cli" / "serve" / "static" / "samples.json"
    out.write_text(json.dumps({"source": "RouterBench test split (data/routerbench/test.jsonl)",
                               "samples": samples}, ensure_ascii=False, indent=1) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(samples)} samples, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
