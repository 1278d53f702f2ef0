"""The offline training rows an artifact set ships (embeddings, token ids, outcomes): what refits and
`add-llm` reuse instead of encoding again."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

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

    def column(self, llm: str) -> tuple[np.ndarray, np.ndarray]:
        j = self.llm_ids.index(llm)
        return self.quality[:, j], self.response_tokens[:, j]


def save_training_rows(path: Path, rows: TrainingRows) -> None:
    """One compressed npz (no pickles): ~3 MB for RouterBench's 2,225 training queries."""
    flat, offsets = pack_token_ids(rows.token_ids)
    dtype = np.uint16 if flat.size == 0 or int(flat.max()) < 2**16 else np.int32
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        llm_ids=np.array(rows.llm_ids),
        embeddings=np.asarray(rows.embeddings, dtype=np.float16),
        token_ids=flat.astype(dtype),
        offsets=offsets,
        quality=np.asarray(rows.quality, dtype=np.float32),
        response_tokens=np.asarray(rows.response_tokens, dtype=np.float32),
    )
    atomic_write_bytes(path, buf.getvalue())


def load_training_rows(path: Path) -> TrainingRows:
    with np.load(path, allow_pickle=False) as z:
        return TrainingRows(
            llm_ids=[str(s) for s in z["llm_ids"]],
            embeddings=z["embeddings"].astype(np.float32),
            token_ids=unpack_token_ids(z["token_ids"], z["offsets"]),
            quality=z["quality"].astype(np.float64),
            response_tokens=z["response_tokens"].astype(np.float64),
        )
