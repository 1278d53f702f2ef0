"""API keys for `mixllm serve`: who may call it, how often, and how much it may spend.

Every path but `/healthz` and the demo page's files (`/`, `/static/*`: no data in them; each API
call the page makes sends the key) needs `Authorization: Bearer <key>` (default deny: `/v1/*`,
`/metrics`, `/docs`, `/openapi.json` and paths that do not exist alike). `AuthMiddleware` checks the key
before the request body is read or any route runs, and answers in OpenAI's error shape:

- 401 `invalid_api_key`: no key, an unknown key, or a revoked one;
- 429 `rate_limit_exceeded` with `Retry-After`: the key's requests per minute are used up;
- 402 `budget_exceeded`: the key's USD budget for chat completions is spent. 402, not 429: the
  `openai` clients retry a 429 by themselves, and a spent budget does not come back by waiting.

Each replica keeps the key table (sha256 → record, from `state.keys`) in memory:

- it is re-read in the background at most every REFRESH_S seconds while requests come, and a
  table older than TTL_S is never used (the request waits for a fresh one), so a revoked key
  stops working on every replica within TTL_S (5 s);
- an unknown key re-reads the table at once, at most every MISS_REFRESH_S, so a key created a
  moment ago works on its first request, and a stream of made-up keys costs the store at most
  two reads a second per replica;
- requests per minute are counted per fixed minute (unix time // 60) in memory and added to the
  store at each refresh (`api_key_usage`), which gives back every replica's count. So a request
  costs no store round trip; one replica enforces the limit exactly, and several see each
  other's requests within REFRESH_S (a burst spread over R replicas inside one refresh can
  exceed the limit by what the others admitted in that second);
- the budget is checked against the store itself before each chat completion (a chat completion
  waits for its upstream anyway), and each call's cost is added in the store when it ends
  (`spent_usd = spent_usd + ?`). A key can overshoot its budget by the calls in flight when it
  ran out: their cost is known only when they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..state.keys import KeyRecord, hash_key

if TYPE_CHECKING:
    from ..state.base import StoreBase

TTL_S = 5.0  # the oldest key table a request is checked against: revocation reaches every replica within it
REFRESH_S = 1.0  # while requests come, the table and the per-minute counts are refreshed this often
MISS_REFRESH_S = 0.5  # an unknown key re-reads the table at most this often
OPEN_PATHS = frozenset({"/healthz", "/"})  # served without a key: health, and the demo page (it holds no data)
OPEN_PREFIX = "/static/"  # the page's files (`serve.page`; the API calls the page makes need the key)
CHAT_PATH = "/v1/chat/completions"
SCOPE_KEY = "mixllm.key"  # the ASGI scope entry holding the caller's `KeyRecord`
MAX_KEY_BYTES = 256  # a longer "key" is not one of ours (ours have 47 characters)
_PREFIX = b"mxk_"  # state.keys.KEY_PREFIX, as the header's bytes

log = logging.getLogger("mixllm.serve")


@dataclass(frozen=True)
class Denial:
    """A refused request: its status and OpenAI-style error."""

    status: int
    message: str
    kind: str
    code: str
    retry_after_s: int | None = None


_MISSING = Denial(401, "missing API key: send the header Authorization: Bearer <key> (an operator creates keys "
                       "with `mixllm keys create NAME`)", "invalid_request_error", "missing_api_key")
_UNKNOWN = Denial(401, "invalid API key", "invalid_request_error", "invalid_api_key")
_REVOKED = Denial(401, "this API key has been revoked", "invalid_request_error", "invalid_api_key")
_STORE_DOWN = Denial(503, "the key store is unreachable; try again shortly", "unavailable", "store_unavailable")


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only (an IP in 127.0.0.0/8 or ::1, or `localhost`).
    Any other name counts as public: what it resolves to is not ours to guess."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, keys: bool, allow_public: bool = False) -> str | None:
    """Refuse to serve without keys on a non-loopback host unless `allow_public`; returns the warning
    to show the operator (None when keys are required)."""
    if keys:
        if allow_public:
            raise UsageError("only with --no-auth (keys are required otherwise)", param="allow_public_without_auth")
        return None
    if is_loopback(host):
        return (f"serving WITHOUT API keys (--no-auth) on {host}: every process of this machine can call it "
                "and spend your upstream keys")
    if not allow_public:
        raise UsageError(f"{host} is not a loopback address: without API keys anyone who can reach it could "
                         "spend your upstream keys and read /v1/llms. Create a key (mixllm keys create NAME) "
                         "and drop --no-auth, or add --allow-public-without-auth if something in front of "
                         "mixllm checks every caller", param="no_auth")
    return (f"serving WITHOUT API keys on {host}, a non-loopback address (--no-auth "
            "--allow-public-without-auth): ANYONE WHO CAN REACH THIS PORT CAN SPEND YOUR UPSTREAM KEYS, read "
            "every LLM's base_url and poison the feedback log; put an authenticating proxy in front")


def bearer_key(value: bytes | None) -> bytes | None:
    """The key of an `Authorization: Bearer <key>` header value (the scheme is case-insensitive)."""
    if not value:
        return None
    scheme, _, key = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    key = key.strip()
    return key or None


class Auth:
    """The key table of one replica, its per-minute counts, and the store behind them (used from a
    thread of its own, so a slow store never blocks the event loop)."""

    def __init__(self, home: Path | str | None = None, store_url: str | None = None, *, ttl_s: float = TTL_S,
                 refresh_s: float = REFRESH_S, miss_refresh_s: float = MISS_REFRESH_S,
                 clock: Callable[[], float] = time.time):
        if not (0 < refresh_s <= ttl_s and miss_refresh_s >= 0):
            raise UsageError(f"need 0 < refresh_s <= ttl_s (got {refresh_s}, {ttl_s})", param="ttl_s")
        self.home, self.store_url = home, store_url
        self.ttl_s, self.refresh_s, self.miss_refresh_s = ttl_s, refresh_s, miss_refresh_s
        self.clock = clock
        self._table: dict[str, KeyRecord] = {}
        self._loaded_at = -math.inf  # clock() when the table was last read
        self._minute = -1
        self._shared: dict[str, int] = {}  # every replica's requests this minute per key id, at the last refresh
        self._counted: dict[str, int] = {}  # this replica's requests this minute since then
        self._refresh: asyncio.Future[None] | None = None
        self._exec: ThreadPoolExecutor | None = None
        self._store: StoreBase | None = None

    # ------------------------------------------------------------------ the store, in its own thread

    def _open(self) -> StoreBase:
        if self._store is None:
            from ..state import open_store

            self._store = open_store(self.home, self.store_url)
        return self._store

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._exec is None:
            self._exec = ThreadPoolExecutor(1, thread_name_prefix="mixllm-auth")
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    def close(self) -> None:
        if self._exec is not None:
            def shut() -> None:
                if self._store is not None:
                    self._store.close()
                    self._store = None

            with contextlib.suppress(Exception):
                self._exec.submit(shut).result(timeout=5)
            self._exec.shutdown(wait=False, cancel_futures=True)
            self._exec = None

    def active_keys(self) -> int:
        """How many keys can be used now (read in the calling thread, for start-up messages)."""
        from ..state import open_store
        from ..state.keys import list_keys

        store = open_store(self.home, self.store_url)
        try:
            return sum(not k.revoked for k in list_keys(store))
        finally:
            store.close()

    # ------------------------------------------------------------------ refreshing the table

    def _sync(self, minute: int, counted: dict[str, int]) -> tuple[dict[str, KeyRecord], dict[str, int]]:
        from ..state.keys import count_requests, key_table

        store = self._open()
        return key_table(store), count_requests(store, minute, counted)

    async def refresh(self) -> None:
        """Re-read the key table and exchange the per-minute counts with the store; concurrent callers
        share one refresh."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._do_refresh())
        await asyncio.shield(self._refresh)

    async def _do_refresh(self) -> None:
        minute, counted = self._minute, self._counted
        self._counted = {}
        started = self.clock()  # the table read is at least this recent
        try:
            table, shared = await self._run(self._sync, minute, counted)
        except BaseException:
            if self._minute == minute:  # not sent: count them again next time
                for k, n in counted.items():
                    self._counted[k] = self._counted.get(k, 0) + n
            raise
        self._table, self._loaded_at = table, started
        if self._minute == minute:
            self._shared = shared

    def _refresh_soon(self) -> None:
        """Refresh in the background (the request goes on with the current table)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._do_refresh())
            self._refresh.add_done_callback(_log_failure)

    # ------------------------------------------------------------------ checking a request

    async def authorize(self, header: bytes | None, path: str) -> KeyRecord | Denial:
        """The key of the request's Authorization header, or why the request is refused. Costs no
        store round trip while the table is fresh (see the module docstring)."""
        key = bearer_key(header)
        if key is None:
            return _MISSING
        if not (key.startswith(_PREFIX) and len(key) <= MAX_KEY_BYTES):
            return _UNKNOWN  # not one of ours: no need to look it up
        digest = hash_key(key)
        now = self.clock()
        minute = int(now // 60)
        if minute > self._minute:  # a new minute (before any refresh, which exchanges this minute's counts)
            self._minute, self._shared, self._counted = minute, {}, {}
        age = now - self._loaded_at
        record = self._table.get(digest)
        if not 0 <= age < self.ttl_s or (record is None and age >= self.miss_refresh_s):
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 -- any store failure: refuse (503), never a 500
                log.warning("API keys: cannot read the key table (%s)", exc)
                return _STORE_DOWN
            record = self._table.get(digest)
        elif age >= self.refresh_s:
            self._refresh_soon()
        if record is None:
            return _UNKNOWN
        if record.revoked:
            return _REVOKED
        if record.rpm is not None:
            denial = self._count(record, now)
            if denial is not None:
                return denial
        if path == CHAT_PATH and record.max_usd is not None:
            return await self._check_budget(record)
        return record

    def _count(self, record: KeyRecord, now: float) -> Denial | None:
        """Count the request in this minute (`authorize` moved `_minute` to `now`'s), or refuse it."""
        minute = max(self._minute, int(now // 60))
        used = self._shared.get(record.id, 0) + self._counted.get(record.id, 0)
        assert record.rpm is not None
        if used >= record.rpm:
            wait = min(60, max(1, math.ceil((minute + 1) * 60 - now)))
            return Denial(429, f"this API key's limit of {record.rpm} requests per minute is reached; retry in "
                               f"{wait} s", "rate_limit_error", "rate_limit_exceeded", retry_after_s=wait)
        self._counted[record.id] = self._counted.get(record.id, 0) + 1
        return None

    async def _check_budget(self, record: KeyRecord) -> KeyRecord | Denial:
        from ..state.keys import spent_usd

        assert record.max_usd is not None
        spent = record.spent_usd
        if spent < record.max_usd:  # the table may be seconds old: ask the store, every replica's spend included
            try:
                spent = await self._run(lambda: spent_usd(self._open(), record.id))
            except Exception as exc:  # noqa: BLE001 -- any store failure: refuse (503), never a 500
                log.warning("API keys: cannot read key %s's spend (%s)", record.id, exc)
                return _STORE_DOWN
        if spent >= record.max_usd:
            return Denial(402, f"this API key's budget of ${record.max_usd:g} for chat completions is spent "
                               f"(${spent:.4f}); ask the operator for more", "insufficient_quota", "budget_exceeded")
        return record

    async def charge(self, key_id: str, usd: float) -> None:
        """Count a chat completion's cost against the key, in the store (atomically, for every replica)."""
        from ..state.keys import add_spend

        try:
            await self._run(lambda: add_spend(self._open(), key_id, usd))
        except Exception as exc:  # noqa: BLE001 -- the answer is sent already; say what was not counted
            log.warning("API keys: could not count $%.6f against key %s (%s)", usd, key_id, exc)


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("API keys: background refresh of the key table failed (%s)", fut.exception())


class AuthMiddleware:
    """ASGI middleware: refuse a request without a good key before its body is read (pure ASGI, a
    few microseconds per request; see benchmarks/bench_auth.py)."""

    def __init__(self, app: Any, auth: Auth, on_refused: Callable[[str], None] | None = None):
        self.app, self.auth, self.on_refused = app, auth, on_refused

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        verdict = await self.auth.authorize(header, scope["path"])
        if isinstance(verdict, Denial):
            if self.on_refused is not None:
                self.on_refused(verdict.code)
            await _refuse(send, verdict)
            return
        scope[SCOPE_KEY] = verdict
        await self.app(scope, receive, send)


async def _refuse(send: Any, d: Denial) -> None:
    body = json.dumps({"error": {"message": d.message, "type": d.kind, "param": None, "code": d.code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if d.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mixllm"'))
    if d.retry_after_s is not None:
        headers.append((b"retry-after", str(d.retry_after_s).encode()))
    await send({"type": "http.response.start", "status": d.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
