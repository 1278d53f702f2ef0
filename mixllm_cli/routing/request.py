"""What a caller asks of the router: the query, its budget, how long it may wait.

The CLI, `route --jsonl` and the server all build `RouteRequest`s and hand them to
`Router.route_batch`; the checks here are the only ones, so the three agree on what is
accepted, and errors name the parameter at fault (`param="budget"`) for each client to spell.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.decision import DEFAULT_TOLERANCE_S
from ..errors import DataError, UsageError

MAX_QUERY_CHARS = 100_000  # ~25k tokens; far beyond what the heads were trained on
BUDGETS = ("very-low", "low", "medium", "high")
DEFAULT_BUDGET = "medium"
TOLERANCE_ENV = "MIXLLM_MAX_WAIT_S"


def check_query(text: object, where: str = "query") -> str:
    """Reject what cannot be routed: non-strings, empty, huge, or not valid UTF-8."""
    if not isinstance(text, str):
        raise DataError(f"{where}: must be a string (got {type(text).__name__})")
    if not text.strip():
        raise DataError(f"{where}: is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise DataError(f"{where}: is {len(text):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # argv bytes that are not UTF-8 reach Python as lone surrogates.
        raise DataError(f"{where}: is not valid UTF-8") from None
    return text


def check_id(qid: object) -> str | None:
    """Your id for a query, echoed back with its decision: None, or a string of valid UTF-8. Checked
    before anything is routed (a lone surrogate cannot be rendered as JSON: the decision would be
    committed and its answer fail)."""
    if qid is None:
        return None
    if not isinstance(qid, str):
        raise DataError(f"must be a string (got {type(qid).__name__})", param="id")
    try:
        qid.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError("is not valid UTF-8 (a lone surrogate)", param="id") from None
    return qid


def default_tolerance(explicit: float | None = None) -> float:
    """The waiting-time tolerance τ: `explicit`, else `$MIXLLM_MAX_WAIT_S`, else 30 s.

    The one place that reads the variable: `route`, `route --jsonl` and `serve` all come here.
    """
    if explicit is not None:
        return explicit
    env = os.environ.get(TOLERANCE_ENV)
    if env is None:
        return DEFAULT_TOLERANCE_S
    try:
        value = float(env)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UsageError(f"{TOLERANCE_ENV}: must be a number of seconds >= 0 (got {env!r})")
    return value


@dataclass(frozen=True)
class WaitPolicy:
    """The user's waiting-time tolerance τ, and whether it is a hard rule."""

    tolerance_s: float = DEFAULT_TOLERANCE_S
    strict: bool = False  # never pick an LLM whose wait exceeds τ when another can meet it

    @classmethod
    def default(cls, max_wait_s: float | None = None, strict: bool = False) -> WaitPolicy:
        """The policy for a caller that may not have said its tolerance (see `default_tolerance`)."""
        return cls(tolerance_s=default_tolerance(max_wait_s), strict=strict)


@dataclass(frozen=True)
class RouteRequest:
    """One query to route. `budget` and `lam` are exclusive (neither: the medium budget);
    `policy` None means `WaitPolicy.default()`; `exclude` names LLMs not to offer this query."""

    query: str
    id: str | None = None
    budget: str | None = None
    lam: float | None = None
    policy: WaitPolicy | None = None
    exclude: frozenset[str] = frozenset()


def explore_keys(queries: Sequence[str]) -> np.ndarray:
    """A stable number in [0, 1) per query text: the share of traffic a cold LLM sees is the
    share of keys under its cap, the same on every run and in every process."""
    return np.array([int.from_bytes(hashlib.sha256(q.encode("utf-8")).digest()[:8], "big") / 2.0**64
                     for q in queries])
