"""Validation of catalogue data: every problem of a document or an entry, as (field, message) pairs.

Nothing here raises: the callers gather every problem so a user fixes a file in one pass, and
name each problem's place (`llms[2].ttft_ms`) and, when known, its line.

An entry needs only `id` and the two prices; every other figure has a documented default
(`DEFAULTS`, docs/CATALOGUE.md), and a figure's source is optional. Unknown keys are still refused:
a misspelt optional key would otherwise fall back to its default without a word.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

CATALOGUE_VERSION = 1

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)

# Where each figure comes from (optional); the keys are the figures, in the order they are written
# back. A figure given without a source reads as SOURCE_NOT_GIVEN, a defaulted one as SOURCE_DEFAULT.
SOURCE_KEYS: tuple[str, ...] = ("prices", "ttft_ms", "output_tokens_per_s", "slots")
SOURCE_DEFAULT = "default"
SOURCE_NOT_GIVEN = "not given"
# The catalogue field(s) each source key speaks for.
SOURCE_FIGURES: dict[str, tuple[str, ...]] = {
    "prices": ("input_usd_per_mtok", "output_usd_per_mtok"),
    "ttft_ms": ("ttft_ms",),
    "output_tokens_per_s": ("output_tokens_per_s",),
    "slots": ("slots",),
}

REQUIRED_FIELDS: tuple[str, ...] = ("id", "input_usd_per_mtok", "output_usd_per_mtok")
# The defaults of the optional figures (`name` defaults to the id). The same values `mixllm add-llm`
# has always used: a hosted API of 2024 answered in 0.25-0.6 s at 20-100 tokens/s, and a few
# concurrent calls is what an ordinary account gets before it queues.
DEFAULT_TTFT_MS = 500.0
DEFAULT_OUTPUT_TOKENS_PER_S = 50.0
DEFAULT_SLOTS = 4
DEFAULTS: dict[str, float | int] = {
    "ttft_ms": DEFAULT_TTFT_MS,
    "output_tokens_per_s": DEFAULT_OUTPUT_TOKENS_PER_S,
    "slots": DEFAULT_SLOTS,
}
# Fields that may be left out and read as a default: shown as defaults by `mixllm llms`.
DEFAULTED_FIELDS: tuple[str, ...] = ("name", *DEFAULTS)

# Upper bounds, so a hostile or mistyped file cannot feed an overflow into the decision: far
# above any real figure (USD 1M per 1M tokens, an hour to the first token).
MAX_USD_PER_MTOK = 1e6
MAX_TTFT_MS = 3.6e6
MAX_OUTPUT_TOKENS_PER_S = 1e6
MAX_SLOTS = 1_000_000
MAX_TEXT_CHARS = 1000  # name, a source, upstream_model
MAX_URL_CHARS = 2048
MAX_ENV_NAME_CHARS = 128

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


def _number_problem(value: object, op: str, bound: float, most: float) -> str | None:
    # bool is an int subclass in Python, but `ttft_ms: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number (got {value!r})"
    if not math.isfinite(value):
        return f"must be a finite number (got {value!r})"
    if op == ">=" and not value >= bound:
        return f"must be >= {bound:g} (got {value!r})"
    if op == ">" and not value > bound:
        return f"must be > {bound:g} (got {value!r})"
    if value > most:
        return f"must be <= {most:g} (got {value!r})"
    return None


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string (got {value!r})"
    if len(value) > MAX_TEXT_CHARS:
        return f"must be at most {MAX_TEXT_CHARS} characters (got {len(value)})"
    return None


def llm_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of one entry as (field, message) pairs; the caller adds where it is.

    Only REQUIRED_FIELDS must be present; a field that is present must be valid.
    """
    problems: list[tuple[str, str]] = [(name, "missing (required)") for name in REQUIRED_FIELDS if name not in raw]
    llm_id = raw.get("id")
    if "id" in raw:
        if not isinstance(llm_id, str):
            problems.append(("id", f"must be a string (got {llm_id!r})"))
        elif not _ID_RE.match(llm_id):
            problems.append(("id", f"must match {ID_PATTERN} (got {llm_id!r})"))
    if "name" in raw:
        msg = _text_problem(raw["name"])
        if msg:
            problems.append(("name", msg))
    for key, op, bound, most in (
        ("input_usd_per_mtok", ">=", 0, MAX_USD_PER_MTOK),
        ("output_usd_per_mtok", ">=", 0, MAX_USD_PER_MTOK),
        ("ttft_ms", ">", 0, MAX_TTFT_MS),
        ("output_tokens_per_s", ">", 0, MAX_OUTPUT_TOKENS_PER_S),
    ):
        if key in raw:
            msg = _number_problem(raw[key], op, bound, most)
            if msg:
                problems.append((key, msg))
    if "slots" in raw:
        slots = raw["slots"]
        if isinstance(slots, bool) or not isinstance(slots, int):
            problems.append(("slots", f"must be an integer (got {slots!r})"))
        elif slots < 1:
            problems.append(("slots", f"must be >= 1 (got {slots!r})"))
        elif slots > MAX_SLOTS:
            problems.append(("slots", f"must be <= {MAX_SLOTS} (got {slots!r})"))
    if "sources" in raw:
        problems.extend(_sources_problems(raw["sources"], raw))
    problems.extend(upstream_problems(raw))
    return problems


def upstream_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of the endpoint fields present in `raw` (`base_url`, `api_key_env`, `upstream_model`).

    A URL carrying credentials (`https://user:key@host`) or a query string is refused: the key
    belongs in the environment variable `api_key_env` names, never in a file or a printed line.
    """
    problems: list[tuple[str, str]] = []
    if "base_url" in raw:
        msg = _url_problem(raw["base_url"])
        if msg:
            problems.append(("base_url", msg))
    if "api_key_env" in raw:
        env = raw["api_key_env"]
        if not isinstance(env, str) or not _ENV_RE.match(env) or len(env) > MAX_ENV_NAME_CHARS:
            # A long value is not echoed: it may be the key itself, pasted in the wrong place.
            shown = (repr(env) if not isinstance(env, str) or len(env) <= 24
                     else f"a {len(env)}-character value, not shown")
            problems.append(("api_key_env", (f"must be the NAME of an environment variable holding the key, like "
                                            f"OPENAI_API_KEY (got {shown})")))
    if "upstream_model" in raw:
        msg = _text_problem(raw["upstream_model"])
        if msg:
            problems.append(("upstream_model", msg))
    return problems


def _url_problem(url: object) -> str | None:
    from urllib.parse import urlsplit

    like = "must be an http(s) URL like https://api.example.com/v1"
    if not isinstance(url, str):
        return f"{like} (got {url!r})"
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters (got {len(url)})"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return f"{like} (got {url!r})"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        return f"{like} (got {url!r})"
    if parts.username is not None or parts.password is not None:
        # Not echoed: the part before '@' is a credential.
        return "must not hold credentials (user:key@); name the key's environment variable in api_key_env"
    if parts.query or parts.fragment:
        return f"must not have a query string or fragment (got {parts.scheme}://{parts.netloc}{parts.path}?...)"
    return None


def _sources_problems(sources: object, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not isinstance(sources, Mapping):
        return [("sources", f"must be a mapping of {', '.join(SOURCE_KEYS)} (got {kind_of(sources)})")]
    problems = [("sources", f"unknown key {k!r}") for k in sources if k not in SOURCE_KEYS]
    for key in SOURCE_KEYS:
        if key not in sources:
            continue  # optional: reads as SOURCE_NOT_GIVEN, or SOURCE_DEFAULT for a defaulted figure
        msg = _text_problem(sources[key])
        if msg:
            problems.append((f"sources.{key}", msg))
        elif key in DEFAULTS and key not in raw:
            # A source without its figure usually means the figure's line was lost: say so rather
            # than silently routing on the default.
            problems.append((f"sources.{key}", (f"gives a source but {key} is not given (the default "
                                                f"{DEFAULTS[key]:g} needs none): give {key} or drop this source")))
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
