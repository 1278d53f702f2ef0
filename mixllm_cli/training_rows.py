"""The offline training rows an artifact set ships (embeddings, token ids, outcomes): what refits and
`add-llm` reuse instead of encoding again."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .core.features import pack_token_ids, unpack_token_ids
from .files import atomic_write_bytes


@dataclass(frozen=True)
class TrainingRows:
    """The queries a set was trained on (embedding + token ids) and every LLM's outcomes on them."""

    llm_ids: list[str]
    embeddings: np.ndarray  # (n, dim) float32 (stored as float16)
    token_ids: list[np.ndarray]
    quality: np.ndarray  # (n, m), NaN where not recorded
    response_tokens: np.ndarray  # (n, m), NaN where not recorded
    # Seeds for the home's embedding cache (embcache): each row's query sha256 and the encoder
    # identity the vectors are of. None in files written before they were kept.
    query_sha256: list[bytes] | None = None
    encoder: str | None = None

    def column(self, llm: str) -> tuple[np.ndarray, np.ndarray]:
        j = self.llm_ids.index(llm)
        return self.quality[:, j], self.response_tokens[:, j]


def save_training_rows(path: Path, rows: TrainingRows) -> None:
    """One compressed npz (no pickles): ~3.3 MB for RouterBench's 2,225 training queries. The
    vectors are kept in float32, exactly as the encoder gave them, so a home's embedding cache
    seeded from them (embcache) returns the same vectors as encoding again."""
    flat, offsets = pack_token_ids(rows.token_ids)
    dtype = np.uint16 if flat.size == 0 or int(flat.max()) < 2**16 else np.int32
    extra: dict[str, Any] = {}
    if rows.query_sha256 is not None and rows.encoder is not None:
        if len(rows.query_sha256) != len(rows.embeddings):
            raise ValueError("training rows: one query sha256 per row")
        sha = np.frombuffer(b"".join(rows.query_sha256), dtype=np.uint8).reshape(-1, 32)  # raw bytes: "S32" drops trailing NULs
        extra = {"query_sha256": sha, "encoder": np.array(rows.encoder)}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        llm_ids=np.array(rows.llm_ids),
        embeddings=np.asarray(rows.embeddings, dtype=np.float32),
        token_ids=flat.astype(dtype),
        offsets=offsets,
        quality=np.asarray(rows.quality, dtype=np.float32),
        response_tokens=np.asarray(rows.response_tokens, dtype=np.float32),
        **extra,
    )
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class SeedRows:
    """What a training-rows file offers the embedding cache: per row, the query sha256, the
    encoder's vector and the token ids, all of encoder `encoder`."""

    encoder: str
    query_sha256: list[bytes]
    embeddings: np.ndarray
    token_ids: list[np.ndarray]


def load_seed_rows(path: Path) -> SeedRows | None:
    """The seeds of a training-rows file; None for a file that keeps no query sha256s (older sets)
    or whose vectors were rounded to float16 (they would not equal a fresh encoding)."""
    with np.load(path, allow_pickle=False) as z:
        if "query_sha256" not in z.files or "encoder" not in z.files or z["embeddings"].dtype != np.float32:
            return None
        sha = z["query_sha256"]
        if sha.dtype != np.uint8 or sha.ndim != 2 or sha.shape[1] != 32:
            return None
        digests = [row.tobytes() for row in sha]
        emb = z["embeddings"]
        ids = unpack_token_ids(z["token_ids"], z["offsets"])
        if not len(digests) == len(emb) == len(ids):
            return None
        return SeedRows(encoder=str(z["encoder"]), query_sha256=digests, embeddings=emb, token_ids=ids)


def load_training_rows(path: Path) -> TrainingRows:
    with np.load(path, allow_pickle=False) as z:
        return TrainingRows(
            llm_ids=[str(s) for s in z["llm_ids"]],
            embeddings=z["embeddings"].astype(np.float32),
            token_ids=unpack_token_ids(z["token_ids"], z["offsets"]),
            quality=z["quality"].astype(np.float64),
            response_tokens=z["response_tokens"].astype(np.float64),
            query_sha256=[r.tobytes() for r in z["query_sha256"]] if "query_sha256" in z.files else None,
            encoder=str(z["encoder"]) if "encoder" in z.files else None,
        )
