"""`mixllm serve`: the library behind HTTP (FastAPI on uvicorn).

The service is a thin client of the library, like the CLI: `/v1/route` returns `Decision.to_dict()`
(what `route --json` prints), `/v1/feedback` calls `feedback.parse_feedback` and
`feedback.record_feedback`, `/v1/llms` is `pool.list_llms`. What it adds is concurrency:

- Routing requests are micro-batched: while one batch is encoded and admitted, the requests that
  arrive wait in a list, and the next batch takes them all (up to MAX_BATCH queries). A batch is
  encoded in one encoder call and admitted in one store transaction, in arrival order, so the
  encoder and the store's write lock are paid once per batch, not once per request, and a
  replica under load batches more, not less.
- A batch is encoded and admitted on the event-loop thread itself. Routing is CPU-bound work
  and a replica has one of it at a time; handing it to a worker thread costs two thread wake-ups
  per batch and overlaps nothing, since the callers wait for the batch in progress (measured no
  faster, and slower with smaller alternating batches: docs/SERVE.md). The price: other requests (health, metrics, the relay of a streamed chat
  completion) wait for the batch in progress, tens of milliseconds; scale with replicas.
- Other blocking work runs on single-thread executors, each with its own store connection:
  `feedback` (the log), `learn` (folding the log into the online snapshot, coalesced: one
  catch-up at a time, at most one a second), `read` (listing, health, metrics). A slow refit
  never delays routing.
- The online state is re-read by the routing code at most every REFRESH_S seconds when the
  snapshot changed (the file's mtime with SQLite, `online_snapshot.last_seq` with PostgreSQL), so
  feedback given to any replica reaches every replica.

Errors are JSON `{"error": {"message", "type", "param"?}}` (OpenAI's shape): 400 for a request
the library refuses, 404 for an unknown route or decision, 413 for a body over MAX_BODY_BYTES,
422 for one that fails the schema, 502 when the chosen LLM's endpoint fails (after the fallbacks),
503 when the store is unreachable.

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
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as _StdJSONResponse
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DataError, FeedbackError, MixLLMError, UnknownDecisionError, UsageError
from ..routing import request as rq
from ..routing.router import MAX_QUERY_CHARS, Decision, Router, WaitPolicy, check_query
from ..upstream import DEFAULT_COOLDOWN_S, DEFAULT_FALLBACKS, UpstreamError


class JSONResponse(_StdJSONResponse):
    """JSON bodies rendered by orjson: a /v1/route answer (11 candidates) takes 4 us instead of the
    standard library's 31 us, CPU that the encoder of the next batch gets instead."""

    def render(self, content: Any) -> bytes:
        import orjson

        return orjson.dumps(content)


MAX_BATCH = 64  # queries per encoder call / store transaction
BATCH_WINDOW_S = 0.002  # after a batch of several, wait this long for the next one to gather
MAX_QUERIES_PER_REQUEST = 256
MAX_FEEDBACK_PER_REQUEST = 1000
MAX_BODY_BYTES = 4 * 1024 * 1024
REFRESH_S = 1.0  # how often the route thread looks for a newer online snapshot
LEARN_INTERVAL_S = 1.0  # the least time between two folds of the feedback log into the snapshot
LLM_HEADER = "x-mixllm-llm"
DECISION_HEADER = "x-mixllm-decision-id"
FALLBACK_HEADER = "x-mixllm-fallback-from"  # the LLMs that failed before the one that answered


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def _error_body(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": kind}
    if param is not None:
        err["param"] = param
    return {"error": err}


# Error types to HTTP status codes, most specific first: never by message text.
_STATUS: tuple[tuple[type[MixLLMError], int], ...] = (
    (UpstreamError, 502), (UnknownDecisionError, 404), (UsageError, 400), (DataError, 400), (FeedbackError, 400),
)


def _status_of(exc: MixLLMError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 503  # the store (or another dependency) failed; the request itself was fine


# ---------------------------------------------------------------------------------------------- bodies


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


# ---------------------------------------------------------------------------------------------- service


@dataclass
class _Pending:
    requests: list[RouteRequest]
    future: asyncio.Future


class Service:
    """The router, its stores and executors, and the micro-batching queue; the app calls into it."""

    def __init__(self, home: Path | str | None = None, catalogue: Path | str | None = None,
                 store_url: str | None = None, *, log_queries: bool = False, fallbacks: int = DEFAULT_FALLBACKS,
                 cooldown_s: float = DEFAULT_COOLDOWN_S):
        import os

        from ..core.encoder import SPIN_ENV
        from ..paths import home_dir
        from ..state import open_store

        # A server's encoder threads must not busy-wait between batches: on a shared 2-core box
        # spinning made one query's encoding ~4x slower (docs/SERVE.md). An explicit setting wins.
        os.environ.setdefault(SPIN_ENV, "0")
        self.home = home_dir(home)
        self.catalogue_file = catalogue
        self.store_url = store_url
        self.log_queries = log_queries
        if fallbacks < 0:
            raise UsageError(f"must be >= 0 (got {fallbacks})", param="fallbacks")
        self.fallbacks = fallbacks
        if not cooldown_s >= 0:
            raise UsageError(f"must be >= 0 (got {cooldown_s})", param="cooldown_s")
        self.cooldown_s = cooldown_s
        self._cooling: dict[str, float] = {}  # LLM id → monotonic time its chat-completion cooldown ends
        probe = open_store(self.home, store_url)
        try:
            probe.stats()  # fail now (one `Error:` line) if the store is unreachable or corrupt
            self.router = Router.load(self.home, catalogue, store=probe)
            self.store_name = probe.describe()
            self.shares_snapshot = probe.shares_snapshot
            self._online_key: Any = probe.snapshot_seq() if self.shares_snapshot else self._file_key()
        finally:
            probe.close()
        self.router.predict(["warm up"])  # load the encoder now, not on the first request
        self._stores: dict[str, Any] = {}
        self._exec = {name: ThreadPoolExecutor(1, thread_name_prefix=f"mixllm-{name}")
                      for name in ("feedback", "learn", "read")}
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task | None = None
        self._last_batch = 0
        self._learn_queued = False
        self._learned_at = 0.0
        self._checked = time.monotonic()
        self._upstream_mask = np.array([self.router.catalogue.get(i).base_url is not None
                                        for i in self.router.llm_ids])
        self.metrics = _Metrics(self)
        self.http: Any = None  # an httpx.AsyncClient, opened by the app's lifespan

    # -------------------------------------------------------------- threads and stores

    def _store(self, name: str) -> Any:
        """The store of executor `name` (or `route`, the event loop's), opened in the thread that uses it
        (SQLite connections stay in their thread)."""
        if name not in self._stores:
            from ..state import open_store

            self._stores[name] = open_store(self.home, self.store_url)
        return self._stores[name]

    async def run(self, name: str, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._exec[name], fn, *args)

    def _close_store(self, name: str) -> None:
        store = self._stores.pop(name, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        self._close_store("route")
        for name, ex in self._exec.items():
            with contextlib.suppress(Exception):
                ex.submit(self._close_store, name).result(timeout=5)  # in its own thread, like it was opened
            ex.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------- routing

    async def route(self, requests: list[RouteRequest]) -> tuple[list[Decision], dict[str, float]]:
        """The decisions for `requests` (checked already: see `check`), and the seconds their batch spent
        in each phase (see `_route_batch`)."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(requests, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await fut

    def check(self, request: RouteRequest, where: str = "") -> RouteRequest:
        """Refuse a bad request before it joins a batch (one caller's mistake must not fail the others')."""
        try:
            self.router.resolve(request)
        except MixLLMError as exc:
            raise ApiError(_status_of(exc), f"{where}{exc}", param=f"{where}{exc.param or 'query'}") from None
        return request

    async def _drain(self) -> None:
        while self._pending:
            if self._last_batch > 1 and sum(len(p.requests) for p in self._pending) < MAX_BATCH:
                # Under concurrent load the callers of the last batch are sending their next
                # requests right now: a moment's wait makes the next batch full instead of 1.
                await asyncio.sleep(BATCH_WINDOW_S)
            batch, size = [], 0
            while self._pending and (not batch or size + len(self._pending[0].requests) <= MAX_BATCH):
                p = self._pending.pop(0)
                batch.append(p)
                size += len(p.requests)
            try:
                results = self._route_batch(batch)  # on this thread: see the module docstring
            except Exception as exc:  # noqa: BLE001 -- passed on: every request of the batch gets it
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, r in zip(batch, results[0]):
                if not p.future.done():
                    p.future.set_result((r, results[1]))
            self._last_batch = size

    def _route_batch(self, batch: list[_Pending]) -> tuple[list[list[Decision]], dict[str, float]]:
        """One `Router.route_batch` call for every request of the batch (one encoder call, one store
        transaction per waiting policy). Returns each request's decisions and the batch's seconds in
        "encode" (tokenizer and model), "predict" (heads, uncertainty) and "decide" (queue, scores, the
        store's write)."""
        self._maybe_refresh_online()
        timings: dict[str, float] = {}
        requests = [r for p in batch for r in p.requests]
        decided = iter(self.router.route_batch(requests, state=self._store("route"), log_queries=self.log_queries,
                                               timings=timings))
        out = [[next(decided) for _ in p.requests] for p in batch]
        for p in out:
            for d in p:
                self.metrics.routed(d.choice)
        self.metrics.batch(len(requests))
        return out, timings

    def offered(self, upstream_only: bool, exclude: frozenset[str] = frozenset()) -> np.ndarray:
        """Which LLMs (bool per `router.llm_ids`) a request may be routed to."""
        mask = self._upstream_mask.copy() if upstream_only else np.ones(len(self.router.llm_ids), dtype=bool)
        return mask & self.router.offered(exclude)

    def without_endpoint(self) -> frozenset[str]:
        """The LLMs a chat completion cannot be forwarded to."""
        return frozenset(i for i, ok in zip(self.router.llm_ids, self._upstream_mask) if not ok)

    def cooling(self) -> frozenset[str]:
        """The LLMs chat completions skip for now: they failed upstream less than `cooldown_s` ago."""
        now = time.monotonic()
        for llm in [k for k, until in self._cooling.items() if until <= now]:
            del self._cooling[llm]
        return frozenset(self._cooling)

    def upstream_failed(self, llm: str, cool_down: bool) -> None:
        self.metrics.upstream_failure(llm)
        if cool_down and self.cooldown_s > 0:
            self._cooling[llm] = time.monotonic() + self.cooldown_s

    def _file_key(self) -> int | None:
        from ..learning.online import SNAPSHOT

        path = self.home / SNAPSHOT
        return path.stat().st_mtime_ns if path.is_file() else None

    def _maybe_refresh_online(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_S:
            return
        self._checked = now
        store = self._store("route")
        key = store.snapshot_seq() if self.shares_snapshot else self._file_key()
        if key == self._online_key:
            return
        from ..learning.online import load_snapshot

        model = load_snapshot(self.home, self.router.offline_artifacts, store)
        if model is not None:
            self.router.use_online(model)
        self._online_key = key


    # -------------------------------------------------------------- feedback

    def _record(self, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        from ..learning.feedback import record_feedback

        results = record_feedback(self.router, self._store("feedback"), items, self.home, apply=False)
        for r in results:
            self.metrics.feedback(r.status)
        return results

    async def record(self, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        results = await self.run("feedback", self._record, items)
        if any(r.status == "recorded" for r in results):
            self.schedule_learning()
        return results

    def schedule_learning(self) -> None:
        """Fold the log into the online snapshot in the background; at most one catch-up queued."""
        if self._learn_queued:
            return
        self._learn_queued = True

        def learn() -> None:
            from ..learning.online import catch_up

            # At most one pass per LEARN_INTERVAL_S: under load, feedback folds in micro-batches
            # instead of re-reading and re-writing the snapshot for every event.
            time.sleep(max(0.0, self._learned_at + LEARN_INTERVAL_S - time.monotonic()))
            self._learn_queued = False  # feedback arriving from now on needs another pass
            self._learned_at = time.monotonic()
            store = self._store("learn")
            with store.learning() as mine:
                if mine:
                    catch_up(self.home, self.router.offline_artifacts, store)
            if not mine:  # another replica is folding the log; make sure this one's events get in
                self.schedule_learning()

        self._exec["learn"].submit(learn)

    def _complete(self, decision_id: str) -> None:
        """Free the slot of a call that failed upstream (no latency: it must not teach the model)."""
        self._store("feedback").complete(decision_id)


# ---------------------------------------------------------------------------------------------- metrics


class _Metrics:
    """Prometheus metrics in a registry of the service's own (several apps can live in one process)."""

    def __init__(self, service: Service):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self.registry = CollectorRegistry()
        r = self.registry
        self._routed = Counter("mixllm_routed", "Queries routed, by chosen LLM", ["llm"], registry=r)
        self._feedback = Counter("mixllm_feedback", "Feedback events, by result", ["status"], registry=r)
        buckets = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
        self.route_latency = Histogram("mixllm_route_latency_seconds", "Time to answer /v1/route",
                                       buckets=buckets, registry=r)
        self._batch = Histogram("mixllm_route_batch_queries", "Queries per encoder batch",
                                buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.upstream_latency = Histogram("mixllm_upstream_latency_seconds", "Chat completions: upstream call time",
                                          ["llm"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
                                          registry=r)
        self.upstream_tokens = Counter("mixllm_upstream_tokens", "Chat completions: tokens reported by upstream",
                                       ["llm", "kind"], registry=r)
        self._upstream_failures = Counter("mixllm_upstream_failures", "Chat completions: upstream attempts that "
                                          "failed", ["llm"], registry=r)
        self.upstream_cost = Counter("mixllm_upstream_cost_usd", "Chat completions: catalogue cost of the calls",
                                     ["llm"], registry=r)

        class QueueDepth:
            def collect(self) -> Any:
                g = GaugeMetricFamily("mixllm_queue_depth", "Calls admitted and not finished, by LLM (shared "
                                      "state: every replica's calls)", labels=["llm"])
                depth = service._store("read").open_calls(time.time())
                for llm in service.router.llm_ids:
                    g.add_metric([llm], depth.get(llm, 0))
                yield g

        r.register(QueueDepth())

    def routed(self, llm: str) -> None:
        self._routed.labels(llm).inc()

    def upstream_failure(self, llm: str) -> None:
        self._upstream_failures.labels(llm).inc()

    def feedback(self, status: str) -> None:
        self._feedback.labels(status).inc()

    def batch(self, n: int) -> None:
        self._batch.observe(n)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ---------------------------------------------------------------------------------------------- the app


class _BodyLimit:
    """Refuse bodies over `limit` bytes with a 413 JSON error, whether or not they declare a length."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if len(body) > self.limit:
                await self._too_large(send)
                return
            if not msg.get("more_body"):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        payload = json.dumps(_error_body(f"request body over {self.limit:,} bytes", "request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def create_app(service: Service) -> FastAPI:
    from .. import __version__

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        import httpx

        service.http = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0),
                                         limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        try:
            yield
        finally:
            await service.http.aclose()
            service.close()

    app = FastAPI(title="mixllm", version=__version__, lifespan=lifespan,
                  description="Route each query to the LLM that best balances quality, cost and waiting time.")
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(exc.message, exc.kind, exc.param), status_code=exc.status)

    @app.exception_handler(MixLLMError)
    async def _domain_error(request: Request, exc: MixLLMError) -> JSONResponse:
        status = _status_of(exc)
        kind = {400: "invalid_request_error", 404: "not_found", 502: "upstream_error"}.get(status, "unavailable")
        return JSONResponse(_error_body(str(exc).splitlines()[0], kind), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
        body = _error_body(message, "invalid_request_error", loc or None)
        body["error"]["details"] = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg"))}
                                    for e in errors[:20]]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(_error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.post("/v1/route", summary="Route one query or a batch; the decisions `mixllm route --json` prints")
    async def route(body: RouteRequest) -> JSONResponse:
        started = time.perf_counter()
        policy = WaitPolicy.default(body.max_wait_s, strict=body.strict_wait)
        items = [RouteQuery(id=body.id, query=body.query)] if body.query is not None else body.queries or []
        service.check(rq.RouteRequest(query=items[0].query, budget=body.budget, lam=body.lam))
        requests = []
        for k, q in enumerate(items):
            own = q.budget is not None or q.lam is not None
            requests.append(service.check(rq.RouteRequest(
                query=q.query, id=None if q.id is None else str(q.id), budget=q.budget if own else body.budget,
                lam=q.lam if own else body.lam, policy=policy), "" if body.query is not None else f"queries[{k}]."))
        decisions, timings = await service.route(requests)
        elapsed = time.perf_counter() - started
        service.metrics.route_latency.observe(elapsed)
        # Where the time went (W3C Server-Timing, ms; the batch's phases when batched with others).
        headers = {"server-timing": ", ".join([f"{k};dur={1000 * v:.3f}" for k, v in timings.items()]
                                              + [f"total;dur={1000 * elapsed:.3f}"])}
        if body.query is not None:
            return JSONResponse(decisions[0].to_dict(), headers=headers)
        return JSONResponse({"decisions": [d.to_dict() for d in decisions]}, headers=headers)

    @app.post("/v1/feedback", summary="Tell mixllm how routed calls went (`mixllm feedback`); idempotent")
    async def feedback(body: FeedbackItem | FeedbackBatch) -> JSONResponse:
        from ..learning.feedback import parse_feedback

        batch = isinstance(body, FeedbackBatch)
        raw = body.items if batch else [body]
        items: list[tuple[str, Any]] = []
        for k, it in enumerate(raw):
            where = f"items[{k}]" if batch else "feedback"
            try:
                items.append((where, parse_feedback(it.model_dump(exclude_none=True), where)))
            except MixLLMError as exc:
                if not batch:
                    raise ApiError(400, str(exc).removeprefix("feedback: ")) from None
                items.append((where, exc))
        results = await service.record(items)
        if not batch:
            r = results[0]
            if r.error is not None:
                msg = str(r.error).removeprefix("feedback: ")
                raise ApiError(404 if isinstance(r.error, UnknownDecisionError) else 400, msg, param="id")
            return JSONResponse(r.to_dict())
        return JSONResponse({"results": [{"index": k, **r.to_dict()} for k, r in enumerate(results)]})

    @app.get("/v1/llms", summary="The pool (`mixllm llms --json`), with the shared queue's calls in flight")
    async def llms() -> JSONResponse:
        from ..training.pool import list_llms

        rows = await service.run("read", lambda: list_llms(service.home, service.catalogue_file,
                                                           store=service._store("read")))
        for row in rows:
            entry = service.router.catalogue.get(row["id"]) if row["id"] in service.router.catalogue else None
            row["upstream"] = None if entry is None or entry.base_url is None else {
                "base_url": entry.base_url, "model": entry.upstream_model or entry.id}
        return JSONResponse(rows)

    @app.get("/healthz", summary="Liveness: the store answers")
    async def healthz() -> JSONResponse:
        try:
            stats = await service.run("read", lambda: service._store("read").stats())
        except MixLLMError as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "store": service.store_name, "llms": list(service.router.llm_ids),
                             "decisions": stats["decisions"], "feedback": stats["feedback"]})

    @app.get("/metrics", summary="Prometheus text format")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await service.run("read", service.metrics.render), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/chat/completions", summary="OpenAI-compatible: mixllm picks the LLM and forwards the call")
    async def chat(body: ChatRequest) -> Response:
        from ..upstream import last_user_text, parse_model

        try:
            budget = parse_model(body.model, tuple(service.router.artifacts.presets))
            text = check_query(last_user_text(body.messages), "messages: last user message")
        except MixLLMError as exc:
            raise ApiError(_status_of(exc), str(exc), param=exc.param or "messages") from None
        if not service._upstream_mask.any():
            raise ApiError(503, "no LLM of the catalogue has a base_url; add base_url (and api_key_env) to "
                                "models.yaml to forward chat completions", "unavailable")
        request = service.check(rq.RouteRequest(query=text, budget=budget, policy=WaitPolicy.default()))
        failed: list[dict[str, str]] = []  # {"llm", "error"} of each attempt that failed, in order
        cooling, tried = service.cooling(), frozenset[str]()
        while True:
            exclude = cooling | tried
            if not service.offered(True, exclude).any():
                exclude = tried  # only LLMs that failed lately are left: try them
            (decision,), _ = await service.route([replace(request, exclude=exclude | service.without_endpoint())])
            out = await _forward(service, body, decision, failed)
            if isinstance(out, Response):
                return out
            await service.run("feedback", service._complete, decision.decision_id)  # free its slot, learn nothing
            service.upstream_failed(decision.choice, cool_down=out.retry)
            failed.append({"llm": decision.choice, "error": out.message})
            tried = tried | {decision.choice}
            if not out.retry or len(failed) > service.fallbacks or not service.offered(True, tried).any():
                headers = {LLM_HEADER: decision.choice, DECISION_HEADER: decision.decision_id or "",
                           FALLBACK_HEADER: ",".join(f["llm"] for f in failed[:-1])}
                return JSONResponse(_error_body("; ".join(f["error"] for f in failed), "upstream_error"),
                                    status_code=502, headers=headers)

    return app


@dataclass(frozen=True)
class _Failed:
    """An upstream attempt that failed before anything was sent to the caller."""

    message: str
    retry: bool  # worth trying another LLM (the provider's trouble, not the request's)


async def _forward(service: Service, body: ChatRequest, decision: Any,
                   failed: list[dict[str, str]]) -> Response | _Failed:
    """Send the request to the chosen LLM, answer (or stream) its reply, then record what it cost.
    `failed` lists the attempts before this one (reported with the answer)."""
    import httpx

    from ..learning.feedback import Feedback
    from ..upstream import call_cost_usd, upstream_call, usage_tokens, worth_another_llm

    llm = service.router.catalogue.get(decision.choice)
    info = {"llm": llm.id, "decision_id": decision.decision_id, "budget": decision.budget,
            "lambda": decision.lam, "fallback_from": failed}
    headers = {LLM_HEADER: llm.id, DECISION_HEADER: decision.decision_id or "",
               FALLBACK_HEADER: ",".join(f["llm"] for f in failed)}
    payload = body.model_dump()
    try:
        url, up_headers, up_body = upstream_call(llm, payload)
        started = time.perf_counter()
        req = service.http.build_request("POST", url, headers=up_headers, json=up_body)
        resp = await service.http.send(req, stream=True)
    except (UpstreamError, httpx.HTTPError) as exc:
        return _Failed(str(exc) if isinstance(exc, UpstreamError) else f"LLM {llm.id!r}: {type(exc).__name__}: {exc}",
                       retry=True)

    async def finish(usage: Any, ttft_ms: float | None) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        prompt, completion = usage_tokens(usage)
        cost = call_cost_usd(llm, prompt, completion)
        service.metrics.upstream_latency.labels(llm.id).observe(latency_ms / 1000.0)
        if prompt is not None:
            service.metrics.upstream_tokens.labels(llm.id, "prompt").inc(prompt)
        if completion is not None:
            service.metrics.upstream_tokens.labels(llm.id, "completion").inc(completion)
        if cost is not None:
            service.metrics.upstream_cost.labels(llm.id).inc(cost)
        fb = Feedback(decision.decision_id, response_tokens=completion, latency_ms=round(latency_ms, 3),
                      ttft_ms=None if ttft_ms is None else round(ttft_ms, 3), cost_usd=cost)
        await service.record([("upstream", fb)])

    if resp.status_code != 200:
        raw = await resp.aread()
        await resp.aclose()
        try:
            upstream_msg = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            upstream_msg = raw[:200].decode("utf-8", "replace")
        return _Failed(f"LLM {llm.id!r} answered {resp.status_code}: {upstream_msg}",
                       retry=worth_another_llm(resp.status_code))

    if not body.stream:
        try:
            raw = await resp.aread()
        finally:
            await resp.aclose()
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            return _Failed(f"LLM {llm.id!r} answered with something that is not a JSON object", retry=True)
        await finish(obj.get("usage"), None)
        obj["mixllm"] = info
        return JSONResponse(obj, headers=headers)

    async def relay() -> Any:
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
                    if ttft_ms is None and any((c.get("delta") or {}).get("content")
                                               for c in chunk.get("choices") or [] if isinstance(c, dict)):
                        ttft_ms = (time.perf_counter() - started) * 1000.0
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    chunk["mixllm"] = info
                yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
        finally:
            await resp.aclose()
            # Record even when the caller went away mid-stream; shielded from its cancellation.
            await asyncio.shield(finish(usage, ttft_ms))

    return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)


def serve(service: Service, host: str = "127.0.0.1", port: int = 8080,
          log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning") -> None:
    """Serve a loaded `Service` until stopped (SIGINT/SIGTERM end it gracefully)."""
    import uvicorn

    # No proxy-header rewriting: nothing here reads the client's address.
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, access_log=False,
                proxy_headers=False, timeout_graceful_shutdown=5)
