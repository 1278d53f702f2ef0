"""One chat-completion call to an OpenAI-compatible endpoint, streamed, timed, and its failure classified.

`call_once` sends the request (built by `upstream.upstream_call`), reads the server-sent events as
they come (time to first token = the first chunk with text), and returns a `Reply`; or raises
`CallFailed` saying whether the attempt is worth retrying, whether it may have been billed, and
what the LLM's endpoint said, with every API key scrubbed from the message.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..upstream import RETRY_STATUSES, usage_tokens

if TYPE_CHECKING:
    import httpx

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
RETRY_AFTER_MAX_S = 120.0  # a longer Retry-After is waited only this long before trying again
LLM_STATUSES = frozenset({401, 403, 404})  # the endpoint, key or model is wrong: every call would fail


@dataclass(frozen=True)
class Reply:
    """A whole answer. Token counts are None when the endpoint reported no usage."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish: str | None
    latency_ms: float
    ttft_ms: float | None


class CallFailed(Exception):
    """An attempt that brought no answer.

    scope: "retry" (429, 408, 409, 5xx, timeouts, connection trouble: try again), "prompt" (another
    4xx: this request is at fault, trying again gives the same) or "llm" (401/403/404: the key,
    endpoint or model is wrong; no call to this LLM can succeed). `billed`: the endpoint accepted
    the request and may have charged for it (a stream cut after it started, a read timeout).
    """

    def __init__(self, message: str, scope: str, *, retry_after_s: float | None = None, billed: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope
        self.retry_after_s = retry_after_s
        self.billed = billed
        self.status = status


def redactor(secrets: Iterable[str]) -> Any:
    """A function that scrubs every secret (and any `Bearer ...` token) from a text, and keeps it to one
    short line."""
    keys = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in keys)) if keys else None
    bearer = re.compile(r"(?i)(bearer\s+)\S+")
    in_url = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|sig)=)[^&\s'\"]+")

    def scrub(text: str) -> str:
        if pattern is not None:
            text = pattern.sub("***", text)
        text = bearer.sub(r"\1***", text)
        text = in_url.sub(r"\1***", text)
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:297] + "..."

    return scrub


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), bounded."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return min(max(float(raw_ms) / 1000.0, 0.0), RETRY_AFTER_MAX_S)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = when.timestamp() - time.time()
    if math.isnan(value):
        return None
    return min(max(value, 0.0), RETRY_AFTER_MAX_S)


def _error_message(raw: bytes) -> str:
    """What an error body says: error.message of an OpenAI-style body, else its first bytes."""
    try:
        obj = json.loads(raw)
        msg = obj["error"]["message"] if isinstance(obj.get("error"), dict) else obj["error"]
        if isinstance(msg, str):
            return msg
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return raw[:200].decode("utf-8", "replace")


def _scope_of(status: int) -> str:
    if status in RETRY_STATUSES or status >= 500:
        return "retry"
    return "llm" if status in LLM_STATUSES else "prompt"


async def call_once(client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, *,
                    llm_id: str, scrub: Any) -> Reply:
    """One attempt. Raises CallFailed (never an httpx error)."""
    import httpx

    started = time.perf_counter()
    try:
        req = client.build_request("POST", url, headers=headers, content=body)
        resp = await client.send(req, stream=True)
    except httpx.TimeoutException as exc:
        # A write or read timeout: the request may have reached the endpoint and be running.
        billed = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        raise CallFailed(f"LLM {llm_id!r}: timed out ({type(exc).__name__})", "retry", billed=billed) from None
    except httpx.HTTPError as exc:
        raise CallFailed(f"LLM {llm_id!r}: {type(exc).__name__}: {scrub(str(exc))}", "retry") from None
    try:
        if resp.status_code != 200:
            raw = await _read_limited(resp)
            status = resp.status_code
            raise CallFailed(f"LLM {llm_id!r} answered {status}: {scrub(_error_message(raw))}", _scope_of(status),
                             retry_after_s=retry_after_s(resp.headers), status=status)
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            return await _read_stream(resp, started, llm_id, scrub)
        raw = await _read_limited(resp)
        return _whole(raw, started, llm_id)
    except httpx.TimeoutException:
        raise CallFailed(f"LLM {llm_id!r}: timed out while answering", "retry", billed=True) from None
    except httpx.HTTPError as exc:
        raise CallFailed(f"LLM {llm_id!r}: the answer broke off ({type(exc).__name__}: {scrub(str(exc))})", "retry",
                         billed=True) from None
    finally:
        await resp.aclose()


async def _read_limited(resp: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise CallFailed(f"answer larger than {MAX_RESPONSE_BYTES} bytes", "prompt", billed=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _whole(raw: bytes, started: float, llm_id: str) -> Reply:
    """A non-streamed chat.completion body."""
    latency = (time.perf_counter() - started) * 1000.0
    try:
        obj = json.loads(raw)
        choice = obj["choices"][0]
        content = choice["message"].get("content")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise CallFailed(f"LLM {llm_id!r}: the answer is not a chat completion", "retry", billed=True) from None
    prompt, completion = usage_tokens(obj.get("usage"))
    return Reply(text=content if isinstance(content, str) else "", prompt_tokens=prompt,
                 completion_tokens=completion, finish=choice.get("finish_reason"), latency_ms=latency, ttft_ms=None)


async def _read_stream(resp: httpx.Response, started: float, llm_id: str, scrub: Any) -> Reply:
    """Server-sent events: the text deltas of the first choice, its finish reason, the usage chunk."""
    sse = _Events(started, llm_id, scrub)
    buf = b""
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise CallFailed(f"LLM {llm_id!r}: answer larger than {MAX_RESPONSE_BYTES} bytes", "prompt", billed=True)
        buf += chunk
        if b"\n" not in chunk:
            continue
        lines = buf.split(b"\n")
        buf = lines.pop()
        sse.feed(lines)
    if buf:
        sse.feed([buf])
    latency = (time.perf_counter() - started) * 1000.0
    if not sse.done and sse.finish is None:
        raise CallFailed(f"LLM {llm_id!r}: the stream ended before the answer did", "retry", billed=True)
    prompt, completion = usage_tokens(sse.usage)
    return Reply(text="".join(sse.parts), prompt_tokens=prompt, completion_tokens=completion, finish=sse.finish,
                 latency_ms=latency, ttft_ms=sse.ttft)


class _Events:
    """What the `data:` lines of a chat-completion stream said so far."""

    __slots__ = ("done", "finish", "llm_id", "parts", "scrub", "started", "ttft", "usage")

    def __init__(self, started: float, llm_id: str, scrub: Any) -> None:
        self.started, self.llm_id, self.scrub = started, llm_id, scrub
        self.parts: list[str] = []
        self.usage: Any = None
        self.finish: str | None = None
        self.ttft: float | None = None
        self.done = False

    def feed(self, lines: list[bytes]) -> None:
        loads = json.loads
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                obj = loads(data)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if "error" in obj:
                raise CallFailed(f"LLM {self.llm_id!r} sent an error mid-answer: {self.scrub(_error_message(data))}",
                                 "retry", billed=True)
            if obj.get("usage"):
                self.usage = obj["usage"]
            choices = obj.get("choices")
            if choices and isinstance(choices, list) and isinstance(choices[0], dict):
                first = choices[0]
                delta = first.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    if self.ttft is None:
                        self.ttft = (time.perf_counter() - self.started) * 1000.0
                    self.parts.append(text)
                if first.get("finish_reason"):
                    self.finish = first["finish_reason"]
