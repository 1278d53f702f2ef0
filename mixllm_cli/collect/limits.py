"""What keeps `mixllm collect` within bounds: the spend cap, the per-LLM pace, the retry delays.

Everything here runs on the event loop's thread (judge calls from grader threads are scheduled
onto it), so no locks are needed.
"""

from __future__ import annotations

import asyncio
import random
import time


def worst_case_usd(prompt_bytes: int, max_tokens: int, input_usd_per_mtok: float, output_usd_per_mtok: float) -> float:
    """The most a call can cost: its prompt can hold no more tokens than UTF-8 bytes, and its answer
    no more than max_tokens."""
    return (prompt_bytes * input_usd_per_mtok + max_tokens * output_usd_per_mtok) / 1e6


class SpendCap:
    """A hard cap on money spent: a call starts only once its worst case is reserved under the cap.

    `reserve` waits while calls in flight hold reservations that could still be released (their
    real cost is usually far below their worst case); it refuses, and stops every later call, once
    the call cannot fit even with nothing in flight. `settle` replaces a reservation with what the
    call really cost.
    """

    def __init__(self, cap_usd: float | None, spent_usd: float = 0.0) -> None:
        self.cap = cap_usd
        self.spent = spent_usd
        self.reserved = 0.0
        self.stopped = False
        self.refused_usd: float | None = None  # the worst case of the call the cap refused
        self._changed = asyncio.Event()

    async def reserve(self, usd: float) -> bool:
        if self.cap is None:
            self.reserved += usd
            return True
        while True:
            if self.stopped:
                return False
            if self.spent + self.reserved + usd <= self.cap:
                self.reserved += usd
                return True
            if self.spent + usd > self.cap:
                self.stopped = True
                self.refused_usd = usd
                self._wake()
                return False
            changed = self._changed
            await changed.wait()

    def settle(self, reserved_usd: float, spent_usd: float) -> None:
        self.reserved = max(self.reserved - reserved_usd, 0.0)
        self.spent += spent_usd
        self._wake()

    def stop(self) -> None:
        self.stopped = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class Pace:
    """One LLM's pace: at most `rpm` call starts a minute (evenly spaced), and a pause every call
    waits out after a Retry-After."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.next_start = 0.0
        self.paused_until = 0.0

    async def wait_turn(self) -> None:
        now = time.monotonic()
        start = max(now, self.paused_until)
        if self.interval:
            start = max(start, self.next_start)
            self.next_start = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)
        while time.monotonic() < self.paused_until:  # a Retry-After came in while we slept
            await asyncio.sleep(self.paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def backoff_s(attempt: int, base_s: float, retry_after_s: float | None, cap_s: float = 60.0) -> float:
    """Delay before retry number `attempt` (1, 2, ...): exponential with full jitter in [½, 1] of it,
    and never less than the endpoint's Retry-After."""
    delay = min(cap_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after_s or 0.0)
