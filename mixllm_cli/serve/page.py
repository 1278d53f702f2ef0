"""The demo page at `/`: plain HTML, CSS and JavaScript shipped in the package (`static/`), no build
step, nothing fetched from elsewhere. The files hold no data, so they are served without a key
(`auth.OPEN_PATHS`); every API call the page makes sends the key the user typed in.

The page runs the paper's demo: a sample query or your own, a budget, Run → `/v1/route`'s decision
table → the chosen LLM's answer streamed through `/v1/chat/completions` (answering that very
decision: the `mixllm.decision_id` member, `proxy.routed_decision`) → thumbs up or down to
`/v1/feedback`; and `/v1/llms` every few seconds, so people routing at once see each other's load.

Strict headers: a Content-Security-Policy that allows this origin's own files only (no inline
script or style, no frames around the page), nosniff, no referrer.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

from .errors import ApiError

STATIC = Path(__file__).parent / "static"
# The files served, by name (anything else under /static/ is a 404): name → content type.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "samples.json": "application/json",
    "favicon.svg": "image/svg+xml",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",  # frame-ancestors for browsers that predate it
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-cache",  # revalidate: an upgraded package serves its new page at once
}


@functools.lru_cache(maxsize=len(FILES))
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file(name: str) -> Response:
    if name not in FILES:
        raise ApiError(404, f"no file {name!r} here", "not_found")
    return Response(_read(name), media_type=FILES[name], headers=HEADERS)


def add_page(app: FastAPI) -> None:
    """`GET /` (the page) and `GET /static/<name>` (its files), HEAD too; not in the OpenAPI schema."""

    async def index() -> Response:
        return _file("index.html")

    async def static(name: str) -> Response:
        return _file(name)

    app.add_api_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/static/{name}", static, methods=["GET", "HEAD"], include_in_schema=False)
