"""The routing dataset: queries with the outcome each LLM gave, one JSON object per line.

    {"id": "q1", "query": "...", "task": "mbpp", "tags": ["code"],
     "outcomes": {"gpt-4-1106-preview": {"quality": 1.0, "prompt_tokens": 120,
                                         "response_tokens": 48, "cost_usd": 0.00264}}}

An LLM absent from `outcomes` (or mapped to null) has no outcome for that query. `quality: null`
means the call happened (its tokens and cost are known) but its quality is not: it stays None and
is never read as 0, which would teach a predictor that the LLM failed.

`read_dataset` checks the whole file and reports every problem as `file:LINE: field: message`,
so a user fixes a log in one pass. `iter_jsonl` is the lower layer for callers that want to go on
past a bad line (`route --jsonl` answers every good line and reports the bad ones).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from .errors import DataError, MixLLMError, where
from .files import atomic_write_bytes

MAX_PROBLEMS = 20

RECORD_KEYS: tuple[str, ...] = ("id", "query", "task", "tags", "arrival_s", "outcomes")
OUTCOME_KEYS: tuple[str, ...] = ("quality", "prompt_tokens", "response_tokens", "cost_usd")


@dataclass(frozen=True)
class Outcome:
    """What one LLM did with one query. `quality` None = called, but quality unknown."""

    quality: float | None
    prompt_tokens: int
    response_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Record:
    """One query and the outcomes of the LLMs that answered it."""

    id: str
    query: str
    task: str | None = None
    tags: tuple[str, ...] = ()
    arrival_s: float | None = None  # when the query arrives, for stream replays (seconds from the start)
    # Read-only and in sorted LLM order, so two equal records compare and serialise equally.
    outcomes: Mapping[str, Outcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "outcomes", MappingProxyType(dict(sorted(dict(self.outcomes).items()))))

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object a dataset line holds (task left out when None)."""
        out: dict[str, Any] = {"id": self.id, "query": self.query}
        if self.task is not None:
            out["task"] = self.task
        out["tags"] = list(self.tags)
        if self.arrival_s is not None:
            out["arrival_s"] = self.arrival_s
        out["outcomes"] = {
            llm: {
                "quality": o.quality,
                "prompt_tokens": o.prompt_tokens,
                "response_tokens": o.response_tokens,
                "cost_usd": o.cost_usd,
            }
            for llm, o in self.outcomes.items()
        }
        return out


# ---------------------------------------------------------------------------------------------
# lines


def _json_kind(value: object) -> str:
    """A value's type as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently; in a log that hides a corrupted line.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json_line(line: str | bytes, name: str, lineno: int) -> dict[str, Any]:
    """Parse one line that must hold a JSON object; raise DataError saying why not."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{where(name, lineno)}: not valid UTF-8") from None
    else:
        try:
            # A text stream opened with errors="surrogateescape" hands bad bytes on as surrogates.
            line.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where(name, lineno)}: not valid UTF-8") from None
    if lineno == 1:
        line = line.removeprefix("\ufeff")  # editors on Windows add a BOM
    try:
        obj = json.loads(line, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where(name, lineno)}: invalid JSON: {exc.msg} (col {exc.colno})") from None
    except ValueError as exc:  # from _no_duplicate_keys
        raise DataError(f"{where(name, lineno)}: invalid JSON: {exc}") from None
    except RecursionError:
        raise DataError(f"{where(name, lineno)}: invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where(name, lineno)}: must be a JSON object (got {_json_kind(obj)})")
    return obj


def iter_jsonl(
    stream: Iterable[str] | Iterable[bytes], name: str
) -> Iterator[tuple[int, dict[str, Any] | MixLLMError]]:
    """Yield (line number, parsed object or the DataError for that line) for each non-blank line.

    Bad lines do not stop the iteration. Pass a binary stream (`sys.stdin.buffer`, a file opened
    "rb") to survive non-UTF-8 bytes: a strict text stream raises while decoding, cannot resume
    past that point, and so ends the iteration with a last error for the line it was reading.
    """
    lineno = 0
    it: Iterator[str | bytes] = iter(stream)
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError:
            yield (
                lineno + 1,
                DataError(
                    f"{where(name, lineno + 1)}: not valid UTF-8 (reading stopped here; "
                    "give the file as bytes to read past it)"
                ),
            )
            return
        lineno += 1
        if not line.strip():
            continue
        try:
            yield lineno, parse_json_line(line, name, lineno)
        except DataError as exc:
            yield lineno, exc


# ---------------------------------------------------------------------------------------------
# validation


def _is_number(value: object) -> bool:
    # bool is an int subclass in Python, but `"quality": true` is a mistake, not 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _outcome_problems(raw: object, at: str) -> tuple[Outcome | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"{at}: must be an object or null (got {_json_kind(raw)})"]
    problems = [f"{at}: unknown key {k!r}" for k in raw if k not in OUTCOME_KEYS]
    for key in OUTCOME_KEYS:
        if key not in raw:
            problems.append(f"{at}.{key}: missing (required)")
    quality = raw.get("quality")
    if "quality" in raw and quality is not None:
        if not _is_number(quality):
            problems.append(f"{at}.quality: must be a number or null (got {quality!r})")
        elif not (math.isfinite(quality) and 0 <= quality <= 1):
            problems.append(f"{at}.quality: must be in [0, 1] (got {quality!r})")
    for key in ("prompt_tokens", "response_tokens"):
        value = raw.get(key)
        if key not in raw:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{at}.{key}: must be an integer (got {value!r})")
        elif value < 0:
            problems.append(f"{at}.{key}: must be >= 0 (got {value!r})")
    cost = raw.get("cost_usd")
    if "cost_usd" in raw:
        if not _is_number(cost):
            problems.append(f"{at}.cost_usd: must be a number (got {cost!r})")
        elif not (math.isfinite(cost) and cost >= 0):  # type: ignore[arg-type,operator]  # a number: checked above
            problems.append(f"{at}.cost_usd: must be >= 0 (got {cost!r})")
    if problems:
        return None, problems
    return (
        Outcome(
            quality=None if quality is None else float(quality),
            prompt_tokens=raw["prompt_tokens"],
            response_tokens=raw["response_tokens"],
            cost_usd=float(cost),  # type: ignore[arg-type]  # a number: checked above
        ),
        [],
    )


def _record_problems(obj: Mapping[str, Any], prefix: str) -> tuple[Record | None, list[str]]:
    """Validate one decoded line; `prefix` is `file:LINE` and each problem is `prefix: field: ...`."""
    problems = [f"{prefix}: unknown key {k!r}" for k in obj if k not in RECORD_KEYS]
    for key in ("id", "query", "outcomes"):
        if key not in obj:
            problems.append(f"{prefix}: {key}: missing (required)")
    rid, query, task = obj.get("id"), obj.get("query"), obj.get("task")
    if "id" in obj:
        if not isinstance(rid, str):
            problems.append(f"{prefix}: id: must be a string (got {rid!r})")
        elif not rid.strip():
            problems.append(f"{prefix}: id: must not be empty")
    if "query" in obj:
        if not isinstance(query, str):
            problems.append(f"{prefix}: query: must be a string (got {_json_kind(query)})")
        elif not query.strip():
            problems.append(f"{prefix}: query: must not be empty")
    if task is not None:
        if not isinstance(task, str):
            problems.append(f"{prefix}: task: must be a string or null (got {task!r})")
        elif not task.strip():
            problems.append(f"{prefix}: task: must not be empty (leave it out instead)")
    tags = obj.get("tags", [])
    if not isinstance(tags, list):
        problems.append(f"{prefix}: tags: must be an array of strings (got {_json_kind(tags)})")
    else:
        for i, tag in enumerate(tags):
            if not isinstance(tag, str) or not tag.strip():
                problems.append(f"{prefix}: tags[{i}]: must be a non-empty string (got {tag!r})")
    arrival = obj.get("arrival_s")
    if arrival is not None and (isinstance(arrival, bool) or not isinstance(arrival, (int, float))
                                or not math.isfinite(arrival) or arrival < 0):
        problems.append(f"{prefix}: arrival_s: must be a number of seconds >= 0 (got {arrival!r})")
    outcomes: dict[str, Outcome] = {}
    raw_outcomes = obj.get("outcomes")
    if "outcomes" in obj:
        if not isinstance(raw_outcomes, dict):
            problems.append(
                f"{prefix}: outcomes: must be an object of LLM id to outcome (got {_json_kind(raw_outcomes)})"
            )
        else:
            for llm, raw in raw_outcomes.items():
                if not llm.strip():
                    problems.append(f"{prefix}: outcomes: LLM id must not be empty")
                    continue
                if raw is None:  # explicitly no outcome
                    continue
                outcome, sub = _outcome_problems(raw, f"{prefix}: outcomes.{llm}")
                problems += sub
                if outcome is not None:
                    outcomes[llm] = outcome
    if problems or not isinstance(rid, str) or not isinstance(query, str):
        return None, problems
    return Record(id=rid, query=query, task=task, tags=tuple(tags),
                  arrival_s=None if arrival is None else float(arrival), outcomes=outcomes), []


def record_from_dict(obj: Mapping[str, Any], name: str = "<record>", line: int | None = None) -> Record:
    """Validate one decoded object; raise DataError with one line per problem."""
    record, problems = _record_problems(obj, where(name, line))
    if problems:
        raise DataError("\n".join(problems))
    assert record is not None
    return record


def _limited(problems: list[str], name: str) -> str:
    shown = problems[:MAX_PROBLEMS]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"{name}: ... and {len(problems) - MAX_PROBLEMS} more problems")
    return "\n".join(shown)


# ---------------------------------------------------------------------------------------------
# files


def read_dataset(path: str | os.PathLike[str]) -> list[Record]:
    """Read and validate a whole dataset file; raise DataError listing the problems (at most 20
    shown, then how many more)."""
    name = str(path)
    records: list[Record] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; bytes so a bad line cannot end reading
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    with fh:
        try:
            for lineno, item in iter_jsonl(fh, name):
                if isinstance(item, MixLLMError):
                    problems.append(str(item))
                    continue
                record, sub = _record_problems(item, where(name, lineno))
                rid = item.get("id")
                if isinstance(rid, str) and rid.strip():
                    if rid in first_line:
                        sub.append(
                            f"{where(name, lineno, 'id')}: duplicate id {rid!r} (first on line {first_line[rid]})"
                        )
                        record = None
                    else:
                        first_line[rid] = lineno
                problems += sub
                # Keep building records only while the file is clean: nobody gets them otherwise.
                if record is not None and not problems:
                    records.append(record)
        except OSError as exc:
            raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if problems:
        raise DataError(_limited(problems, name))
    return records


def dumps_record(record: Record) -> str:
    """One compact, deterministic JSON line (no newline): fixed key order, sorted outcomes."""
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write_dataset(records: Iterable[Record], path: str | os.PathLike[str]) -> None:
    """Write records atomically, one line each; refuse what `read_dataset` would refuse."""
    name = str(path)
    lines: list[str] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        obj = record.to_dict()
        # Validate what we are about to write, so a file we write always reads back.
        _, sub = _record_problems(obj, f"{name}: record {i}")
        if record.id in seen:
            sub.append(f"{name}: record {i}: id: duplicate id {record.id!r} (first at record {seen[record.id]})")
        else:
            seen[record.id] = i
        problems += sub
        if not sub:
            try:
                lines.append(dumps_record(record))
            except ValueError as exc:  # NaN or infinity slipped into a number
                problems.append(f"{name}: record {i}: {exc}")
    if problems:
        raise DataError(_limited(problems, name))
    try:
        atomic_write_bytes(Path(path), "".join(line + "\n" for line in lines).encode("utf-8"))
    except OSError as exc:
        raise DataError(f"{name}: cannot write: {exc.strerror or exc}") from None


def llm_ids(records: Iterable[Record]) -> tuple[str, ...]:
    """Every LLM id with an outcome in `records`, sorted."""
    ids: set[str] = set()
    for record in records:
        ids.update(record.outcomes)
    return tuple(sorted(ids))



def open_source(source: str) -> tuple[BinaryIO, str, bool]:
    """A JSONL source as a binary stream: a path, or '-' for stdin; also its name for errors and
    whether the caller must close it."""
    if source == "-":
        return sys.stdin.buffer, "<stdin>", False
    try:
        return open(source, "rb"), source, True
    except OSError as exc:
        raise DataError(f"{source}: cannot open ({exc.strerror})") from None
