"""The LLM catalogue (`models.yaml`): validate, load, and save it atomically.

The catalogue is the single place that names the LLMs a router can choose from and the figures
the decision needs (prices, time to first token, throughput, parallel slots). Nothing else in
the code hard-codes an LLM identity.

Validation reports every problem at once, one line each (`models.yaml: llms[2].ttft_ms: must be
> 0 (got -5)`), so a user fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CatalogueError, UnknownLLMError, where
from .files import atomic_write_bytes

CATALOGUE_VERSION = 1

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)

# Every figure must say where it comes from; the keys are the figures, in the order they are
# written back.
SOURCE_KEYS: tuple[str, ...] = ("prices", "ttft_ms", "output_tokens_per_s", "slots")

# Field order here is the order `save_catalogue` writes.
LLM_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "ttft_ms",
    "output_tokens_per_s",
    "slots",
    "sources",
    "base_url",
    "api_key_env",
    "upstream_model",
)
# Where `mixllm serve` forwards a chat completion routed to this LLM (an OpenAI-compatible
# endpoint), the environment variable holding its API key (never the key itself), and the
# model name that endpoint expects (default: the id). Optional: routing never needs them.
UPSTREAM_FIELDS: tuple[str, ...] = ("base_url", "api_key_env", "upstream_model")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS: tuple[str, ...] = ("version", "llms")


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
            with contextlib.suppress(TypeError, ValueError):  # if not, _llm_problems reports it
                raw["sources"] = dict(self.sources)
        problems = _llm_problems(raw)
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


# ---------------------------------------------------------------------------------------------
# validation


def _kind(value: object) -> str:
    """A value's type as a YAML user would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _number_problem(value: object, op: str, bound: float) -> str | None:
    # bool is an int subclass in Python, but `ttft_ms: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number (got {value!r})"
    if not math.isfinite(value):
        return f"must be a finite number (got {value!r})"
    if op == ">=" and not value >= bound:
        return f"must be >= {bound:g} (got {value!r})"
    if op == ">" and not value > bound:
        return f"must be > {bound:g} (got {value!r})"
    return None


def _llm_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of one entry as (field, message) pairs; the caller adds where it is."""
    problems: list[tuple[str, str]] = []
    for name in LLM_FIELDS:
        if name not in raw and name not in UPSTREAM_FIELDS:
            problems.append((name, "missing (required)"))
    llm_id = raw.get("id")
    if "id" in raw:
        if not isinstance(llm_id, str):
            problems.append(("id", f"must be a string (got {llm_id!r})"))
        elif not _ID_RE.match(llm_id):
            problems.append(("id", f"must match {ID_PATTERN} (got {llm_id!r})"))
    if "name" in raw:
        name = raw["name"]
        if not isinstance(name, str) or not name.strip():
            problems.append(("name", f"must be a non-empty string (got {name!r})"))
    for key, op, bound in (
        ("input_usd_per_mtok", ">=", 0),
        ("output_usd_per_mtok", ">=", 0),
        ("ttft_ms", ">", 0),
        ("output_tokens_per_s", ">", 0),
    ):
        if key in raw:
            msg = _number_problem(raw[key], op, bound)
            if msg:
                problems.append((key, msg))
    if "slots" in raw:
        slots = raw["slots"]
        if isinstance(slots, bool) or not isinstance(slots, int):
            problems.append(("slots", f"must be an integer (got {slots!r})"))
        elif slots < 1:
            problems.append(("slots", f"must be >= 1 (got {slots!r})"))
    if "sources" in raw:
        problems.extend(_sources_problems(raw["sources"]))
    problems.extend(_upstream_problems(raw))
    return problems


def _upstream_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    url = raw.get("base_url")
    if "base_url" in raw:
        from urllib.parse import urlsplit

        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(("base_url", f"must be an http(s) URL like https://api.example.com/v1 (got {url!r})"))
    if "api_key_env" in raw:
        env = raw["api_key_env"]
        if not isinstance(env, str) or not _ENV_RE.match(env):
            problems.append(("api_key_env", (f"must be the NAME of an environment variable holding the key, like "
                                            f"OPENAI_API_KEY (got {env!r})")))
    if "upstream_model" in raw:
        model = raw["upstream_model"]
        if not isinstance(model, str) or not model.strip():
            problems.append(("upstream_model", f"must be a non-empty string (got {model!r})"))
    return problems


def _sources_problems(sources: object) -> list[tuple[str, str]]:
    if not isinstance(sources, Mapping):
        return [("sources", f"must be a mapping of {', '.join(SOURCE_KEYS)} (got {_kind(sources)})")]
    problems = [("sources", f"unknown key {k!r}") for k in sources if k not in SOURCE_KEYS]
    for key in SOURCE_KEYS:
        if key not in sources:
            problems.append((f"sources.{key}", "missing (say where it comes from, or 'estimate: <why>')"))
            continue
        text = sources[key]
        if not isinstance(text, str) or not text.strip():
            problems.append((f"sources.{key}", f"must be a non-empty string (got {text!r})"))
    return problems


def parse_catalogue(data: object, source_name: str = "models.yaml", lines: Mapping[str, int] | None = None
                    ) -> Catalogue:
    """Validate already-parsed YAML data; raise CatalogueError listing every problem.

    `lines` (from `_line_map`) maps `llms[2]` and `llms[2].ttft_ms` to their line in the file, so
    each problem can name it: `models.yaml:14: llms[2].ttft_ms: must be > 0 (got -5)`.
    """
    problems: list[str] = []
    lines = lines or {}

    def line_of(fld: str | None) -> int | None:
        while fld:
            if fld in lines:
                return lines[fld]
            fld = fld.rsplit(".", 1)[0] if "." in fld else None
        return None

    def problem(fld: str | None, msg: str) -> None:
        problems.append(f"{where(source_name, line_of(fld), fld)}: {msg}")

    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else _kind(data)
        raise CatalogueError(f"{source_name}: must be a mapping with 'version' and 'llms' (got {got})")
    for key in data:
        if key not in _TOP_KEYS:
            problem(None, f"unknown key {key!r}")
    if "version" not in data:
        problem("version", f"missing (required; use {CATALOGUE_VERSION})")
    else:
        version = data["version"]
        if isinstance(version, bool) or version != CATALOGUE_VERSION:
            problem("version", f"must be {CATALOGUE_VERSION} (got {version!r})")

    llms: list[LLM] = []
    raw_llms = data.get("llms")
    if "llms" not in data:
        problem("llms", "missing (required)")
    elif not isinstance(raw_llms, list):
        problem("llms", f"must be a list of LLM entries (got {_kind(raw_llms)})")
    elif not raw_llms:
        problem("llms", "must list at least one LLM")
    else:
        first_at: dict[str, int] = {}
        for i, entry in enumerate(raw_llms):
            at = f"llms[{i}]"
            if not isinstance(entry, Mapping):
                problem(at, f"must be a mapping (got {_kind(entry)})")
                continue
            entry_problems = [(f"{at}.{k}" if isinstance(k, str) else at, at, f"unknown key {k!r}")
                              for k in entry if k not in LLM_FIELDS]
            entry_problems += [(f"{at}.{f}", f"{at}.{f}", m) for f, m in _llm_problems(entry)]
            llm_id = entry.get("id")
            if isinstance(llm_id, str):
                if llm_id in first_at:
                    entry_problems.append((f"{at}.id", f"{at}.id",
                                           f"duplicate id {llm_id!r} (first at llms[{first_at[llm_id]}])"))
                else:
                    first_at[llm_id] = i
            for at_line, label, msg in entry_problems:
                problems.append(f"{where(source_name, line_of(at_line), label)}: {msg}")
            if not entry_problems:
                llms.append(LLM(**{k: entry[k] for k in LLM_FIELDS if k in entry}))
    if problems:
        raise CatalogueError("\n".join(problems))
    return Catalogue(tuple(llms))


# ---------------------------------------------------------------------------------------------
# files


def _yaml_loader() -> type:
    import yaml  # lazily: the CLI's start-up must not pay for it

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is much faster

    class _StrictLoader(base):  # type: ignore[misc, valid-type]
        """PyYAML keeps the last of two equal keys silently; in a catalogue that hides a typo."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return _StrictLoader


def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read and validate a catalogue file."""
    import yaml

    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CatalogueError(f"{name}: no such file") from None
    except OSError as exc:
        raise CatalogueError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogueError(f"{name}:{line}: not valid UTF-8") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        loc = f"{name}:{mark.line + 1}" if mark is not None else name
        raise CatalogueError(f"{loc}: invalid YAML: {problem}") from None
    try:
        return parse_catalogue(data, name)
    except CatalogueError:
        # Only a bad file pays for a second pass that finds each problem's line.
        return parse_catalogue(data, name, _line_map(text))


def _line_map(text: str) -> dict[str, int]:
    """1-based lines of `version`, `llms`, each `llms[i]` and each of its keys (`llms[i].sources.slots` too)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=_yaml_loader())
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    sub = f"{path}.{key.value}" if path else key.value
                    out.setdefault(sub, key.start_mark.line + 1)
                    walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = f"{path}[{i}]"
                out.setdefault(sub, item.start_mark.line + 1)
                walk(item, sub)

    if root is not None:
        walk(root, "")
    return out


def _plain(value: float) -> float | int:
    # Written as 450 rather than 450.0 so a saved file reads like a hand-written one; the loader
    # turns it back into the same float.
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def dump_catalogue(catalogue: Catalogue) -> str:
    """The catalogue as YAML text, in the shipped field order."""
    import yaml

    entries = []
    for llm in catalogue.llms:
        entry = llm.to_dict()
        for key in ("input_usd_per_mtok", "output_usd_per_mtok", "ttft_ms", "output_tokens_per_s"):
            entry[key] = _plain(entry[key])
        entries.append(entry)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    body = yaml.dump(
        {"version": CATALOGUE_VERSION, "llms": entries},
        Dumper=dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return "# mixllm LLM catalogue; units are in the field names.\n" + body


def save_catalogue(catalogue: Catalogue, path: str | os.PathLike[str]) -> None:
    """Write the catalogue atomically; the result loads back to an equal Catalogue."""
    text = dump_catalogue(catalogue)
    try:
        atomic_write_bytes(Path(path), text.encode("utf-8"))
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot write: {exc.strerror or exc}") from None


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
