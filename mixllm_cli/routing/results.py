"""What routing returns: the per-LLM predictions of a batch, and each query's decision with its candidates."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Per-query, per-LLM predictions, arrays of shape (n_queries, n_llms)."""

    llm_ids: tuple[str, ...]
    quality: np.ndarray
    response_tokens: np.ndarray
    prompt_tokens: np.ndarray  # (n_queries,)
    cost_usd: np.ndarray
    cost_norm: np.ndarray
    uncertainty: np.ndarray
    wait_s: np.ndarray
    available: np.ndarray  # bool: False where a cold LLM is not offered this query
    bonus: np.ndarray | float = 0.0  # κ·s_df from binary feedback (online), else 0
    embeddings: np.ndarray | None = None  # the encoder's vectors, kept for the decision log (online learning)
    token_ids: list[np.ndarray] | None = None

    def take(self, rows: np.ndarray) -> Predictions:
        """The predictions of some queries (rows) of the batch."""
        def pick(v: Any) -> Any:
            return v[rows] if isinstance(v, np.ndarray) else v

        return replace(self, quality=self.quality[rows], response_tokens=self.response_tokens[rows],
                       prompt_tokens=self.prompt_tokens[rows], cost_usd=self.cost_usd[rows],
                       cost_norm=self.cost_norm[rows], uncertainty=self.uncertainty[rows], wait_s=self.wait_s[rows],
                       available=self.available[rows], bonus=pick(self.bonus),
                       embeddings=None if self.embeddings is None else self.embeddings[rows],
                       token_ids=None if self.token_ids is None else [self.token_ids[r] for r in rows])


@dataclass(frozen=True)
class Candidate:
    """One LLM's predictions for a query: quality, response_tokens, cost_usd, wait_ms (expected queue
    wait), uncertainty (α·eᵀA⁻¹e), penalty (waiting), score (the total; the choice has the highest
    available), cold (priors, no heads yet), available (offered for this query)."""

    llm: str
    quality: float
    response_tokens: float
    cost_usd: float
    wait_ms: float
    uncertainty: float
    penalty: float
    score: float
    cold: bool = False
    available: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "llm": self.llm,
            "cold": self.cold,
            "predicted_quality": round(self.quality, 6),
            "predicted_response_tokens": round(self.response_tokens, 1),
            "predicted_cost_usd": float(f"{self.cost_usd:.6g}"),
            "expected_wait_ms": round(self.wait_ms, 1),
            "uncertainty": float(f"{self.uncertainty:.6g}"),
            "penalty": float(f"{self.penalty:.6g}"),
            "score": round(self.score, 6) if self.available else None,
        }


@dataclass(frozen=True)
class Decision:
    """One query's routing decision: `choice` (the LLM to call), `decision_id` (for feedback; None in
    a dry run), `budget` (None when λ was given), `lam`, `prompt_tokens`, `candidates` (one per LLM,
    in the router's order), `id` (the caller's)."""

    id: str | None
    choice: str
    budget: str | None
    lam: float
    prompt_tokens: int
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
    decision_id: str | None = None  # set when the decision was recorded in the state store

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "id": self.id,
            "choice": self.choice,
            "budget": self.budget,
            "lambda": self.lam,
            "prompt_tokens": self.prompt_tokens,
            "candidates": [c.to_dict() for c in self.candidates],
        }
