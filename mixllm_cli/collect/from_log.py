"""Your traffic as prompts: the queries that `route` and `serve` logged (with --log-queries),
written as a prompt file for `mixllm collect`, so a deployed router can be relabelled on its real
traffic (graded by the judge) and retrained.

    {"id": "d3f9a0c1b2e4d5f6", "query": "Write a haiku about rain"}

Each line's id is the decision id of the query's first occurrence. Identical queries are written
once unless asked otherwise. A decision routed without --log-queries kept only a hash of its
query: it is counted and left out.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DataError, UsageError

MAX_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class ExportReport:
    """What `export_prompts` wrote and left out."""

    out: str
    prompts: int  # lines written
    decisions: int  # decisions logged in the range read
    duplicates: int  # queries left out as repeats of an earlier one
    without_text: int  # decisions logged without their text: not exportable
    skipped: int  # texts a prompt line cannot hold (too long for collect's reader)
    truncated: bool  # stopped at the limit with more decisions left

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_since(value: str, now: float | None = None) -> float:
    """`--since`: unix seconds (`1767225600`), an ISO date or date-time (`2026-01-31`,
    `2026-01-31T08:00:00+01:00`; local time without an offset), or an age (`7d`, `12h`, `30m`,
    `2w`) counted back from now."""
    text = value.strip()
    age = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
    if age:
        return (time.time() if now is None else now) - float(age.group(1)) * MAX_AGE_UNITS[age.group(2)]
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and 0 <= seconds < 1e11:
            return seconds
        raise UsageError(f"{value!r} is not a time (unix seconds must be between 0 and 1e11)", param="since")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"{value!r} is not a time; give an ISO date (2026-01-31), a date-time "
                         "(2026-01-31T08:00:00Z), unix seconds, or an age like 7d or 12h", param="since") from None
    return when.timestamp()


def _line(decision_id: str, text: str, task: str | None) -> bytes | None:
    """The prompt line of one logged query, or None if collect's reader would refuse it."""
    from .prompts import MAX_ID_CHARS, MAX_LINE_BYTES

    if not text.strip() or len(decision_id) > MAX_ID_CHARS:
        return None
    obj = {"id": decision_id, "query": text, **({"task": task} if task else {})}
    try:
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text collect can send
        return None
    return data if len(data) <= MAX_LINE_BYTES else None


def export_prompts(out: Path | str, *, home: Path | str | None = None, store_url: str | None = None,
                   since: float | None = None, limit: int | None = None, dedupe: bool = True,
                   task: str | None = None) -> ExportReport:
    """Write the logged queries of the home's store (or `store_url`) to `out` as a prompt file,
    oldest first, atomically; at most `limit` lines (and never more than collect reads).

    Raises DataError, writing nothing, when no decision in the range kept its text.
    """
    from ..files import atomic_write_bytes
    from ..state import open_store
    from .prompts import MAX_PROMPTS, MAX_TASK_CHARS

    if limit is not None and limit < 1:
        raise UsageError("must be at least 1", param="limit")
    if task is not None and (not task.strip() or len(task) > MAX_TASK_CHARS):
        raise UsageError(f"must be a non-empty name of at most {MAX_TASK_CHARS} characters", param="task")
    cap = min(limit or MAX_PROMPTS, MAX_PROMPTS)
    store = open_store(home, store_url)
    if not store.exists():
        raise DataError(f"{store.describe()}: no decisions logged yet; route or serve with --log-queries first")
    lines: list[bytes] = []
    seen: set[str] = set()
    decisions = duplicates = without_text = skipped = 0
    truncated = False
    try:
        for decision_id, _created, text in store.logged_queries(since):
            if len(lines) >= cap:
                truncated = True
                break
            decisions += 1
            if text is None:
                without_text += 1
                continue
            if dedupe:
                if text in seen:
                    duplicates += 1
                    continue
                seen.add(text)
            line = _line(decision_id, text, task)
            if line is None:
                skipped += 1
                continue
            lines.append(line)
    finally:
        store.close()
    report = ExportReport(out=str(out), prompts=len(lines), decisions=decisions, duplicates=duplicates,
                          without_text=without_text, skipped=skipped, truncated=truncated)
    if not lines:
        window = "" if since is None else f" since {dt.datetime.fromtimestamp(since).isoformat(timespec='seconds')}"
        if decisions == 0:
            raise DataError(f"{store.describe()}: no decisions logged{window}; nothing to export")
        raise DataError(f"{store.describe()}: nothing to export: {without_text_note(without_text)}"
                        + (f"; {skipped} logged queries too long for a prompt line" if skipped else ""))
    atomic_write_bytes(Path(out), b"".join(lines))
    return report


def without_text_note(n: int) -> str:
    """The sentence that explains decisions logged without their text."""
    were = "decision was" if n == 1 else "decisions were"
    return (f"{n} {were} logged without their text (route/serve without --log-queries): not exportable")
