"""The service behind the HTTP API: a thin client of the library, like the CLI, that adds concurrency.

- Routing requests are micro-batched: while one batch is encoded and admitted, the requests that
  arrive wait in a list, and the next batch takes them all (up to MAX_BATCH queries). A batch is
  encoded in one encoder call and admitted in one store transaction, in arrival order, so the
  encoder and the store's write lock are paid once per batch, not once per request, and a
  replica under load batches more, not less.
- A batch is encoded and admitted on the event-loop thread itself. Routing is CPU-bound work
  and a replica has one of it at a time; handing it to a worker thread costs two thread wake-ups
  per batch and overlaps nothing, since the callers wait for the batch in progress (measured no
  faster, and slower with smaller alternating batches: docs/SERVE.md). The price: other requests
  (health, metrics, the relay of a streamed chat completion) wait for the batch in progress, tens
  of milliseconds; scale with replicas.
- Other blocking work runs on single-thread executors, each with its own store connection:
  `feedback` (the log), `learn` (folding the log into the online snapshot, coalesced: one
  catch-up at a time, at most one a second), `read` (listing, health, metrics). A slow refit
  never delays routing.
- The online state is re-read by the routing code at most every REFRESH_S seconds when the
  snapshot changed (the file's mtime with SQLite, `online_snapshot.last_seq` with PostgreSQL), so
  feedback given to any replica reaches every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..errors import MixLLMError, UsageError
from ..routing.request import RouteRequest, default_tolerance
from ..routing.router import Decision, Router
from ..upstream import DEFAULT_COOLDOWN_S, DEFAULT_FALLBACKS
from .errors import ApiError, status_of
from .metrics import Metrics

if TYPE_CHECKING:
    import httpx

    from ..learning.feedback import Feedback, FeedbackResult
    from ..state.base import StoreBase

MAX_BATCH = 64  # queries per encoder call / store transaction
BATCH_WINDOW_S = 0.002  # after a batch of several, wait this long for the next one to gather
REFRESH_S = 1.0  # how often the route thread looks for a newer online snapshot
LEARN_INTERVAL_S = 1.0  # the least time between two folds of the feedback log into the snapshot

T = TypeVar("T")
Timings = dict[str, float]  # seconds per routing phase: see `Service._route_batch`


@dataclass
class _Pending:
    requests: list[RouteRequest]
    future: asyncio.Future[tuple[list[Decision], Timings]]


class Service:
    """The router, its stores and executors, and the micro-batching queue; the app calls into it."""

    def __init__(self, home: Path | str | None = None, catalogue: Path | str | None = None,
                 store_url: str | None = None, *, log_queries: bool = False, fallbacks: int = DEFAULT_FALLBACKS,
                 cooldown_s: float = DEFAULT_COOLDOWN_S):
        import os

        from ..core.encoder import SPIN_ENV
        from ..paths import home_dir

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
        default_tolerance()  # a bad $MIXLLM_MAX_WAIT_S is the operator's error: refuse to start, not every request
        self._cooling: dict[str, float] = {}  # LLM id → monotonic time its chat-completion cooldown ends
        self.router = self._load_router(catalogue)
        self.router.predict(["warm up"])  # load the encoder now, not on the first request
        self._stores: dict[str, StoreBase] = {}
        self._exec = {name: ThreadPoolExecutor(1, thread_name_prefix=f"mixllm-{name}")
                      for name in ("feedback", "learn", "read")}
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None
        self._last_batch = 0
        self._learn_queued = False
        self._learned_at = 0.0
        self._checked = time.monotonic()
        self._upstream_mask = np.array([self.router.catalogue.get(i).base_url is not None
                                        for i in self.router.llm_ids])
        self.metrics = Metrics(self)
        self.http: httpx.AsyncClient | None = None  # opened by the app's lifespan

    def _load_router(self, catalogue: Path | str | None) -> Router:
        """The router, loaded through a store opened for the purpose; also reads what the store is."""
        from ..state import open_store

        probe = open_store(self.home, self.store_url)
        try:
            probe.stats()  # fail now (one `Error:` line) if the store is unreachable or corrupt
            router = Router.load(self.home, catalogue, store=probe)
            self.store_name = probe.describe()
            self.shares_snapshot = probe.shares_snapshot
            self._online_key = probe.snapshot_seq() if self.shares_snapshot else self._file_key()
        finally:
            probe.close()
        return router

    # -------------------------------------------------------------- threads and stores

    def store(self, name: str) -> StoreBase:
        """The store of executor `name` (or `route`, the event loop's), opened in the thread that uses it
        (SQLite connections stay in their thread)."""
        if name not in self._stores:
            from ..state import open_store

            self._stores[name] = open_store(self.home, self.store_url)
        return self._stores[name]

    async def run(self, name: str, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._exec[name], fn, *args)

    def _close_store(self, name: str) -> None:
        store = self._stores.pop(name, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        self._close_store("route")
        for name, ex in self._exec.items():
            with contextlib.suppress(Exception):
                ex.submit(self._close_store, name).result(timeout=5)  # in the thread that opened it
            ex.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------- routing

    async def route(self, requests: list[RouteRequest]) -> tuple[list[Decision], Timings]:
        """The decisions for `requests` (checked already: see `check`), and the seconds their batch spent
        in each phase (see `_route_batch`)."""
        fut: asyncio.Future[tuple[list[Decision], Timings]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(requests, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await fut

    def check(self, request: RouteRequest, where: str = "") -> RouteRequest:
        """Refuse a bad request before it joins a batch (one caller's mistake must not fail the others')."""
        try:
            self.router.resolve(request)
        except MixLLMError as exc:
            raise ApiError(status_of(exc), f"{where}{exc}", param=f"{where}{exc.param or 'query'}") from None
        return request

    def check_budget(self, budget: str | None, lam: float | None) -> None:
        """Refuse a body-wide budget or λ that no query could use."""
        try:
            self.router.resolve_budget(budget, lam)
        except MixLLMError as exc:
            raise ApiError(status_of(exc), str(exc), param=exc.param) from None

    async def _drain(self) -> None:
        while self._pending:
            if self._last_batch > 1 and sum(len(p.requests) for p in self._pending) < MAX_BATCH:
                # Under concurrent load the callers of the last batch are sending their next
                # requests right now: a moment's wait makes the next batch full instead of 1.
                await asyncio.sleep(BATCH_WINDOW_S)
            batch: list[_Pending] = []
            size = 0
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

    def _route_batch(self, batch: list[_Pending]) -> tuple[list[list[Decision]], Timings]:
        """One `Router.route_batch` call for every request of the batch (one encoder call, one store
        transaction per waiting policy). Returns each request's decisions and the batch's seconds in
        "encode" (tokenizer and model), "predict" (heads, uncertainty) and "decide" (queue, scores, the
        store's write)."""
        self._maybe_refresh_online()
        timings: Timings = {}
        requests = [r for p in batch for r in p.requests]
        decided = iter(self.router.route_batch(requests, state=self.store("route"), log_queries=self.log_queries,
                                               timings=timings))
        out = [[next(decided) for _ in p.requests] for p in batch]
        for p in out:
            for d in p:
                self.metrics.routed(d.choice)
        self.metrics.batch(len(requests))
        return out, timings

    def _file_key(self) -> int | None:
        from ..learning.online import SNAPSHOT

        path = self.home / SNAPSHOT
        return path.stat().st_mtime_ns if path.is_file() else None

    def _maybe_refresh_online(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_S:
            return
        self._checked = now
        store = self.store("route")
        key = store.snapshot_seq() if self.shares_snapshot else self._file_key()
        if key == self._online_key:
            return
        from ..learning.online import load_snapshot

        model = load_snapshot(self.home, self.router.offline_artifacts, store)
        if model is not None:
            self.router.use_online(model)
        self._online_key = key

    # -------------------------------------------------------------- chat-completion targets

    @property
    def forwards_chat(self) -> bool:
        """Whether any LLM of the catalogue has an endpoint to forward chat completions to."""
        return bool(self._upstream_mask.any())

    def offered(self, upstream_only: bool, exclude: frozenset[str] = frozenset()) -> np.ndarray:
        """Which LLMs (bool per `router.llm_ids`) a request may be routed to."""
        mask = self._upstream_mask.copy() if upstream_only else np.ones(len(self.router.llm_ids), dtype=bool)
        offered: np.ndarray = mask & self.router.offered(exclude)
        return offered

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

    # -------------------------------------------------------------- feedback

    def _record(self, items: list[tuple[str, Feedback | MixLLMError]]) -> list[FeedbackResult]:
        from ..learning.feedback import record_feedback

        results = record_feedback(self.router, self.store("feedback"), items, self.home, apply=False)
        for r in results:
            self.metrics.feedback(r.status)
        return results

    async def record(self, items: list[tuple[str, Feedback | MixLLMError]]) -> list[FeedbackResult]:
        results = await self.run("feedback", self._record, items)
        if any(r.status == "recorded" for r in results):
            self.schedule_learning()
        return results

    def schedule_learning(self) -> None:
        """Fold the log into the online snapshot in the background; at most one catch-up queued."""
        if self._learn_queued:
            return
        self._learn_queued = True
        self._exec["learn"].submit(self._learn)

    def _learn(self) -> None:
        from ..learning.updates import catch_up

        # At most one pass per LEARN_INTERVAL_S: under load, feedback folds in micro-batches
        # instead of re-reading and re-writing the snapshot for every event.
        time.sleep(max(0.0, self._learned_at + LEARN_INTERVAL_S - time.monotonic()))
        self._learn_queued = False  # feedback arriving from now on needs another pass
        self._learned_at = time.monotonic()
        store = self.store("learn")
        with store.learning() as mine:
            if mine:
                catch_up(self.home, self.router.offline_artifacts, store)
        if not mine:  # another replica is folding the log; make sure this one's events get in
            self.schedule_learning()

    def complete_failed(self, decision_id: str) -> None:
        """Free the slot of a call that failed upstream (no latency: it must not teach the model)."""
        self.store("feedback").complete(decision_id)
