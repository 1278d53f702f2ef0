"""Phase-by-phase seconds of train-offline and evaluate --sweep --baselines-from (docs/PROFILE.md).

    python benchmarks/profile_long_jobs.py [--build DIR] [--home H] [--job train|sweep] [--no-cache]

Runs the library in-process from the build at DIR (default: this checkout; pass an old checkout to
profile the old build: the phases are wrapped by name, so both builds report the same rows) and
prints one JSON object: wall seconds per phase, CPU seconds of the whole job and its peak RSS.
Phases of train-offline: read + encode (the dataset and its embeddings), features (idf + the
feature matrix), heads (every LLM's two heads, A⁻¹ and the out-of-fold predictions), calibrate
(the presets), publish (files + manifest). Of the sweep: encode (both splits), λ sweep, and each
baseline's fit + sweep.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=Path, default=ROOT)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--job", choices=("train", "sweep"), default="train")
    ap.add_argument("--no-cache", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ["MIXLLM_HOME"] = str(args.home)
    sys.path.insert(0, str(args.build))
    phases: dict[str, float] = {}

    def timed(module: object, name: str, label: str | None = None) -> None:
        fn = getattr(module, name)

        @functools.wraps(fn)
        def wrapper(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                key = label or name
                phases[key] = round(phases.get(key, 0.0) + time.perf_counter() - t, 2)

        setattr(module, name, wrapper)

    cpu0, t0 = time.process_time(), time.perf_counter()
    data = ROOT / "data" / "routerbench"
    if args.job == "train":
        import mixllm_cli.training.pipeline as p
        from mixllm_cli.catalogue import load_catalogue
        from mixllm_cli.paths import home_artifacts_dir, shipped_artifacts_dir

        for name, label in (("encode", "read + encode"), ("fit_feature_spec", "features"),
                            ("build_features", "features"), ("fit", "heads"), ("calibrate", "calibrate"),
                            ("publish", "publish")):
            timed(p, name, label)
        extra = {}
        if not args.no_cache:
            extra["cache"] = args.home / "cache" / "embeddings"
            try:
                from mixllm_cli.embcache import default_seeds

                extra["seed_rows"] = default_seeds(args.home)
            except ImportError:
                pass  # the old build has no seeds
        p.train_offline(data / "train.jsonl", load_catalogue(ROOT / "models.yaml"), home_artifacts_dir(args.home),
                        shipped_artifacts_dir() / "encoder", **extra)
    else:
        import mixllm_cli.evaluation.baselines.harness as h
        import mixllm_cli.evaluation.sweep as s
        from mixllm_cli.dataset import read_dataset
        from mixllm_cli.embcache import cache_dir
        from mixllm_cli.routing.router import Router

        router = Router.load(args.home)
        timed(Router, "predict", "encode")
        timed(s, "refine_lambdas", "λ sweep")
        for b in h.default_baselines(list(router.llm_ids)) if hasattr(h, "default_baselines") else []:
            timed(type(b), "fit", f"fit {type(b).__name__}")
        s.sweep(router, read_dataset(data / "test.jsonl"), train_records=read_dataset(data / "train.jsonl"),
                cache=None if args.no_cache else cache_dir(args.home))
    print(json.dumps({"build": str(args.build), "job": args.job, "phases_s": phases,
                      "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - cpu0, 1),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}, ensure_ascii=False))


if __name__ == "__main__":
    main()
