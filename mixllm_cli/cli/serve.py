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
    log_queries: LogQueriesOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Serve the router over HTTP: /v1/route, /v1/feedback, /v1/llms, /v1/chat/completions, /metrics.

    Needs the serve extra: pip install -e '.[serve]'. The OpenAPI schema is at /docs and /openapi.json.

    Example: mixllm serve --port 8080 --store postgresql://mixllm@127.0.0.1:5432/mixllm
    """
    from .. import output
    from ..serve.app import Service, serve  # a missing serve extra is one Error: line (see `run`)

    service = Service(home, catalogue, store, log_queries=log_queries, fallbacks=fallbacks,
                      cooldown_s=cooldown_s)  # fails fast: one Error: line
    output.note(f"mixllm serving {len(service.router.llm_ids)} LLMs on http://{host}:{port} "
                f"(store: {service.store_name}; OpenAPI at /docs)")
    serve(service, host, port)

