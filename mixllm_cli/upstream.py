"""Forwarding an OpenAI-style chat completion to the LLM the router chose.

Pure helpers (no HTTP here): which budget a `model` name asks for, the text to route (the last
user message), the request to send upstream (the catalogue entry's `base_url`, the key read
from the environment variable it names, the upstream model name), what the call cost, and
masking what looks like a key in an endpoint's words. `serve` (async) and `ask` (sync) do the
I/O with httpx.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import MixLLMError, UsageError

if TYPE_CHECKING:
    from .catalogue import LLM

MODEL_PREFIX = "mixllm"
DEFAULT_FALLBACKS = 2  # a chat completion whose LLM fails is routed again, at most this many more times
DEFAULT_COOLDOWN_S = 30.0  # ... and the failed LLM is skipped by later chat completions for this long
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx: the provider's trouble, not the request's
REFUSED_KEY = frozenset({401, 403})  # the endpoint refused our key: that LLM fails, the others may not

# What looks like a secret in an upstream's words: a bearer token, a key with a provider's prefix
# (sk-..., mxk_..., ...), or any long run of key-like characters with letters and digits mixed.
_SECRETS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)\b((?:sk|pk|rk|ak|mxk|key|api|token|secret)[-_])[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?=[A-Za-z_\-]*\d)(?=[0-9_\-]*[A-Za-z])[A-Za-z0-9_\-+/=.]{24,}"),
)


class UpstreamError(MixLLMError):
    """The chosen LLM's endpoint is not configured, unreachable, or answered with an error."""


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every known secret and everything that looks like a key replaced by ***.

    Shared by `serve` (its log) and `ask` (its warnings): an endpoint's error answer can quote our
    key back ("Incorrect API key provided: sk-..."), so its words are never shown unmasked."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


def parse_model(model: str, budgets: tuple[str, ...]) -> str | None:
    """`mixllm` → None (the default budget); `mixllm:low` → 'low'; anything else is a usage error."""
    if model == MODEL_PREFIX:
        return None
    if model.startswith(MODEL_PREFIX + ":"):
        budget = model[len(MODEL_PREFIX) + 1:]
        if budget in budgets:
            return budget
        raise UsageError(f"unknown budget {budget!r}; use mixllm or mixllm:<budget> with one of: "
                         f"{', '.join(budgets)}", param="model")
    raise UsageError(f"must be 'mixllm' or 'mixllm:<budget>' (got {model!r}); mixllm picks the LLM", param="model")


def content_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [t for t in parts if isinstance(t, str)]
        return "\n".join(texts) if texts else None
    return None


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """What the router reads: the text of the last `user` message."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "user":
            text = content_text(m.get("content"))
            if text is None or not text.strip():
                raise UsageError(f"messages[{i}].content: the last user message has no text to route")
            return text
    raise UsageError("messages: no user message to route")


def has_upstream(llm: LLM) -> bool:
    return llm.base_url is not None


def upstream_call(llm: LLM, body: dict[str, Any], environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(URL, headers, JSON body) of the request to send to `llm`'s endpoint."""
    environ = os.environ if environ is None else environ
    if llm.base_url is None:
        raise UpstreamError(f"LLM {llm.id!r} has no base_url in the catalogue")
    headers = {"content-type": "application/json"}
    if llm.api_key_env is not None:
        key = environ.get(llm.api_key_env)
        if not key:
            raise UpstreamError(f"LLM {llm.id!r}: the environment variable {llm.api_key_env} (api_key_env) is not set")
        headers["authorization"] = f"Bearer {key}"
    out = dict(body)
    out["model"] = llm.upstream_model or llm.id
    if out.get("stream"):
        # Ask for the real token counts in the last chunk (providers that ignore it still stream).
        out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
    return llm.base_url.rstrip("/") + "/chat/completions", headers, out


def worth_another_llm(status: int) -> bool:
    """Whether an upstream answer with this HTTP status should send the query to another LLM."""
    return status in RETRY_STATUSES or status >= 500


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens) of an OpenAI `usage` object, None where absent or malformed."""
    if not isinstance(usage, dict):
        return None, None

    def count(key: str) -> int | None:
        v = usage.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

    return count("prompt_tokens"), count("completion_tokens")


def call_cost_usd(llm: LLM, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """The catalogue price of the call's real token counts; None without usage."""
    if prompt_tokens is None or completion_tokens is None:
        return None
    return (prompt_tokens * llm.input_usd_per_mtok + completion_tokens * llm.output_usd_per_mtok) / 1e6
