"""The prompt file `mixllm collect` reads: one JSON object per line.

    {"id": "q1", "query": "What is 3 plus 4?", "task": "math", "reference": 7}
    {"id": "q2", "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Capital of France?"}],
     "reference": ["Paris"], "grader": "normalized"}
    {"id": "q3", "query": "Which is a prime?", "choices": ["4", "6", "7"], "reference": "C"}
    {"id": "q4", "query": "Write is_even(n).", "tests": ["assert is_even(2)", "assert not is_even(3)"]}

`id` and one of `query` / `messages` are required; `task`, `reference`, `choices`, `tests` and
`grader` are optional. Every problem of the file is reported at once, one line each
(`prompts.jsonl:3: choices: must be a list of 2 to 26 strings`), before anything is called. Keys
this format does not know are ignored with one warning naming them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..dataset import json_kind, parse_json_line
from ..errors import DataError, MixLLMError, where
from ..upstream import content_text

PROMPT_KEYS: tuple[str, ...] = ("id", "query", "messages", "task", "reference", "choices", "tests", "grader")
ROLES = frozenset({"system", "developer", "user", "assistant"})

# Limits: a prompt file is input from anyone; nothing in it may make collect use unbounded memory.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_PROMPTS = 1_000_000
MAX_ID_CHARS = 256
MAX_TASK_CHARS = 256
MAX_MESSAGES = 1000
MAX_CHOICES = 26  # A to Z
MAX_TESTS = 1000
MAX_REFERENCES = 1000
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Prompt:
    """One line of the prompt file, checked. `query` is the text the router reads: the `query`, or
    the last user message's text of `messages`."""

    id: str
    line: int
    query: str
    messages: tuple[Mapping[str, Any], ...]  # what is sent: [{"role": "user", "content": query}] for a query
    task: str | None = None
    reference: Any = None  # a string, a number, a list of accepted strings or numbers, or None
    choices: tuple[str, ...] | None = None
    tests: tuple[str, ...] | None = None
    grader: str | Mapping[str, Any] | None = None

    def request_messages(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.messages]

    @cached_property
    def key(self) -> str:
        """A hash of what is sent: the same id with another key means the prompt changed."""
        blob = json.dumps(self.request_messages(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    @cached_property
    def size_bytes(self) -> int:
        """UTF-8 bytes of the messages' text: an upper bound of their prompt tokens."""
        return len(json.dumps(self.request_messages(), ensure_ascii=False).encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class PromptFile:
    prompts: tuple[Prompt, ...]
    warnings: tuple[str, ...] = ()


def _messages_problems(raw: object) -> tuple[str | None, list[str]]:
    """(the last user message's text, problems as 'field: message')."""
    if not isinstance(raw, list) or not raw:
        return None, [f"messages: must be a non-empty array of messages (got {json_kind(raw)})"]
    if len(raw) > MAX_MESSAGES:
        return None, [f"messages: at most {MAX_MESSAGES} messages (got {len(raw)})"]
    problems: list[str] = []
    last_user: str | None = None
    for i, m in enumerate(raw):
        at = f"messages[{i}]"
        if not isinstance(m, dict):
            problems.append(f"{at}: must be an object with role and content (got {json_kind(m)})")
            continue
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            problems.append(f"{at}.role: must be one of {', '.join(sorted(ROLES))} (got {role!r})")
        unknown = [k for k in m if k not in ("role", "content", "name")]
        if unknown:
            problems.append(f"{at}: unknown key {unknown[0]!r}")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    problems.append(f"{at}.content[{j}]: must be a text part {{\"type\": \"text\", \"text\": ...}}")
                    break
        elif not isinstance(content, str):
            problems.append(f"{at}.content: must be a string or an array of text parts (got {json_kind(content)})")
        if role == "user":
            last_user = content_text(content)
    if not problems and (last_user is None or not last_user.strip()):
        problems.append("messages: needs a user message with text (the last one is what the router reads)")
    return last_user, problems


def _reference_problem(ref: object) -> str | None:
    if ref is None or isinstance(ref, str):
        return None
    if isinstance(ref, bool):
        return "must be a string, a number or an array of them (got boolean)"
    if isinstance(ref, (int, float)):
        return None if math.isfinite(ref) else f"must be a finite number (got {ref!r})"
    if isinstance(ref, list):
        if not ref or len(ref) > MAX_REFERENCES:
            return f"must list 1 to {MAX_REFERENCES} accepted answers (got {len(ref)})"
        for i, r in enumerate(ref):
            if isinstance(r, bool) or not isinstance(r, (str, int, float)) or (
                    isinstance(r, float) and not math.isfinite(r)):
                return f"[{i}]: must be a string or a finite number (got {json_kind(r)})"
        return None
    return f"must be a string, a number or an array of them (got {json_kind(ref)})"


def _strings_problem(value: object, lo: int, hi: int, what: str) -> str | None:
    if not isinstance(value, list) or not lo <= len(value) <= hi:
        got = f"{len(value)} items" if isinstance(value, list) else json_kind(value)
        return f"must be an array of {lo} to {hi} {what} (got {got})"
    for i, s in enumerate(value):
        if not isinstance(s, str) or not s.strip():
            return f"[{i}]: must be a non-empty string (got {s!r})" if not isinstance(s, str) else \
                f"[{i}]: must not be empty"
    return None


def _grader_problem(value: object) -> str | None:
    if isinstance(value, str):
        return None if value.strip() and len(value) <= 512 else "must be a grader name (a non-empty string)"
    if isinstance(value, dict):
        name = value.get("name")
        if not isinstance(name, str) or not name.strip():
            return "must have a name: {\"name\": \"regex\", \"pattern\": ...}"
        return None
    return f"must be a grader name or an object with a name (got {json_kind(value)})"


def check_prompt(obj: Mapping[str, Any], name: str, line: int) -> tuple[Prompt | None, list[str], list[str]]:
    """(the prompt or None, problems as full lines, unknown keys) of one decoded line."""
    at = where(name, line)
    problems: list[str] = []
    unknown = [k for k in obj if k not in PROMPT_KEYS]

    def bad(field: str, msg: str) -> None:
        problems.append(f"{at}: {field}: {msg}")

    pid = obj.get("id")
    if "id" not in obj:
        bad("id", "missing (required)")
    elif not isinstance(pid, str) or not pid.strip():
        bad("id", f"must be a non-empty string (got {pid!r})" if not isinstance(pid, str) else "must not be empty")
    elif len(pid) > MAX_ID_CHARS:
        bad("id", f"at most {MAX_ID_CHARS} characters (got {len(pid)})")
    query, messages = obj.get("query"), obj.get("messages")
    text: str | None = None
    sent: list[dict[str, Any]] = []
    if "query" in obj and "messages" in obj:
        bad("query", "give either query or messages, not both")
    elif "query" in obj:
        if not isinstance(query, str):
            bad("query", f"must be a string (got {json_kind(query)})")
        elif not query.strip():
            bad("query", "must not be empty")
        else:
            text = query
            sent = [{"role": "user", "content": query}]
    elif "messages" in obj:
        text, sub = _messages_problems(messages)
        for p in sub:
            problems.append(f"{at}: {p}")
        if not sub:
            sent = [dict(m) for m in messages]  # type: ignore[union-attr]  # checked: a list of objects
    else:
        bad("query", "missing (give query or messages)")
    task = obj.get("task")
    if task is not None and (not isinstance(task, str) or not task.strip() or len(task) > MAX_TASK_CHARS):
        bad("task", f"must be a non-empty string of at most {MAX_TASK_CHARS} characters (got {json_kind(task)})"
            if not isinstance(task, str) else f"must be a non-empty string of at most {MAX_TASK_CHARS} characters")
    ref = obj.get("reference")
    msg = _reference_problem(ref)
    if msg:
        bad("reference", msg)
    choices, tests = obj.get("choices"), obj.get("tests")
    if choices is not None and (msg := _strings_problem(choices, 2, MAX_CHOICES, "strings")):
        bad("choices", msg)
    if tests is not None and (msg := _strings_problem(tests, 1, MAX_TESTS, "test snippets")):
        bad("tests", msg)
    grader = obj.get("grader")
    if grader is not None and (msg := _grader_problem(grader)):
        bad("grader", msg)
    if problems or text is None or not isinstance(pid, str):
        return None, problems, unknown
    return Prompt(
        id=pid, line=line, query=text, messages=tuple(sent), task=task,
        reference=ref, choices=None if choices is None else tuple(choices),
        tests=None if tests is None else tuple(tests), grader=grader,
    ), [], unknown


def read_prompts(path: str | os.PathLike[str]) -> PromptFile:
    """Read and check a prompt file; raise DataError listing its problems (at most 20 shown)."""
    name = str(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; bytes so a bad line cannot end reading
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    prompts: list[Prompt] = []
    problems: list[str] = []
    unknown: dict[str, int] = {}  # key -> first line
    first_line: dict[str, int] = {}
    with fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
            if not raw:
                break
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                problems.append(f"{where(name, lineno)}: longer than {MAX_LINE_BYTES} bytes")
                while raw and not raw.endswith(b"\n"):  # skip the rest of that line
                    raw = fh.readline(MAX_LINE_BYTES + 1)
                continue
            if not raw.strip():
                continue
            try:
                obj = parse_json_line(raw, name, lineno)
            except MixLLMError as exc:
                problems.append(str(exc))
                continue
            prompt, sub, extra = check_prompt(obj, name, lineno)
            for key in extra:
                unknown.setdefault(key, lineno)
            pid = obj.get("id")
            if isinstance(pid, str) and pid.strip():
                if pid in first_line:
                    sub.append(f"{where(name, lineno, 'id')}: duplicate id {pid!r} (first on line {first_line[pid]})")
                    prompt = None
                else:
                    first_line[pid] = lineno
            problems += sub
            if prompt is not None and not problems:
                prompts.append(prompt)
            if len(first_line) > MAX_PROMPTS:
                problems.append(f"{where(name, lineno)}: more than {MAX_PROMPTS} prompts; split the file")
                break
            if len(problems) > 10 * MAX_PROBLEMS:
                break
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"{name}: ... and more problems ({len(problems) - MAX_PROBLEMS} more found before stopping)"
                         if len(problems) > 10 * MAX_PROBLEMS else
                         f"{name}: ... and {len(problems) - MAX_PROBLEMS} more problems")
        raise DataError("\n".join(shown))
    if not prompts:
        raise DataError(f"{name}: no prompts (the file is empty)")
    warnings: list[str] = []
    if unknown:
        keys = ", ".join(f"{k!r} (first on line {n})" for k, n in list(unknown.items())[:10])
        warnings.append(f"{name}: ignored keys this format does not know: {keys}")
    return PromptFile(tuple(prompts), tuple(warnings))
