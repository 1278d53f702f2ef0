"""Query tags, tag domains, and the tag pipeline that trains the tag-enhanced embedding.

MixLLM tags each query with InsTag (an LLM), groups the tags into domains and fine-tunes the
encoder so queries gather around their domain's centre. mixllm needs no LLM and no network:

1. Tags. A record's `tags` field when it has one (bring InsTag's, or any tagger's). Otherwise
   derived KeyBERT-style from the query itself: candidate word 1–3-grams of the query's last
   blank-line-separated block (few-shot prompts put the actual question last; a one-paragraph
   query is its own block) that neither start nor end with a stopword; the candidates that
   recur in at least MIN_DF training queries and in at most MAX_DF_SHARE of them form the tag
   vocabulary (a phrase used once cannot group queries; one used everywhere is prompt
   boilerplate such as "single choice" or "without explanation"); each query gets the
   TAGS_PER_QUERY vocabulary phrases of its block closest (cosine, same encoder) to the query's
   own embedding, never one phrase inside another, plus its `task` when the record has one.
2. Domains. The distinct tag strings are embedded with the same encoder and clustered by
   spherical k-means. A query's domain is the centre nearest to its tag profile (the mean of its
   tags' embeddings); its `domains` are the clusters of its individual tags. k is the value of
   K_GRID with the highest mean silhouette (cosine distance) of the distinct tags among those
   whose smallest domain holds at least MIN_DOMAIN_SHARE of the queries (`choose_k` says why).
3. The projection (projection.py) is trained on the query embeddings and their domains.

Everything here is numpy; the encoder is passed in as a function so tests can use a tiny one.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ArtifactError, DataError
from .projection import Projection, fit_projection

MAX_NGRAM = 3
TAGS_PER_QUERY = 3
MIN_DF = 3
MAX_DF_SHARE = 0.05
MAX_VOCABULARY = 8000  # the most frequent phrases, so tagging time stays bounded on big data
K_GRID = (4, 6, 8, 10, 12, 16, 20, 24, 32)
SILHOUETTE_SAMPLE = 2000
LABEL_TAGS = 3
MIN_DOMAIN_SHARE = 0.01
MIN_DOMAIN_QUERIES = 5

_STOPWORD_TEXT = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each either else ever every few
for from further had has have having he her here hers herself him himself his how however i if in
into is it its itself just let me more most much must my myself neither no nor not now of off on
once only or other our ours ourselves out over own per rather same shall she should so some such
than that the their theirs them themselves then there these they this those through thus to too
under until up upon us very was we were what when where whether which while who whom whose why will
with within without would yet you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'\-]*")
_BLOCKS = re.compile(r"\n\s*\n")
_SEGMENTS = re.compile(r"[\n.,;:!?()\[\]{}\"`=<>]+")  # a tag never spans a line or a sentence break

Embed = Callable[[list[str]], np.ndarray]


# ---------------------------------------------------------------- tags


def question_block(query: str) -> str:
    """The query's last non-blank paragraph (the whole query when it has one paragraph)."""
    parts = [p for p in _BLOCKS.split(query) if p.strip()]
    return parts[-1] if parts else query


def candidate_ngrams(query: str, max_n: int = MAX_NGRAM) -> list[str]:
    """Lower-cased word n-grams of the question block, without a stopword at either end; in order, unique.

    n-grams stay within one line and one sentence, and skip names: a word the block never writes
    in lower case, and writes capitalised either inside a sentence ("unlike Kenneth") or more
    than once ("Megan liked ..." and "A) Megan"), says nothing about what kind of query this is.
    """
    segments = [_WORD.findall(s) for s in _SEGMENTS.split(question_block(query))]
    lower = {w.lower() for raw in segments for w in raw if w[0].islower()}
    capitalised = Counter(w.lower() for raw in segments for w in raw if w[0].isupper())
    inside = {w.lower() for raw in segments for w in raw[1:] if w[0].isupper()}
    names = {w for w, n in capitalised.items() if w not in lower and (w in inside or n > 1)}
    seen: dict[str, None] = {}
    for raw in segments:
        words = [w.lower().strip("'-") for w in raw]
        bad = [len(w) < 2 or w in STOPWORDS or w in names for w in words]
        for n in range(1, max_n + 1):
            for i in range(len(words) - n + 1):
                if bad[i] or bad[i + n - 1] or (n == 1 and len(words[i]) < 3):
                    continue
                if any(len(w) < 2 or w in names for w in words[i:i + n]):
                    continue
                seen.setdefault(" ".join(words[i:i + n]), None)
    return list(seen)


def tag_vocabulary(candidates: Sequence[Sequence[str]], min_df: int = MIN_DF, max_df_share: float = MAX_DF_SHARE,
                   limit: int = MAX_VOCABULARY) -> list[str]:
    """Phrases that recur in >= min_df queries but in no more than max_df_share of them, most frequent first."""
    df = Counter(c for cands in candidates for c in set(cands))
    cap = max(min_df, int(max_df_share * len(candidates)))
    kept = [(-n, c) for c, n in df.items() if min_df <= n <= cap]
    return [c for _, c in sorted(kept)[:limit]]


def pick_tags(candidates: Sequence[str], candidate_emb: np.ndarray, query_emb: np.ndarray,
              n: int = TAGS_PER_QUERY) -> list[str]:
    """The `n` candidates closest to the query, skipping any phrase inside (or around) one already picked."""
    if not len(candidates):
        return []
    sims = np.asarray(candidate_emb, dtype=np.float64) @ np.asarray(query_emb, dtype=np.float64)
    out: list[str] = []
    for i in np.argsort(-sims, kind="stable"):
        c = candidates[i]
        if any(f" {c} " in f" {t} " or f" {t} " in f" {c} " for t in out):
            continue
        out.append(c)
        if len(out) == n:
            break
    return out


class PhraseEmbeddings:
    """Embeddings of short strings, each computed once."""

    def __init__(self, embed: Embed):
        self._embed = embed
        self._rows: dict[str, np.ndarray] = {}

    def add(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if todo:
            for t, v in zip(todo, np.asarray(self._embed(todo), dtype=np.float32)):
                self._rows[t] = v

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        self.add(texts)
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._rows[t] for t in texts])


def derive_tags(queries: Sequence[str], query_emb: np.ndarray, phrases: PhraseEmbeddings,
                vocabulary: Sequence[str] | None) -> list[list[str]]:
    """Keyphrase tags of each query: vocabulary phrases of its question block closest to the query.

    Without a vocabulary (or when none of a query's phrases is in it) every candidate competes.
    """
    vocab = set(vocabulary or ())
    cands = [candidate_ngrams(q) for q in queries]
    chosen = [[c for c in cs if c in vocab] or cs for cs in cands]
    phrases.add([c for cs in chosen for c in cs])
    return [pick_tags(cs, phrases.matrix(cs), query_emb[i]) if cs else [] for i, cs in enumerate(chosen)]


# ---------------------------------------------------------------- domains


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
             min_share: float = MIN_DOMAIN_SHARE, sample: int = SILHOUETTE_SAMPLE) -> tuple[int, dict[int, dict]]:
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
    scores: dict[int, dict] = {}
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
    scores: dict[int, dict] = field(default_factory=dict)

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


# ---------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class TagSettings:
    """What the tag pipeline trains; the defaults have the best AIQ, 5-fold out of fold on the
    RouterBench training split, of the settings benchmarks/tags_study.py tries (docs/TAGS.md)."""

    form: str = "residual"
    dim: int | None = None
    tau: float = 0.1
    inter_weight: float = 1.0
    reg: float = 0.3
    max_iter: int = 100
    k_grid: tuple[int, ...] = K_GRID


@dataclass(frozen=True)
class TagModel:
    """What an artifact set keeps of the tag pipeline: the projection, the domains, the tag vocabulary."""

    projection: Projection
    domains: Domains
    vocabulary: list[str]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**self.projection.to_arrays(), "domain_centres": self.domains.centres.astype(np.float32),
                "domain_labels": np.array(self.domains.labels, dtype=str),
                "vocabulary": np.array(self.vocabulary, dtype=str)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TagModel:
        try:
            return cls(projection=Projection.from_arrays(arrays),
                       domains=Domains(centres=np.asarray(arrays["domain_centres"], dtype=np.float32),
                                       labels=[str(s) for s in arrays["domain_labels"]]),
                       vocabulary=[str(s) for s in arrays["vocabulary"]])
        except KeyError as exc:
            raise ArtifactError(f"projection file: missing array {exc}") from None


@dataclass(frozen=True)
class TagRun:
    model: TagModel
    tags: list[list[str]]  # per training query
    domains: np.ndarray  # per training query
    report: dict[str, Any]


def fit_tag_pipeline(queries: Sequence[str], embeddings: np.ndarray, embed: Embed, *,
                     tasks: Sequence[str | None] | None = None, given: Sequence[Sequence[str]] | None = None,
                     settings: TagSettings | None = None, seed: int = 0) -> TagRun:
    """Tags → domains → projection, on the training queries and their encoder embeddings."""
    settings = settings or TagSettings()
    t0 = time.perf_counter()
    n = len(queries)
    given = list(given) if given is not None else [()] * n
    tasks = list(tasks) if tasks is not None else [None] * n
    phrases = PhraseEmbeddings(embed)
    need = [i for i in range(n) if not given[i]]
    vocabulary = tag_vocabulary([candidate_ngrams(queries[i]) for i in need]) if need else []
    phrases.add(vocabulary)
    derived = derive_tags([queries[i] for i in need], np.asarray(embeddings)[need], phrases, vocabulary)
    tags: list[list[str]] = [list(g) for g in given]
    for i, ts in zip(need, derived):
        tags[i] = ts + ([tasks[i]] if tasks[i] else [])
    t_tags = time.perf_counter()

    distinct = sorted({t for ts in tags for t in ts})
    prof = profiles(tags, phrases, embeddings)
    domains = fit_domains(distinct, phrases.matrix(distinct), prof, settings.k_grid, seed)
    assigned = domains.nearest(prof)
    t_domains = time.perf_counter()

    projection, fit_report = fit_projection(
        embeddings, assigned, domains.k, form=settings.form, dim=settings.dim, tau=settings.tau,
        inter_weight=settings.inter_weight, reg=settings.reg, max_iter=settings.max_iter)
    t_end = time.perf_counter()
    sizes = np.bincount(assigned, minlength=domains.k)
    report = {
        "tag_source": {"given": n - len(need), "derived": len(need)},
        "vocabulary": len(vocabulary),
        "distinct_tags": len(distinct),
        "k": domains.k,
        "k_criterion": domains.criterion,
        "k_scores": {str(k): v for k, v in domains.scores.items()},
        "domain_sizes": sizes.tolist(),
        "domain_labels": domains.labels,
        "settings": {"form": settings.form, "dim": projection.dim, "tau": settings.tau,
                     "inter_weight": settings.inter_weight, "reg": settings.reg, "max_iter": settings.max_iter},
        "losses": {k: {kk: round(vv, 5) for kk, vv in v.items()} for k, v in fit_report.items() if k != "evaluations"},
        "seconds": {"tags": round(t_tags - t0, 2), "domains": round(t_domains - t_tags, 2),
                    "projection": round(t_end - t_domains, 2), "total": round(t_end - t0, 2)},
    }
    return TagRun(model=TagModel(projection=projection, domains=domains, vocabulary=vocabulary),
                  tags=tags, domains=assigned, report=report)


def describe(query: str, query_emb: np.ndarray, embed: Embed, model: TagModel | None) -> dict[str, Any]:
    """A query's derived tags and, when the artifact set has a tag model, its domain (for `mixllm tags`)."""
    phrases = PhraseEmbeddings(embed)
    e = np.asarray(query_emb, dtype=np.float32)[None, :]
    (tags,) = derive_tags([query], e, phrases, model.vocabulary if model else None)
    out: dict[str, Any] = {"tags": tags, "domain": None, "domain_label": None, "domains": [],
                           "embedding_domain": None}
    if model is None:
        return out
    dom = model.domains
    j = int(dom.nearest(profiles([tags], phrases, e))[0])
    own = sorted({int(d) for d in dom.nearest(phrases.matrix(tags))}) if tags else [j]
    scores = model.projection.domain_scores(model.projection.apply(e))[0]
    out.update(domain=j, domain_label=dom.labels[j], domains=own, embedding_domain=int(np.argmax(scores)),
               embedding_domain_probability=round(float(scores.max()), 4))
    return out


