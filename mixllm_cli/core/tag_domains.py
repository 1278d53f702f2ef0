"""Tag domains: the distinct tag strings clustered by spherical k-means on their embeddings.

A query's domain is the centre nearest to its tag profile (the mean of its tags' embeddings);
its `domains` are the clusters of its individual tags. k is the value of K_GRID with the highest
mean silhouette (cosine distance) of the distinct tags among those whose smallest domain holds
at least MIN_DOMAIN_SHARE of the queries (`choose_k` says why). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:
    from .tag_phrases import PhraseEmbeddings

K_GRID = (4, 6, 8, 10, 12, 16, 20, 24, 32)
SILHOUETTE_SAMPLE = 2000
LABEL_TAGS = 3
MIN_DOMAIN_SHARE = 0.01
MIN_DOMAIN_QUERIES = 5

# per k tried: its tag silhouette and the size of its smallest domain
KScores = dict[int, dict[str, float]]


def spherical_kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 4,
                     iters: int = 50) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means on unit vectors with cosine similarity (k-means++ seeding); (centres, labels, mean cosine)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise DataError(f"k-means: need 1 <= k <= {n} points (got k={k})")
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        idx = [int(rng.integers(n))]
        dist = 1.0 - x @ x[idx[0]]
        for _ in range(1, k):
            p = np.maximum(dist, 0.0) ** 2
            nxt = int(rng.choice(n, p=p / p.sum())) if p.sum() > 0 else int(rng.integers(n))
            idx.append(nxt)
            dist = np.minimum(dist, 1.0 - x @ x[nxt])
        c = x[idx].copy()
        labels = np.full(n, -1)
        for _ in range(iters):
            new = np.argmax(x @ c.T, axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = x[labels == j]
                if len(members):
                    c[j] = members.sum(axis=0)
                else:  # an empty cluster restarts at the point worst served
                    c[j] = x[int(np.argmin(np.max(x @ c.T, axis=1)))]
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        score = float(np.mean(np.max(x @ c.T, axis=1)))
        if best is None or score > best[2]:
            best = (c, np.argmax(x @ c.T, axis=1), score)
    assert best is not None
    return best


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance (0 for points alone in their cluster)."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    ks, inv = np.unique(labels, return_inverse=True)
    if len(ks) < 2:
        return 0.0
    dist = 1.0 - x @ x.T
    onehot = np.eye(len(ks))[inv]
    sizes = onehot.sum(axis=0)
    sums = dist @ onehot  # (n, K): total distance to each cluster
    own = sizes[inv] - 1
    a = np.where(own > 0, sums[np.arange(len(x)), inv] / np.maximum(own, 1), 0.0)
    other = sums / sizes
    other[np.arange(len(x)), inv] = np.inf
    b = other.min(axis=1)
    s = np.where(own > 0, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def choose_k(x: np.ndarray, profiles: np.ndarray, grid: Sequence[int] = K_GRID, seed: int = 0,
             min_share: float = MIN_DOMAIN_SHARE, sample: int = SILHOUETTE_SAMPLE) -> tuple[int, KScores]:
    """The k of `grid` with the highest tag silhouette among those whose smallest domain holds at
    least `min_share` of the queries (and at least MIN_DOMAIN_QUERIES); the smallest k if none does.

    Why the size floor: on real tags the silhouette keeps rising with k (many small, tight
    clusters), but a domain with a handful of queries gives the projection no centre to learn.
    """
    x = np.asarray(x, dtype=np.float64)
    ks = [k for k in grid if 2 <= k < len(x)]
    if not ks:
        return 1, {}
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    floor = max(MIN_DOMAIN_QUERIES, min_share * len(profiles))
    scores: KScores = {}
    for k in ks:
        centres, labels, _ = spherical_kmeans(x, k, seed)
        sizes = np.bincount(np.argmax(profiles @ centres.T, axis=1), minlength=k)
        scores[k] = {"silhouette": round(silhouette(x[rows], labels[rows]), 5), "smallest_domain": int(sizes.min())}
    ok = [k for k in ks if scores[k]["smallest_domain"] >= floor]
    if not ok:
        return min(ks), scores
    return max(ok, key=lambda k: (scores[k]["silhouette"], -k)), scores


@dataclass(frozen=True)
class Domains:
    """Domain centres in the encoder's space and a short label (the most central tags) per domain."""

    centres: np.ndarray  # (K, d) unit rows
    labels: list[str]
    criterion: str = ""
    scores: KScores = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.centres)

    def nearest(self, vectors: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(vectors, dtype=np.float64) @ self.centres.T, axis=1)


def fit_domains(tag_strings: Sequence[str], tag_emb: np.ndarray, query_profiles: np.ndarray,
                grid: Sequence[int] = K_GRID, seed: int = 0) -> Domains:
    """Cluster distinct tag strings into domains; k by `choose_k` over `grid`."""
    if not len(tag_strings):
        raise DataError("tags: no tags to group into domains")
    x = np.asarray(tag_emb, dtype=np.float64)
    k, scores = choose_k(x, np.asarray(query_profiles, dtype=np.float64), grid, seed)
    centres, labels, _ = spherical_kmeans(x, k, seed)
    names = []
    for j in range(k):
        members = np.nonzero(labels == j)[0]
        order = members[np.argsort(-(x[members] @ centres[j]), kind="stable")]
        names.append(", ".join(tag_strings[i] for i in order[:LABEL_TAGS]))
    criterion = (f"k in {list(grid)} with the highest mean cosine silhouette of the distinct tags, among those "
                 f"whose smallest domain holds >= {MIN_DOMAIN_SHARE:.0%} of the queries (and >= {MIN_DOMAIN_QUERIES})")
    return Domains(centres=centres.astype(np.float32), labels=names, criterion=criterion, scores=scores)


def profiles(tags: Sequence[Sequence[str]], phrases: PhraseEmbeddings, fallback: np.ndarray) -> np.ndarray:
    """Each query's tag profile: the normalised mean of its tags' embeddings (its own embedding if untagged)."""
    out = np.asarray(fallback, dtype=np.float64).copy()
    for i, ts in enumerate(tags):
        if ts:
            out[i] = phrases.matrix(list(ts)).mean(axis=0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
