"""The waiting-time model: a FIFO queue with `slots` parallel servers per LLM. Pure, no I/O.

Service time of a call = time to first token + response tokens / output tokens per second.
Each LLM keeps, per slot, the time that slot becomes free (wall-clock seconds, or a simulated
clock in evaluation). A new query admitted to LLM l takes the slot that frees first and waits
`w_l = max(0, min_slot_free_l − now)`. Service times are known at admission from the length
head (routing) or the recorded response (evaluation); a completion reported earlier frees its
slot early (see `state`). Calls queued behind it keep their planned start: a conservative
simplification.

Observed latencies move the per-LLM estimates by exponentially weighted means (`update_estimate`);
they never touch the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EWM_WEIGHT = 0.2  # weight of a new observation: ~the last 10 calls dominate
MIN_GENERATION_S = 0.05  # below this, an observation cannot say anything about tokens/s


@dataclass(frozen=True)
class LatencyEstimate:
    ttft_ms: float
    output_tokens_per_s: float
    n: int = 0  # observations behind it (0: the catalogue's figures)


def service_time_s(est: LatencyEstimate, response_tokens: float | np.ndarray) -> float | np.ndarray:
    return est.ttft_ms / 1000.0 + np.asarray(response_tokens, dtype=np.float64) / est.output_tokens_per_s


def update_estimate(est: LatencyEstimate, latency_ms: float | None, ttft_ms: float | None,
                    response_tokens: float | None) -> LatencyEstimate:
    """Fold one observation into the estimate.

    A reported time to first token updates ttft directly. A total latency with a token count
    updates tokens/s by what is left after the (updated) ttft; a latency without tokens says
    nothing separable and only counts as an observation.
    """
    a = EWM_WEIGHT
    ttft = est.ttft_ms if ttft_ms is None else (1 - a) * est.ttft_ms + a * ttft_ms
    tps = est.output_tokens_per_s
    if latency_ms is not None and response_tokens is not None and response_tokens > 0:
        gen_s = max((latency_ms - (ttft_ms if ttft_ms is not None else ttft)) / 1000.0, MIN_GENERATION_S)
        tps = (1 - a) * tps + a * (response_tokens / gen_s)
    return LatencyEstimate(ttft_ms=ttft, output_tokens_per_s=tps, n=est.n + 1)


@dataclass
class QueueState:
    """When each slot of each LLM becomes free: `free_at[j]` is an array of length slots_j."""

    llm_ids: tuple[str, ...]
    free_at: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def empty(cls, llm_ids: tuple[str, ...], slots: list[int], now: float = 0.0) -> QueueState:
        return cls(llm_ids, [np.full(max(int(k), 1), now, dtype=np.float64) for k in slots])

    def waits(self, now: float) -> np.ndarray:
        """Seconds a query arriving at `now` would wait before each LLM starts it."""
        return np.array([max(0.0, float(f.min()) - now) for f in self.free_at])

    def admit(self, j: int, now: float, service_s: float) -> tuple[int, float, float]:
        """Put a call on LLM j's first free slot; returns (slot, start, end)."""
        f = self.free_at[j]
        slot = int(f.argmin())
        start = max(now, float(f[slot]))
        end = start + float(service_s)
        f[slot] = end
        return slot, start, end

    def depth(self, now: float) -> np.ndarray:
        """Busy slots per LLM at `now` (for reports)."""
        return np.array([int((f > now).sum()) for f in self.free_at])


def within_tolerance(waits: np.ndarray, tolerance_s: float) -> np.ndarray:
    """The hard rule's mask: LLMs whose wait meets the tolerance, or all if none does."""
    ok = np.asarray(waits) <= tolerance_s
    return ok if ok.any() else np.ones_like(ok)
