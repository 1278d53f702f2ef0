"""Cost–quality frontiers of routing policies: the non-decreasing convex hull, AIQ and read-outs.

Pure numpy, no I/O. A policy swept over its parameter (λ, a threshold) gives points
(cost_share, quality_share): its total cost and total quality on a split as shares of the best
single LLM's total cost and quality (0.2, 0.97 = 97 % of its quality for 20 % of its cost).

The hull (RouterBench, Hu et al. 2024, §4 and `evaluation/AIQ.py`): two policies can be mixed
query by query at random, so every point on a segment between two reachable points is reachable
in expectation, and paying more than the best point's cost is never needed. Exactly:

1. Drop non-finite points; among points of equal cost keep the highest quality.
2. The upper convex (concave) hull of the points, by Andrew's monotone chain on points sorted by
   cost: a point is dropped when it lies on or below the segment joining its neighbours.
3. Cut the hull after its first vertex of maximal quality; to the right of that vertex the curve
   stays flat at that quality (a concave hull rises to its peak and falls after it; the falling
   part is dominated by the peak).

The resulting curve h(c) is defined from the cheapest point's cost c₀ on: linear between hull
vertices, flat after the last one. Below c₀ nothing is reachable.

AIQ convention (RouterBench's `calc_AIQ`: the trapezoid area from the cheapest hull point to the
largest cost, hull extended flat to the right, divided by the largest cost, i.e. the width of
[0, max cost]): over a stated range [c_min, c_max],

    AIQ = (1 / (c_max − c_min)) · ∫_{c_min}^{c_max} h̃(c) dc,   h̃(c) = 0 for c < c₀, h(c) otherwise,

so AIQ is the average quality share over the range and a policy that cannot be run as cheaply
as c_min pays for the part it cannot reach. RouterBench normalises by each comparison's largest
cost; a fixed range (default [0, 1], up to the best LLM's cost) makes numbers comparable across
runs.

For one point (a single LLM at cost share c₀ and quality share q) this is q·(c_max − c₀)/(c_max − c_min):
defined while c₀ < c_max. A policy whose cheapest point costs c_max or more (the reference LLM
itself, any dearer LLM) reaches no part of the range: `aiq` returns 0 by the formula, and a
`Curve` says `in_range` False, which its JSON writes as `"aiq": null` and tables as "—".

Sampling λ (`refine_lambdas`): a log-spaced grid of λ can step over the λ where many queries change
LLM, leaving a long hull segment under points a router actually reaches (its presets). The grid is
refined by bisecting, in log λ, each pair of neighbours whose points lie far apart.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

DEFAULT_SHARES = (0.10, 0.15, 0.20, 0.25, 0.50)
DEFAULT_TARGETS = (0.90, 0.95, 1.00)
DEFAULT_COST_RANGE = (0.0, 1.0)
# Quality shares this close to a target count as reaching it (sums of 0/1 outcomes divided by a total).
REACH_TOLERANCE = 1e-9
# refine_lambdas: neighbouring points farther apart than this (in cost or quality share) are bisected,
# at most REFINE_MAX_NEW extra λ per sweep, never closer than REFINE_MIN_LOG_STEP in log10 λ (closer
# than that a jump is a tie of many queries, which no λ in between would split).
REFINE_MAX_GAP = 0.01
REFINE_MAX_NEW = 100
REFINE_MIN_LOG_STEP = 1e-3


def lambda_grid(n: int = 50, lo: float = 1e-6, hi: float = 1e6) -> np.ndarray:
    """`n` willingness-to-pay values λ, log-spaced from `lo` to `hi` inclusive."""
    if n < 1 or not (0 < lo <= hi) or not np.isfinite(hi):
        raise DataError(f"lambda grid: need n >= 1 and 0 < lo <= hi < inf (got n={n}, lo={lo}, hi={hi})")
    return np.logspace(np.log10(lo), np.log10(hi), n)


def _between(lo: float, hi: float) -> float:
    """The λ halfway between two in log space (arithmetic from 0)."""
    return float(np.sqrt(lo * hi)) if lo > 0 else hi / 2.0


def refine_lambdas(lams: Sequence[float], point: Callable[[float], tuple[float, float]], *,
                   max_gap: float = REFINE_MAX_GAP, max_new: int = REFINE_MAX_NEW,
                   min_log_step: float = REFINE_MIN_LOG_STEP) -> tuple[np.ndarray, np.ndarray]:
    """λ values, sorted, and their (cost_share, quality_share) points, refined where the curve needs it.

    `point(λ)` evaluates one λ. Starting from `lams` (finite, >= 0; duplicates merged), the widest
    gap between neighbouring points (the larger of their cost-share and quality-share differences)
    is split at the λ halfway between in log space, until no gap exceeds `max_gap`, `max_new` λ were
    added, or the only wide gaps lie between λ closer than `min_log_step` (log10).
    """
    grid = sorted({float(v) for v in lams})
    if not grid or not all(np.isfinite(v) and v >= 0 for v in grid):
        raise DataError(f"refine_lambdas: need finite λ >= 0 (got {list(lams)[:5]}...)")
    if max_gap <= 0 or max_new < 0:
        raise DataError(f"refine_lambdas: need max_gap > 0 and max_new >= 0 (got {max_gap}, {max_new})")
    pts = {v: tuple(float(x) for x in point(v)) for v in grid}

    def push(heap: list[tuple[float, float, float]], lo: float, hi: float) -> None:
        gap = max(abs(pts[hi][0] - pts[lo][0]), abs(pts[hi][1] - pts[lo][1]))
        narrow = lo > 0 and np.log10(hi / lo) < min_log_step
        if gap > max_gap and not narrow:
            heapq.heappush(heap, (-gap, lo, hi))

    heap: list[tuple[float, float, float]] = []
    for lo, hi in itertools.pairwise(grid):
        push(heap, lo, hi)
    added = 0
    while heap and added < max_new:
        _, lo, hi = heapq.heappop(heap)
        mid = _between(lo, hi)
        if not lo < mid < hi:
            continue
        pts[mid] = tuple(float(x) for x in point(mid))
        added += 1
        push(heap, lo, mid)
        push(heap, mid, hi)
    order = sorted(pts)
    return np.array(order, dtype=np.float64), np.array([pts[v] for v in order], dtype=np.float64).reshape(-1, 2)


def _as_points(points: ArrayLike) -> np.ndarray:
    """The finite (cost, quality) rows of `points` as a float array of shape (k, 2); DataError if none."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(f"frontier: points must be (cost_share, quality_share) pairs (got shape {pts.shape})")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise DataError("frontier: no finite (cost_share, quality_share) point")
    return pts


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """z of (a − o) × (b − o): > 0 when o → a → b turns left (counter-clockwise)."""
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def nondecreasing_hull(points: ArrayLike) -> np.ndarray:
    """The vertices (k, 2), sorted by cost, of the non-decreasing upper convex hull (module docstring)."""
    pts = _as_points(points)
    order = np.lexsort((-pts[:, 1], pts[:, 0]))  # by cost, then highest quality first
    pts = pts[order]
    first = np.ones(len(pts), dtype=bool)
    first[1:] = pts[1:, 0] != pts[:-1, 0]
    pts = pts[first]  # one point per cost: the best
    hull: list[np.ndarray] = []
    for p in pts:
        # Upper hull walking right: the last vertex must make a strict right turn (clockwise).
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    out = np.array(hull)
    peak = int(np.argmax(out[:, 1]))  # the first vertex of maximal quality
    return out[: peak + 1]


def _value(hull: np.ndarray, c: np.ndarray) -> np.ndarray:
    """h(c) on the hull: linear between vertices, flat right of the last; NaN left of the first."""
    v = np.interp(c, hull[:, 0], hull[:, 1])
    return np.where(c < hull[0, 0], np.nan, v)


def aiq(points: ArrayLike, cost_range: tuple[float, float] = DEFAULT_COST_RANGE) -> float:
    """Average quality share of the hull over `cost_range`, counting 0 below the cheapest point."""
    c_min, c_max = (float(v) for v in cost_range)
    if not (np.isfinite(c_min) and np.isfinite(c_max) and c_max > c_min):
        raise DataError(f"AIQ: cost range must be finite with c_max > c_min (got {cost_range})")
    hull = nondecreasing_hull(points)
    lo = max(c_min, float(hull[0, 0]))
    if lo >= c_max:
        return 0.0
    inner = hull[(hull[:, 0] > lo) & (hull[:, 0] < c_max), 0]
    xs = np.concatenate([[lo], inner, [c_max]])
    ys = _value(hull, xs)
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    return area / (c_max - c_min)


def quality_at_cost(points: ArrayLike, shares: Sequence[float] = DEFAULT_SHARES) -> dict[float, float | None]:
    """h(s) for each cost share s: the best quality share a mix of the swept policies reaches at cost s.

    None where s is below the cheapest point's cost (nothing that cheap was observed).
    """
    hull = nondecreasing_hull(points)
    vals = _value(hull, np.asarray(shares, dtype=np.float64))
    return {float(s): (None if np.isnan(v) else float(v)) for s, v in zip(shares, vals)}


def cost_to_reach(points: ArrayLike, targets: Sequence[float] = DEFAULT_TARGETS) -> dict[float, float | None]:
    """The least cost share c with h(c) ≥ t for each quality target t; None if the hull never reaches t.

    A target at or below the cheapest point's quality costs that point's cost; otherwise it is
    found on the rising segment of the hull that crosses it (h is increasing up to its peak).
    A quality within 1e-9 of the target counts as reaching it.
    """
    hull = nondecreasing_hull(points)
    out: dict[float, float | None] = {}
    for t in targets:
        t = float(t)
        reach = hull[:, 1] >= t - REACH_TOLERANCE
        if not reach.any():
            out[t] = None
            continue
        k = int(np.argmax(reach))
        if k == 0:
            out[t] = float(hull[0, 0])
            continue
        (c0, q0), (c1, q1) = hull[k - 1], hull[k]
        out[t] = float(min(c1, c0 + (c1 - c0) * (t - q0) / (q1 - q0)))
    return out


@dataclass(frozen=True)
class Curve:
    """One policy's frontier: its swept points, their hull and the numbers read off the hull."""

    name: str
    points: np.ndarray  # (k, 2) cost share, quality share as swept
    hull: np.ndarray  # (h, 2) vertices of the non-decreasing convex hull
    aiq: float  # 0 when not in_range (module docstring)
    cost_range: tuple[float, float]
    quality_at: dict[float, float | None]
    cost_to: dict[float, float | None]

    @property
    def in_range(self) -> bool:
        """Whether the policy reaches part of the AIQ range: its cheapest point costs less than its top."""
        return bool(self.hull[0, 0] < self.cost_range[1])

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 6)

        return {
            "name": self.name,
            "aiq": round(self.aiq, 6) if self.in_range else None,
            "aiq_cost_range": list(self.cost_range),
            "quality_share_at_cost_share": {f"{k:g}": r(v) for k, v in self.quality_at.items()},
            "cost_share_to_reach_quality_share": {f"{k:g}": r(v) for k, v in self.cost_to.items()},
            "points": [[round(float(c), 6), round(float(q), 6)] for c, q in self.points],
            "hull": [[round(float(c), 6), round(float(q), 6)] for c, q in self.hull],
        }


def curve(name: str, points: ArrayLike, cost_range: tuple[float, float] = DEFAULT_COST_RANGE,
          shares: Sequence[float] = DEFAULT_SHARES, targets: Sequence[float] = DEFAULT_TARGETS) -> Curve:
    """Build the `Curve` of `points`: hull, AIQ over `cost_range`, quality at `shares`, cost to `targets`."""
    pts = _as_points(points)
    return Curve(
        name=name,
        points=pts,
        hull=nondecreasing_hull(pts),
        aiq=aiq(pts, cost_range),
        cost_range=(float(cost_range[0]), float(cost_range[1])),
        quality_at=quality_at_cost(pts, shares),
        cost_to=cost_to_reach(pts, targets),
    )
