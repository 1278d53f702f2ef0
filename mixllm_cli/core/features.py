"""The feature vector the per-LLM heads read: the sentence embedding beside a lexical bag.

x = [ e (the encoder's L2-normalised embedding) ; w · tfidf(hashed unigrams + bigrams of the
encoder tokenizer's ids over the WHOLE query) ]

Why the lexical part: the embedding sees at most 128 tokens and smooths away prompt-format
cues (answer-letter instructions, code fences) that tell which LLMs succeed; a bag over all of
the query's token ids keeps them at the cost of a hash and a dot product. Only numpy here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids apart
LEXICAL_MAGIC = b"MXL1"  # starts a packed `BucketCounts`; int32 token ids never do (it reads as id 827,086,925)


@dataclass(frozen=True)
class FeatureSpec:
    n_buckets: int
    idf: np.ndarray  # (n_buckets,) float32
    lexical_weight: float = 1.0

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "n_buckets": np.array(self.n_buckets),
            "idf": self.idf.astype(np.float32),
            "lexical_weight": np.array(self.lexical_weight),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FeatureSpec:
        return cls(
            n_buckets=int(arrays["n_buckets"]),
            idf=np.asarray(arrays["idf"], dtype=np.float32),
            lexical_weight=float(arrays["lexical_weight"]),
        )


def pack_token_ids(token_ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged token-id lists as one flat int32 array and n + 1 offsets (for npz files)."""
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in token_ids])]).astype(np.int64)
    flat = np.concatenate(token_ids).astype(np.int32) if token_ids else np.zeros(0, np.int32)
    return flat, offsets


def unpack_token_ids(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    flat = np.asarray(flat, dtype=np.int32)
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def hashed_buckets(ids: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket indices of the unigrams and bigrams of one token-id sequence."""
    ids = np.asarray(ids, dtype=np.uint64)
    uni = ids
    bi = ids[:-1] * np.uint64(1_000_003) + ids[1:] + np.uint64(1 << 40)
    grams = np.concatenate([uni, bi])
    with np.errstate(over="ignore"):
        return ((grams * _MULT) >> np.uint64(40)) % np.uint64(n_buckets)


@dataclass(frozen=True)
class BucketCounts:
    """What the lexical features read of one query, and no more: how many of its unigrams and bigrams
    fell in each hashed bucket (`hashed_buckets`), for one number of buckets. The token order is gone
    and each bucket mixes many vocabulary entries, so the query cannot be decoded from it; the lexical
    features computed from it are those of the token ids, bit for bit (`term_counts`). The decision
    log keeps this instead of the token ids (`pack_lexical`)."""

    n_buckets: int
    buckets: np.ndarray  # int64, sorted, distinct
    counts: np.ndarray  # int64, >= 1

    @classmethod
    def of(cls, ids: np.ndarray, n_buckets: int) -> BucketCounts:
        if len(ids) == 0:
            return cls(n_buckets, np.zeros(0, np.int64), np.zeros(0, np.int64))
        buckets, counts = np.unique(hashed_buckets(ids, n_buckets), return_counts=True)
        return cls(n_buckets, buckets.astype(np.int64), counts.astype(np.int64))


#: A query's lexical source: its token ids, or only its bucket counts (what the decision log keeps).
Lexical = np.ndarray | BucketCounts


def pack_lexical(ids: np.ndarray, n_buckets: int) -> bytes:
    """A query's `BucketCounts` as bytes: LEXICAL_MAGIC, then little-endian uint32 n_buckets and k,
    k int32 bucket indices and k int32 counts."""
    bc = BucketCounts.of(np.asarray(ids), n_buckets)
    k = len(bc.buckets)
    return (LEXICAL_MAGIC + struct.pack("<II", n_buckets, k) + bc.buckets.astype("<i4").tobytes()
            + np.minimum(bc.counts, np.iinfo(np.int32).max).astype("<i4").tobytes())


def unpack_lexical(blob: bytes | None) -> Lexical:
    """What `pack_lexical` wrote, or (a decision logged before it existed) the int32 token ids as they
    were stored; None or a damaged blob read as an empty query (no lexical part)."""
    if blob is None:
        return np.zeros(0, np.int32)
    blob = bytes(blob)
    if not blob.startswith(LEXICAL_MAGIC):
        return np.frombuffer(blob[:len(blob) - len(blob) % 4], dtype=np.int32)
    head = len(LEXICAL_MAGIC) + 8
    if len(blob) < head:
        return np.zeros(0, np.int32)
    n_buckets, k = struct.unpack_from("<II", blob, len(LEXICAL_MAGIC))
    if len(blob) != head + 8 * k:
        return np.zeros(0, np.int32)
    values = np.frombuffer(blob, dtype="<i4", offset=head).astype(np.int64)
    return BucketCounts(int(n_buckets), values[:k], values[k:])


def term_counts(token_ids: Sequence[Lexical], n_buckets: int) -> np.ndarray:
    """Dense (n, n_buckets) float32 matrix of sublinear term frequencies 1 + log(tf).

    A query given by its `BucketCounts` contributes the same row as its token ids would; counts made
    for another number of buckets cannot be re-hashed, and give an empty lexical row."""
    out = np.zeros((len(token_ids), n_buckets), dtype=np.float32)
    for i, ids in enumerate(token_ids):
        if isinstance(ids, BucketCounts):
            if ids.n_buckets != n_buckets or len(ids.buckets) == 0:
                continue
            buckets, counts = ids.buckets, ids.counts
        else:
            if len(ids) == 0:
                continue
            buckets, counts = np.unique(hashed_buckets(ids, n_buckets), return_counts=True)
        out[i, buckets.astype(np.int64)] = 1.0 + np.log(counts)
    return out


def fit_feature_spec(token_ids: list[np.ndarray], n_buckets: int = 4096, lexical_weight: float = 1.0) -> FeatureSpec:
    """Learn smoothed idf weights from the training queries."""
    tf = term_counts(token_ids, n_buckets)
    df = (tf > 0).sum(axis=0)
    n = len(token_ids)
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    return FeatureSpec(n_buckets=n_buckets, idf=idf, lexical_weight=lexical_weight)


def lexical_features(token_ids: Sequence[Lexical], spec: FeatureSpec) -> np.ndarray:
    x = term_counts(token_ids, spec.n_buckets) * spec.idf
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def build_features(embeddings: np.ndarray, token_ids: Sequence[Lexical], spec: FeatureSpec | None) -> np.ndarray:
    """Concatenate the embedding with the weighted lexical bag (or the embedding alone); each query's
    lexical source is its token ids or its `BucketCounts`."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if spec is None or spec.n_buckets == 0:
        return emb
    lex = lexical_features(token_ids, spec) * np.float32(spec.lexical_weight)
    return np.hstack([emb, lex]).astype(np.float32)
