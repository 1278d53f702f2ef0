"""The waiting-time model: a FIFO queue with `slots` parallel servers per LLM. Pure, no I/O.

Service time of a call = time to first token + response tokens / output tokens per second.
Each LLM keeps, per slot, the time that slot becomes free (wall-clock seconds, or a simulated
clock in evaluation). A new query admitted to LLM l takes the slot that frees first and waits
`w_l = max(0, min_slot_free_l − now)`. Service times are known at admission from the length
head (routing) or the recorded response (evaluation); a completion reported earlier frees its
slot early (see `state`). Calls queued behind it keep their planned start: a conservative
simplification.

Observed latencies move the per-LLM estimates by exponentially weighted means (`update_estimate`);
they never touch the catalogue. A report is a claim by whoever holds the decision id, so one report
must not move an estimate far (the issue-16 attack: one `ttft_ms` of 1e308 made an LLM's learned
time to first token 2e307 ms, and it was never chosen again):

- each observation is clipped to [est / CLIP_FACTOR, est · CLIP_FACTOR] of the current estimate
  before it is averaged in, so one report moves ttft or tokens/s by a factor of at most
  1 + w·(CLIP_FACTOR − 1) = 1.4 up and 1 − w·(1 − 1/CLIP_FACTOR) ≈ 0.87 down (w = EWM_WEIGHT);
- a learned figure stays within BAND_FACTOR (10×) of the catalogue's, whatever the number of
  reports: 1,000 reports at the physical bound (`learning.feedback`) leave ttft at most 10× the
  catalogue's figure, and 25 ordinary reports bring it back within 10%. A genuine change inside the
  band is learned at the usual pace: all reports 3× slower are within 5% after 12 reports (a 3×
  step is inside the clip, so the mean moves as it always did). An LLM that really is more than 10×
  off its catalogue figures needs its catalogue entry fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EWM_WEIGHT = 0.2  # weight of a new observation: ~the last 10 calls dominate
MIN_GENERATION_S = 0.05  # below this, an observation cannot say anything about tokens/s
CLIP_FACTOR = 3.0  # an observation counts as at most 3x (at least 1/3x) the current estimate
BAND_FACTOR = 10.0  # a learned figure stays within 10x (1/10x) of the catalogue's


@dataclass(frozen=True)
class LatencyEstimate:
    ttft_ms: float
    output_tokens_per_s: float
    n: int = 0  # observations behind it (0: the catalogue's figures)


def service_time_s(est: LatencyEstimate, response_tokens: float | np.ndarray) -> float | np.ndarray:
    return est.ttft_ms / 1000.0 + np.asarray(response_tokens, dtype=np.float64) / est.output_tokens_per_s


def _clip(x: float, centre: float, factor: float) -> float:
    """`x` within [centre / factor, centre · factor] (NaN counts as the centre)."""
    if math.isnan(x):
        return centre
    return min(max(x, centre / factor), centre * factor)


def within_band(est: LatencyEstimate, prior: LatencyEstimate | None) -> LatencyEstimate:
    """`est` with each figure brought within BAND_FACTOR of the catalogue's (`prior`; None: as it is).
    Also heals an estimate stored before the band existed."""
    if prior is None:
        return est
    ttft = _clip(est.ttft_ms, prior.ttft_ms, BAND_FACTOR)
    tps = _clip(est.output_tokens_per_s, prior.output_tokens_per_s, BAND_FACTOR)
    if ttft == est.ttft_ms and tps == est.output_tokens_per_s:
        return est
    return LatencyEstimate(ttft_ms=ttft, output_tokens_per_s=tps, n=est.n)


def update_estimate(est: LatencyEstimate, latency_ms: float | None, ttft_ms: float | None,
                    response_tokens: float | None, prior: LatencyEstimate | None = None) -> LatencyEstimate:
    """Fold one observation into the estimate.

    A reported time to first token updates ttft directly. A total latency with a token count
    updates tokens/s by what is left after the (updated) ttft; a latency without tokens says
    nothing separable and only counts as an observation. Each observation is clipped to
    CLIP_FACTOR of the current estimate, and with `prior` (the catalogue's figures) the result
    stays within BAND_FACTOR of it (see the module docstring).
    """
    a = EWM_WEIGHT
    est = within_band(est, prior)
    ttft = est.ttft_ms
    if ttft_ms is not None:
        ttft = (1 - a) * est.ttft_ms + a * _clip(ttft_ms, est.ttft_ms, CLIP_FACTOR)
    tps = est.output_tokens_per_s
    if latency_ms is not None and response_tokens is not None and response_tokens > 0:
        gen_s = max((latency_ms - (ttft_ms if ttft_ms is not None else ttft)) / 1000.0, MIN_GENERATION_S)
        tps = (1 - a) * tps + a * _clip(response_tokens / gen_s, tps, CLIP_FACTOR)
    return within_band(LatencyEstimate(ttft_ms=ttft, output_tokens_per_s=tps, n=est.n + 1), prior)


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
