"""The request bodies of the HTTP API (pydantic models; FastAPI validates and documents them).

Strict types: a boolean is `true` or `false` (never "yes" or 1), a number is a JSON number (never a
string), an integer is an integer. Before any field is read, the whole body is checked
(`check_body`): no string or key with a lone surrogate (`"\\udfff"` parses, but cannot be stored or
rendered as JSON), no NaN or infinite number (Python's parser reads `NaN` and `1e400`), no integer
beyond 64 bits, no nesting deeper than MAX_DEPTH. A body that fails gets a 400 naming where, before
anything is routed or stored.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from ..routing.router import MAX_QUERY_CHARS
from .errors import ApiError
from .limits import MAX_FEEDBACK_PER_REQUEST, MAX_QUERIES_PER_REQUEST

MAX_DEPTH = 64  # objects and arrays inside each other (a chat request's tool schemas nest a few levels)
INT64 = 2**63


def _at(path: str, key: object) -> str:
    """`path` extended by an object key or array index, for messages (long keys cut short)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{path}.{text}" if path else text


def _valid_text(s: str) -> bool:
    if s.isascii():  # O(1) in CPython (a flag of the string), and the common case
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_body(body: object) -> None:
    """Refuse what no field may hold (see the module docstring) with a 400 naming its place; iterative,
    so a deeply nested body cannot exhaust the stack."""
    stack: list[tuple[object, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path if len(path) <= 100 else path[:97] + "..."
        where = where or "body"
        if isinstance(value, str):
            if not _valid_text(value):
                raise ApiError(400, f"{where}: is not valid UTF-8 (a lone surrogate)", param=where)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -INT64 <= value < INT64:
                raise ApiError(400, f"{where}: integer out of range (beyond 64 bits)", param=where)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ApiError(400, f"{where}: must be a finite number (not NaN or infinite)", param=where)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ApiError(400, f"{where}: nested more than {MAX_DEPTH} levels deep", param=where)
            if isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(k, str) or not _valid_text(k):
                        raise ApiError(400, f"{where}: a key is not valid UTF-8 (a lone surrogate)", param=where)
                    stack.append((v, _at(path, k), depth + 1))
            else:
                stack.extend((v, _at(path, i), depth + 1) for i, v in enumerate(value))


class _Body(BaseModel):
    """A request body: `check_body` runs on the raw JSON before the fields are validated."""

    @model_validator(mode="before")
    @classmethod
    def _check_body(cls, data: Any) -> Any:
        check_body(data)
        return data


class RouteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    id: StrictStr | StrictInt | None = Field(None, description="Your id for the query; echoed back.")
    query: StrictStr = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    budget: StrictStr | None = Field(None, description="very-low | low | medium | high (default: the request's).")
    lam: float | None = Field(None, alias="lambda", ge=0, strict=True, description="λ >= 0 instead of a budget.")


class RouteRequest(_Body):
    """One query (`query`) or a batch (`queries`); budget, λ and the waiting policy apply to all."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False,
                              json_schema_extra={"examples": [{"query": "Explain TCP slow start", "budget": "low"}]})

    id: StrictStr | StrictInt | None = None
    query: StrictStr | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    queries: list[RouteQuery] | None = Field(None, min_length=1, max_length=MAX_QUERIES_PER_REQUEST)
    budget: StrictStr | None = Field(None, description="very-low | low | medium | high (default: medium).")
    lam: float | None = Field(None, alias="lambda", ge=0, strict=True)
    max_wait_s: float | None = Field(None, ge=0, strict=True, description="Waiting-time tolerance τ (default 30).")
    strict_wait: StrictBool = False

    @model_validator(mode="after")
    def _one_of(self) -> RouteRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give either query or queries, not both and not neither")
        return self


class FeedbackItem(_Body):
    """The fields of `mixllm feedback` (the library validates ranges and combinations)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: StrictStr = Field(..., min_length=1, max_length=64, description="The decision_id that /v1/route returned.")
    quality: float | None = Field(None, strict=True)
    good: StrictBool | None = None
    response_tokens: int | None = Field(None, strict=True)
    latency_ms: float | None = Field(None, strict=True)
    ttft_ms: float | None = Field(None, strict=True)
    cost_usd: float | None = Field(None, strict=True)


class FeedbackBatch(_Body):
    model_config = ConfigDict(extra="forbid")

    items: list[FeedbackItem] = Field(..., min_length=1, max_length=MAX_FEEDBACK_PER_REQUEST)


class ChatExtension(BaseModel):
    """The `mixllm` member of a chat request (ours, never forwarded): answer a decision that
    `/v1/route` made, instead of routing the request again (the demo page shows the decision
    table first, then asks for the answer of that very decision)."""

    model_config = ConfigDict(extra="forbid")

    decision_id: StrictStr = Field(..., min_length=1, max_length=64,
                                   description="The decision_id /v1/route returned for the last user message.")


class ChatRequest(_Body):
    """An OpenAI chat-completion request; fields other than these pass through to the chosen LLM
    (`mixllm` excepted: it is ours, and stripped before forwarding)."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(..., description="mixllm, or mixllm:<budget> (very-low | low | medium | high).")
    messages: list[dict[str, Any]] = Field(..., min_length=1, max_length=10_000)
    stream: StrictBool = False
    mixllm: ChatExtension | None = Field(None, description="Answer this routed decision (not forwarded upstream).")
