"""`mixllm serve`: the router over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from ..upstream import DEFAULT_COOLDOWN_S, DEFAULT_FALLBACKS
from .app import (
    CatalogueOpt,
    HomeOpt,
    LogQueriesOpt,
    app,
)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8080,
    store: Annotated[
        str | None,
        typer.Option("--store", help="State store URL: postgresql://USER@HOST:PORT/DB to share one state between "
                                     "replicas (default: $MIXLLM_STORE, else <home>/state.sqlite3)."),
    ] = None,
    fallbacks: Annotated[
        int,
        typer.Option("--fallbacks", min=0, help="Chat completions: when the chosen LLM's endpoint fails (unreachable, "
                                                "429, 5xx), route again without it, at most this many more times."),
    ] = DEFAULT_FALLBACKS,
    cooldown_s: Annotated[
        float,
        typer.Option("--cooldown-s", min=0.0, help="Chat completions: skip an LLM whose endpoint failed for this many "
                                                   "seconds (0: never skip)."),
    ] = DEFAULT_COOLDOWN_S,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Serve without API keys: for development on a loopback --host (refused on "
                                       "any other host without --allow-public-without-auth)."),
    ] = False,
    allow_public_without_auth: Annotated[
        bool,
        typer.Option("--allow-public-without-auth", help="With --no-auth: serve a non-loopback --host without keys "
                                                         "(only behind a proxy that authenticates every caller)."),
    ] = False,
    limit_concurrency: Annotated[
        int | None, typer.Option("--limit-concurrency", min=1, help="Most connections and requests in progress; "
                                 "beyond: 503 (default 512).")] = None,
    header_timeout_s: Annotated[
        float | None, typer.Option("--header-timeout-s", min=0.1, max=3600.0, help="Close a connection that has "
                                   "not sent a request's headers within this many seconds (default 10).")] = None,
    log_queries: LogQueriesOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Serve the router over HTTP: /v1/route, /v1/feedback, /v1/llms, /v1/chat/completions, /metrics.

    Every path but /healthz needs Authorization: Bearer <key>, a key made with `mixllm keys create`
    in the same store (keys work on every replica sharing it). Needs the serve extra:
    pip install -e '.[serve]'. The OpenAPI schema is at /docs and /openapi.json.

    Example: mixllm serve --port 8080 --store postgresql://mixllm@127.0.0.1:5432/mixllm
    """
    from .. import output
    from ..serve.auth import Auth, check_exposure

    warning = check_exposure(host, keys=not no_auth, allow_public=allow_public_without_auth)  # before loading
    _check_port(host, port)
    from ..serve.app import Service, serve  # a missing serve extra is one Error: line (see `run`)

    service = Service(home, catalogue, store, log_queries=log_queries, fallbacks=fallbacks,
                      cooldown_s=cooldown_s)  # fails fast: one Error: line
    auth = None if no_auth else Auth(service.home, store)
    output.note(f"mixllm serving {len(service.router.llm_ids)} LLMs on http://{host}:{port} "
                f"(store: {service.store_name}; OpenAPI at /docs)")
    _endpoint_lines(service)
    if warning is not None:
        output.note(f"WARNING: {warning}")
    elif auth is not None:
        n = auth.active_keys()
        output.note(f"API keys required (Authorization: Bearer <key>): {n} active in the store"
                    if n else "API keys required, and the store holds none yet: every request but /healthz gets 401 "
                              "until you create one with `mixllm keys create NAME` (it works at once, no restart)")
    serve(service, host, port, auth=auth, allow_public_without_auth=allow_public_without_auth,
          limit_concurrency=limit_concurrency, header_timeout_s=header_timeout_s)



def _endpoint_lines(service: object) -> None:
    """One stderr line per LLM with an endpoint, a warning for each key variable not set now."""
    from .. import output
    from ..training.pool import endpoint_warnings

    llms = [service.router.catalogue.get(i) for i in service.router.llm_ids]  # type: ignore[attr-defined]
    with_endpoint = [llm for llm in llms if llm.base_url is not None]
    if not with_endpoint:
        output.note("chat completions: no LLM has a base_url, so /v1/chat/completions answers 400 "
                    "(set one with `mixllm set-endpoint ID --base-url URL`)")
    for llm in with_endpoint:
        key = f", key from ${llm.api_key_env}" if llm.api_key_env else ", no key"
        output.note(f"endpoint {llm.id}: {llm.base_url} (model {llm.upstream_model or llm.id}{key})")
        for warning in endpoint_warnings(llm):
            output.note(f"WARNING: {warning}")


def _check_port(host: str, port: int) -> None:
    """A port already in use is one Error: line (exit 1) before anything loads, not uvicorn's exit 3."""
    import socket

    from ..errors import MixLLMError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise MixLLMError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", param="host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise MixLLMError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", param="port") from None
