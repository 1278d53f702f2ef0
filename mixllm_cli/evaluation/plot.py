"""`evaluate --sweep --plot out.png`: every policy's hull, the single LLMs as points, the presets.

A person reads it at a glance: the title names the split and the reference LLM (the point (1, 1));
the legend sits outside the axes, so it hides no point; labels of points (presets, single LLMs)
are placed by `place_labels` so that none covers another label or any point, with a thin leader
line when a label had to move away from its point (the low-cost end is crowded).

matplotlib is an optional extra (`pip install 'mixllm[plot]'`); it is imported only here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (pixels, y up)

# Label offsets tried around a point, nearest first (points, 1/72 inch), and directions (degrees,
# right first: the curves rise to the right, so the space right of and below a point is often free).
RADII_PT = (5, 9, 14, 21, 30, 42, 56, 74, 96, 124)
ANGLES_DEG = (0, -30, 30, -60, 60, -90, 90, -120, 120, -150, 150, 180)
MARKER_PAD_PX = 2.0


@dataclass(frozen=True)
class Placement:
    """Where a label goes: its box, its offset from its point and the text alignment that gives it."""

    box: Box
    dx: float  # pixels from the point to the text's anchor
    dy: float
    ha: str
    va: str
    clear: bool  # False when no candidate was free of overlaps (the least overlapping one is used)


def _overlap(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Box, bounds: Box) -> float:
    """How much of `box` lies outside `bounds` (area)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - _overlap(box, bounds)


def _candidate(x: float, y: float, w: float, h: float, r: float, angle: float) -> Placement:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    dx, dy = r * c, r * s
    ox, oy = x + dx, y + dy
    if c > 0.2:
        x0, ha = ox, "left"
    elif c < -0.2:
        x0, ha = ox - w, "right"
    else:
        x0, ha = ox - w / 2, "center"
    if s > 0.2:
        y0, va = oy, "bottom"
    elif s < -0.2:
        y0, va = oy - h, "top"
    else:
        y0, va = oy - h / 2, "center"
    return Placement((x0, y0, x0 + w, y0 + h), dx, dy, ha, va, True)


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 obstacles: Sequence[Box], bounds: Box, px_per_pt: float = 1.0) -> list[Placement]:
    """A box for each label (in order: earlier labels get the nearer spots) that overlaps no
    obstacle (the plotted points), no label placed before it, and stays inside `bounds`.

    `anchors` are the labelled points and `sizes` the labels' (width, height), in pixels. Each
    label tries offsets of RADII_PT (times `px_per_pt`) in the directions ANGLES_DEG, nearest first;
    when none is free, the one with the least overlap is used and marked `clear=False`.
    """
    placed: list[Box] = []
    out: list[Placement] = []
    for (x, y), (w, h) in zip(anchors, sizes):
        best: tuple[float, Placement] | None = None
        for r in RADII_PT:
            for angle in ANGLES_DEG:
                cand = _candidate(x, y, w, h, r * px_per_pt, angle)
                bad = (sum(_overlap(cand.box, o) for o in obstacles) + sum(_overlap(cand.box, p) for p in placed)
                       + _outside(cand.box, bounds))
                if bad == 0:
                    best = (0.0, cand)
                    break
                score = bad + r * px_per_pt  # a nearer spot with a little overlap beats a far one
                if best is None or score < best[0]:
                    best = (score, Placement(cand.box, cand.dx, cand.dy, cand.ha, cand.va, False))
            if best is not None and best[0] == 0.0:
                break
        assert best is not None
        placed.append(best[1].box)
        out.append(best[1])
    return out


def _title(report: dict[str, Any]) -> str:
    dataset = report.get("dataset") or "the split"
    stream = report.get("stream")
    how = "" if not stream else f", as a stream at {stream['rate_per_s']:g}/s (τ {stream['tolerance_s']:g} s)"
    return (f"Quality vs cost on {dataset} ({report['rows']} queries{how})\n"
            f"as shares of the reference LLM, always-{report['best_llm']} = (1, 1)")


def sweep_plot(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the sweep's plot to `path` (PNG). Returns what was drawn where, in the figure's pixels
    (y up): the title, each label's (text, box, placed clear of everything), the legend's and the
    axes' boxes and the labelled points, for checks."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.text import Text
    except ImportError:
        raise UsageError("needs matplotlib (pip install 'mixllm[plot]')", param="plot") from None
    dpi = 150
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=dpi)
    fig.subplots_adjust(left=0.07, right=0.66, top=0.88, bottom=0.09)
    labels: list[tuple[str, tuple[float, float], str]] = []  # text, point, colour
    points: list[tuple[float, float]] = []
    for cv in report["curves"]:
        pts = cv["points"]
        if cv["name"].startswith("always "):
            ax.plot([pts[0][0]], [pts[0][1]], "k.", ms=6)
            labels.append((cv["name"][7:], (pts[0][0], pts[0][1]), "black"))
            points.append((pts[0][0], pts[0][1]))
            continue
        hull = cv["hull"] + [[max(1.0, cv["hull"][-1][0]), cv["hull"][-1][1]]]
        aiq = "—" if cv["aiq"] is None else f"{100 * cv['aiq']:.1f}"
        mixllm = cv["name"].startswith("mixllm")
        (line,) = ax.plot([h[0] for h in hull], [h[1] for h in hull], label=f"{cv['name']} (AIQ {aiq})",
                          lw=2.5 if mixllm else 1, zorder=3 if mixllm else 2)
        if mixllm:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", ms=2.5, color=line.get_color(), alpha=0.6,
                    zorder=3)
    for name, p in report["presets"].items():
        ax.plot([p["cost_share"]], [p["quality_share"]], "r*", ms=9, zorder=4)
        labels.append((name, (p["cost_share"], p["quality_share"]), "red"))
        points.append((p["cost_share"], p["quality_share"]))
    if report["presets"]:
        ax.plot([], [], "r*", ms=7, label="mixllm's budget presets")
    if any(cv["name"].startswith("always ") for cv in report["curves"]):
        ax.plot([], [], "k.", ms=6, label="single LLMs (always one)")
    xs = [x for x, _ in points] + [1.0]
    ax.set_xlim(0, max(1.05, 1.04 * max(xs)))
    ax.autoscale(axis="y")
    ax.set_xlabel(f"cost share of always-{report['best_llm']}")
    ax.set_ylabel(f"quality share of always-{report['best_llm']}")
    ax.set_title(_title(report), fontsize=10)
    ax.grid(alpha=0.25)
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)

    # Fix the layout, then place the labels in pixels (they keep their offsets in points).
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    to_px = ax.transData.transform
    px_per_pt = dpi / 72.0
    # Presets first (they get the nearest spots), then the single LLMs from cheap to dear.
    order = sorted(range(len(labels)), key=lambda k: (labels[k][2] != "red", labels[k][1][0]))
    sizes: list[tuple[float, float]] = []
    anchors: list[tuple[float, float]] = []
    for k in order:
        probe = ax.text(0, 0, labels[k][0], fontsize=7)
        bb = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((bb.width, bb.height))
        x, y = to_px(labels[k][1])
        anchors.append((float(x), float(y)))
    marker = 4.5 * px_per_pt + MARKER_PAD_PX
    obstacles = [(x - marker, y - marker, x + marker, y + marker) for x, y in (to_px(p) for p in points)]
    frame = ax.get_window_extent(renderer)
    placements = place_labels(anchors, sizes, obstacles, (frame.x0, frame.y0, frame.x1, frame.y1), px_per_pt)
    texts = []
    for k, pl in zip(order, placements):
        text, xy, colour = labels[k]
        far = math.hypot(pl.dx, pl.dy) > 10 * px_per_pt
        texts.append(ax.annotate(
            text, xy, xytext=(pl.dx / px_per_pt, pl.dy / px_per_pt), textcoords="offset points",
            ha=pl.ha, va=pl.va, fontsize=7, color=colour, zorder=5,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": colour, "shrinkA": 0, "shrinkB": 3} if far else None))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    drawn = {
        "title": ax.get_title(),
        # The text's own box (an annotation's extent would include its leader line).
        "labels": [(t.get_text(), tuple(float(v) for v in Text.get_window_extent(t, renderer).extents), pl.clear)
                   for t, pl in zip(texts, placements)],
        "legend": tuple(float(v) for v in legend.get_window_extent(renderer).extents),
        "axes": tuple(float(v) for v in frame.extents),
        "points": [tuple(float(v) for v in to_px(p)) for p in points],
    }
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return drawn
