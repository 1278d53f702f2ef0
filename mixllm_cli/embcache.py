"""Embeddings computed once per dataset: a cache keyed by content hash.

`evaluate`, `train-offline` and `add-llm` encode whole datasets; encoding is ~95% of their run
time. The cache key is the sha256 of the encoder's identity (the sha256 of its files, from
`encoder.json`) and of every text in order, so a changed encoder or a changed query can never be
served a stale vector. Entries live in `<home>/cache/embeddings/<key>.npz` (plain arrays, no
pickles; written atomically); a damaged entry is recomputed and replaced. Deleting the folder
is always safe.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .core.encoder import Encoded
from .core.features import pack_token_ids, unpack_token_ids
from .files import atomic_write_bytes
from .paths import home_dir

CACHE_DIR = Path("cache") / "embeddings"


def cache_dir(home: Path | str | None = None) -> Path:
    return home_dir(home) / CACHE_DIR


def encoder_identity(encoder_dir: Path) -> str:
    """The sha256 of the encoder's files as its `encoder.json` lists them (falls back to hashing)."""
    meta = Path(encoder_dir) / "encoder.json"
    if meta.is_file():
        files = json.loads(meta.read_text()).get("files")
        if files:
            return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    h = hashlib.sha256()
    for name in ("model.onnx", "tokenizer.json"):
        h.update(hashlib.sha256((Path(encoder_dir) / name).read_bytes()).digest())
    return h.hexdigest()


def cache_key(identity: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256(identity.encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def _dump(enc: Encoded) -> bytes:
    flat, offsets = pack_token_ids(enc.token_ids)
    buf = io.BytesIO()
    np.savez(buf, embeddings=enc.embeddings, token_ids=flat, offsets=offsets, n_tokens=enc.n_tokens)
    return buf.getvalue()


def _load(path: Path, n: int) -> Encoded | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            offsets = z["offsets"]
            enc = Encoded(embeddings=z["embeddings"], token_ids=unpack_token_ids(z["token_ids"], offsets),
                          n_tokens=z["n_tokens"])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return enc if len(enc.embeddings) == n == len(enc.n_tokens) and len(offsets) == n + 1 else None


def encode_cached(encode: Callable[[list[str]], Encoded], encoder_dir: Path, texts: Sequence[str],
                  directory: Path | None) -> tuple[Encoded, bool]:
    """`encode(texts)` through the cache in `directory` (no cache when None); (result, hit)."""
    texts = list(texts)
    if directory is None:
        return encode(texts), False
    path = Path(directory) / f"{cache_key(encoder_identity(encoder_dir), texts)}.npz"
    if path.is_file():
        hit = _load(path, len(texts))
        if hit is not None:
            return hit, True
    enc = encode(texts)
    try:
        atomic_write_bytes(path, _dump(enc))
    except OSError:
        pass  # a read-only home only loses the speed-up
    return enc, False
