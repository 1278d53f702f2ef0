"""A fake OpenAI-compatible chat-completions provider for tests and benchmarks (loopback only).

Three fake LLMs answer arithmetic questions, each right on a deterministic share of them:

| model       | easy items | hard items | speed (at --delay-scale 1)   |
|-------------|-----------:|-----------:|------------------------------|
| fake-strong |       0.97 |       0.95 | ttft 400 ms, 40 tokens/s     |
| fake-mid    |       0.95 |       0.50 | ttft 250 ms, 80 tokens/s     |
| fake-cheap  |       0.95 |       0.30 | ttft 100 ms, 200 tokens/s    |

Easy items read "What is 3 plus 4?"; hard ones "Compute the product 4821 × 9377 and then subtract
1234; give only the final number." (worded very differently, so even lexical features tell them
apart). The fake computes the right answer itself; whether a model gets an item right is a hash of
(model, prompt), so every run gives the same answers. Other prompts get a short generic answer.

`usage` looks real (prompt tokens ≈ words + 3 per message, completion tokens = words of the answer),
`stream: true` sends server-sent events (the first word, then the rest, then the usage chunk when
`stream_options.include_usage` is set).

Errors on demand, as a model-name suffix (`fake-cheap@429x2`) or a prompt marker (`[fake:500x1]`):
`429` (with Retry-After), `500`, `hang` (never answers; the client's timeout must end it), `cut`
(the stream stops mid-answer), `nousage` (no usage reported), `401`, `404`. `xN` makes only the
first N calls of each (model, prompt) fail; without it every call fails. Started with an API key,
any other Bearer key gets a 401. Unknown models get a 404.

Counters: `FakeOpenAI.calls` counts requests per (model as sent, prompt text); `GET /stats` gives
them as JSON. A gate (`FakeOpenAI.gate_after(n)`) holds every request after the first n answers
until `release()`, so a test can kill a client mid-run at a known point with no timing guess.

Run as a server: `python tests/fake_openai.py --port 0 [--api-key K] [--delay-scale S]` prints its
base URL (`http://127.0.0.1:PORT/v1`) as the first stdout line.

(Also the prompt generator: `make_prompts(n, hard_fraction)` and `catalogue_yaml(base_url)`.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODELS: dict[str, dict[str, float]] = {
    "fake-strong": {"easy": 0.97, "hard": 0.95, "ttft_s": 0.4, "tokens_per_s": 40.0},
    "fake-mid": {"easy": 0.95, "hard": 0.50, "ttft_s": 0.25, "tokens_per_s": 80.0},
    "fake-cheap": {"easy": 0.95, "hard": 0.30, "ttft_s": 0.1, "tokens_per_s": 200.0},
}
# Catalogue prices (USD per million tokens) the tests and the benchmark use for the fakes.
PRICES: dict[str, tuple[float, float]] = {
    "fake-strong": (10.0, 30.0),
    "fake-mid": (2.0, 8.0),
    "fake-cheap": (0.2, 0.2),
}

EASY_RE = re.compile(r"What is (\d+) plus (\d+)\?")
HARD_RE = re.compile(r"Compute the product (\d+) × (\d+) and then subtract (\d+); give only the final number\.")
MARKER_RE = re.compile(r"\[fake:([a-z0-9]+(?:x\d+)?)\]")
MOD_RE = re.compile(r"^(429|500|hang|cut|nousage|401|404)(?:x(\d+))?$")


def _unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def solve(prompt: str) -> tuple[str, int] | None:
    """(difficulty, the right answer) of an arithmetic item, None for any other prompt."""
    m = HARD_RE.search(prompt)
    if m:
        a, b, c = (int(x) for x in m.groups())
        return "hard", a * b - c
    m = EASY_RE.search(prompt)
    if m:
        return "easy", int(m.group(1)) + int(m.group(2))
    return None


def is_right(model: str, prompt: str) -> bool | None:
    """Whether the fake `model` (its base name) answers `prompt` right; None for non-arithmetic prompts."""
    solved = solve(prompt)
    if solved is None:
        return None
    return _unit(model, prompt) < MODELS[model][solved[0]]


JUDGE_BLOCK = r"<<<{0} (\w+)>>>\n(.*?)\n<<<END {0} \1>>>"


def _last_number(text: str) -> str | None:
    found = re.findall(r"-?\d+", text.replace(",", ""))
    return found[-1] if found else None


def judge_text(prompt: str) -> str:
    """The fake as a judge (a prompt with <<<ANSWER tag>>> blocks, as `graders.judge_messages` writes):
    SCORE: 10 when the answer's last number is the reference's (or the question's right answer), else 0."""
    answer = re.search(JUDGE_BLOCK.format("ANSWER"), prompt, re.DOTALL)
    ref = re.search(JUDGE_BLOCK.format("REFERENCE"), prompt, re.DOTALL)
    question = re.search(JUDGE_BLOCK.format("QUESTION"), prompt, re.DOTALL)
    want = _last_number(ref.group(2)) if ref else None
    if want is None and question is not None:
        solved = solve(question.group(2))
        want = None if solved is None else str(solved[1])
    if answer is None or want is None:
        return "I cannot tell.\nSCORE: 5"
    got = _last_number(answer.group(2))
    return f"Compared the final numbers.\nSCORE: {10 if got == want else 0}"


def answer_text(model: str, prompt: str) -> str:
    """The fake's answer: deterministic in (model, prompt); the last number is the final answer."""
    if "<<<ANSWER " in prompt:
        return judge_text(prompt)
    solved = solve(prompt)
    if solved is None:
        return f"I am {model}, a fake model; I only do arithmetic. The answer is 42."
    kind, right = solved
    # A wrong hard answer is off by thousands: far outside any grader's rounding tolerance.
    off = (1 + int(_unit("off", model, prompt) * 9)) * (1000 if kind == "hard" else 1)
    value = right if is_right(model, prompt) else right + off
    if kind == "easy":
        return f"The answer is {value}."
    m = HARD_RE.search(prompt)
    assert m is not None
    a, b, c = (int(x) for x in m.groups())
    product = value + c
    return (f"First multiply: {a} × {b} = {product}. Then subtract {c}: {product} - {c} = {value}. "
            f"The final answer is {value}.")


def _words(text: str) -> int:
    return len(text.split())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: Any) -> str:
    for m in reversed(messages if isinstance(messages, list) else []):
        if isinstance(m, dict) and m.get("role") == "user":
            return _content_text(m.get("content"))
    return ""


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class FakeOpenAI:
    """The ASGI app. Counters are read by tests from another thread (plain dict reads under the GIL)."""

    def __init__(self, *, api_key: str | None = None, delay_scale: float = 0.0, retry_after: str = "0",
                 hang_s: float = 600.0) -> None:
        self.api_key = api_key
        self.delay_scale = delay_scale
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.calls: Counter[tuple[str, str]] = Counter()  # requests received per (model as sent, prompt)
        self.answered: Counter[tuple[str, str]] = Counter()  # whole answers sent per (model, prompt)
        self.bodies: list[dict[str, Any]] = []  # the last requests' bodies (kept to 1000)
        self.total = 0
        self._gate_after: int | None = None
        self._released = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.held = 0  # requests waiting at the gate

    # --- the gate -------------------------------------------------------------------------------
    def gate_after(self, n: int) -> None:
        """Hold every request that arrives after `n` answers were sent, until `release()`."""
        self._released = asyncio.Event()
        self._gate_after = n

    def release(self) -> None:
        """Let the held requests go on (callable from any thread)."""
        self._gate_after = None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._released.set)

    # --- ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        path, method = scope["path"], scope["method"]
        if method == "GET" and path in ("/stats", "/v1/stats"):
            stats = {"total": self.total, "held": self.held,
                     "calls": [{"model": m, "prompt": p, "n": n} for (m, p), n in self.calls.items()],
                     "answered": [{"model": m, "prompt": p, "n": n} for (m, p), n in self.answered.items()]}
            await self._send_json(send, 200, stats)
            return
        if method == "GET" and path in ("/models", "/v1/models"):
            await self._send_json(send, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
            return
        if method != "POST" or path not in ("/chat/completions", "/v1/chat/completions"):
            await self._send_json(send, 404, _error(f"no route {method} {path}", "not_found"))
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        await self.chat(scope, b"".join(chunks), receive, send)

    async def chat(self, scope: dict[str, Any], raw: bytes, receive: Any, send: Any) -> None:
        try:
            body = json.loads(raw)
            messages = body["messages"]
            model_sent = body["model"]
        except (ValueError, KeyError, TypeError):
            await self._send_json(send, 400, _error("the body must be JSON with model and messages", "invalid_request"))
            return
        prompt = last_user_text(messages)
        key = (model_sent, prompt)
        self.calls[key] += 1
        self.total += 1
        n_call = self.calls[key]
        if len(self.bodies) < 1000:
            self.bodies.append(body)
        if self.api_key is not None:
            auth = dict(scope["headers"]).get(b"authorization", b"")
            if auth != b"Bearer " + self.api_key.encode():
                await self._send_json(send, 401, _error("Incorrect API key provided: " + auth.decode("latin-1")[7:],
                                                        "invalid_api_key"))
                return
        if self._gate_after is not None and sum(self.answered.values()) >= self._gate_after:
            self.held += 1
            await self._released.wait()
            self.held -= 1
        base, _, suffix = model_sent.partition("@")
        if base not in MODELS:
            await self._send_json(send, 404, _error(f"The model '{base}' does not exist", "model_not_found"))
            return
        mods = [suffix] if suffix else []
        mods += MARKER_RE.findall(prompt)
        failure, no_usage, cut = None, False, False
        for mod in mods:
            m = MOD_RE.match(mod)
            if not m:
                continue
            kind, times = m.group(1), m.group(2)
            if times is not None and n_call > int(times):
                continue
            if kind == "nousage":
                no_usage = True
            elif kind == "cut":
                cut = True
            elif failure is None:
                failure = kind
        if failure == "hang":
            await self._hang(receive)
            return
        if failure in ("429", "500", "401", "404"):
            status = int(failure)
            headers = [(b"retry-after", self.retry_after.encode())] if status == 429 else []
            text = {429: "Rate limit reached, retry later", 500: "The server had an error",
                    401: "Invalid authentication", 404: "The model does not exist"}[status]
            await self._send_json(send, status, _error(text, f"fake_{status}"), headers)
            return
        text = answer_text(base, prompt)
        words = text.split(" ")
        prompt_tokens = sum(_words(_content_text(m.get("content"))) + 3 for m in messages if isinstance(m, dict))
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
            words, finish = words[:max_tokens], "length"
            text = " ".join(words)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        speed = MODELS[base]
        ttft = speed["ttft_s"] * self.delay_scale
        per_token = self.delay_scale / speed["tokens_per_s"]
        ident = {"id": "chatcmpl-fake" + hashlib.sha1(raw).hexdigest()[:12], "created": 1700000000, "model": base}
        if not body.get("stream"):
            if ttft or per_token:
                await asyncio.sleep(ttft + per_token * len(words))
            out = {**ident, "object": "chat.completion",
                   "choices": [{"index": 0, "finish_reason": finish,
                                "message": {"role": "assistant", "content": text}}]}
            if not no_usage:
                out["usage"] = usage
            await self._send_json(send, 200, out)
            self.answered[key] += 1
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not no_usage
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        if ttft:
            await asyncio.sleep(ttft)

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk = {**ident, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            return b"data: " + _json(chunk) + b"\n\n"

        await send({"type": "http.response.body", "body": event({"role": "assistant", "content": words[0]}),
                    "more_body": True})
        rest = [event({"content": " " + w}) for w in words[1:]]
        if cut:
            # Half the answer, then the connection ends without [DONE]: the client must see a broken stream.
            await send({"type": "http.response.body", "body": b"".join(rest[: len(rest) // 2]), "more_body": True})
            raise ConnectionAbortedError("fake: stream cut on purpose")
        if per_token:
            for ev in rest:
                await asyncio.sleep(per_token)
                await send({"type": "http.response.body", "body": ev, "more_body": True})
            rest = []
        tail = rest + [event({}, finish)]
        if include_usage:
            tail.append(b"data: " + _json({**ident, "object": "chat.completion.chunk", "choices": [], "usage": usage})
                        + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})
        self.answered[key] += 1

    async def _hang(self, receive: Any) -> None:
        """Answer nothing until the client goes away (or hang_s passes)."""
        async def until_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(until_gone(), self.hang_s)

    @staticmethod
    async def _send_json(send: Any, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = _json(obj)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error" if code != "fake_500" else "server_error",
                      "code": code}}


# --- running it --------------------------------------------------------------------------------


def _config(app: Any, **kw: Any) -> Any:
    import uvicorn

    extra: dict[str, Any] = {}
    with contextlib.suppress(ImportError):
        import httptools  # noqa: F401

        extra["http"] = "httptools"
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401

        extra["loop"] = "uvloop"
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **extra, **kw)


@contextlib.contextmanager
def serve_fake(fake: FakeOpenAI | None = None, **kw: Any) -> Iterator[tuple[str, FakeOpenAI]]:
    """Serve a FakeOpenAI on 127.0.0.1:<free port> in a background thread; yields (base URL ending in
    /v1, the app)."""
    import uvicorn

    fake = fake or FakeOpenAI(**kw)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = _config(fake, timeout_graceful_shutdown=1)
    config.loop = "asyncio"  # a thread of a process whose main loop may be anything
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the fake server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", fake
    finally:
        fake.release()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# --- prompts and a catalogue for the fakes ----------------------------------------------------


def make_prompts(n: int, hard_fraction: float = 0.3, seed: int = 0) -> list[dict[str, Any]]:
    """n arithmetic items with numeric references; about `hard_fraction` of them hard."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if rng.random() < hard_fraction:
            a, b, c = rng.randint(1000, 9999), rng.randint(1000, 9999), rng.randint(100, 9999)
            query = f"Compute the product {a} × {b} and then subtract {c}; give only the final number."
            out.append({"id": f"p{i:05d}", "query": query, "task": "hard", "reference": a * b - c})
        else:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            out.append({"id": f"p{i:05d}", "query": f"What is {a} plus {b}?", "task": "easy", "reference": a + b})
    return out


def write_prompts(path: str | Path, n: int, hard_fraction: float = 0.3, seed: int = 0) -> list[dict[str, Any]]:
    items = make_prompts(n, hard_fraction, seed)
    Path(path).write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    return items


def catalogue_yaml(base_url: str, *, models: dict[str, str] | None = None, slots: int = 32,
                   api_key_env: str | None = None, full: bool = True) -> str:
    """A catalogue of the fakes: {catalogue id: upstream model} (default: the three fakes as themselves).
    `full` writes every field the strict catalogue asks for (name, latency figures, slots, sources)."""
    models = models or {m: m for m in MODELS}
    lines = ["version: 1", "llms:"]
    for llm_id, upstream in models.items():
        p_in, p_out = PRICES[upstream.partition("@")[0]]
        lines += [f"  - id: {llm_id}", f"    input_usd_per_mtok: {p_in}", f"    output_usd_per_mtok: {p_out}"]
        if full:
            lines += [f"    name: {llm_id}", "    ttft_ms: 300", "    output_tokens_per_s: 50", f"    slots: {slots}",
                      "    sources: {prices: test, ttft_ms: test, output_tokens_per_s: test, slots: test}"]
        lines += [f"    base_url: {base_url}", f"    upstream_model: '{upstream}'"]
        if api_key_env:
            lines.append(f"    api_key_env: {api_key_env}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="A fake OpenAI-compatible provider (loopback only).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--api-key", default=None, help="require this Bearer key (401 otherwise)")
    ap.add_argument("--delay-scale", type=float, default=0.0, help="multiply the fakes' latencies (0: no sleeps)")
    ap.add_argument("--retry-after", default="0", help="the Retry-After header of 429 answers")
    args = ap.parse_args(argv)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    fake = FakeOpenAI(api_key=args.api_key, delay_scale=args.delay_scale, retry_after=args.retry_after)
    server = uvicorn.Server(_config(fake, backlog=1024))
    parent = os.getppid()

    def orphaned() -> None:  # the test or benchmark that started us died (kill -9): do not linger
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    sys.stdout.write(f"http://127.0.0.1:{sock.getsockname()[1]}/v1\n")
    sys.stdout.flush()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
