"""The paper's continual-training study on our data: offline on part of train, online on the rest.

    python benchmarks/continual_study.py [--preset medium] [--write benchmarks/out/continual.md]

For offline:online = 80:20, 50:50, 30:70 (a seeded split of data/routerbench/train.jsonl):
train-offline on the offline part; then stream the online part through route (the decision log
in a fresh home; waiting disabled with τ = 1e9, this study is about quality) and feedback for
the chosen LLM only, in micro-batches of 64 queries: refined = its recorded quality and response
tokens; binary = good iff quality > 0.7 (the paper's simulated user). The router is reloaded after
each micro-batch so later decisions use what earlier feedback taught. Then evaluate the test
split at one preset. Also prints feedback throughput (events/s through `record_feedback`).

The "ceiling" column trains offline on ALL of train (the online part's outcomes for every LLM
known in advance): what online learning from partial feedback could at best recover.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import emit

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.core.encoder import Encoder
from mixllm_cli.dataset import read_dataset
from mixllm_cli.learning.feedback import Feedback, record_feedback
from mixllm_cli.routing.router import Router, WaitPolicy
from mixllm_cli.state.sqlite import StateStore
from mixllm_cli.training.pipeline import outcome_table, train_offline


def test_quality(router, enc, table, preset, cap=0.25):
    """Mean quality, % of GPT-4's quality and cost at the preset, and the frontier point: the best
    % of GPT-4's quality over a λ grid within `cap` of its cost (the same grid for every arm)."""
    preds = router.predict_encoded(enc.embeddings, enc.token_ids, enc.n_tokens)
    cols = [table.llm_ids.index(i) for i in router.llm_ids]
    q = np.nan_to_num(table.quality[:, cols])
    c = table.cost_usd[:, cols]
    g = router.llm_ids.index("gpt-4-1106-preview")
    rows = np.arange(len(q))

    def at(lam):
        idx, _ = router.decide(preds, lam)
        return (float(q[rows, idx].mean()), 100 * float(q[rows, idx].sum() / q[:, g].sum()),
                100 * float(c[rows, idx].sum() / c[:, g].sum()))

    frontier = max((r[1] for r in map(at, np.logspace(-1, 2, 61)) if r[2] <= 100 * cap), default=0.0)
    return (*at(router.preset(preset).lam), frontier)


def online_phase(home, records, table, enc, mode, preset, batch=64):
    store = StateStore.for_home(home)
    router = Router.load(home)
    n_events, seconds = 0, 0.0
    for start in range(0, len(records), batch):
        sl = slice(start, start + batch)
        preds = router.predict_encoded(enc.embeddings[sl], enc.token_ids[sl], enc.n_tokens[sl])
        qs = table.queries[sl]
        ds = router.decisions(preds, preset, router.preset(preset).lam, queries=qs, state=store,
                              policy=WaitPolicy(tolerance_s=1e9))
        items = []
        for k, d in enumerate(ds):
            j = table.llm_ids.index(d.choice)
            quality = table.quality[start + k, j]
            if np.isnan(quality):
                continue  # the call produced no graded answer: nothing to report
            tokens = table.response_tokens[start + k, j]
            fb = (Feedback(d.decision_id, quality=float(quality), response_tokens=int(tokens)) if mode == "refined"
                  else Feedback(d.decision_id, good=bool(quality > 0.7)))
            items.append(("bench", fb))
        t = time.perf_counter()
        record_feedback(router, store, items, home)
        seconds += time.perf_counter() - t
        n_events += len(items)
        router = Router.load(home)
    store.close()
    return router, n_events / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--write", default=None)
    ap.add_argument("--validation", action="store_true",
                    help="hold out 25%% of train as the evaluation set (for choosing settings; test unread)")
    ap.add_argument("--refit-min", type=int, default=None)
    ap.add_argument("--refit-growth", type=float, default=None)
    ap.add_argument("--kappa-cap", type=float, default=None)
    ap.add_argument("--refit", action="store_true", help="switch head refits on (MIXLLM_ONLINE_REFIT=1)")
    ap.add_argument("--ratios", default="0.8,0.5,0.3", help="offline shares to run (comma-separated)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the offline/online split")
    args = ap.parse_args()
    from mixllm_cli.learning import online, updates

    for flag, const in (("refit_min", "REFIT_MIN"), ("refit_growth", "REFIT_GROWTH"), ("kappa_cap", "KAPPA_CAP")):
        if getattr(args, flag) is not None:
            setattr(online, const, getattr(args, flag))
    if args.refit:
        os.environ[updates.REFIT_ENV] = "1"
    cat = load_catalogue(ROOT / "models.yaml")
    train = read_dataset(ROOT / "data/routerbench/train.jsonl")
    test = read_dataset(ROOT / "data/routerbench/test.jsonl")
    if args.validation:
        order = np.random.default_rng(1).permutation(len(train))
        cut = len(train) // 4
        test = [train[i] for i in order[:cut]]
        train = [train[i] for i in order[cut:]]
    encoder = Encoder.from_dir(ROOT / "artifacts/encoder")
    test_table = outcome_table(test, list(cat.ids))
    test_enc = encoder.encode(test_table.queries)
    perm = np.random.default_rng(args.seed).permutation(len(train))
    title = (f"Test quality at the `{args.preset}` preset (mean quality ×100; in brackets % of always-GPT-4's "
             "quality / cost).")
    settings = (f"online settings: refit after >= {updates.REFIT_MIN} new outcomes and >= "
                f"{updates.REFIT_GROWTH:.0%} more rows ({'on' if updates.refits_enabled() else 'off'}), "
                f"κ cap {online.KAPPA_CAP:g}; split seed {args.seed}; evaluated on {'a validation split of train' if args.validation else 'the test split'}")
    # The ceiling: every outcome of the online part known offline (full feedback on all of train).
    # No online learner from partial feedback can be expected to beat it.
    full_home = Path(tempfile.mkdtemp(prefix="mixllm-full-"))
    full_path = full_home / "all.jsonl"
    full_path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in train))
    train_offline(full_path, cat, full_home / "artifacts", ROOT / "artifacts/encoder")
    full = test_quality(Router.load(full_home), test_enc, test_table, args.preset)
    lines = [title, settings, "",
             ("| offline:online | no online training | refined feedback | binary feedback | refined Δ | binary Δ "
             "| full feedback on all (ceiling) Δ | ≤25% cost frontier: none / refined / binary / ceiling |"),
             "|---|---|---|---|---|---|---|---|"]
    rates = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        cut = round(ratio * len(train))
        off = [train[i] for i in perm[:cut]]
        on = [train[i] for i in perm[cut:]]
        base_home = Path(tempfile.mkdtemp(prefix="mixllm-continual-"))
        off_path = base_home / "offline.jsonl"
        off_path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in off))
        train_offline(off_path, cat, base_home / "artifacts", ROOT / "artifacts/encoder")
        on_table = outcome_table(on, list(cat.ids))
        on_enc = encoder.encode(on_table.queries)
        base = test_quality(Router.load(base_home), test_enc, test_table, args.preset)
        res = {}
        for mode in ("refined", "binary"):
            home = Path(tempfile.mkdtemp(prefix=f"mixllm-{mode}-"))
            shutil.copytree(base_home / "artifacts", home / "artifacts")
            router, rate = online_phase(home, on, on_table, on_enc, mode, args.preset)
            rates.append(rate)
            res[mode] = test_quality(router, test_enc, test_table, args.preset)

        def cell(r):
            return f"{100 * r[0]:.2f} ({r[1]:.2f} / {r[2]:.2f})"

        d_ref = 100 * (res["refined"][0] / base[0] - 1)
        d_bin = 100 * (res["binary"][0] / base[0] - 1)
        d_full = 100 * (full[0] / base[0] - 1)
        lines.append(f"| {int(ratio * 100)}:{round((1 - ratio) * 100)} | {cell(base)} | {cell(res['refined'])} | "
                     f"{cell(res['binary'])} | {d_ref:+.2f}% | {d_bin:+.2f}% | {cell(full)} {d_full:+.2f}% | "
                     f"{base[3]:.2f} / {res['refined'][3]:.2f} / {res['binary'][3]:.2f} / {full[3]:.2f} |")
        print(lines[-1], flush=True)
    rate_line = (f"feedback throughput (record + online update, micro-batches of ≤64 events): "
                 f"{min(rates):.0f}–{max(rates):.0f} events/s")
    lines += ["", rate_line]
    emit(lines, args.write)


if __name__ == "__main__":
    main()
