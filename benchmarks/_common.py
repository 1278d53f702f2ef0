"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"
# Like the `mixllm` command (cli.main): numpy's BLAS on one thread, set before numpy is imported,
# so in-process measurements run the way the CLI and the server do.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from mixllm_cli.embcache import encode_cached as cache_encode
from mixllm_cli.encoder import Encoded, Encoder


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
