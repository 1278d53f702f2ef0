"""Chat completions: route the query, forward the request to the chosen LLM's endpoint, relay its
answer (whole or streamed) and record what the call cost.

Chat completions fall back: when the chosen LLM's endpoint fails before it answers (not
configured, unreachable, 408/409/429 or 5xx, an unreadable body), the query is routed again
without the LLMs that failed, up to `Service.fallbacks` more times. Each attempt is a decision of
its own (logged, queued); a failed one frees its queue slot and teaches nothing. Other 4xx
answers are the request's fault and are passed on as a 502 without a retry. An LLM that failed
so is then skipped by this replica's chat completions for `Service.cooldown_s` seconds (unless
every LLM with an endpoint is cooling down), so an outage costs one failed attempt, not one per
request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response, StreamingResponse

from ..errors import MixLLMError
from ..routing.request import RouteRequest
from ..routing.router import Decision, WaitPolicy, check_query
from ..upstream import UpstreamError
from .errors import ApiError, JSONResponse, error_body, status_of

if TYPE_CHECKING:
    import httpx

    from ..catalogue.model import LLM
    from .schemas import ChatRequest
    from .service import Service

LLM_HEADER = "x-mixllm-llm"
DECISION_HEADER = "x-mixllm-decision-id"
FALLBACK_HEADER = "x-mixllm-fallback-from"  # the LLMs that failed before the one that answered


@dataclass(frozen=True)
class _Failed:
    """An upstream attempt that failed before anything was sent to the caller."""

    message: str
    retry: bool  # worth trying another LLM (the provider's trouble, not the request's)


@dataclass(frozen=True)
class _Call:
    """One forwarded call: what it answers with, and what `finish` needs to record its cost."""

    service: Service
    llm: LLM
    decision: Decision
    started: float  # time.perf_counter() when the request was sent
    info: dict[str, Any]  # the `mixllm` member added to the answer (or to each streamed chunk)
    headers: dict[str, str]

    async def finish(self, usage: Any, ttft_ms: float | None) -> None:
        """Record the call's latency, tokens and cost: in the metrics, and as the decision's feedback."""
        from ..learning.feedback import Feedback
        from ..upstream import call_cost_usd, usage_tokens

        latency_ms = (time.perf_counter() - self.started) * 1000.0
        prompt, completion = usage_tokens(usage)
        cost = call_cost_usd(self.llm, prompt, completion)
        self.service.metrics.upstream_call(self.llm.id, latency_ms / 1000.0, prompt, completion, cost)
        fb = Feedback(self.decision.decision_id or "", response_tokens=completion, latency_ms=round(latency_ms, 3),
                      ttft_ms=None if ttft_ms is None else round(ttft_ms, 3), cost_usd=cost)
        await self.service.record([("upstream", fb)])


async def chat_completion(service: Service, body: ChatRequest) -> Response:
    """Route the chat request's last user message and forward the request, falling back (see the module
    docstring) until an LLM answers; a 502 naming every failure when none does."""
    from ..upstream import last_user_text, parse_model

    try:
        budget = parse_model(body.model, tuple(service.router.artifacts.presets))
        text = check_query(last_user_text(body.messages), "messages: last user message")
    except MixLLMError as exc:
        raise ApiError(status_of(exc), str(exc), param=exc.param or "messages") from None
    if not service.forwards_chat:
        raise ApiError(503, "no LLM of the catalogue has a base_url; add base_url (and api_key_env) to "
                            "models.yaml to forward chat completions", "unavailable")
    request = service.check(RouteRequest(query=text, budget=budget, policy=WaitPolicy.default()))
    failed: list[dict[str, str]] = []  # {"llm", "error"} of each attempt that failed, in order
    cooling, tried = service.cooling(), frozenset[str]()
    while True:
        exclude = cooling | tried
        if not service.offered(True, exclude).any():
            exclude = tried  # only LLMs that failed lately are left: try them
        (decision,), _ = await service.route([replace(request, exclude=exclude | service.without_endpoint())])
        out = await forward(service, body, decision, failed)
        if isinstance(out, Response):
            return out
        await service.run("feedback", service.complete_failed, decision.decision_id)  # free its slot, learn nothing
        service.upstream_failed(decision.choice, cool_down=out.retry)
        failed.append({"llm": decision.choice, "error": out.message})
        tried = tried | {decision.choice}
        if not out.retry or len(failed) > service.fallbacks or not service.offered(True, tried).any():
            headers = {LLM_HEADER: decision.choice, DECISION_HEADER: decision.decision_id or "",
                       FALLBACK_HEADER: ",".join(f["llm"] for f in failed[:-1])}
            return JSONResponse(error_body("; ".join(f["error"] for f in failed), "upstream_error"),
                                status_code=502, headers=headers)


async def forward(service: Service, body: ChatRequest, decision: Decision,
                  failed: list[dict[str, str]]) -> Response | _Failed:
    """Send the request to the chosen LLM, answer (or stream) its reply, then record what it cost.
    `failed` lists the attempts before this one (reported with the answer)."""
    import httpx

    from ..upstream import upstream_call, worth_another_llm

    http = service.http
    assert http is not None, "the app's lifespan opens the HTTP client"
    llm = service.router.catalogue.get(decision.choice)
    try:
        url, up_headers, up_body = upstream_call(llm, body.model_dump())
        started = time.perf_counter()
        resp = await http.send(http.build_request("POST", url, headers=up_headers, json=up_body), stream=True)
    except (UpstreamError, httpx.HTTPError) as exc:
        return _Failed(str(exc) if isinstance(exc, UpstreamError) else f"LLM {llm.id!r}: {type(exc).__name__}: {exc}",
                       retry=True)
    if resp.status_code != 200:
        raw = await resp.aread()
        await resp.aclose()
        try:
            upstream_msg = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            upstream_msg = raw[:200].decode("utf-8", "replace")
        return _Failed(f"LLM {llm.id!r} answered {resp.status_code}: {upstream_msg}",
                       retry=worth_another_llm(resp.status_code))
    call = _Call(service, llm, decision, started,
                 info={"llm": llm.id, "decision_id": decision.decision_id, "budget": decision.budget,
                       "lambda": decision.lam, "fallback_from": failed},
                 headers={LLM_HEADER: llm.id, DECISION_HEADER: decision.decision_id or "",
                          FALLBACK_HEADER: ",".join(f["llm"] for f in failed)})
    if not body.stream:
        return await _answer(call, resp)
    return StreamingResponse(_relay(call, resp), media_type="text/event-stream", headers=call.headers)


async def _answer(call: _Call, resp: httpx.Response) -> Response | _Failed:
    """The upstream's whole (non-streamed) answer, with the `mixllm` member added."""
    try:
        raw = await resp.aread()
    finally:
        await resp.aclose()
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return _Failed(f"LLM {call.llm.id!r} answered with something that is not a JSON object", retry=True)
    await call.finish(obj.get("usage"), None)
    obj["mixllm"] = call.info
    return JSONResponse(obj, headers=call.headers)


async def _relay(call: _Call, resp: httpx.Response) -> AsyncIterator[str]:
    """The upstream's server-sent events, passed on as they come, each JSON chunk with the `mixllm`
    member added; the usage and time to first token are taken from the chunks on the way."""
    usage, ttft_ms = None, None
    try:
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                if line:
                    yield line + "\n"
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                yield "data: [DONE]\n\n"
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                yield line + "\n\n"
                continue
            if isinstance(chunk, dict):
                if ttft_ms is None and _has_content(chunk):
                    ttft_ms = (time.perf_counter() - call.started) * 1000.0
                if chunk.get("usage"):
                    usage = chunk["usage"]
                chunk["mixllm"] = call.info
            yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
    finally:
        await resp.aclose()
        # Record even when the caller went away mid-stream; shielded from its cancellation.
        await asyncio.shield(call.finish(usage, ttft_ms))


def _has_content(chunk: dict[str, Any]) -> bool:
    """Whether a streamed chunk carries generated text (its arrival is the time to first token)."""
    return any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or [] if isinstance(c, dict))
