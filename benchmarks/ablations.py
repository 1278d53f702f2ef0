"""Ablations of the router on RouterBench's test split (issue 6): one term or one choice at a time.

    python benchmarks/ablations.py [--write benchmarks/out/ablations.md] [--variants a,b,...]

Variants (all trained on data/routerbench/train.jsonl, evaluated on test.jsonl):
- `full`: the shipped default;
- `no-uncertainty`: α = 0 (no eᵀA⁻¹e term);
- `no-penalty`: β = 0 (no waiting-time penalty; only the stream columns can differ);
- `no-lexical`: heads on the embedding alone (train-offline with no hashed tf-idf bag);
- `quality-rf`, `quality-mlp`, `quality-knn`: another quality-head family (length stays ridge);
- `no-tags` / `tags`: the general vs the tag-enhanced embedding, when the artifact set has tags.
Each variant is swept over 50 λ without waiting time and as a stream at 10 queries/s with τ = 30 s
(mixllm_cli.evaluation.sweep.sweep); cells are AIQ over cost shares [0, 1], % of always-GPT-4's quality
at 20% of its cost, and the `medium` preset's quality / cost. Retrained variants take 1–4 min each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import OUT, ROOT

from mixllm_cli.artifacts import load_artifact_set
from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.dataset import read_dataset
from mixllm_cli.evaluation.sweep import sweep
from mixllm_cli.routing.router import Router
from mixllm_cli.training.pipeline import train_offline

VARIANTS = ("full", "no-uncertainty", "no-penalty", "no-lexical", "quality-rf", "quality-mlp", "quality-knn")


def trained(name: str, cat, **kw) -> Path:
    out = Path(tempfile.mkdtemp(prefix=f"mixllm-ablation-{name}-")) / "artifacts"
    t0 = time.perf_counter()
    train_offline(ROOT / "data/routerbench/train.jsonl", cat, out, ROOT / "artifacts/encoder", cache=OUT / "cache", **kw)
    print(f"  trained {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def router_for(variant: str, cat) -> Router:
    base = Router(load_artifact_set(ROOT / "artifacts", list(cat.ids)), cat)
    if variant == "full":
        return base
    if variant == "no-uncertainty":
        return Router(base.artifacts, cat, replace(base.weights, alpha=0.0))
    if variant == "no-penalty":
        return Router(base.artifacts, cat, replace(base.weights, beta=0.0))
    if variant == "no-lexical":
        return Router(load_artifact_set(trained(variant, cat, n_buckets=0), list(cat.ids)), cat)
    if variant.startswith("quality-"):
        family = variant.split("-", 1)[1]
        return Router(load_artifact_set(trained(variant, cat, families={"quality": family}), list(cat.ids)), cat)
    raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    cat = load_catalogue(ROOT / "models.yaml")
    test = read_dataset(ROOT / "data/routerbench/test.jsonl")
    lines = [("| variant | AIQ | q@20% | medium: quality / cost | stream AIQ | stream q@20% | "
             "stream medium: quality / cost |"), "|---|---|---|---|---|---|---|"]
    results = {}
    for variant in args.variants.split(","):
        router = router_for(variant, cat)
        cells = []
        for rate in (None, 10.0):
            r = sweep(router, test, cache=OUT / "cache", rate_per_s=rate, tolerance_s=30.0)
            mix, med = r["curves"][0], r["presets"]["medium"]
            q20 = mix["quality_share_at_cost_share"]["0.2"]
            cells += [f"{100 * mix['aiq']:.2f}", "—" if q20 is None else f"{100 * q20:.2f}",
                      f"{100 * med['quality_share']:.2f} / {100 * med['cost_share']:.2f}"]
            results.setdefault(variant, []).append({"aiq": mix["aiq"], "q20": q20, "medium": med})
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text(text)
        Path(args.write).with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
