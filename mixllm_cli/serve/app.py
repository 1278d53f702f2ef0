"""`mixllm serve`: the library behind HTTP (FastAPI on uvicorn).

The app is a thin client of the library, like the CLI: `/v1/route` returns `Decision.to_dict()`
(what `route --json` prints), `/v1/feedback` calls `feedback.parse_feedback` and
`feedback.record_feedback`, `/v1/llms` is `pool.list_llms`, `/v1/chat/completions` routes and
forwards (`proxy`), `/` is the demo page (`page`). The concurrency it adds lives in `service`; the error answers in `errors`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import MixLLMError, UnknownDecisionError
from ..routing import request as rq
from ..routing.router import WaitPolicy
from .auth import SCOPE_KEY, Auth, AuthMiddleware
from .errors import ApiError, JSONResponse, error_body, status_of
from .limits import MAX_BODY_BYTES, BodyLimit
from .page import add_page
from .proxy import chat_completion
from .schemas import ChatRequest, FeedbackBatch, FeedbackItem, RouteQuery, RouteRequest
from .service import Service

if TYPE_CHECKING:
    from ..learning.feedback import Feedback

__all__ = ["Service", "create_app", "serve"]  # Service: the CLI and the tests import it from here


def create_app(service: Service, auth: Auth | None = None) -> FastAPI:
    """The ASGI app. With `auth` every path but /healthz needs an API key of the store (`serve.auth`);
    without it nothing is asked: for tests and for an app mounted behind your own authentication.
    `serve` and `mixllm serve` always pass one unless told --no-auth."""
    from .. import __version__

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import httpx

        service.http = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0),
                                         limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        try:
            if auth is not None:
                with contextlib.suppress(Exception):  # the first request retries, and says why if it fails
                    await auth.refresh()
            yield
        finally:
            await service.http.aclose()
            service.close()
            if auth is not None:
                auth.close()

    app = FastAPI(title="mixllm", version=__version__, lifespan=lifespan,
                  description="Route each query to the LLM that best balances quality, cost and waiting time.")
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    if auth is not None:  # added last: the outermost, so a request without a key is refused before its body is read
        app.add_middleware(AuthMiddleware, auth=auth, on_refused=service.metrics.refused)
    _add_error_handlers(app)
    _add_routing(app, service)
    _add_feedback(app, service)
    _add_status(app, service, anonymous_health=auth is not None)
    add_page(app)

    @app.post("/v1/chat/completions", summary="OpenAI-compatible: mixllm picks the LLM and forwards the call")
    async def chat(body: ChatRequest, request: Request) -> Response:
        key = request.scope.get(SCOPE_KEY)
        if auth is None or key is None:
            return await chat_completion(service, body)

        async def charge(usd: float) -> None:
            await auth.charge(key.id, usd)

        return await chat_completion(service, body, charge=charge)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.param), status_code=exc.status)

    @app.exception_handler(MixLLMError)
    async def _domain_error(request: Request, exc: MixLLMError) -> JSONResponse:
        status = status_of(exc)
        kind = {400: "invalid_request_error", 404: "not_found", 502: "upstream_error"}.get(status, "unavailable")
        return JSONResponse(error_body(str(exc).splitlines()[0], kind), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
        body = error_body(message, "invalid_request_error", loc or None)
        body["error"]["details"] = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg"))}
                                    for e in errors[:20]]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)


def _route_requests(service: Service, body: RouteRequest) -> list[rq.RouteRequest]:
    """The library's requests for a /v1/route body, each checked (a query's own budget or λ wins)."""
    policy = WaitPolicy.default(body.max_wait_s, strict=body.strict_wait)
    # (mypy sees RouteQuery's field defaults only with the pydantic plugin)
    single = [RouteQuery(id=body.id, query=body.query)] if body.query is not None else None  # type: ignore[call-arg]
    items = single or body.queries or []
    service.check_budget(body.budget, body.lam)
    requests = []
    for k, q in enumerate(items):
        own = q.budget is not None or q.lam is not None
        requests.append(service.check(rq.RouteRequest(
            query=q.query, id=None if q.id is None else str(q.id), budget=q.budget if own else body.budget,
            lam=q.lam if own else body.lam, policy=policy), "" if body.query is not None else f"queries[{k}]."))
    return requests


def _add_routing(app: FastAPI, service: Service) -> None:
    @app.post("/v1/route", summary="Route one query or a batch; the decisions `mixllm route --json` prints")
    async def route(body: RouteRequest) -> JSONResponse:
        started = time.perf_counter()
        decisions, timings = await service.route(_route_requests(service, body))
        elapsed = time.perf_counter() - started
        service.metrics.route_latency.observe(elapsed)
        # Where the time went (W3C Server-Timing, ms; the batch's phases when batched with others).
        headers = {"server-timing": ", ".join([f"{k};dur={1000 * v:.3f}" for k, v in timings.items()]
                                              + [f"total;dur={1000 * elapsed:.3f}"])}
        if body.query is not None:
            return JSONResponse(decisions[0].to_dict(), headers=headers)
        return JSONResponse({"decisions": [d.to_dict() for d in decisions]}, headers=headers)


def _add_feedback(app: FastAPI, service: Service) -> None:
    @app.post("/v1/feedback", summary="Tell mixllm how routed calls went (`mixllm feedback`); idempotent")
    async def feedback(body: FeedbackItem | FeedbackBatch) -> JSONResponse:
        from ..learning.feedback import parse_feedback

        batch = isinstance(body, FeedbackBatch)
        raw = body.items if isinstance(body, FeedbackBatch) else [body]
        items: list[tuple[str, Feedback | MixLLMError]] = []
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


def _add_status(app: FastAPI, service: Service, anonymous_health: bool = False) -> None:
    @app.get("/v1/llms", summary="The pool (`mixllm llms --json`), with the shared queue's calls in flight")
    async def llms() -> JSONResponse:
        from ..training.pool import list_llms

        rows = await service.run("read", lambda: list_llms(service.home, service.catalogue_file,
                                                           store=service.store("read")))
        for row in rows:
            entry = service.router.catalogue.get(row["id"]) if row["id"] in service.router.catalogue else None
            row["upstream"] = None if entry is None or entry.base_url is None else {
                "base_url": entry.base_url, "model": entry.upstream_model or entry.id}
        return JSONResponse(rows)

    @app.get("/v1/models", summary="OpenAI-compatible: the models a chat completion may name")
    async def models() -> JSONResponse:
        presets = sorted(service.router.artifacts.presets.values(), key=lambda p: p.lam)  # cheapest first
        names = ["mixllm", *(f"mixllm:{p.name}" for p in presets)]
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "mixllm"} for name in names]})

    @app.get("/healthz", summary="Liveness: the store answers (no key needed; HEAD too)")
    async def healthz() -> JSONResponse:
        if anonymous_health:  # open to anyone with keys on: a cheap look at the store, and nothing about it
            try:
                await service.run("read", lambda: service.store("read").schema_version())
            except MixLLMError:
                return JSONResponse({"status": "unavailable"}, status_code=503)
            return JSONResponse({"status": "ok"})
        try:
            stats = await service.run("read", lambda: service.store("read").stats())
        except MixLLMError as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "store": service.store_name, "llms": list(service.router.llm_ids),
                             "decisions": stats["decisions"], "feedback": stats["feedback"]})

    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)  # load balancers probe so

    @app.get("/metrics", summary="Prometheus text format")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await service.run("read", service.metrics.render), media_type=CONTENT_TYPE_LATEST)


def serve(service: Service, host: str = "127.0.0.1", port: int = 8080,
          log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning", *,
          auth: Auth | None, allow_public_without_auth: bool = False,
          limit_concurrency: int | None = None, timeout_keep_alive_s: float | None = None,
          header_timeout_s: float | None = None) -> None:
    """Serve a loaded `Service` until stopped (SIGINT/SIGTERM end it gracefully). `auth` has no default:
    serving without keys (None) is the caller's explicit choice, refused on a non-loopback `host`
    unless `allow_public_without_auth` (`auth.check_exposure`). The connection limits (None: the
    defaults) are `limits.uvicorn_limits`'s."""
    import uvicorn

    from .auth import check_exposure
    from .limits import uvicorn_limits

    bounds = uvicorn_limits(limit_concurrency, timeout_keep_alive_s, header_timeout_s)

    check_exposure(host, keys=auth is not None, allow_public=allow_public_without_auth)
    _log_to_stderr()

    # No proxy-header rewriting: nothing here reads the client's address.
    uvicorn.run(create_app(service, auth), host=host, port=port, log_level=log_level, access_log=False,
                proxy_headers=False, timeout_graceful_shutdown=5, **bounds)


def _log_to_stderr() -> None:
    """The service's own log lines (upstream failures, key-table trouble) on stderr, one line each."""
    import logging
    import sys

    log = logging.getLogger("mixllm.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s mixllm %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
