"""The service behind the HTTP API: a thin client of the library, like the CLI, that adds concurrency.

- Routing requests are micro-batched: while one batch is encoded and admitted, the requests that
  arrive wait in a list, and the next batch takes them all (up to MAX_BATCH queries and
  SLICE_CHARS characters). A batch is encoded in one encoder call and admitted in one store
  transaction, in arrival order, so the encoder and the store's write lock are paid once per
  batch, not once per request, and a replica under load batches more, not less.
- Work per batch is bounded: a request bigger than one batch (at most MAX_ROUTE_CHARS characters
  in all, `limits`) is routed in slices of at most MAX_BATCH queries and SLICE_CHARS characters,
  each encoded and admitted on its own (one transaction per slice), and after each slice the
  requests waiting behind it go first (round robin), so a maximal batch delays a small request
  by one slice, not by the whole batch. Its decisions are those of its slices in order; the
  queries of one slice see the load the earlier slices left, as within a batch. If a later slice
  fails (the store went away), the earlier slices' decisions stay admitted and the request gets
  the error: their queue slots end when their predicted calls would have.
- A batch of at most ON_LOOP_CHARS characters (any ordinary request, and a full batch of short
  ones) is encoded and admitted on the event-loop thread itself. Routing is CPU-bound work and a
  replica has one of it at a time; handing a small batch to a worker thread costs two thread
  wake-ups and overlaps nothing, since the callers wait for the batch in progress (measured no
  faster, and slower with smaller alternating batches: docs/SERVE.md). The price: other requests
  (health, metrics, the relay of a streamed chat completion) wait for it, a few tens of
  milliseconds at most. A bigger slice is routed in the `route` thread (the tokenizer and
  onnxruntime let go of the GIL), so the loop keeps answering meanwhile; slices never overlap,
  so the router is used by one slice at a time either way.
- Other blocking work runs on single-thread executors, each with its own store connection:
  `feedback` (the log), `learn` (folding the log into the online snapshot, coalesced: one
  catch-up at a time, at most one a second), `read` (listing, health, metrics). A slow refit
  never delays routing.
- At start-up, the events logged but not yet folded into the online snapshot (a replica killed
  between committing feedback and its catch-up) are folded before the first request, so a
  restarted replica serves everything the log holds.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..errors import MixLLMError, UsageError
from ..routing.request import RouteRequest, default_tolerance
from ..routing.router import Decision, Router
from ..upstream import DEFAULT_COOLDOWN_S, DEFAULT_FALLBACKS
from .errors import ApiError, status_of
from .limits import MAX_ROUTE_CHARS
from .metrics import Metrics

if TYPE_CHECKING:
    import httpx

    from ..learning.feedback import Feedback, FeedbackResult
    from ..state.base import StoreBase

MAX_BATCH = 64  # queries per encoder call / store transaction
SLICE_CHARS = 32_000  # characters per encoder call / store transaction (one longer query is a slice of its own)
ON_LOOP_CHARS = 8_000  # a batch up to this size is routed on the event loop, a bigger one in the `route` thread
BATCH_WINDOW_S = 0.002  # after a batch of several, wait this long for the next one to gather
REFRESH_S = 1.0  # how often the route thread looks for a newer online snapshot
MAX_CLAIMS = 100_000  # routed decisions a replica remembers having answered (`Service.claim`)
LEARN_INTERVAL_S = 1.0  # the least time between two folds of the feedback log into the snapshot

T = TypeVar("T")
Timings = dict[str, float]  # seconds per routing phase: see `Service._route_batch`


@dataclass
class _Pending:
    """A request's queries, and (for one routed in slices) the decisions and seconds of its slices so far."""

    requests: list[RouteRequest]
    future: asyncio.Future[tuple[list[Decision], Timings]]
    routed: list[Decision] = field(default_factory=list)
    timings: Timings = field(default_factory=dict)


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
        self._claimed: dict[str, None] = {}  # routed decisions being answered or answered (insertion order)
        self.router = self._load_router(catalogue)
        self.router.predict(["warm up"])  # load the encoder now, not on the first request
        self._stores: dict[str, StoreBase] = {}
        self._exec = {name: ThreadPoolExecutor(1, thread_name_prefix=f"mixllm-{name}")
                      for name in ("route", "feedback", "learn", "read")}
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
        if not self._caught_up:
            self.schedule_learning()  # another replica was folding the log: fold what it leaves

    def _load_router(self, catalogue: Path | str | None) -> Router:
        """The router, loaded through a store opened for the purpose; also reads what the store is."""
        from ..state import open_store

        probe = open_store(self.home, self.store_url)
        try:
            probe.stats()  # fail now (one `Error:` line) if the store is unreachable or corrupt
            router = Router.load(self.home, catalogue, store=probe)
            self._caught_up = self._catch_up(router, probe)
            self.store_name = probe.describe()
            self.shares_snapshot = probe.shares_snapshot
            self._online_key = probe.snapshot_seq() if self.shares_snapshot else self._file_key()
        finally:
            probe.close()
        return router

    def _catch_up(self, router: Router, store: StoreBase) -> bool:
        """Fold the events the log holds and the snapshot lacks (committed just before a crash) and
        serve the result; False when another replica is folding the log right now."""
        from ..learning.online import load_snapshot
        from ..learning.updates import catch_up

        with store.learning() as mine:
            if not mine:
                return False
            done = catch_up(self.home, router.offline_artifacts, store)
            if done["applied"] or done["refitted"] or done["cold_fitted"]:
                model = load_snapshot(self.home, router.offline_artifacts, store)
                if model is not None:
                    router.use_online(model)
        return True

    # -------------------------------------------------------------- threads and stores

    def store(self, name: str) -> StoreBase:
        """The store of executor `name` (or `loop`, the event loop's), opened in the thread that uses it
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
        self._close_store("loop")
        for name, ex in self._exec.items():
            with contextlib.suppress(Exception):
                ex.submit(self._close_store, name).result(timeout=5)  # in the thread that opened it
            ex.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------- routing

    async def route(self, requests: list[RouteRequest]) -> tuple[list[Decision], Timings]:
        """The decisions for `requests` (checked already: see `check`), and the seconds their batches spent
        in each phase (see `_route_batch`). More than MAX_ROUTE_CHARS characters in all: a 413, and
        nothing is routed."""
        chars = sum(len(r.query) for r in requests)
        if chars > MAX_ROUTE_CHARS:
            raise ApiError(413, f"the queries hold {chars:,} characters in all; one request may hold at most "
                                f"{MAX_ROUTE_CHARS:,}: send them in several requests", "request_too_large",
                           param="queries")
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
            if self._last_batch > 1 and sum(len(p.requests) - len(p.routed) for p in self._pending) < MAX_BATCH:
                # Under concurrent load the callers of the last batch are sending their next
                # requests right now: a moment's wait makes the next batch full instead of 1.
                await asyncio.sleep(BATCH_WINDOW_S)
            wholes, batch, chars = self._next_batch()
            try:
                if chars <= ON_LOOP_CHARS:
                    results = self._route_batch(batch)  # on this thread: see the module docstring
                else:
                    results = await self.run("route", self._route_batch, batch, "route")
            except Exception as exc:  # noqa: BLE001 -- passed on: every request of the batch gets it
                for p in wholes:
                    if p in self._pending:
                        self._pending.remove(p)  # the rest of a request routed in slices
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, decided in zip(wholes, results[0]):
                p.routed.extend(decided)
                for phase, seconds in results[1].items():
                    p.timings[phase] = p.timings.get(phase, 0.0) + seconds
                if len(p.routed) < len(p.requests):  # a slice: the rest goes behind what came meanwhile
                    self._pending.remove(p)
                    self._pending.append(p)
                elif not p.future.done():
                    p.future.set_result((p.routed, p.timings))
            self._last_batch = sum(len(p.requests) for p in batch)
            if self._pending:
                await asyncio.sleep(0)  # what waits on the loop (health, replies) runs between batches

    def _next_batch(self) -> tuple[list[_Pending], list[_Pending], int]:
        """The requests the next batch routes, the part of each it routes, and its characters.

        Whole requests in arrival order while they fit in MAX_BATCH queries and SLICE_CHARS
        characters. A first request that does not fit gives the batch its next slice (as many of
        its queries as fit, at least one); it stays queued, and `_drain` puts it behind the
        requests that arrived meanwhile (round robin)."""
        wholes: list[_Pending] = []
        batch: list[_Pending] = []
        size = chars = 0
        while self._pending:
            p = self._pending[0]
            rest = p.requests[len(p.routed):]
            rest_chars = sum(len(r.query) for r in rest)
            if size + len(rest) <= MAX_BATCH and chars + rest_chars <= SLICE_CHARS:
                self._pending.pop(0)
                wholes.append(p)
                batch.append(_Pending(rest, p.future))
                size, chars = size + len(rest), chars + rest_chars
                continue
            if wholes:
                break  # it leads the next batch
            take = taken_chars = 0
            while take < min(len(rest), MAX_BATCH) and (take == 0 or taken_chars + len(rest[take].query) <= SLICE_CHARS):
                taken_chars += len(rest[take].query)
                take += 1
            return [p], [_Pending(rest[:take], p.future)], taken_chars
        return wholes, batch, chars

    def _route_batch(self, batch: list[_Pending], store: str = "loop") -> tuple[list[list[Decision]], Timings]:
        """One `Router.route_batch` call for every request of the batch (one encoder call, one store
        transaction per waiting policy), with the store of the thread it runs on (`loop`, or the `route`
        executor's). Returns each request's decisions and the batch's seconds in "encode" (tokenizer and
        model), "predict" (heads, uncertainty) and "decide" (queue, scores, the store's write)."""
        self._maybe_refresh_online(store=store)
        timings: Timings = {}
        requests = [r for p in batch for r in p.requests]
        decided = iter(self.router.route_batch(requests, state=self.store(store), log_queries=self.log_queries,
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

    def _maybe_refresh_online(self, force: bool = False, store: str = "loop") -> None:
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_S:
            return
        self._checked = now
        state = self.store(store)
        key = state.snapshot_seq() if self.shares_snapshot else self._file_key()
        if key == self._online_key:
            return
        from ..learning.online import load_snapshot

        model = load_snapshot(self.home, self.router.offline_artifacts, state)
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

    def claim(self, decision_id: str) -> bool:
        """Take a routed decision for answering (`proxy.routed_decision`); False if this replica took it
        already. The store tells once the call has ended; this covers the time until then (two clicks
        on the same answer). Bounded: the oldest claims are long ended, and the store says so."""
        if decision_id in self._claimed:
            return False
        self._claimed[decision_id] = None
        if len(self._claimed) > MAX_CLAIMS:
            del self._claimed[next(iter(self._claimed))]
        return True

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
