"""Query tags: keyphrases of the query's question block, chosen against the query's own embedding.

A record's `tags` field wins when it has one (bring InsTag's, or any tagger's). Otherwise tags
are derived KeyBERT-style: candidate word 1–3-grams of the query's last blank-line-separated
block (few-shot prompts put the actual question last; a one-paragraph query is its own block)
that neither start nor end with a stopword; the candidates that recur in at least MIN_DF
training queries and in at most MAX_DF_SHARE of them form the tag vocabulary (a phrase used once
cannot group queries; one used everywhere is prompt boilerplate such as "single choice" or
"without explanation"); each query gets the TAGS_PER_QUERY vocabulary phrases of its block
closest (cosine, same encoder) to the query's own embedding, never one phrase inside another.

numpy only; the encoder is passed in as a function (`Embed`) so tests can use a tiny one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

MAX_NGRAM = 3
TAGS_PER_QUERY = 3
MIN_DF = 3
MAX_DF_SHARE = 0.05
MAX_VOCABULARY = 8000  # the most frequent phrases, so tagging time stays bounded on big data

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
