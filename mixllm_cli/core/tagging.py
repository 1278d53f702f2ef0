"""The tag pipeline: tags → domains → the tag-enhanced projection, and the `TagModel` an artifact set keeps.

MixLLM tags each query with InsTag (an LLM), groups the tags into domains and fine-tunes the
encoder so queries gather around their domain's centre. mixllm needs no LLM and no network:

1. Tags (tag_phrases.py): a record's `tags`, else keyphrases derived from the query itself, plus
   its `task` when the record has one.
2. Domains (tag_domains.py): the distinct tags clustered by spherical k-means; a query's domain is
   the centre nearest to its tag profile.
3. The projection (projection.py) is trained on the query embeddings and their domains.

Everything here is numpy with the encoder passed in as a function, so fitting stays in `core`:
training calls it with the real encoder, tests with a tiny one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .projection import Projection, fit_projection
from .tag_domains import K_GRID, Domains, fit_domains, profiles
from .tag_phrases import Embed, PhraseEmbeddings, candidate_ngrams, derive_tags, tag_vocabulary


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
    phrases = PhraseEmbeddings(embed)
    given_tags = list(given) if given is not None else [()] * n
    need = [i for i in range(n) if not given_tags[i]]
    vocabulary = tag_vocabulary([candidate_ngrams(queries[i]) for i in need]) if need else []
    tags = _training_tags(queries, embeddings, phrases, vocabulary, given_tags, need,
                          list(tasks) if tasks is not None else [None] * n)
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
    report = {
        "tag_source": {"given": n - len(need), "derived": len(need)},
        "vocabulary": len(vocabulary),
        "distinct_tags": len(distinct),
        "k": domains.k,
        "k_criterion": domains.criterion,
        "k_scores": {str(k): v for k, v in domains.scores.items()},
        "domain_sizes": np.bincount(assigned, minlength=domains.k).tolist(),
        "domain_labels": domains.labels,
        "settings": {"form": settings.form, "dim": projection.dim, "tau": settings.tau,
                     "inter_weight": settings.inter_weight, "reg": settings.reg, "max_iter": settings.max_iter},
        "losses": {k: {kk: round(vv, 5) for kk, vv in v.items()} for k, v in fit_report.items() if k != "evaluations"},
        "seconds": {"tags": round(t_tags - t0, 2), "domains": round(t_domains - t_tags, 2),
                    "projection": round(t_end - t_domains, 2), "total": round(t_end - t0, 2)},
    }
    return TagRun(model=TagModel(projection=projection, domains=domains, vocabulary=vocabulary),
                  tags=tags, domains=assigned, report=report)


def _training_tags(queries: Sequence[str], embeddings: np.ndarray, phrases: PhraseEmbeddings,
                   vocabulary: list[str], given: Sequence[Sequence[str]], need: list[int],
                   tasks: Sequence[str | None]) -> list[list[str]]:
    """Each training query's tags: its given ones, else derived ones plus its `task` when it has one."""
    phrases.add(vocabulary)
    derived = derive_tags([queries[i] for i in need], np.asarray(embeddings)[need], phrases, vocabulary)
    tags: list[list[str]] = [list(g) for g in given]
    for i, ts in zip(need, derived):
        task = tasks[i]
        tags[i] = ts + ([task] if task else [])
    return tags


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
