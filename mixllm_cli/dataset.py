"""The routing dataset: queries with the outcome each LLM gave, one JSON object per line.

    {"id": "q1", "query": "...", "task": "mbpp", "tags": ["code"],
     "outcomes": {"gpt-4-1106-preview": {"quality": 1.0, "prompt_tokens": 120,
                                         "response_tokens": 48, "cost_usd": 0.00264}}}

An LLM absent from `outcomes` (or mapped to null) has no outcome for that query. `quality: null`
means the call happened (its tokens and cost are known) but its quality is not: it stays None and
is never read as 0, which would teach a predictor that the LLM failed.

Required: a line's `id`, `query` and `outcomes`; an outcome's `quality` (number in [0, 1] or null),
`prompt_tokens` and `response_tokens` (integers >= 0) and `cost_usd` (number >= 0). Optional on a
line: `task`, `tags`, `arrival_s` (seconds >= 0, for stream replays). Optional on an outcome, kept
on `Outcome` and written back only when set (null is the same as absent); `mixllm collect` writes them:

    latency_ms   the whole call, milliseconds (number >= 0)
    ttft_ms      time to the first token, milliseconds (number >= 0)
    answer       the LLM's answer text (string; only with `collect --keep-answers`)
    grader       which grader scored `quality` (non-empty string)

Any other key, on a line or in an outcome (annotations, timestamps, ...), is ignored: the data
users have carries them. `read_dataset` says so once per file through its `warn` callback, e.g.
`data.jsonl: ignored unknown keys 'annotator' (43963 lines), 'ts' in outcomes (12 lines)`.

`read_dataset` checks the whole file and reports every problem as `file:LINE: field: message`,
so a user fixes a log in one pass. `iter_jsonl` is the lower layer for callers that want to go on
past a bad line (`route --jsonl` answers every good line and reports the bad ones).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Literal, overload

from .errors import DataError, MixLLMError, where
from .files import atomic_write_bytes

MAX_PROBLEMS = 20

RECORD_KEYS: tuple[str, ...] = ("id", "query", "task", "tags", "arrival_s", "outcomes")
OUTCOME_KEYS: tuple[str, ...] = ("quality", "prompt_tokens", "response_tokens", "cost_usd")
OPTIONAL_OUTCOME_KEYS: tuple[str, ...] = ("latency_ms", "ttft_ms", "answer", "grader")
_RECORD_KEYS = frozenset(RECORD_KEYS)
_OUTCOME_KEYS = frozenset(OUTCOME_KEYS + OPTIONAL_OUTCOME_KEYS)
_INF = math.inf

Warn = Callable[[str], None]
# Hostile files: at most this many distinct unknown key names are counted, this many named.
MAX_UNKNOWN_TRACKED = 1000
MAX_UNKNOWN_SHOWN = 8


@dataclass(frozen=True)
class Outcome:
    """What one LLM did with one query. `quality` None = called, but quality unknown. The optional
    fields (None = not recorded) are what `mixllm collect` measured: see the module docstring."""

    quality: float | None
    prompt_tokens: int
    response_tokens: int
    cost_usd: float
    latency_ms: float | None = None
    ttft_ms: float | None = None
    answer: str | None = None
    grader: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The outcome as a dataset line holds it (optional fields only when set)."""
        out: dict[str, Any] = {"quality": self.quality, "prompt_tokens": self.prompt_tokens,
                               "response_tokens": self.response_tokens, "cost_usd": self.cost_usd}
        for key in OPTIONAL_OUTCOME_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


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
        out["outcomes"] = {llm: o.to_dict() for llm, o in self.outcomes.items()}
        return out


# ---------------------------------------------------------------------------------------------
# lines


def json_kind(value: object) -> str:
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
        raise DataError(f"{where(name, lineno)}: must be a JSON object (got {json_kind(obj)})")
    return obj


@overload
def iter_jsonl(stream: Iterable[str] | Iterable[bytes], name: str, *, blanks: Literal[False] = False
               ) -> Iterator[tuple[int, dict[str, Any] | MixLLMError]]: ...
@overload
def iter_jsonl(stream: Iterable[str] | Iterable[bytes], name: str, *, blanks: Literal[True]
               ) -> Iterator[tuple[int, dict[str, Any] | MixLLMError | None]]: ...
def iter_jsonl(
    stream: Iterable[str] | Iterable[bytes], name: str, *, blanks: bool = False
) -> Iterator[tuple[int, dict[str, Any] | MixLLMError | None]]:
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
            if blanks:  # the caller keeps line-for-line alignment
                yield lineno, None
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


_ABSENT = object()


def _short(value: object, limit: int = 60) -> str:
    """A value's repr for an error line, cut short: the file may be hostile."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _outcome_problems(raw: object, at: str,
                      unknown: set[tuple[str, str]] | None = None) -> tuple[Outcome | None, list[str]]:
    """Validate one outcome; its unknown keys go into `unknown` as ("outcomes", key)."""
    # Fast path for the usual outcome (the four required keys, all valid): exact types, so a
    # bool, a NaN or anything unusual takes the full path below, which says what is wrong.
    if type(raw) is dict:
        q = raw.get("quality", _ABSENT)
        p, r, c = raw.get("prompt_tokens"), raw.get("response_tokens"), raw.get("cost_usd")
        if (type(p) is int and type(r) is int and p >= 0 and r >= 0
                and (type(c) is float or type(c) is int) and 0 <= c < _INF
                and (q is None or ((type(q) is float or type(q) is int) and 0 <= q <= 1))):
            if len(raw) == 4:
                return Outcome(None if q is None else float(q), p, r, float(c)), []
            if raw.keys() <= _OUTCOME_KEYS:  # what `collect` writes: the optional fields too
                lat, ttft = raw.get("latency_ms"), raw.get("ttft_ms")
                answer, grader = raw.get("answer"), raw.get("grader")
                if ((lat is None or ((type(lat) is float or type(lat) is int) and 0 <= lat < _INF))
                        and (ttft is None or ((type(ttft) is float or type(ttft) is int) and 0 <= ttft < _INF))
                        and (answer is None or type(answer) is str)
                        and (grader is None or (type(grader) is str and grader.strip()))):
                    return Outcome(None if q is None else float(q), p, r, float(c),
                                   None if lat is None else float(lat), None if ttft is None else float(ttft),
                                   answer, grader), []
    if not isinstance(raw, dict):
        return None, [f"{at}: must be an object or null (got {json_kind(raw)})"]
    if unknown is not None:
        unknown.update(("outcomes", k) for k in raw if k not in _OUTCOME_KEYS)
    problems = []
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
    optional: dict[str, Any] = {}
    for key in ("latency_ms", "ttft_ms"):
        value = raw.get(key)
        if value is None:
            continue
        if not _is_number(value) or not (math.isfinite(value) and value >= 0):
            problems.append(f"{at}.{key}: must be a number of milliseconds >= 0 or null (got {_short(value)})")
        else:
            optional[key] = float(value)
    answer = raw.get("answer")
    if answer is not None:
        if not isinstance(answer, str):
            problems.append(f"{at}.answer: must be a string or null (got {json_kind(answer)})")
        else:
            optional["answer"] = answer
    grader = raw.get("grader")
    if grader is not None:
        if not isinstance(grader, str) or not grader.strip():
            problems.append(f"{at}.grader: must be a non-empty string or null (got {_short(grader)})")
        else:
            optional["grader"] = grader
    if problems:
        return None, problems
    return (
        Outcome(
            quality=None if quality is None else float(quality),
            prompt_tokens=raw["prompt_tokens"],
            response_tokens=raw["response_tokens"],
            cost_usd=float(cost),  # type: ignore[arg-type]  # a number: checked above
            **optional,
        ),
        [],
    )


def _record_problems(obj: Mapping[str, Any], prefix: str,
                     unknown: set[tuple[str, str]] | None = None) -> tuple[Record | None, list[str]]:
    """Validate one decoded line; `prefix` is `file:LINE` and each problem is `prefix: field: ...`.
    Unknown keys are not problems: they go into `unknown` as ("", key) or ("outcomes", key)."""
    if unknown is not None:
        unknown.update(("", k) for k in obj if k not in _RECORD_KEYS)
    problems = []
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
            problems.append(f"{prefix}: query: must be a string (got {json_kind(query)})")
        elif not query.strip():
            problems.append(f"{prefix}: query: must not be empty")
    if task is not None:
        if not isinstance(task, str):
            problems.append(f"{prefix}: task: must be a string or null (got {task!r})")
        elif not task.strip():
            problems.append(f"{prefix}: task: must not be empty (leave it out instead)")
    tags = obj.get("tags", [])
    if not isinstance(tags, list):
        problems.append(f"{prefix}: tags: must be an array of strings (got {json_kind(tags)})")
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
                f"{prefix}: outcomes: must be an object of LLM id to outcome (got {json_kind(raw_outcomes)})"
            )
        else:
            for llm, raw in raw_outcomes.items():
                if not llm.strip():
                    problems.append(f"{prefix}: outcomes: LLM id must not be empty")
                    continue
                if raw is None:  # explicitly no outcome
                    continue
                outcome, sub = _outcome_problems(raw, f"{prefix}: outcomes.{llm}", unknown)
                if sub:
                    problems += sub
                elif outcome is not None:
                    outcomes[llm] = outcome
    if problems or not isinstance(rid, str) or not isinstance(query, str):
        return None, problems
    return Record(id=rid, query=query, task=task, tags=tuple(tags),
                  arrival_s=None if arrival is None else float(arrival), outcomes=outcomes), []


def _key_label(key: tuple[str, str]) -> str:
    scope, name = key
    text = repr(name if len(name) <= 40 else name[:40] + "…")
    return f"{text} in {scope}" if scope else text


def unknown_keys_warning(name: str, counts: Mapping[tuple[str, str], int], more: bool = False) -> str:
    """The one warning line for the unknown keys of a file: `counts` maps ("", key) or
    ("outcomes", key) to how many lines had it; `more`: there were keys beyond those counted."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: in `counts` order among equals
    parts = [f"{_key_label(k)} ({n} line{'' if n == 1 else 's'})" for k, n in items[:MAX_UNKNOWN_SHOWN]]
    rest = len(items) - MAX_UNKNOWN_SHOWN
    if more:
        parts.append("and more keys")
    elif rest > 0:
        parts.append(f"and {rest} more key{'' if rest == 1 else 's'}")
    return f"{name}: ignored unknown keys {', '.join(parts)}"


def record_from_dict(obj: Mapping[str, Any], name: str = "<record>", line: int | None = None,
                     warn: Warn | None = None) -> Record:
    """Validate one decoded object; raise DataError with one line per problem. Unknown keys are
    ignored (with one `warn` line naming them)."""
    unknown: set[tuple[str, str]] = set()
    record, problems = _record_problems(obj, where(name, line), unknown)
    if problems:
        raise DataError("\n".join(problems))
    assert record is not None
    if unknown and warn is not None:
        warn(unknown_keys_warning(where(name, line), dict.fromkeys(sorted(unknown), 1)))
    return record


def _limited(problems: list[str], name: str) -> str:
    shown = problems[:MAX_PROBLEMS]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"{name}: ... and {len(problems) - MAX_PROBLEMS} more problems")
    return "\n".join(shown)


# ---------------------------------------------------------------------------------------------
# files


def read_dataset(path: str | os.PathLike[str], *, warn: Warn | None = None) -> list[Record]:
    """Read and validate a whole dataset file; raise DataError listing the problems (at most 20
    shown, then how many more). Keys the format does not know are ignored; `warn` gets one line
    naming them and how many lines had each (only when the file is otherwise valid)."""
    name = str(path)
    records: list[Record] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    unknown: set[tuple[str, str]] = set()  # this line's unknown keys
    counts: dict[tuple[str, str], int] = {}  # lines per unknown key, first seen first
    more = False
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
                record, sub = _record_problems(item, where(name, lineno), unknown)
                if unknown:
                    # Sorted, so equal counts come out in the same order on every run.
                    for key in unknown if len(unknown) == 1 else sorted(unknown):
                        if key in counts:
                            counts[key] += 1
                        elif len(counts) < MAX_UNKNOWN_TRACKED:
                            counts[key] = 1
                        else:
                            more = True
                    unknown.clear()
                rid = item.get("id")
                if isinstance(rid, str) and rid.strip():
                    if rid in first_line:
                        sub.append(
                            f"{where(name, lineno, 'id')}: duplicate id {rid!r} (first on line {first_line[rid]})"
                        )
                        record = None
                    else:
                        first_line[rid] = lineno
                if sub:
                    problems += sub
                # Keep building records only while the file is clean: nobody gets them otherwise.
                if record is not None and not problems:
                    records.append(record)
        except OSError as exc:
            raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if problems:
        raise DataError(_limited(problems, name))
    if counts and warn is not None:
        warn(unknown_keys_warning(name, counts, more))
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
