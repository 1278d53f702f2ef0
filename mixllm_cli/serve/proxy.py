"""Chat completions: route the query, forward the request to the chosen LLM's endpoint, relay its
answer (whole or streamed) and record what the call cost.

Chat completions fall back: when the chosen LLM's endpoint fails before it answers (not
configured, unreachable, 401/403 (it refused our key), 408/409/429 or 5xx, an unreadable body),
the query is routed again without the LLMs that failed, up to `Service.fallbacks` more times.
Each attempt is a decision of its own (logged, queued); a failed one frees its queue slot and
teaches nothing. Other 4xx answers are the request's fault and are passed on as a 502 without a
retry. An LLM that failed so is then skipped by this replica's chat completions for
`Service.cooldown_s` seconds (unless every LLM with an endpoint is cooling down), so an outage
costs one failed attempt, not one per request.

What a caller learns of a failure: the LLM, the endpoint's status and a generic message
("LLM 'x': its endpoint answered 401"), never the endpoint's own words, which can quote our key
back (providers do: "Incorrect API key provided: sk-..."). Those go to the server log
(`mixllm.serve`, stderr), cut to LOGGED_CHARS and with anything that looks like a key masked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response, StreamingResponse

from ..errors import MixLLMError
from ..routing.request import RouteRequest
from ..routing.router import Candidate, Decision, WaitPolicy, check_query
from ..upstream import UpstreamError, scrub
from .errors import ApiError, JSONResponse, error_body, status_of

if TYPE_CHECKING:
    import httpx

    from ..catalogue.model import LLM
    from .schemas import ChatRequest
    from .service import Service

LLM_HEADER = "x-mixllm-llm"
DECISION_HEADER = "x-mixllm-decision-id"
FALLBACK_HEADER = "x-mixllm-fallback-from"  # the LLMs that failed before the one that answered
REFUSED_KEY = frozenset({401, 403})  # the endpoint refused our key: that LLM fails, the others may not
READ_ERROR_BYTES = 64 * 1024  # of an error answer's body, read for the log (the rest is dropped)
LOGGED_CHARS = 500  # of that body, logged after masking

log = logging.getLogger("mixllm.serve")
Charge = Callable[[float], Awaitable[None]]  # counts a call's cost against the caller's API key

@dataclass(frozen=True)
class _Failed:
    """An upstream attempt that failed before anything was sent to the caller."""

    status: int | None  # the endpoint's HTTP status; None if it was not reached (or not configured)
    message: str  # for the caller: generic, never the endpoint's own words
    retry: bool  # worth trying another LLM (the provider's trouble, not the request's)
    detail: str  # for the server log: what failed and what to check (no secrets)
    said: str | None = None  # the endpoint's answer, masked, for the server log


@dataclass(frozen=True)
class _Call:
    """One forwarded call: what it answers with, and what `finish` needs to record its cost."""

    service: Service
    llm: LLM
    decision: Decision
    started: float  # time.perf_counter() when the request was sent
    info: dict[str, Any]  # the `mixllm` member added to the answer (or to each streamed chunk)
    headers: dict[str, str]
    charge: Charge | None = None

    async def finish(self, usage: Any, ttft_ms: float | None) -> None:
        """Record the call's latency, tokens and cost: in the metrics, and as the decision's feedback."""
        from ..learning.feedback import Feedback
        from ..upstream import call_cost_usd, usage_tokens

        latency_ms = (time.perf_counter() - self.started) * 1000.0
        prompt, completion = usage_tokens(usage)
        cost = call_cost_usd(self.llm, prompt, completion)
        self.service.metrics.upstream_call(self.llm.id, latency_ms / 1000.0, prompt, completion, cost)
        if self.charge is not None:
            # Without usage from the endpoint, the router's prediction: a key's budget must not be
            # endless because an endpoint does not report tokens.
            await self.charge(cost if cost is not None else next(
                (c.cost_usd for c in self.decision.candidates if c.llm == self.llm.id), 0.0))
        fb = Feedback(self.decision.decision_id or "", response_tokens=completion, latency_ms=round(latency_ms, 3),
                      ttft_ms=None if ttft_ms is None else round(ttft_ms, 3), cost_usd=cost)
        await self.service.record([("upstream", fb)])


async def chat_completion(service: Service, body: ChatRequest, charge: Charge | None = None) -> Response:
    """Route the chat request's last user message and forward the request, falling back (see the module
    docstring) until an LLM answers; a 502 naming every failure when none does. `charge` is given the
    cost of the call that answered (the caller's API key pays it)."""
    from ..upstream import last_user_text, parse_model

    try:
        budget = parse_model(body.model, tuple(service.router.artifacts.presets))
        text = check_query(last_user_text(body.messages), "messages: last user message")
    except MixLLMError as exc:
        raise ApiError(status_of(exc), str(exc), param=exc.param or "messages") from None
    if not service.forwards_chat:
        # 400, not 503: a configuration that no retry can fix (the openai clients retry every 5xx).
        raise ApiError(400, "no LLM of the catalogue has a base_url, so this server cannot forward chat "
                            "completions; set one with `mixllm set-endpoint ID --base-url URL`", param="model")
    routed = None if body.mixllm is None else await routed_decision(service, body.mixllm.decision_id, text)
    if routed is not None:  # fallbacks keep the routed decision's budget (or λ), not the model's
        budget = routed.budget
    lam = routed.lam if routed is not None and routed.budget is None else None
    request = service.check(RouteRequest(query=text, budget=budget, lam=lam, policy=WaitPolicy.default()))
    failed: list[dict[str, Any]] = []  # {"llm", "status"} of each attempt that failed, in order
    messages: list[str] = []  # what the caller is told of each
    cooling, tried = service.cooling(), frozenset[str]()
    while True:
        exclude = cooling | tried
        if not service.offered(True, exclude).any():
            exclude = tried  # only LLMs that failed lately are left: try them
        if routed is not None:  # the first attempt answers the routed decision, as it was decided
            decision, routed = routed, None
        else:
            (decision,), _ = await service.route([replace(request, exclude=exclude | service.without_endpoint())])
        out = await forward(service, body, decision, failed, charge)
        if isinstance(out, Response):
            return out
        await service.run("feedback", service.complete_failed, decision.decision_id)  # free its slot, learn nothing
        service.upstream_failed(decision.choice, cool_down=out.retry)
        failed.append({"llm": decision.choice, "status": out.status})
        messages.append(out.message)
        tried = tried | {decision.choice}
        last = not out.retry or len(failed) > service.fallbacks or not service.offered(True, tried).any()
        _log_failure(service, decision.choice, out, last)
        if last:
            headers = {LLM_HEADER: decision.choice, DECISION_HEADER: decision.decision_id or "",
                       FALLBACK_HEADER: ",".join(f["llm"] for f in failed[:-1])}
            return JSONResponse(error_body("; ".join(messages), "upstream_error"), status_code=502, headers=headers)


async def routed_decision(service: Service, decision_id: str, text: str) -> Decision:
    """The decision `/v1/route` made for `text`, to be answered as decided (the `mixllm.decision_id`
    member of a chat request): 404 when the store has no such decision, 400 when it was made for
    another query (the sha256 of the last user message differs), 409 when its call was already
    answered (or failed, or reported by hand) or is being answered now by this replica."""
    import hashlib

    where = "mixllm.decision_id"
    try:
        row = await service.run("feedback", service.store("feedback").routed_decision, decision_id)
    except MixLLMError as exc:
        raise ApiError(status_of(exc), str(exc), param=where) from None
    if row["query_sha256"] != hashlib.sha256(text.encode("utf-8")).hexdigest():
        raise ApiError(400, f"decision {decision_id!r} was routed for another query than the last user message",
                       param=where)
    if row["ended"] or not service.claim(decision_id):
        raise ApiError(409, f"decision {decision_id!r} was already answered; route the query again for a new one",
                       "conflict", param=where)
    # The log keeps the chosen LLM's predicted cost only: enough for a key's charge when the
    # endpoint reports no usage (`_Call.finish`), the one use of the candidates here.
    chosen = Candidate(row["llm"], quality=float("nan"), response_tokens=float("nan"),
                       cost_usd=float(row["predicted_cost_usd"]), wait_ms=float("nan"), uncertainty=float("nan"),
                       penalty=float("nan"), score=float("nan"))
    return Decision(id=None, choice=row["llm"], budget=row["budget"], lam=float(row["lambda"]),
                    prompt_tokens=int(row["prompt_tokens"]), candidates=(chosen,), decision_id=decision_id)


async def forward(service: Service, body: ChatRequest, decision: Decision,
                  failed: list[dict[str, Any]], charge: Charge | None = None) -> Response | _Failed:
    """Send the request to the chosen LLM, answer (or stream) its reply, then record what it cost.
    `failed` lists the attempts before this one (reported with the answer)."""
    import httpx

    from ..upstream import upstream_call, worth_another_llm

    http = service.http
    assert http is not None, "the app's lifespan opens the HTTP client"
    llm = service.router.catalogue.get(decision.choice)
    try:
        url, up_headers, up_body = upstream_call(llm, body.model_dump(exclude={"mixllm"}))  # ours: not sent
    except UpstreamError as exc:
        return _Failed(None, f"LLM {llm.id!r}: its endpoint is not configured on this server", retry=True,
                       detail=f"not called: {exc.message.removeprefix(f'LLM {llm.id!r}: ')}")
    started = time.perf_counter()
    try:
        resp = await http.send(http.build_request("POST", url, headers=up_headers, json=up_body), stream=True)
    except httpx.HTTPError as exc:
        return _Failed(None, f"LLM {llm.id!r}: its endpoint could not be reached ({type(exc).__name__})", retry=True,
                       detail=f"its endpoint could not be reached ({type(exc).__name__}: "
                              f"{_one_line(scrub(str(exc), _secrets(llm)))})")
    if resp.status_code != 200:
        status = resp.status_code
        said = _one_line(scrub(await _read_some(resp), _secrets(llm)))
        if status in REFUSED_KEY:
            where = f"check api_key_env {llm.api_key_env}" if llm.api_key_env else "the LLM has no api_key_env"
            return _Failed(status, f"LLM {llm.id!r}: its endpoint answered {status}", retry=True,
                           detail=f"its endpoint refused our key ({status}); {where}", said=said)
        return _Failed(status, f"LLM {llm.id!r}: its endpoint answered {status}", retry=worth_another_llm(status),
                       detail=f"its endpoint answered {status}", said=said)
    call = _Call(service, llm, decision, started,
                 info={"llm": llm.id, "decision_id": decision.decision_id, "budget": decision.budget,
                       "lambda": decision.lam, "fallback_from": failed},
                 headers={LLM_HEADER: llm.id, DECISION_HEADER: decision.decision_id or "",
                          FALLBACK_HEADER: ",".join(f["llm"] for f in failed)}, charge=charge)
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
        return _Failed(200, f"LLM {call.llm.id!r}: its endpoint's answer is not a JSON object", retry=True,
                       detail="its endpoint answered 200 with something that is not a JSON object",
                       said=_one_line(scrub(raw[:READ_ERROR_BYTES].decode("utf-8", "replace"), _secrets(call.llm))))
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


def _secrets(llm: LLM) -> tuple[str, ...]:
    """The key we send to `llm`'s endpoint, masked wherever its answer quotes it."""
    key = os.environ.get(llm.api_key_env) if llm.api_key_env else None
    return (key,) if key else ()


async def _read_some(resp: httpx.Response) -> str:
    """The start of an error answer's body (at most READ_ERROR_BYTES), as text; the connection is closed."""
    import httpx

    raw = bytearray()
    try:
        async for chunk in resp.aiter_bytes():
            raw += chunk
            if len(raw) >= READ_ERROR_BYTES:
                break
    except httpx.HTTPError as exc:  # a broken error answer: log what came
        raw += f" [reading it failed: {type(exc).__name__}]".encode()
    finally:
        await resp.aclose()
    return bytes(raw[:READ_ERROR_BYTES]).decode("utf-8", "replace")


def _one_line(text: str) -> str:
    """Masked text for one log line: whitespace folded, cut to LOGGED_CHARS."""
    text = " ".join(text.split())
    return (text[:LOGGED_CHARS] + "...") if len(text) > LOGGED_CHARS else (text or "(no body)")


def _log_failure(service: Service, llm: str, out: _Failed, last: bool) -> None:
    """One line in the server log per failed attempt: what failed, what to check, what happens next,
    and what the endpoint said (masked)."""
    steps = [out.detail]
    if out.retry and service.cooldown_s > 0:
        steps.append(f"cooling down {service.cooldown_s:g} s")
    steps.append("not retried (the request's fault)" if not out.retry else
                 "no fallback left" if last else "falling back to another LLM")
    said = "" if out.said is None else f". It said: {out.said}"
    log.warning("LLM %r: %s%s", llm, "; ".join(steps), said)
