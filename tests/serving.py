"""Test helpers: run an ASGI app on a real loopback port in a thread, and a fake OpenAI-style upstream.

(No `from __future__ import annotations`: FastAPI must see the handler's real `Request` type.)"""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a background thread (lifespan included);
    yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started:
            if time.time() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def fake_upstream() -> tuple[Any, list[dict[str, Any]]]:
    """An OpenAI-compatible chat-completions provider: answers "answer from <model>" word by word,
    reports usage (prompt 12 tokens, completion = the words), fails with a 500 for the model `broken`
and refuses the request (400) for the model `picky`.
    Returns the app and the list of (headers, body) it received."""
    app = FastAPI()
    seen: list[dict[str, Any]] = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen.append({"headers": dict(request.headers), "body": body})
        model = body["model"]
        if model == "broken":
            return JSONResponse({"error": {"message": "the model is on fire", "type": "server_error"}},
                                status_code=500)
        if model == "picky":
            return JSONResponse({"error": {"message": "this request is not for me", "type": "invalid_request_error"}},
                                status_code=400)
        words = ["answer", "from", model]
        usage = {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": model}
        if not body.get("stream"):
            return {**base, "object": "chat.completion", "usage": usage,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": " ".join(words)}}]}

        def events() -> Any:
            for k, w in enumerate(words):
                delta = {"role": "assistant", "content": w if k == 0 else " " + w}
                chunk = {**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            done = {**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(done)}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app, seen
