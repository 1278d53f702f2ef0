"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"
# Like the `mixllm` command (cli.main): numpy's BLAS on one thread, set before numpy is imported,
# so in-process measurements run the way the CLI and the server do.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from mixllm_cli.core.encoder import Encoded, Encoder
from mixllm_cli.embcache import encode_cached as cache_encode

REF = 0  # the reference LLM of the quality and cost shares: gpt-4-1106-preview, first in models.yaml


def encode_cached(encoder_dir: Path, texts: list[str]) -> Encoded:
    """Encode `texts` through the library's embedding cache (mixllm_cli.embcache) under benchmarks/out/cache."""
    enc, _ = cache_encode(Encoder.from_dir(encoder_dir).encode, encoder_dir, texts, OUT / "cache")
    return enc


def emit(lines: list[str], write: str | None) -> str:
    """Print a study's markdown lines and, with --write, save them; returns the text."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        Path(write).write_text(text)
    return text


@dataclass
class TrainStudy:
    """What the train-only studies share: the training split, the shipped features, 5 folds (seed 0)
    and each query's estimated cost per LLM (ridge length heads out of fold, in units of the mean
    GPT-4 call on train)."""

    table: object  # training.OutcomeTable
    enc: Encoded
    spec: object  # features.FeatureSpec: the lexical bag's vocabulary and idf, fitted on all of train
    x: np.ndarray
    folds: np.ndarray
    cost: np.ndarray
    n_llm: int


def train_study() -> TrainStudy:
    """Load data/routerbench/train.jsonl and build the shipped recipe's features, folds and cost estimate."""
    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.core.features import build_features, fit_feature_spec
    from mixllm_cli.core.heads import LENGTH
    from mixllm_cli.dataset import read_dataset
    from mixllm_cli.training.fitters import fold_ids, out_of_fold
    from mixllm_cli.training.pipeline import outcome_table

    cat = load_catalogue(ROOT / "models.yaml")
    t = outcome_table(read_dataset(ROOT / "data/routerbench/train.jsonl"), list(cat.ids))
    enc = encode_cached(ROOT / "artifacts/encoder", t.queries)
    spec = fit_feature_spec(enc.token_ids, 4096)
    x = build_features(enc.embeddings, enc.token_ids, spec)
    folds = fold_ids(len(t.ids), 5, 0)
    n_llm = len(cat.ids)
    scale = np.nanmean(t.cost_usd[:, REF])
    p_in = np.array([m.input_usd_per_mtok for m in cat.llms]) / 1e6
    p_out = np.array([m.output_usd_per_mtok for m in cat.llms]) / 1e6
    length = np.stack([out_of_fold("ridge", LENGTH, x, t.response_tokens[:, j], folds) for j in range(n_llm)], 1)
    cost = (enc.n_tokens[:, None] * p_in + length * p_out) / scale
    return TrainStudy(t, enc, spec, x, folds, cost, n_llm)
