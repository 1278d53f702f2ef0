"""Validation of catalogue data: every problem of a document or an entry, as (field, message) pairs.

Nothing here raises: the callers gather every problem so a user fixes a file in one pass, and
name each problem's place (`llms[2].ttft_ms`) and, when known, its line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

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
TOP_KEYS: tuple[str, ...] = ("version", "llms")

# (where to look up the line, the label printed, the message): an unknown key of an entry is
# printed as the entry's problem but found at the key's own line.
Located = tuple[str, str, str]


def kind_of(value: object) -> str:
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


def llm_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
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
        return [("sources", f"must be a mapping of {', '.join(SOURCE_KEYS)} (got {kind_of(sources)})")]
    problems = [("sources", f"unknown key {k!r}") for k in sources if k not in SOURCE_KEYS]
    for key in SOURCE_KEYS:
        if key not in sources:
            problems.append((f"sources.{key}", "missing (say where it comes from, or 'estimate: <why>')"))
            continue
        text = sources[key]
        if not isinstance(text, str) or not text.strip():
            problems.append((f"sources.{key}", f"must be a non-empty string (got {text!r})"))
    return problems


def document_problems(data: Mapping[Any, Any]) -> list[tuple[str | None, str]]:
    """Problems of the document's top level: unknown keys, `version`, and `llms` not a non-empty list."""
    problems: list[tuple[str | None, str]] = [(None, f"unknown key {key!r}") for key in data if key not in TOP_KEYS]
    if "version" not in data:
        problems.append(("version", f"missing (required; use {CATALOGUE_VERSION})"))
    else:
        version = data["version"]
        if isinstance(version, bool) or version != CATALOGUE_VERSION:
            problems.append(("version", f"must be {CATALOGUE_VERSION} (got {version!r})"))
    raw_llms = data.get("llms")
    if "llms" not in data:
        problems.append(("llms", "missing (required)"))
    elif not isinstance(raw_llms, list):
        problems.append(("llms", f"must be a list of LLM entries (got {kind_of(raw_llms)})"))
    elif not raw_llms:
        problems.append(("llms", "must list at least one LLM"))
    return problems


def entry_problems(i: int, entry: object, first_at: dict[str, int]) -> list[Located]:
    """Problems of `llms[i]`; `first_at` maps each id seen so far to its entry, to report duplicates."""
    at = f"llms[{i}]"
    if not isinstance(entry, Mapping):
        return [(at, at, f"must be a mapping (got {kind_of(entry)})")]
    problems = [(f"{at}.{k}" if isinstance(k, str) else at, at, f"unknown key {k!r}")
                for k in entry if k not in LLM_FIELDS]
    problems += [(f"{at}.{f}", f"{at}.{f}", m) for f, m in llm_problems(entry)]
    llm_id = entry.get("id")
    if isinstance(llm_id, str):
        if llm_id in first_at:
            problems.append((f"{at}.id", f"{at}.id", f"duplicate id {llm_id!r} (first at llms[{first_at[llm_id]}])"))
        else:
            first_at[llm_id] = i
    return problems
