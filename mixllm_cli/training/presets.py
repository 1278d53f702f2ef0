"""Budget presets: the λ of each named budget, calibrated on out-of-fold predictions so that routing
the training queries spends a target share of always-<dearest LLM>'s cost.

The rule (docs/PRESETS.md tells it with examples):

1. **The training frontier.** Routing the training queries at each λ of `LAMBDA_GRID` spends a
   share of always-<reference>'s cost. The frontier is the grid points a cost target can select:
   λ_i whose every larger λ of the grid spends strictly more (share_i < min over j > i of share_j).
   Along it λ and share both strictly increase; on a monotone curve it is the largest λ of each
   distinct share. NaN shares (no cost at all) are left out.
2. **Target picks.** Each preset's pick is the largest frontier λ whose share is within its target;
   when no point is (nothing is that cheap) the target is *unreachable* and the pick is the cheapest
   frontier point. These are exactly the presets of earlier versions (the largest λ of the grid
   whose share stays within the target), so where every target is met by its own point, nothing
   changes (the shipped RouterBench presets are such a case).
3. **Distinct and ordered.** With at least as many frontier points as presets (four), the presets
   sit on frontier positions p_1 < p_2 < p_3 < p_4 (cheapest budget first) that move the picks
   least: the smallest Σ|p_k − pick_k|, counted in frontier points; among equal movements, the
   cheaper placement (lexicographically smallest positions, so a preset tends to stay within its
   target). Picks that are already strictly increasing are kept as they are.
4. **Too few points.** With fewer frontier points than presets, the picks are kept (ordered,
   non-decreasing) and one warning says the presets cannot all be distinct.

Every preset whose target is unreachable or whose point moved gets one warning line, which
`train-offline` prints, and the same words in its manifest entry (`note`, kept in the entry's
`extra`: older readers ignore it, older sets simply lack it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.decision import route_indices
from ..errors import DataError
from ..manifest import PresetEntry

# Share of always-<dearest LLM>'s cost each preset aims to spend (on out-of-fold predictions).
PRESET_TARGETS = {"very-low": 0.05, "low": 0.10, "medium": 0.25, "high": 0.50}
LAMBDA_GRID = np.logspace(-3, 4, 281)


def cost_shares(quality_pred: np.ndarray, cost_norm_pred: np.ndarray, real_cost: np.ndarray, ref: int,
                lambdas: np.ndarray = LAMBDA_GRID) -> np.ndarray:
    """Share of always-`ref`'s real cost spent by the router at each λ (no uncertainty, no wait)."""
    zeros = np.zeros_like(quality_pred)
    total_ref = np.nansum(real_cost[:, ref])
    rows = np.arange(len(real_cost))
    shares = []
    for lam in lambdas:
        idx, _ = route_indices(quality_pred, cost_norm_pred, zeros, zeros, lam)
        shares.append(np.nansum(real_cost[rows, idx]) / total_ref)
    return np.array(shares)


@dataclass(frozen=True)
class Calibration:
    """The calibrated presets (cheapest budget first), one warning line per adjusted preset (plus
    one when the frontier is too short), and the frontier's grid indices."""

    presets: dict[str, PresetEntry]
    warnings: list[str]
    frontier: np.ndarray


def frontier_indices(shares: np.ndarray) -> np.ndarray:
    """Grid indices of the training frontier: the points a cost target can select (see step 1)."""
    shares = np.asarray(shares, dtype=np.float64)
    idx = np.nonzero(np.isfinite(shares))[0]
    s = shares[idx]
    if not len(s):
        return idx
    later = np.append(np.minimum.accumulate(s[::-1])[::-1][1:], np.inf)  # min share over j > i
    return idx[s < later]


def spread(picks: list[int], n_points: int) -> list[int]:
    """Strictly increasing positions in [0, n_points) moving `picks` least (Σ|p_k − pick_k|);
    among equal movements the lexicographically smallest. Needs n_points >= len(picks)."""
    n = len(picks)
    if n_points < n:
        raise ValueError(f"{n} presets need at least {n} frontier points (got {n_points})")
    big = n * n_points + 1  # more than any feasible movement
    # best[k][p]: the least movement of presets k.. with preset k at position p.
    best = [[big] * n_points for _ in range(n)]
    best[-1] = [abs(p - picks[-1]) for p in range(n_points)]
    for k in range(n - 2, -1, -1):
        later = big  # min of best[k + 1][q] over q > p
        for p in range(n_points - 1, -1, -1):
            best[k][p] = abs(p - picks[k]) + later if later < big else big
            later = min(later, best[k + 1][p])
    out = [min(range(n_points), key=lambda p: (best[0][p], p))]
    left = best[0][out[0]]
    for k in range(1, n):
        left -= abs(out[-1] - picks[k - 1])
        out.append(next(p for p in range(out[-1] + 1, n_points) if best[k][p] == left))
    return out


def calibrate_presets(shares: np.ndarray, lambdas: np.ndarray = LAMBDA_GRID,
                      targets: dict[str, float] = PRESET_TARGETS, *,
                      reference: str = "the reference LLM") -> Calibration:
    """Each preset's λ by the rule of the module docstring; `reference` names the LLM whose cost
    the shares are of (for the warnings)."""
    shares = np.asarray(shares, dtype=np.float64)
    if len(shares) != len(lambdas):
        raise ValueError(f"{len(shares)} cost shares for {len(lambdas)} λ values")
    front = frontier_indices(shares)
    if not len(front):
        raise DataError(f"cannot calibrate the budget presets: {reference}'s total cost on the training data "
                        "is 0 (check the outcomes' cost_usd)")
    front_shares = shares[front]
    names = sorted(targets, key=lambda n: targets[n])  # cheapest budget first
    reachable = {n: bool(front_shares[0] <= targets[n]) for n in names}
    picks = [max(int(np.searchsorted(front_shares, targets[n], side="right")) - 1, 0) for n in names]
    k = len(front)
    positions = spread(picks, k) if k >= len(names) else picks
    warnings: list[str] = []
    presets: dict[str, PresetEntry] = {}
    for i, name in enumerate(names):
        pos, pick = positions[i], picks[i]
        share, lam = float(front_shares[pos]), float(lambdas[front[pos]])
        note = None
        if not reachable[name] or pos != pick:
            note = _note(name, i, names, targets, reachable, picks, positions, front_shares, reference)
            warnings.append(f"preset {name}: {note} ({share:.1%}, λ={lam:.4g})")
        extra = {"note": f"{note} ({share:.1%})"} if note else {}
        presets[name] = PresetEntry(lam=lam, target_cost_share=targets[name], train_cost_share=round(share, 4),
                                    extra=extra)
    if k < len(names):
        points = ", ".join(f"{s:.1%}" for s in front_shares)
        warnings.append(f"presets: the training frontier has only {k} distinct cost share{'s' if k > 1 else ''} "
                        f"of {reference}'s cost ({points}); the {len(names)} presets cannot all be distinct")
    return Calibration(presets=presets, warnings=warnings, frontier=front)


def _note(name: str, i: int, names: list[str], targets: dict[str, float], reachable: dict[str, bool],
          picks: list[int], positions: list[int], front_shares: np.ndarray, reference: str) -> str:
    """Why preset `name` is not at its target (and where it went), in words."""
    target, pos, pick = targets[name], positions[i], picks[i]
    if not reachable[name]:
        why = (f"target {target:.0%} of {reference}'s cost is not reachable "
               f"(the cheapest routing spends {front_shares[0]:.1%})")
    else:
        # Who holds its pick: a preset with the same pick, else the one moved onto it.
        others = [n for j, n in enumerate(names) if j != i and picks[j] == pick] or \
                 [n for j, n in enumerate(names) if j != i and positions[j] == pick]
        why = f"target {target:.0%} of {reference}'s cost picks {front_shares[pick]:.1%}"
        why += f", the same frontier point as {' and '.join(others)}" if others else ""
    if pos == pick:
        return f"{why}; using the cheapest frontier point"
    if pos == 0:
        return f"{why}; using the cheapest frontier point so the presets stay distinct"
    side = "dearer" if pos > pick else "cheaper"
    return f"{why}; using the nearest {side} frontier point so the presets stay distinct and ordered"
