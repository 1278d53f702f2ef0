"""The meta decision maker: pure scoring, no I/O.

    s_l = λ/(λ+1)·p̂_l − 1/(λ+1)·ĉ_l + α·eᵀA_l⁻¹e − β·exp(γ·(w_l − ξ·τ))

p̂_l is the predicted quality in [0, 1]. ĉ_l is the predicted cost *normalised*: the predicted
USD cost of the call divided by `cost_scale_usd`, the mean per-query cost of the most expensive
LLM on the training data (frozen in the artifact manifest). So ĉ = 1 means "as dear as a typical
call to the dearest LLM", whatever the catalogue's absolute prices, and λ reads as: a gain of Δp
in quality is worth λ·Δp typical calls to the dearest LLM. Only the ratio λ matters for the
argmax; the λ/(λ+1), 1/(λ+1) form keeps both weights in [0, 1] as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

# α and β as reported for the paper; γ and ξ are ours (the paper does not give them): with
# γ = 0.2/s and ξ = 0.5, an LLM whose wait is half the tolerance pays β (0.1), one at the
# tolerance pays β·e³ ≈ 2, more than any quality gain can buy.
DEFAULT_ALPHA = 0.01
DEFAULT_BETA = 0.1
DEFAULT_GAMMA_PER_S = 0.2
DEFAULT_XI = 0.5
DEFAULT_TOLERANCE_S = 30.0
# Scores this close are a tie: float rounding must not decide between two LLMs.
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Weights:
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    gamma_per_s: float = DEFAULT_GAMMA_PER_S
    xi: float = DEFAULT_XI
    tolerance_s: float = DEFAULT_TOLERANCE_S


@dataclass(frozen=True)
class Scores:
    """Per-candidate parts of the score, arrays of shape (n_queries, n_llms)."""

    trade: np.ndarray
    uncertainty: np.ndarray
    penalty: np.ndarray
    total: np.ndarray


def check_lambda(lam: float) -> float:
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise UsageError(f"must be a finite number >= 0 (got {lam})", param="lambda")
    return lam


def waiting_penalty(wait_s: np.ndarray, weights: Weights) -> np.ndarray:
    """exp(γ·(w − ξ·τ)); the exponent is capped so a huge wait stays finite."""
    exponent = weights.gamma_per_s * (np.asarray(wait_s, dtype=np.float64) - weights.xi * weights.tolerance_s)
    return np.exp(np.minimum(exponent, 50.0))


def score(
    quality: np.ndarray,
    cost_norm: np.ndarray,
    uncertainty: np.ndarray,
    wait_s: np.ndarray,
    lam: float,
    weights: Weights = Weights(),
    bonus: np.ndarray | float = 0.0,
) -> Scores:
    """Score every (query, LLM) pair. Inputs broadcast to (n_queries, n_llms).

    `bonus` is the dynamic-feedback term κ·s_df learned from binary feedback (0 without it).
    """
    lam = check_lambda(lam)
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost_norm, dtype=np.float64)
    trade = (lam * q - c) / (lam + 1.0)
    unc = weights.alpha * np.asarray(uncertainty, dtype=np.float64)
    pen = weights.beta * waiting_penalty(wait_s, weights)
    trade, unc, pen = np.broadcast_arrays(trade, unc, pen)
    return Scores(trade=trade, uncertainty=unc, penalty=pen, total=trade + unc - pen + bonus)


def choose(total: np.ndarray, cost_norm: np.ndarray) -> np.ndarray:
    """Index of the best LLM per query; ties (within 1e-12) go to the cheaper LLM, then catalogue order."""
    total = np.atleast_2d(total)
    cost = np.broadcast_to(np.atleast_2d(cost_norm), total.shape)
    best = total.max(axis=1, keepdims=True)
    # Among the tied best, take the cheapest: mask others with +inf cost.
    masked_cost = np.where(total >= best - TIE_TOLERANCE, cost, np.inf)
    return masked_cost.argmin(axis=1)


def route_indices(
    quality: np.ndarray,
    cost_norm: np.ndarray,
    uncertainty: np.ndarray,
    wait_s: np.ndarray,
    lam: float,
    weights: Weights = Weights(),
    available: np.ndarray | None = None,
    bonus: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, Scores]:
    """Score and choose; `available` (bool, broadcastable) masks candidates out of this query."""
    s = score(quality, cost_norm, uncertainty, wait_s, lam, weights, bonus)
    total = s.total if available is None else np.where(available, s.total, -np.inf)
    return choose(total, cost_norm), s
