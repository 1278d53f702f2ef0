"""Request limits: how much one request may ask for, and how long and how much a client may take to send it.

Per request (the app and `service`):
- MAX_QUERIES_PER_REQUEST queries, MAX_FEEDBACK_PER_REQUEST feedback items, MAX_BODY_BYTES of body;
- MAX_ROUTE_CHARS characters of queries in one /v1/route body (413 beyond, nothing routed): the
  most encoder work one request can ask for (~3 s of one core on the shipped encoder). The
  service routes a big request in slices, so others are answered meanwhile (`service`).

Per connection (`BodyLimit`, the ASGI middleware, and `guarded_http`, uvicorn's HTTP protocol with
two guards of our own; uvicorn itself has neither):
- a request's body must arrive within BODY_TIMEOUT_S of its headers: a body sent a byte a second,
  or a Content-Length larger than what is sent, gets a 408 and the connection is closed; and all
  requests in progress hold at most MAX_BUFFERED_BYTES of bodies at once (503 beyond: retry), so
  many slow bodies cannot take the memory either;
- a request's headers must arrive within HEADER_TIMEOUT_S (a new connection's, or the next one's
  on a kept-alive connection; closed between 1 and 2 × HEADER_TIMEOUT_S after it fell idle), and
  hold at most MAX_HEADER_BYTES (431 and closed): so idle or trickling connections cannot hold
  the connection limit, nor grow a header without bound (httptools, uvicorn's fast parser, has
  no limit of its own; h11's 16 KiB applies only when httptools is not installed).

Overall (uvicorn's settings, `uvicorn_limits`, passed by `app.serve`): at most LIMIT_CONCURRENCY
connections and requests in progress (beyond: uvicorn's own 503, so one client cannot take every
file descriptor; a descriptor per connection, and 256 more for the upstream pool, fit the usual
limit of 1,024), and a kept-alive connection idles at most TIMEOUT_KEEP_ALIVE_S.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..errors import UsageError
from .errors import error_body

MAX_QUERIES_PER_REQUEST = 256
MAX_FEEDBACK_PER_REQUEST = 1000
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BUFFERED_BYTES = 64 * 1024 * 1024  # bodies held at once by all requests in progress (16 of the largest)
MAX_ROUTE_CHARS = 1_000_000  # characters of queries per /v1/route request
BODY_TIMEOUT_S = 10.0  # from a request's headers to the end of its body (4 MiB: >= 420 KB/s)
HEADER_TIMEOUT_S = 10.0  # from a connection falling idle to the end of its next request's headers
MAX_HEADER_BYTES = 64 * 1024  # a request line and headers
LIMIT_CONCURRENCY = 512  # connections and requests in progress, overall
TIMEOUT_KEEP_ALIVE_S = 5.0  # uvicorn's default


def _json_error(status: int, message: str, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = json.dumps(error_body(message, kind)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status in (408, 503):
        headers.append((b"connection", b"close"))  # the rest of the body is never read
    if status == 503:
        headers.append((b"retry-after", b"1"))
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": payload})


class BodyLimit:
    """Read a request's body before the app sees it: over `limit` bytes (declared or sent) a 413, not
    all of it within `timeout_s` of the request's start a 408 and the connection closed, more than
    `buffered` bytes of bodies held at once by all requests in progress a 503 (retry); in each case
    the app is never called, so nothing is routed or recorded. GET, HEAD and OPTIONS pass as they are."""

    def __init__(self, app: Any, limit: int, timeout_s: float | None = None, buffered: int | None = None):
        self.app, self.limit = app, limit
        self.timeout_s = BODY_TIMEOUT_S if timeout_s is None else timeout_s
        self.buffered = MAX_BUFFERED_BYTES if buffered is None else buffered
        self._held = 0  # bytes of bodies held by the requests in progress (one event loop: no lock)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        body = bytearray()
        try:
            if not await self._read(receive, send, body):
                return
            replayed = False

            async def replay() -> Any:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            self._held -= len(body)

    async def _read(self, receive: Any, send: Any, body: bytearray) -> bool:
        """Read the whole body into `body` (counted in `_held`); False when it was refused (answered)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                for message in _json_error(408, f"the request body did not arrive within {self.timeout_s:g} s",
                                           "request_timeout"):
                    await send(message)
                return False
            if msg["type"] == "http.disconnect":
                return False
            chunk = msg.get("body", b"")
            body += chunk
            self._held += len(chunk)
            if len(body) > self.limit:
                await self._too_large(send)
                return False
            if self._held > self.buffered:
                for message in _json_error(503, "the server is receiving too many request bodies at once; "
                                                "retry in a moment", "unavailable"):
                    await send(message)
                return False
            if not msg.get("more_body"):
                return True

    async def _too_large(self, send: Any) -> None:
        for message in _json_error(413, f"request body over {self.limit:,} bytes", "request_too_large"):
            await send(message)


_HEADERS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                      b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


def guarded_http(header_timeout_s: float = HEADER_TIMEOUT_S, max_header_bytes: int = MAX_HEADER_BYTES) -> Any:
    """uvicorn's HTTP protocol (httptools when installed, else h11: uvicorn's own choice) with the two
    per-connection guards of the module docstring. For `uvicorn.Config(http=...)`.

    How a connection is watched: every `header_timeout_s` it is looked at; one that was idle (no
    request in progress) at the previous look and is still idle, with no request begun since, has
    spent at least `header_timeout_s` without completing a request's headers (uvicorn closes one
    that sends nothing after a response within its keep-alive timeout), and is closed. A request
    in progress, however long (a streamed chat completion), is never cut here: its body has
    `BodyLimit`'s deadline, and its answer is ours."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol
    busy = object()  # the connection was handling a request at the last look

    class GuardedHTTP(base):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._idle_cycle: Any = None  # the request cycle it was idle after at the last look (None: none yet)
            self._header_bytes = 0
            self._watch = self.loop.call_later(header_timeout_s, self._look)

        def connection_lost(self, exc: Exception | None) -> None:
            self._watch.cancel()
            super().connection_lost(exc)

        def _busy(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _look(self) -> None:
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if not self._busy() and cycle is self._idle_cycle:
                self.transport.close()  # no request's headers within header_timeout_s
                return
            self._idle_cycle = busy if self._busy() else cycle
            self._watch = self.loop.call_later(header_timeout_s, self._look)

        def data_received(self, data: bytes) -> None:
            waiting = not self._busy()  # for a request's headers (else: the body, BodyLimit's job)
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:
                self._header_bytes = 0  # a request's headers are complete
            elif waiting and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    payload = json.dumps(error_body(f"request headers over {max_header_bytes:,} bytes",
                                                    "request_too_large")).encode()
                    self.transport.write(_HEADERS_TOO_LARGE % (len(payload), payload))
                    self.transport.close()

    return GuardedHTTP


def uvicorn_limits(limit_concurrency: int | None = None, timeout_keep_alive_s: float | None = None,
                   header_timeout_s: float | None = None) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` / `uvicorn.Config` that bound connections (see the module
    docstring); None: LIMIT_CONCURRENCY, TIMEOUT_KEEP_ALIVE_S, HEADER_TIMEOUT_S."""
    given = {"limit_concurrency": LIMIT_CONCURRENCY if limit_concurrency is None else limit_concurrency,
             "timeout_keep_alive_s": TIMEOUT_KEEP_ALIVE_S if timeout_keep_alive_s is None else timeout_keep_alive_s,
             "header_timeout_s": HEADER_TIMEOUT_S if header_timeout_s is None else header_timeout_s}
    for name, value in given.items():
        if not 0 < value < float("inf"):
            raise UsageError(f"must be > 0 (got {value})", param=name)
    return {"http": guarded_http(given["header_timeout_s"]), "limit_concurrency": int(given["limit_concurrency"]),
            "timeout_keep_alive": given["timeout_keep_alive_s"], "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
