"""Budget presets: the λ of each named budget, calibrated on out-of-fold predictions so that routing
the training queries spends a target share of always-<dearest LLM>'s cost."""

from __future__ import annotations

import numpy as np

from ..core.decision import route_indices
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


def calibrate_presets(shares: np.ndarray, lambdas: np.ndarray = LAMBDA_GRID,
                      targets: dict[str, float] = PRESET_TARGETS) -> dict[str, PresetEntry]:
    """For each target, the largest λ of the grid whose cost share stays within the target."""
    out = {}
    for name, target in targets.items():
        ok = np.nonzero(shares <= target)[0]
        lam = float(lambdas[ok[-1]]) if len(ok) else float(lambdas[0])
        share = float(shares[ok[-1]]) if len(ok) else float(shares[0])
        out[name] = PresetEntry(lam=lam, target_cost_share=target, train_cost_share=round(share, 4))
    return out
