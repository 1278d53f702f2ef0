"""`mixllm feedback`: validate feedback, append it to the log, fold it into the online model.

Refined feedback carries what was observed of the chosen LLM's answer (quality in [0, 1],
response tokens, latency, cost); binary feedback is a thumbs up or down. One event, or a batch
(a JSONL file), is written to the log in one transaction, then applied as one micro-batch.
The same feedback (same decision, same content) sent twice counts once.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FeedbackError, MixLLMError

if TYPE_CHECKING:
    from ..routing.router import Router
    from ..state.base import StoreBase

FIELDS = ("id", "quality", "good", "response_tokens", "latency_ms", "ttft_ms", "cost_usd")


@dataclass(frozen=True)
class Feedback:
    decision_id: str
    quality: float | None = None
    good: bool | None = None
    response_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None

    @property
    def kind(self) -> str:
        return "binary" if self.good is not None else "refined"

    def content_sha256(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def parse_feedback(obj: Any, where: str) -> Feedback:
    """Validate one feedback object (a JSONL line, or the CLI's flags); errors name the field."""
    if not isinstance(obj, dict):
        raise FeedbackError(f"{where}: must be a JSON object")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise FeedbackError(f"{where}: {unknown[0]}: unknown field (allowed: {', '.join(FIELDS)})")
    did = obj.get("id")
    if not isinstance(did, str) or not did:
        raise FeedbackError(f"{where}: id: must be the decision_id that route printed")

    def number(name: str, lo: float, hi: float = math.inf, integer: bool = False) -> Any:
        v = obj.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise FeedbackError(f"{where}: {name}: must be a number (got {v!r})")
        if integer and v != int(v):
            raise FeedbackError(f"{where}: {name}: must be an integer (got {v!r})")
        if not lo <= v <= hi:
            bound = f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
            raise FeedbackError(f"{where}: {name}: must be {bound} (got {v!r})")
        return int(v) if integer else float(v)

    good = obj.get("good")
    if good is not None and not isinstance(good, bool):
        raise FeedbackError(f"{where}: good: must be true or false (got {good!r})")
    fb = Feedback(decision_id=did, quality=number("quality", 0.0, 1.0), good=good,
                  response_tokens=number("response_tokens", 0, integer=True), latency_ms=number("latency_ms", 0.0),
                  ttft_ms=number("ttft_ms", 0.0), cost_usd=number("cost_usd", 0.0))
    if fb.good is not None and fb.quality is not None:
        raise FeedbackError(f"{where}: give either quality (refined) or good (binary), not both")
    if all(v is None for v in (fb.quality, fb.good, fb.response_tokens, fb.latency_ms, fb.ttft_ms, fb.cost_usd)):
        raise FeedbackError(f"{where}: nothing to record: give quality, good, response_tokens, latency_ms, "
                            "ttft_ms or cost_usd")
    return fb


@dataclass(frozen=True)
class FeedbackResult:
    """What became of one feedback item: recorded, duplicate (counted once already) or error."""

    where: str  # the item's place in its batch (`file:line`, `items[3]`), for error messages
    status: str
    id: str | None = None
    llm: str | None = None
    kind: str | None = None
    error: MixLLMError | None = None  # with status "error": the failure, its type for the server's status

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `mixllm feedback` prints and `/v1/feedback` answers (without `where`)."""
        if self.error is not None:
            out: dict[str, Any] = {"status": "error", "error": str(self.error)}
            return {"id": self.id, **out} if self.id is not None else out
        return {"id": self.id, "llm": self.llm, "kind": self.kind, "status": self.status}


def read_feedback_jsonl(source: str) -> tuple[str, list[tuple[str, Feedback | MixLLMError]]]:
    """A JSONL file of feedback ('-' for stdin): its name, and per line its place and the parsed item
    or the error that line gets (bad lines do not stop the others)."""
    from ..dataset import iter_jsonl, open_source

    stream, name, close = open_source(source)
    items: list[tuple[str, Feedback | MixLLMError]] = []
    try:
        for lineno, obj in iter_jsonl(stream, name):
            where = f"{name}:{lineno}"
            try:
                items.append((where, obj if isinstance(obj, MixLLMError) else parse_feedback(obj, where)))
            except MixLLMError as exc:
                items.append((where, exc))
    finally:
        if close:
            stream.close()
    return name, items


def record_feedback(router: Router, store: StoreBase, items: list[tuple[str, Feedback | MixLLMError]],
                    home: Path, *, apply: bool = True) -> list[FeedbackResult]:
    """Log every valid item in one transaction, then fold the new events into the online model.

    Returns one result per item, in order: recorded, duplicate, or error (nothing written for it).
    """
    from .updates import catch_up

    defaults = router.latency_defaults()
    pool = set(router.llm_ids)
    results: list[FeedbackResult] = []
    now = time.time()
    with store.transaction() as conn:
        for where, item in items:
            if isinstance(item, MixLLMError):
                results.append(FeedbackResult(where, "error", error=item))
                continue
            try:
                llm = store.decision_llm(conn, item.decision_id)
                if llm not in pool:
                    raise FeedbackError(f"{where}: decision '{item.decision_id}' went to '{llm}', which is no "
                                        "longer in the pool; feedback for it is not recorded")
            except FeedbackError as exc:
                msg = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
                results.append(FeedbackResult(where, "error", item.decision_id, error=type(exc)(msg)))
                continue
            learn = item.quality is not None or item.good is not None or item.response_tokens is not None
            fresh = False
            if learn:
                values = {"quality": item.quality, "good": None if item.good is None else int(item.good),
                          "response_tokens": item.response_tokens, "latency_ms": item.latency_ms,
                          "cost_usd": item.cost_usd}
                fresh = store.add_feedback(conn, item.decision_id, llm, item.kind, values, item.content_sha256(), now)
            if item.latency_ms is not None or item.ttft_ms is not None:
                fresh = store.complete_in(conn, item.decision_id, latency_ms=item.latency_ms, ttft_ms=item.ttft_ms,
                                          response_tokens=item.response_tokens, defaults=defaults.get,
                                          now=now) or fresh
            results.append(FeedbackResult(where, "recorded" if fresh else "duplicate", item.decision_id, llm,
                                          item.kind))
    if apply:
        catch_up(home, router.offline_artifacts, store)
    return results
