"""The catalogue's entries: `LLM` and `Catalogue`, built from parsed data by `parse_catalogue`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CatalogueError, UnknownLLMError, where
from .checks import (
    CATALOGUE_VERSION,
    DEFAULT_OUTPUT_TOKENS_PER_S,
    DEFAULT_SLOTS,
    DEFAULT_TTFT_MS,
    DEFAULTED_FIELDS,
    DEFAULTS,
    LLM_FIELDS,
    REQUIRED_FIELDS,
    SOURCE_DEFAULT,
    SOURCE_FIGURES,
    SOURCE_KEYS,
    SOURCE_NOT_GIVEN,
    UPSTREAM_FIELDS,
    document_problems,
    entry_problems,
    kind_of,
    llm_problems,
)


@dataclass(frozen=True)
class LLM:
    """One catalogue entry. Units are in the field names; construction validates every field.

    Only `id` and the two prices are required. The other figures hold their effective value (the
    default when not given: `checks.DEFAULTS`, `name` the id), and `given` says which fields the
    entry itself states, so that saving writes back only those (`written`) and `mixllm llms` can
    mark the rest as defaults (`defaults`). `given` is not part of equality: an entry that writes
    a default out is the same LLM as one that leaves it out (and has the same fingerprint).

    Built in code, a field counts as given when it differs from its default or is named in
    `given`; `updated` marks the fields it changes as given even when the new value equals the
    default. Sources: a mapping (or (figure, source) pairs) of the figures whose source is known;
    the others read as SOURCE_DEFAULT or SOURCE_NOT_GIVEN.
    """

    id: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    name: str = ""  # "" or left out: the id
    ttft_ms: float = DEFAULT_TTFT_MS
    output_tokens_per_s: float = DEFAULT_OUTPUT_TOKENS_PER_S
    slots: int = DEFAULT_SLOTS
    # A tuple of (figure, source) pairs in SOURCE_KEYS order, so the entry stays hashable;
    # a mapping is accepted on construction and normalised.
    sources: tuple[tuple[str, str], ...] = ()
    base_url: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    # The field names the entry states (`sources.<figure>` for a source); see the class docstring.
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        explicit = set(self.given)
        srcs = self._given_sources(explicit)
        given = set(REQUIRED_FIELDS)
        if "name" in explicit or self.name not in ("", self.id):
            given.add("name")
        for name, default in DEFAULTS.items():
            value = getattr(self, name)
            # A figure whose source is stated is stated too (in a file, a source without its
            # figure is refused before an entry is built). A value of the wrong type is "given",
            # so that validation sees it (`slots=4.0`, `ttft_ms=True`).
            wrong_type = isinstance(value, bool) or (isinstance(default, int) and not isinstance(value, int))
            if name in explicit or name in (srcs or {}) or wrong_type or value != default:
                given.add(name)
        given.update(name for name in UPSTREAM_FIELDS if getattr(self, name) is not None)
        raw: dict[str, Any] = {name: getattr(self, name) for name in LLM_FIELDS if name in given}
        if srcs is None:
            raw["sources"] = self.sources  # not a mapping: llm_problems says so
        elif srcs:
            raw["sources"] = srcs
        problems = llm_problems(raw)
        if problems:
            label = f"LLM {self.id!r}" if isinstance(self.id, str) else "LLM"
            raise CatalogueError("\n".join(f"{label}: {f}: {m}" for f, m in problems))
        srcs = srcs or {}  # None (not a mapping) was reported above
        for name in ("input_usd_per_mtok", "output_usd_per_mtok", "ttft_ms", "output_tokens_per_s"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.name == "":
            object.__setattr__(self, "name", self.id)
        given.update(f"sources.{k}" for k in srcs)
        object.__setattr__(self, "given", frozenset(given))
        object.__setattr__(self, "sources", tuple(
            (k, srcs[k] if k in srcs else self._unsourced(k, given)) for k in SOURCE_KEYS))

    def _given_sources(self, explicit: set[str]) -> dict[str, Any] | None:
        """The sources the entry states (None: `sources` is not a mapping or pairs).

        A source reading SOURCE_DEFAULT / SOURCE_NOT_GIVEN was filled in, not stated, unless
        `given` names it (a `dataclasses.replace` of an entry passes the filled-in texts back)."""
        sources: Any = self.sources  # a mapping is accepted on construction too
        try:
            pairs = dict(sources)
        except (TypeError, ValueError):
            return None
        return {k: v for k, v in pairs.items()
                if f"sources.{k}" in explicit or v not in (SOURCE_DEFAULT, SOURCE_NOT_GIVEN)}

    @staticmethod
    def _unsourced(figure: str, given: set[str]) -> str:
        stated = all(name in given for name in SOURCE_FIGURES[figure])
        return SOURCE_NOT_GIVEN if stated else SOURCE_DEFAULT

    def source(self, figure: str) -> str:
        """Where `figure` ('prices', 'ttft_ms', 'output_tokens_per_s', 'slots') comes from."""
        return dict(self.sources)[figure]

    @property
    def defaults(self) -> tuple[str, ...]:
        """The optional fields this entry leaves to their defaults, in DEFAULTED_FIELDS order."""
        return tuple(name for name in DEFAULTED_FIELDS if name not in self.given)

    @property
    def endpoint(self) -> dict[str, str]:
        """The endpoint fields that are set (never the key: only the variable's name)."""
        return {name: getattr(self, name) for name in UPSTREAM_FIELDS if getattr(self, name) is not None}

    def updated(self, sources: Mapping[str, str] | None = None, **changes: Any) -> LLM:
        """A copy with `changes` applied (and `sources` merged in), each counted as given.

        An upstream field set to None is removed. Raises CatalogueError on an invalid result.
        """
        unknown = sorted((set(changes) - set(LLM_FIELDS)) | ({"id", "given"} & set(changes)))
        if unknown:
            raise CatalogueError(f"LLM {self.id!r}: cannot change {', '.join(unknown)}")
        stated = {k: v for k, v in self.sources if f"sources.{k}" in self.given}
        stated.update(sources or {})
        marks = {name for name, value in changes.items() if value is not None}
        marks.update(f"sources.{k}" for k in stated)
        return replace(self, **changes, sources=tuple(stated.items()),
                       given=frozenset((self.given - {f"sources.{k}" for k in SOURCE_KEYS}) | marks))

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain data with every figure's effective value, in `models.yaml`'s field order."""
        out: dict[str, Any] = {name: getattr(self, name) for name in LLM_FIELDS}
        out["sources"] = dict(self.sources)
        for name in UPSTREAM_FIELDS:
            if out[name] is None:
                del out[name]
        return out

    def written(self) -> dict[str, Any]:
        """The entry as `models.yaml` holds it: only the fields it states, in the file's field order."""
        stated = {k: v for k, v in self.sources if f"sources.{k}" in self.given}
        out = {}
        for k, v in self.to_dict().items():
            if k == "sources":
                if stated:
                    out[k] = stated
            elif k in self.given:
                out[k] = v
        return out


@dataclass(frozen=True)
class Catalogue:
    """An ordered, duplicate-free set of LLM entries."""

    llms: tuple[LLM, ...]
    _index: dict[str, LLM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        llms = tuple(self.llms)
        object.__setattr__(self, "llms", llms)
        index: dict[str, LLM] = {}
        for llm in llms:
            if llm.id in index:
                raise CatalogueError(f"duplicate LLM id {llm.id!r} in the catalogue")
            index[llm.id] = llm
        object.__setattr__(self, "_index", index)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(llm.id for llm in self.llms)

    def get(self, llm_id: str) -> LLM:
        try:
            return self._index[llm_id]
        except KeyError:
            known = ", ".join(self.ids)
            raise UnknownLLMError(f"unknown LLM {llm_id!r}; known: {known}") from None

    def __contains__(self, llm_id: object) -> bool:
        return llm_id in self._index

    def __len__(self) -> int:
        return len(self.llms)

    def __iter__(self) -> Iterator[LLM]:
        return iter(self.llms)

    def fingerprint(self) -> str:
        """sha256 of a canonical JSON of the entries: a changed price or speed changes it.

        Entries are sorted by id so that reordering models.yaml does not look like a change, and
        `name`, `sources` and the upstream fields are left out: they feed no routing computation, so
        fixing a typo in them or moving an endpoint must not invalidate trained artifacts. Figures
        enter with their effective values: writing a default out, or leaving it out, is the same
        catalogue.
        """
        entries = [
            {k: v for k, v in llm.to_dict().items() if k not in ("name", "sources", *UPSTREAM_FIELDS)}
            for llm in sorted(self.llms, key=lambda e: e.id)
        ]
        blob = json.dumps(
            {"version": CATALOGUE_VERSION, "llms": entries},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
        )
        return hashlib.sha256(blob.encode("ascii")).hexdigest()


def parse_catalogue(data: object, source_name: str = "models.yaml", lines: Mapping[str, int] | None = None
                    ) -> Catalogue:
    """Validate already-parsed YAML data; raise CatalogueError listing every problem.

    `lines` (from `yaml_io.line_map`) maps `llms[2]` and `llms[2].ttft_ms` to their line in the file, so
    each problem can name it: `models.yaml:14: llms[2].ttft_ms: must be > 0 (got -5)`.
    """
    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else kind_of(data)
        raise CatalogueError(f"{source_name}: must be a mapping with 'version' and 'llms' (got {got})")
    known = lines or {}

    def located(at: str | None, label: str | None, msg: str) -> str:
        while at and at not in known:  # a field without a line of its own: its parent's
            at = at.rsplit(".", 1)[0] if "." in at else None
        return f"{where(source_name, known[at] if at else None, label)}: {msg}"

    problems = [located(fld, fld, msg) for fld, msg in document_problems(data)]
    llms: list[LLM] = []
    raw_llms = data.get("llms")
    if isinstance(raw_llms, list):
        first_at: dict[str, int] = {}
        for i, entry in enumerate(raw_llms):
            found = entry_problems(i, entry, first_at)
            problems += [located(at, label, msg) for at, label, msg in found]
            if not found:
                stated = {k: entry[k] for k in LLM_FIELDS if k in entry}
                marks = set(stated) | {f"sources.{k}" for k in entry.get("sources") or {}}
                llms.append(LLM(**stated, given=frozenset(marks)))
    if problems:
        raise CatalogueError("\n".join(problems))
    return Catalogue(tuple(llms))


def with_llm(catalogue: Catalogue, llm: LLM) -> Catalogue:
    """A new catalogue with `llm` appended; an id already present is an error."""
    if llm.id in catalogue:
        raise CatalogueError(f"LLM {llm.id!r} is already in the catalogue; remove it first to replace it")
    return Catalogue((*catalogue.llms, llm))


def without_llm(catalogue: Catalogue, llm_id: str) -> Catalogue:
    """A new catalogue without `llm_id`; an unknown id raises UnknownLLMError.

    Removing the last LLM is refused: an empty catalogue would not load again.
    """
    catalogue.get(llm_id)
    if len(catalogue) == 1:
        raise CatalogueError(f"cannot remove {llm_id!r}: it is the only LLM in the catalogue")
    return Catalogue(tuple(e for e in catalogue.llms if e.id != llm_id))
