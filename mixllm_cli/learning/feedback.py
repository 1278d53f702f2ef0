"""`mixllm feedback`: validate feedback, append it to the log, fold it into the online model.

Refined feedback carries what was observed of the chosen LLM's answer (quality in [0, 1],
response tokens, latency, cost); binary feedback is a thumbs up or down. One event, or a batch
(a JSONL file), is written to the log in one transaction, then applied as one micro-batch.
The same feedback (same decision, same content) sent twice counts once.

Every number is checked against a physical bound (`BOUNDS`: an hour of latency, ten million
tokens, $1,000 for one call) before anything is stored: a report beyond it is refused with a
`FeedbackError` naming the field and the bound (400 from the server, exit 1 from the CLI), so no
single report can teach the latency model or the log an absurd value, and no integer reaches the
database beyond its 64-bit columns.

How often a decision counts (the log keeps every event, for audit; the learner folds each
decision once, `learning.updates`): its first event updates A⁻¹; its first binary event trains
the dynamic-feedback network; refits and cold fits read one outcome per decision, the latest
value sent for each field; the first reported latency frees its slot and teaches the latency
model, later ones are ignored.
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
MAX_ID_CHARS = 64  # decision ids are 16 characters; anything much longer cannot be one
MAX_LATENCY_MS = 3_600_000.0  # one hour: no call is waited for longer
MAX_RESPONSE_TOKENS = 10_000_000  # far beyond any context window, and well within 64-bit columns
MAX_COST_USD = 1_000.0  # one call
#: field → (lowest, highest, must be an integer, the highest in words): the physical bounds of a report.
BOUNDS: dict[str, tuple[float, float, bool, str]] = {
    "quality": (0.0, 1.0, False, "1"),
    "response_tokens": (0, MAX_RESPONSE_TOKENS, True, "10,000,000"),
    "latency_ms": (0.0, MAX_LATENCY_MS, False, "3,600,000 (one hour)"),
    "ttft_ms": (0.0, MAX_LATENCY_MS, False, "3,600,000 (one hour)"),
    "cost_usd": (0.0, MAX_COST_USD, False, "1,000 (one call)"),
}


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


def _show(v: object) -> str:
    """A value for an error message: its repr, cut short (a 400-digit integer is not worth echoing)."""
    try:
        r = repr(v)
    except ValueError:  # an integer beyond Python's digit limit for str()
        return "a huge integer"
    return r if len(r) <= 40 else r[:37] + "..."


def _name(key: object) -> str:
    """A key for an error message: as it is when it is short printable text, else its repr."""
    if isinstance(key, str) and len(key) <= 40 and key.isprintable():
        try:
            key.encode("utf-8")
            return key
        except UnicodeEncodeError:
            pass
    return _show(key)


def check_id(did: object, where: str) -> str:
    """A decision id as the store can look it up: a short string of valid UTF-8."""
    if not isinstance(did, str) or not did or len(did) > MAX_ID_CHARS:
        raise FeedbackError(f"{where}: id: must be the decision_id that route printed")
    try:
        did.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON's "\udfff", or argv bytes that are not UTF-8
        raise FeedbackError(f"{where}: id: is not valid UTF-8 (a lone surrogate)") from None
    return did


def _valid_id(did: str) -> bool:
    try:
        check_id(did, "")
    except FeedbackError:
        return False
    return True


def check_number(name: str, v: object, where: str) -> int | float | None:
    """One reported number within its physical bound (`BOUNDS`); None stays None."""
    if v is None:
        return None
    lo, hi, integer, hi_text = BOUNDS[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FeedbackError(f"{where}: {name}: must be a number (got {_show(v)})")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise FeedbackError(f"{where}: {name}: must be a finite number (got {_show(v)})")
        if integer and v != int(v):
            raise FeedbackError(f"{where}: {name}: must be an integer (got {_show(v)})")
    # Exact for any int: 10**400 is compared, never converted to a float.
    if name == "quality" and not lo <= v <= hi:
        raise FeedbackError(f"{where}: {name}: must be in [0, 1] (got {_show(v)})")
    if v < lo:
        raise FeedbackError(f"{where}: {name}: must be >= {lo:g} (got {_show(v)})")
    if v > hi:
        raise FeedbackError(f"{where}: {name}: must be <= {hi_text} (got {_show(v)})")
    return int(v) if integer else float(v)


def check_feedback(fb: Feedback, where: str) -> Feedback:
    """Every bound on a `Feedback`, however it was built (parsed, or by the server's proxy from an
    upstream's usage report); raises FeedbackError naming the first field at fault."""
    check_id(fb.decision_id, where)
    for name in BOUNDS:
        check_number(name, getattr(fb, name), where)
    if fb.good is not None and not isinstance(fb.good, bool):
        raise FeedbackError(f"{where}: good: must be true or false (got {_show(fb.good)})")
    if fb.ttft_ms is not None and fb.latency_ms is not None and fb.ttft_ms > fb.latency_ms:
        raise FeedbackError(f"{where}: ttft_ms: must be <= latency_ms (got {fb.ttft_ms:g} > {fb.latency_ms:g}): "
                            "the first token cannot come after the last")
    return fb


def parse_feedback(obj: Any, where: str) -> Feedback:
    """Validate one feedback object (a JSONL line, or the CLI's flags); errors name the field."""
    if not isinstance(obj, dict):
        raise FeedbackError(f"{where}: must be a JSON object")
    unknown = sorted((k for k in obj if k not in FIELDS), key=_show)
    if unknown:
        raise FeedbackError(f"{where}: {_name(unknown[0])}: unknown field (allowed: {', '.join(FIELDS)})")
    did = check_id(obj.get("id"), where)
    good = obj.get("good")
    if good is not None and not isinstance(good, bool):
        raise FeedbackError(f"{where}: good: must be true or false (got {_show(good)})")
    n = {name: check_number(name, obj.get(name), where) for name in BOUNDS}
    fb = Feedback(decision_id=did, quality=n["quality"], good=good,
                  response_tokens=None if n["response_tokens"] is None else int(n["response_tokens"]),
                  latency_ms=n["latency_ms"], ttft_ms=n["ttft_ms"], cost_usd=n["cost_usd"])
    if fb.good is not None and fb.quality is not None:
        raise FeedbackError(f"{where}: give either quality (refined) or good (binary), not both")
    if all(v is None for v in (fb.quality, fb.good, fb.response_tokens, fb.latency_ms, fb.ttft_ms, fb.cost_usd)):
        raise FeedbackError(f"{where}: nothing to record: give quality, good, response_tokens, latency_ms, "
                            "ttft_ms or cost_usd")
    return check_feedback(fb, where)


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
                check_feedback(item, where)  # also what the server's proxy builds from an upstream's usage
            except FeedbackError as exc:
                ok_id = item.decision_id if isinstance(item.decision_id, str) and _valid_id(item.decision_id) else None
                results.append(FeedbackResult(where, "error", ok_id, error=exc))
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
