"""The collect journal: an append-only JSONL file that makes `mixllm collect` resumable and crash-safe.

Each record is one line, written with a single `write(2)` on a file opened with O_APPEND, the
moment it is known:

    {"t": "answer", "id": PROMPT, "llm": LLM, "key": PROMPT_HASH, "text": ..., "prompt_tokens": ...,
     "response_tokens": ..., "cost_usd": ..., "spend_usd": ..., "latency_ms": ..., "ttft_ms": ...,
     "usage": "reported" | "estimated", "finish": ..., "at": UNIX_TIME}
    {"t": "grade", "id": PROMPT, "llm": LLM, "g": GRADING_HASH, "grader": NAME, "quality": Q | null}
    {"t": "spend", "usd": ..., "llm": LLM, "why": ...}   # money spent without an answer to show for it
                                                        # (a judge call, a stream cut after it started)

An answer is written BEFORE it is graded, so a paid answer survives a slow grader or a kill.
After `write(2)` returns, the line is in the kernel's page cache: a `kill -9` of the process
loses nothing. Only a crash of the machine itself can lose the lines written since the last
fsync, which happens at most once a second (`Journal.sync`), and at the end.

Reading back: the last line may be torn (the process was killed in the middle of a write); it is
ignored and cut off before anything new is appended. A broken line anywhere else is corruption and
is refused. Only one process writes a journal at a time (an exclusive `flock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, MixLLMError, where

VERSION = 1
MAX_RECORD_BYTES = 64 * 1024 * 1024


class JournalBusy(MixLLMError):
    """Another `mixllm collect` is writing the same journal."""


@dataclass
class JournalState:
    """What a journal holds, folded: the first answer of each pair, its latest grade, the money spent."""

    answers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    grades: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    spent_usd: float = 0.0
    duplicates: int = 0  # answers for a pair that already had one (only two writers at once could do that)
    torn_bytes: int = 0  # the torn tail that was cut off


def journal_path_for(out: str | os.PathLike[str]) -> Path:
    """The journal beside the dataset: `DATA.jsonl` → `DATA.jsonl.journal`."""
    out = Path(out)
    return out.with_name(out.name + ".journal")


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    start, lineno = 0, 0
    while start < len(data):
        end = data.index(b"\n", start)
        lineno += 1
        yield lineno, data[start:end]
        start = end + 1


class Journal:
    """A journal: `open` locks and reads it, `append` writes one record, `close` syncs and unlocks."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._dirty = False
        self._last_sync = time.monotonic()

    def open(self) -> JournalState:
        """Lock the journal (creating it if needed), cut a torn last line, and fold what it holds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open the journal: {exc.strerror or exc}") from None
        try:
            _lock(fd, self.path)
            data = _read_all(fd)
            state = self._fold(data)
            if state.torn_bytes:
                os.ftruncate(fd, len(data) - state.torn_bytes)
            if len(data) == state.torn_bytes:  # empty, or only a torn first line
                os.write(fd, _dumps({"t": "header", "version": VERSION, "at": round(time.time(), 3)}))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return state

    def _fold(self, data: bytes) -> JournalState:
        state = JournalState()
        cut = data.rfind(b"\n") + 1
        state.torn_bytes = len(data) - cut
        name = str(self.path)
        for lineno, line in _lines(data[:cut]):
            try:
                rec = json.loads(line)
                kind = rec["t"]
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{where(name, lineno)}: not a journal record (the file is corrupt; move it "
                                "away to start over, or cut that line)") from None
            if kind == "header":
                if rec.get("version") != VERSION:
                    raise DataError(f"{where(name, lineno)}: journal version {rec.get('version')!r} is not "
                                    f"{VERSION}; this mixllm cannot resume it")
                continue
            try:
                if kind == "answer":
                    pair = (rec["id"], rec["llm"])
                    state.spent_usd += float(rec["spend_usd"])  # a duplicate was paid for too
                    if pair in state.answers:
                        state.duplicates += 1
                        continue
                    state.answers[pair] = rec
                elif kind == "grade":
                    state.grades[(rec["id"], rec["llm"])] = rec
                elif kind == "spend":
                    state.spent_usd += float(rec["usd"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where(name, lineno)}: a {kind!r} record with a missing or bad field "
                                "(the file is corrupt)") from None
        return state

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line, now (one write(2) on an O_APPEND file: never interleaved)."""
        assert self._fd is not None, "open() first"
        data = _dumps(record)
        if len(data) > MAX_RECORD_BYTES:
            raise DataError(f"{self.path}: a record of {len(data)} bytes is over the {MAX_RECORD_BYTES} limit")
        view = memoryview(data)
        while view:  # a regular file takes the whole write; loop only for exotic file systems
            n = os.write(self._fd, view)
            view = view[n:]
        self._dirty = True

    def sync(self, *, every_s: float = 1.0) -> None:
        """fsync if something was written and `every_s` seconds passed since the last one."""
        fd = self._fd
        if fd is None or not self._dirty:
            return
        now = time.monotonic()
        if now - self._last_sync >= every_s:
            self._dirty = False
            self._last_sync = now
            with contextlib.suppress(OSError):  # closed meanwhile (the run ended): close() synced it
                os.fsync(fd)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)  # also releases the lock
            self._fd = None


def peek(path: str | os.PathLike[str]) -> JournalState:
    """What a journal holds, read without locking, creating or cutting anything (for --dry-run)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return JournalState()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the journal: {exc.strerror or exc}") from None
    return Journal(path)._fold(data)


def _dumps(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode(
        "utf-8", "surrogatepass")


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one writer is the user's promise
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise JournalBusy(f"{path}: another `mixllm collect` is writing this journal; wait for it to end "
                          "(or use another --out)") from None
