"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"

from mixllm_cli.encoder import Encoded, Encoder


def encode_cached(encoder_dir: Path, texts: list[str], tag: str = "") -> Encoded:
    """Encode `texts`, caching the result under benchmarks/out/ keyed by encoder files and texts."""
    h = hashlib.sha256()
    for name in ("model.onnx", "tokenizer.json"):
        h.update((encoder_dir / name).read_bytes())
    for t in texts:
        h.update(hashlib.sha256(t.encode()).digest())
    path = OUT / f"enc-{tag}{h.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            offsets = z["offsets"]
            flat = z["ids"]
            ids = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
            return Encoded(embeddings=z["emb"], token_ids=ids, n_tokens=z["n"])
    enc = Encoder.from_dir(encoder_dir).encode(texts)
    OUT.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in enc.token_ids])])
    flat = np.concatenate(enc.token_ids) if enc.token_ids else np.zeros(0, np.int32)
    np.savez(path, emb=enc.embeddings, ids=flat, offsets=offsets, n=enc.n_tokens)
    return enc


def emit(lines: list[str], write: str | None) -> str:
    """Print a study's markdown lines and, with --write, save them; returns the text."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        Path(write).write_text(text)
    return text
