"""Asking: route a query, then get the answer from the chosen LLM's endpoint, streamed.

`mixllm ask` is `route` followed by the call a user would otherwise make by hand, under the rules
of the chat-completion proxy (`serve/proxy.py`), with a synchronous httpx client:

- The query is routed as `route` routes it: one decision logged and a queue slot booked in the
  home's store, so `mixllm feedback ID` works on it and other clients see the load.
- Only LLMs with an endpoint (a `base_url`) are offered. A pool with none is an error before
  anything is routed or recorded.
- Fallbacks: when the chosen LLM's endpoint fails before its first token (not configured or its
  key's variable unset, unreachable, 401/403, 408/409/429/5xx, a stream that breaks or an answer
  that is not a chat completion), that decision's slot is freed without teaching anything and the
  query is routed again without the LLMs that failed, at most `fallbacks` more times. Other 4xx
  are the request's fault: no retry. A stream that breaks after its first token is an error (what
  came was already passed on), and is recorded as the proxy records it.
- What it cost: the real token usage (asked for with `stream_options.include_usage`), the latency
  and the time to first token become the decision's feedback, exactly as the proxy's
  `_Call.finish` records them (`record_feedback`, no quality): the slot is freed and the latency
  model learns.
- The key is never shown: failures name the LLM, the status and what to check; the endpoint's own
  words (which can quote the key back) only in the warning, cut and masked (`upstream.scrub`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .upstream import DEFAULT_FALLBACKS, REFUSED_KEY, UpstreamError, scrub

if TYPE_CHECKING:
    import httpx

    from .catalogue.model import LLM
    from .routing.request import WaitPolicy
    from .routing.results import Decision
    from .routing.router import Router
    from .state.base import StoreBase

DEFAULT_MAX_TOKENS = 1024
MAX_MAX_TOKENS = 32_768
DEFAULT_TIMEOUT_S = 300.0  # with nothing received for this long, an endpoint has failed (as `serve`'s client)
MAX_TIMEOUT_S = 3600.0
CONNECT_TIMEOUT_S = 10.0
READ_ERROR_BYTES = 64 * 1024  # of an error answer's body, read for the warning
SHOWN_CHARS = 300  # of that body, shown after masking
NO_ENDPOINT = ("no LLM of the pool has an endpoint to ask; add one with "
               "`mixllm set-endpoint ID --base-url URL [--api-key-env VAR]` (`mixllm llms` lists the pool)")

Delta = Callable[[str], None]


@dataclass(frozen=True)
class Failure:
    """An attempt that failed before its first token: nothing was passed on."""

    llm: str
    status: int | None  # the endpoint's HTTP status; None if it was not reached (or not configured)
    message: str  # what failed and what to check; never the endpoint's words
    retry: bool  # worth trying another LLM (the provider's trouble, not the request's)
    said: str | None = None  # the endpoint's answer, cut and masked


@dataclass(frozen=True)
class Answer:
    """The chosen LLM's answer and what the call cost; `decision` is the one that answered."""

    decision: Decision
    text: str
    usage: dict[str, Any] | None  # the endpoint's `usage` object, None when it reported none
    cost_usd: float | None  # the real usage at catalogue prices; None without usage
    latency_ms: float
    ttft_ms: float | None
    fallback_from: tuple[dict[str, Any], ...] = ()  # {"llm", "status"} of each attempt that failed first

    @property
    def llm(self) -> str:
        return self.decision.choice

    @property
    def response_tokens(self) -> int | None:
        from .upstream import usage_tokens

        return usage_tokens(self.usage)[1]

    def to_dict(self) -> dict[str, Any]:
        """What `mixllm ask --json` prints: the decision as `route --json` prints it, and the answer."""
        return {**self.decision.to_dict(), "llm": self.llm, "answer": self.text, "usage": self.usage,
                "cost_usd": None if self.cost_usd is None else float(f"{self.cost_usd:.6g}"),
                "latency_ms": round(self.latency_ms, 1),
                "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
                "fallback_from": list(self.fallback_from)}


def check_max_tokens(max_tokens: object) -> int:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_MAX_TOKENS:
        raise UsageError(f"must be an integer in 1..{MAX_MAX_TOKENS:,} (got {max_tokens!r})", param="max_tokens")
    return max_tokens


def check_timeout(timeout_s: object) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise UsageError(f"must be a number of seconds in (0, {MAX_TIMEOUT_S:g}] (got {timeout_s!r})",
                         param="timeout_s")
    return float(timeout_s)


def ask(router: Router, store: StoreBase, home: Path, query: str, *, budget: str | None = None,
        lam: float | None = None, policy: WaitPolicy | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout_s: float = DEFAULT_TIMEOUT_S, fallbacks: int = DEFAULT_FALLBACKS, log_queries: bool = False,
        on_delta: Delta | None = None, warn: Callable[[str], None] | None = None,
        http: httpx.Client | None = None) -> Answer:
    """Route `query` (recorded in `store`) and get the chosen LLM's answer, falling back (see the module
    docstring) until one answers. `on_delta` gets each piece of text as it arrives; `warn` one line per
    failed attempt. Raises `UpstreamError` when no LLM has an endpoint (nothing routed) or none answered,
    and the library's usual errors for a bad query, budget or λ."""
    import httpx

    from .routing.request import RouteRequest

    check_max_tokens(max_tokens)
    timeout_s = check_timeout(timeout_s)
    request = RouteRequest(query=query, budget=budget, lam=lam, policy=policy)
    router.resolve(request)  # a bad query, budget or λ fails before anything is recorded
    no_endpoint = frozenset(i for i in router.llm_ids if router.catalogue.get(i).base_url is None)
    if len(no_endpoint) == len(router.llm_ids):
        raise UpstreamError(NO_ENDPOINT)
    body = {"messages": [{"role": "user", "content": query}], "stream": True, "max_tokens": max_tokens}
    client = http or httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)))
    failed: list[Failure] = []
    try:
        while True:
            exclude = frozenset(f.llm for f in failed) | no_endpoint
            (decision,) = router.route_batch([replace(request, exclude=exclude)], state=store,
                                             log_queries=log_queries)
            if decision.choice in exclude:  # nothing left was offered (a cold LLM outside its share)
                _free(store, decision)
                raise UpstreamError("; ".join([*(f.message for f in failed),
                                               "no LLM with an endpoint is left to take this query"]))
            try:
                out = _attempt(client, router, store, home, decision, body, failed, on_delta)
            except KeyboardInterrupt:
                _free(store, decision)  # best effort: the call was abandoned, it teaches nothing
                raise
            if isinstance(out, Answer):
                return out
            _free(store, decision)
            failed.append(out)
            left = bool(router.offered(exclude | {out.llm}).any())
            last = not out.retry or len(failed) > fallbacks or not left
            if warn is not None:
                warn(_warning(out, last))
            if last:
                raise UpstreamError("; ".join(f.message for f in failed) + _why_stopped(out, left, fallbacks))
    finally:
        if http is None:
            client.close()


def _attempt(client: httpx.Client, router: Router, store: StoreBase, home: Path, decision: Decision,
             body: dict[str, Any], failed: list[Failure], on_delta: Delta | None) -> Answer | Failure:
    """One call to the decision's LLM: its answer (recorded), or why it failed before its first token."""
    import httpx

    from .upstream import upstream_call

    llm = router.catalogue.get(decision.choice)
    try:
        url, headers, up_body = upstream_call(llm, body)
    except UpstreamError as exc:
        return Failure(llm.id, None, exc.message, retry=True)
    stream = _Stream(time.perf_counter(), on_delta)
    try:
        with client.stream("POST", url, headers=headers, json=up_body) as resp:
            if resp.status_code != 200:
                return _refused(llm, resp.status_code, _read_some(resp))
            stream.read(resp)
    except (httpx.HTTPError, _BadAnswer) as exc:
        if not stream.text:
            return _broken(llm, stream, exc)
        # Recorded as the proxy records a relay that breaks: the latency so far, no usage.
        _record(router, store, home, decision, llm, stream, stream.latency_ms())
        raise UpstreamError(f"LLM {llm.id!r}: the answer broke off after {len(stream.text):,} characters "
                            f"({_kind(exc)}); decision {decision.decision_id}") from None
    if stream.usage is None and not stream.text and stream.chunks == 0:
        return Failure(llm.id, 200, f"LLM {llm.id!r}: its endpoint answered 200 with no chat-completion chunk",
                       retry=True)
    latency_ms = stream.latency_ms()
    cost = _record(router, store, home, decision, llm, stream, latency_ms)
    return Answer(decision, stream.text, stream.usage, cost, latency_ms, stream.ttft_ms,
                  tuple({"llm": f.llm, "status": f.status} for f in failed))


class _BadAnswer(Exception):
    """The endpoint answered 200 with something that is not a chat completion (or an error chunk)."""


class _Stream:
    """The text, usage and time to first token read from one streamed answer (or a whole one, for an
    endpoint that ignores `stream`)."""

    def __init__(self, started: float, on_delta: Delta | None) -> None:
        self.started = started
        self.on_delta = on_delta
        self.text = ""
        self.usage: dict[str, Any] | None = None
        self.ttft_ms: float | None = None
        self.chunks = 0
        self.answered = False  # the endpoint's headers came (it was reached)

    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def read(self, resp: httpx.Response) -> None:
        self.answered = True
        if "text/event-stream" not in resp.headers.get("content-type", "text/event-stream"):
            self._whole(resp.read())
            return
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if isinstance(chunk, dict):
                self._chunk(chunk, "delta")

    def _chunk(self, chunk: dict[str, Any], member: str) -> None:
        if chunk.get("error") is not None and not chunk.get("choices"):
            raise _BadAnswer("an error instead of an answer")
        self.chunks += 1
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            content = (choice.get(member) or {}).get("content") if isinstance(choice, dict) else None
            if isinstance(content, str) and content and choice.get("index", 0) == 0:
                if self.ttft_ms is None:
                    self.ttft_ms = self.latency_ms()
                self.text += content
                if self.on_delta is not None:
                    self.on_delta(content)

    def _whole(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            raise _BadAnswer("something that is not a chat completion")
        self._chunk(obj, "message")


def _kind(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _BadAnswer) else type(exc).__name__


def _broken(llm: LLM, stream: _Stream, exc: BaseException) -> Failure:
    if isinstance(exc, _BadAnswer):
        return Failure(llm.id, 200, f"LLM {llm.id!r}: its endpoint answered 200 with {_kind(exc)}", retry=True)
    if not stream.answered:
        return Failure(llm.id, None, f"LLM {llm.id!r}: its endpoint could not be reached ({_kind(exc)}; check its "
                                     "base_url)", retry=True, said=_one_line(scrub(str(exc), _secrets(llm))))
    return Failure(llm.id, 200, f"LLM {llm.id!r}: its answer broke off before its first token ({_kind(exc)})",
                   retry=True)


def _refused(llm: LLM, status: int, said: str) -> Failure:
    from .upstream import worth_another_llm

    shown = _one_line(scrub(said, _secrets(llm)))
    if status in REFUSED_KEY:
        where = f"check api_key_env {llm.api_key_env}" if llm.api_key_env else "the LLM has no api_key_env"
        return Failure(llm.id, status, f"LLM {llm.id!r}: its endpoint refused our key ({status}; {where})",
                       retry=True, said=shown)
    return Failure(llm.id, status, f"LLM {llm.id!r}: its endpoint answered {status}",
                   retry=worth_another_llm(status), said=shown)


def _record(router: Router, store: StoreBase, home: Path, decision: Decision, llm: LLM, stream: _Stream,
            latency_ms: float) -> float | None:
    """The call's tokens, latency and cost as the decision's feedback, as the proxy's `_Call.finish`
    records them (no quality: the slot is freed and the latency model learns). Returns the cost."""
    from .learning.feedback import Feedback, record_feedback
    from .upstream import call_cost_usd, usage_tokens

    prompt, completion = usage_tokens(stream.usage)
    cost = call_cost_usd(llm, prompt, completion)
    fb = Feedback(decision.decision_id or "", response_tokens=completion, latency_ms=round(latency_ms, 3),
                  ttft_ms=None if stream.ttft_ms is None else round(stream.ttft_ms, 3), cost_usd=cost)
    (result,) = record_feedback(router, store, [("upstream", fb)], home)
    if result.error is not None:  # beyond a physical bound (an hour): not learned, but the slot is freed
        _free(store, decision)
    return cost


def _free(store: StoreBase, decision: Decision) -> None:
    """Free a decision's queue slot without teaching the latency model (the proxy's `complete_failed`)."""
    import contextlib

    if decision.decision_id is not None:
        with contextlib.suppress(Exception):  # best effort: the slot also ends when its predicted call would
            store.complete(decision.decision_id)


def _warning(failure: Failure, last: bool) -> str:
    then = ("not retried (the request's fault)" if not failure.retry else
            "no fallback left" if last else "falling back to another LLM")
    said = "" if failure.said is None else f". It said: {failure.said}"
    return f"{failure.message}; {then}{said}"


def _why_stopped(failure: Failure, left: bool, fallbacks: int) -> str:
    if not failure.retry:
        return ""
    return f" (gave up after {fallbacks} fallback(s))" if left else " (no other LLM with an endpoint is left)"


def _secrets(llm: LLM) -> tuple[str, ...]:
    """The key we send to `llm`'s endpoint, masked wherever its answer quotes it."""
    key = os.environ.get(llm.api_key_env) if llm.api_key_env else None
    return (key,) if key else ()


def _read_some(resp: httpx.Response) -> str:
    """The start of an error answer's body (at most READ_ERROR_BYTES), as text."""
    import httpx

    raw = bytearray()
    try:
        for chunk in resp.iter_bytes():
            raw += chunk
            if len(raw) >= READ_ERROR_BYTES:
                break
    except httpx.HTTPError as exc:
        raw += f" [reading it failed: {type(exc).__name__}]".encode()
    return bytes(raw[:READ_ERROR_BYTES]).decode("utf-8", "replace")


def _one_line(text: str) -> str | None:
    """Masked text for one warning: whitespace folded, cut to SHOWN_CHARS; None when empty."""
    text = " ".join(text.split())
    if not text:
        return None
    return (text[:SHOWN_CHARS] + "...") if len(text) > SHOWN_CHARS else text
