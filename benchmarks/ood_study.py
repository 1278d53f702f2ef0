"""Out-of-domain routing (issue 6): train on two of the three tasks, route the third.

    python benchmarks/ood_study.py [--preset medium] [--write benchmarks/out/ood.md]

For each task T of RouterBench's three (arc-challenge, winogrande, mbpp):
- in-domain: the shipped default (trained on all of train) on the test queries of T;
- out-of-domain, offline only: `train_offline` on the training queries of the two other tasks,
  evaluated on the test queries of T;
- out-of-domain + online: that router then receives T's training queries as a stream through
  route + refined feedback for the chosen LLM only (as in continual_study.py), and is evaluated
  again on T's test queries; once with the default online learning (A⁻¹ and, for binary
  feedback, the dynamic-feedback network) and once with head refits on (MIXLLM_ONLINE_REFIT=1).
Cells: mean quality ×100 at the preset (in brackets % of always-GPT-4's quality / cost on T's
test queries), and the relative drop from in-domain. A router that has never seen T may simply
send it to GPT-4 (quality up, cost ×10), so the last column compares at equal cost: the best %
of GPT-4's quality reachable within 25% of its cost on T over a λ grid. The paper reports a 5.44% drop out of domain,
3.35% with online training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, emit
from continual_study import online_phase, test_quality

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.core.encoder import Encoder
from mixllm_cli.dataset import read_dataset
from mixllm_cli.learning.updates import REFIT_ENV
from mixllm_cli.routing.router import Router
from mixllm_cli.training.pipeline import outcome_table, train_offline

TASKS = ("arc-challenge", "winogrande", "mbpp")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    cat = load_catalogue(ROOT / "models.yaml")
    train = read_dataset(ROOT / "data/routerbench/train.jsonl")
    test = read_dataset(ROOT / "data/routerbench/test.jsonl")
    encoder = Encoder.from_dir(ROOT / "artifacts/encoder")
    with tempfile.TemporaryDirectory() as empty:
        default = Router.load(Path(empty))
    lines = [(f"Test quality at the `{args.preset}` preset on the held-out task's test queries (mean quality ×100; "
             "in brackets % of always-GPT-4's quality / cost on those queries)."), "",
             ("| held-out task | in-domain (trained on all tasks) | out of domain, offline only | drop "
             "| + online feedback (default) | drop | + online feedback with head refits | drop "
              "| ≤25% cost frontier: in-domain / offline / + online / + online with refits |"),
             "|---|---|---|---|---|---|---|---|---|"]
    drops = []
    for task in TASKS:
        t_test = [r for r in test if r.task == task]
        t_online = [r for r in train if r.task == task]
        t_offline = [r for r in train if r.task != task]
        table = outcome_table(t_test, list(cat.ids))
        enc = encoder.encode(table.queries)
        inside = test_quality(default, enc, table, args.preset)
        home = Path(tempfile.mkdtemp(prefix=f"mixllm-ood-{task}-"))
        data = home / "offline.jsonl"
        data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in t_offline))
        train_offline(data, cat, home / "artifacts", ROOT / "artifacts/encoder")
        offline = test_quality(Router.load(home), enc, table, args.preset)
        on_table = outcome_table(t_online, list(cat.ids))
        on_enc = encoder.encode(on_table.queries)
        results = []
        for refit in (False, True):  # the default (A⁻¹ only for refined feedback), then with head refits
            arm = Path(tempfile.mkdtemp(prefix=f"mixllm-ood-{task}-{refit}-"))
            shutil.copytree(home / "artifacts", arm / "artifacts")
            os.environ[REFIT_ENV] = "1" if refit else "0"
            router, _ = online_phase(arm, t_online, on_table, on_enc, "refined", args.preset)
            results.append(test_quality(router, enc, table, args.preset))
            shutil.rmtree(arm, ignore_errors=True)
        os.environ.pop(REFIT_ENV, None)
        shutil.rmtree(home, ignore_errors=True)

        def cell(r):
            return f"{100 * r[0]:.2f} ({r[1]:.2f} / {r[2]:.2f})"

        d = [100 * (r[0] / inside[0] - 1) for r in (offline, *results)]
        drops.append(d)
        frontier = " / ".join(f"{r[3]:.2f}" for r in (inside, offline, *results))
        lines.append(f"| {task} | {cell(inside)} | {cell(offline)} | {d[0]:+.2f}% | {cell(results[0])} | {d[1]:+.2f}% "
                     f"| {cell(results[1])} | {d[2]:+.2f}% | {frontier} |")
        print(lines[-1], flush=True)
    mean_off, mean_on, mean_refit = np.mean(drops, axis=0)
    lines += ["", (f"mean change from in-domain: offline only {mean_off:+.2f}%, with online feedback {mean_on:+.2f}% "
                  f"(default), {mean_refit:+.2f}% (head refits on); paper: −5.44% and −3.35%")]
    emit(lines, args.write)


if __name__ == "__main__":
    main()
