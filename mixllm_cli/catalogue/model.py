"""The catalogue's entries: `LLM` and `Catalogue`, built from parsed data by `parse_catalogue`."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CatalogueError, UnknownLLMError, where
from .checks import (
    CATALOGUE_VERSION,
    LLM_FIELDS,
    SOURCE_KEYS,
    UPSTREAM_FIELDS,
    document_problems,
    entry_problems,
    kind_of,
    llm_problems,
)


@dataclass(frozen=True)
class LLM:
    """One catalogue entry. Units are in the field names; construction validates every field."""

    id: str
    name: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    ttft_ms: float
    output_tokens_per_s: float
    slots: int
    # A tuple of (figure, source) pairs in SOURCE_KEYS order, so the entry stays hashable;
    # a mapping is accepted on construction and normalised.
    sources: tuple[tuple[str, str], ...]
    base_url: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None

    def __post_init__(self) -> None:
        raw = {name: getattr(self, name) for name in LLM_FIELDS}
        for name in UPSTREAM_FIELDS:
            if raw[name] is None:
                del raw[name]
        if not isinstance(self.sources, Mapping):
            with contextlib.suppress(TypeError, ValueError):  # if not, llm_problems reports it
                raw["sources"] = dict(self.sources)
        problems = llm_problems(raw)
        if problems:
            label = f"LLM {self.id!r}" if isinstance(self.id, str) else "LLM"
            raise CatalogueError("\n".join(f"{label}: {f}: {m}" for f, m in problems))
        for name in ("input_usd_per_mtok", "output_usd_per_mtok", "ttft_ms", "output_tokens_per_s"):
            object.__setattr__(self, name, float(getattr(self, name)))
        srcs = raw["sources"]
        object.__setattr__(self, "sources", tuple((k, srcs[k]) for k in SOURCE_KEYS))

    def source(self, figure: str) -> str:
        """Where `figure` ('prices', 'ttft_ms', 'output_tokens_per_s', 'slots') comes from."""
        return dict(self.sources)[figure]

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain data, in the order `models.yaml` lists the fields."""
        out: dict[str, Any] = {name: getattr(self, name) for name in LLM_FIELDS}
        out["sources"] = dict(self.sources)
        for name in UPSTREAM_FIELDS:
            if out[name] is None:
                del out[name]
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
        fixing a typo in them or moving an endpoint must not invalidate trained artifacts.
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
                llms.append(LLM(**{k: entry[k] for k in LLM_FIELDS if k in entry}))
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
