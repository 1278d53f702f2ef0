"""The request bodies of the HTTP API (pydantic models; FastAPI validates and documents them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..routing.router import MAX_QUERY_CHARS
from .limits import MAX_FEEDBACK_PER_REQUEST, MAX_QUERIES_PER_REQUEST


class RouteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | int | None = Field(None, description="Your id for the query; echoed back.")
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    budget: str | None = Field(None, description="very-low | low | medium | high (default: the request's).")
    lam: float | None = Field(None, alias="lambda", ge=0, description="λ >= 0 instead of a budget.")


class RouteRequest(BaseModel):
    """One query (`query`) or a batch (`queries`); budget, λ and the waiting policy apply to all."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              json_schema_extra={"examples": [{"query": "Explain TCP slow start", "budget": "low"}]})

    id: str | int | None = None
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    queries: list[RouteQuery] | None = Field(None, min_length=1, max_length=MAX_QUERIES_PER_REQUEST)
    budget: str | None = Field(None, description="very-low | low | medium | high (default: medium).")
    lam: float | None = Field(None, alias="lambda", ge=0)
    max_wait_s: float | None = Field(None, ge=0, description="Waiting-time tolerance τ (default 30).")
    strict_wait: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> RouteRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give either query or queries, not both and not neither")
        return self


class FeedbackItem(BaseModel):
    """The fields of `mixllm feedback` (the library validates ranges and combinations)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=64, description="The decision_id that /v1/route returned.")
    quality: float | None = None
    good: bool | None = None
    response_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None


class FeedbackBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[FeedbackItem] = Field(..., min_length=1, max_length=MAX_FEEDBACK_PER_REQUEST)


class ChatRequest(BaseModel):
    """An OpenAI chat-completion request; fields other than these pass through to the chosen LLM."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(..., description="mixllm, or mixllm:<budget> (very-low | low | medium | high).")
    messages: list[dict[str, Any]] = Field(..., min_length=1, max_length=10_000)
    stream: bool = False
