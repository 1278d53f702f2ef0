"""`mixllm collect`: call each chosen LLM on each prompt, grade the answers, write the routing dataset.

    report = collect("prompts.jsonl", "data.jsonl", load_catalogue("models.yaml"),
                     llms=["gpt-x", "local-y"], options=CollectOptions(max_usd=5.0))

The flow, per (prompt, LLM) pair not yet answered in the journal (`journal.py`):
wait for the LLM's turn (its `slots`, `--rpm`, a Retry-After pause) and a free place under
`--concurrency`; reserve the call's worst-case cost under `--max-usd` (`limits.SpendCap`); stream
the call (`client.call_once`), retrying 429 / 5xx / timeouts / connection errors with backoff;
append the answer to the journal the moment it arrives; then grade it in a worker thread and
append the grade. The dataset file is rewritten atomically from the journal at the start of a
resumed run and at the end, whatever ends the run (a spend cap, Ctrl-C, an error).

An LLM that answers 401/403/404, or fails 5 pairs in a row after all retries, is given up for
the run; its missing outcomes stay absent (never scored 0) and the report says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, MixLLMError, UsageError, where
from .client import CallFailed, Reply, call_once, redactor
from .journal import Journal, JournalState, journal_path_for, peek
from .limits import Pace, SpendCap, backoff_s, worst_case_usd
from .prompts import Prompt, read_prompts

if TYPE_CHECKING:
    import httpx

    from ..catalogue import LLM, Catalogue
    from .graders import Grader

NO_GRADER = "none"  # --grader none: collect answers, grade nothing (quality stays null)
GIVE_UP_AFTER = 5  # pairs in a row that failed after every retry: the LLM is given up for the run
MAX_PENDING_GRADES = 512  # answers waiting for a grader before calls pause (bounds memory)
PROGRESS_EVERY_S = 0.25
# Built-in graders that only scan the answer's text: graded on the event loop, up to INLINE_MAX_CHARS.
# (A thread would not shield the loop from a pathological `regex` pattern either: `re` holds the GIL.)
# The others (python runs code, judge calls an LLM, users' graders can do anything) run in threads.
INLINE_GRADERS = frozenset({"choice", "exact", "normalized", "number", "regex"})
INLINE_MAX_CHARS = 64 * 1024
ERRORS_KEPT = 5  # distinct error messages kept per LLM for the report


class CollectIncomplete(MixLLMError):
    """The run ended with pairs left to do (spend cap, failures): the dataset holds what was done."""


# ---------------------------------------------------------------------------------------------
# options, progress, report


@dataclass(frozen=True)
class CollectOptions:
    """How a collect run behaves; every number is checked (UsageError naming the option)."""

    grader: str | Mapping[str, Any] | None = None  # the run's grader (a line's "grader" wins); None: by the line
    judge: str | None = None  # the catalogue LLM the judge grader asks
    max_tokens: int = 1024
    max_usd: float | None = None
    concurrency: int = 32
    slots: int | None = None  # calls in flight per LLM (default: its catalogue slots)
    rpm: float | None = None  # call starts per minute per LLM
    max_retries: int = 5
    timeout_s: float = 120.0  # no byte from the endpoint for this long: the attempt has failed
    temperature: float | None = None
    stream: bool = True
    keep_answers: bool = False
    journal: Path | None = None  # default: <out>.journal
    grade_workers: int = 8
    dry_run: bool = False
    backoff_s: float = 0.5  # first retry delay; doubles each retry (library only: tests make it small)

    def __post_init__(self) -> None:
        def bad(param: str, msg: str) -> None:
            raise UsageError(msg, param=param)

        def number(param: str, value: float | None, lo: float, hi: float, integer: bool = False) -> None:
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
                bad(param, f"must be {'an integer' if integer else 'a number'} (got {value!r})")
            if not (math.isfinite(value) and lo <= value <= hi):
                bad(param, f"must be between {lo:g} and {hi:g} (got {value!r})")

        number("max_tokens", self.max_tokens, 1, 1_000_000, integer=True)
        number("max_usd", self.max_usd, 0, 1e9)
        number("concurrency", self.concurrency, 1, 1024, integer=True)
        number("slots", self.slots, 1, 1024, integer=True)
        number("rpm", self.rpm, 0.001, 1e7)
        number("max_retries", self.max_retries, 0, 20, integer=True)
        number("timeout_s", self.timeout_s, 0.05, 86400)
        number("temperature", self.temperature, 0, 2)
        number("grade_workers", self.grade_workers, 1, 256, integer=True)
        number("backoff_s", self.backoff_s, 0, 60)


@dataclass(frozen=True)
class CollectProgress:
    """A snapshot for a progress bar: calls of this run and money (all runs of the journal)."""

    total: int  # calls this run set out to make
    done: int  # of which finished: answered, failed, or skipped (LLM given up, spend cap)
    answered: int
    failed: int
    graded: int
    to_grade: int  # answers this run must grade (new ones and those left ungraded before)
    spent_usd: float
    max_usd: float | None
    elapsed_s: float
    stopping: str | None  # why no new call starts, when something stopped the run


@dataclass(frozen=True)
class LLMSummary:
    """One LLM in the report. Outcome counts and figures are over the prompt file's prompts in the
    journal (every run); `*_run` counts only this run."""

    llm: str
    outcomes: int
    graded: int
    mean_quality: float | None
    spent_usd: float
    latency_ms_p50: float | None
    ttft_ms_p50: float | None
    output_tokens_per_s: float | None  # after the first token: sum(tokens − 1) / sum(latency − ttft)
    truncated: int  # answers that stopped at --max-tokens
    estimated_usage: int  # answers whose endpoint reported no usage (tokens estimated, cost = worst case)
    missing: int  # prompts of the file without its outcome
    answered_run: int
    failed_run: int
    skipped_run: int
    given_up: str | None
    errors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["errors"] = list(self.errors)
        return out


@dataclass(frozen=True)
class CollectReport:
    out: Path
    journal: Path
    prompts: int
    llms: tuple[str, ...]
    planned_calls: int  # pairs this run had to call (not in the journal yet)
    resumed_answers: int  # pairs already answered in the journal when the run started
    answered_run: int
    failed_run: int
    skipped_run: int
    graded_run: int
    grade_errors: int
    ungraded: int  # answers in the dataset without a current grade
    spent_usd_run: float
    spent_usd_total: float
    max_usd: float | None
    worst_case_usd: float  # of the calls planned (what a --dry-run tells)
    capped: bool
    refused_usd: float | None  # the worst case of the call the cap refused
    max_tokens: int
    records: int  # lines written to the dataset
    elapsed_s: float
    dry_run: bool
    per_llm: tuple[LLMSummary, ...]
    judge: str | None = None
    warnings: tuple[str, ...] = ()
    grade_error_messages: tuple[str, ...] = ()
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """Every pair answered and every answer graded."""
        return not self.dry_run and not self.capped and not self.interrupted and self.ungraded == 0 and all(
            s.missing == 0 for s in self.per_llm)

    def problem(self) -> str | None:
        """Why the run is incomplete, in one line (None when complete)."""
        if self.dry_run:
            return None
        parts = []
        if self.capped:
            refused = "" if self.refused_usd is None else (
                f"; the next call could cost up to ${self.refused_usd:.4f} at --max-tokens {self.max_tokens}, "
                "a lower --max-tokens reserves less")
            parts.append(f"the spend cap --max-usd {self.max_usd:g} stopped the run (${self.spent_usd_total:.4f} "
                         f"spent in this journal{refused}); raise it to go on")
        if self.interrupted:
            parts.append("interrupted")
        missing = {s.llm: s.missing for s in self.per_llm if s.missing}
        if missing:
            parts.append("outcomes missing: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
        if self.ungraded:
            parts.append(f"{self.ungraded} answers not graded")
        if not parts:
            return None
        return "; ".join(parts) + f"; {self.out} holds what was done; run the same command again to resume"

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "per_llm"}
        out["out"], out["journal"] = str(self.out), str(self.journal)
        out["llms"] = list(self.llms)
        out["warnings"], out["grade_error_messages"] = list(self.warnings), list(self.grade_error_messages)
        out["complete"] = self.complete
        out["per_llm"] = [s.to_dict() for s in self.per_llm]
        return out


# ---------------------------------------------------------------------------------------------
# setting up: LLMs, graders


def choose_llms(catalogue: Catalogue, llms: Sequence[str] | None) -> list[LLM]:
    """The LLMs to call: those named (each must have a base_url), else every one with a base_url."""
    if llms is None:
        chosen = [llm for llm in catalogue if llm.base_url is not None]
        if not chosen:
            raise UsageError("no LLM of the catalogue has a base_url to call; add base_url (and api_key_env) "
                             "to its entries in models.yaml", param="llms")
        return chosen
    if not llms:
        raise UsageError("name at least one LLM", param="llms")
    out: list[LLM] = []
    for name in llms:
        if name not in catalogue:
            raise UsageError(f"unknown LLM {name!r}; known: {', '.join(catalogue.ids)}", param="llms")
        llm = catalogue.get(name)
        if llm.base_url is None:
            raise UsageError(f"LLM {name!r} has no base_url in the catalogue, so it cannot be called", param="llms")
        if llm not in out:
            out.append(llm)
    return out


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class _Grading:
    """The grader of each prompt and the hash of what its grade depends on."""

    graders: dict[str, Grader | None]  # canonical spec -> loaded grader, with its options (None: --grader none)
    inline: set[str]  # specs of built-in text graders, run on the event loop (see _Run._schedule_grade)
    names: dict[str, str]  # canonical spec -> the grader as outcomes record it (graders.grader_spec_json)
    spec_of: dict[str, str]  # prompt id -> canonical spec
    hash_of: dict[str, str]  # prompt id -> grading hash

    def grader_of(self, pid: str) -> Grader | None:
        return self.graders[self.spec_of[pid]]


def _plan_grading(prompts: Sequence[Prompt], run_grader: str | Mapping[str, Any] | None, judge: str | None,
                  judge_call: Callable[[list[dict[str, str]]], str] | None, name: str) -> _Grading:
    from .graders import default_grader, grader_spec_json, load_grader

    specs: dict[str, str] = {}
    loaded: dict[str, Any] = {}
    names: dict[str, str] = {}
    raw_specs: dict[str, Any] = {}
    hashes: dict[str, str] = {}
    for p in prompts:
        spec = p.grader if p.grader is not None else run_grader
        if spec is None:
            spec = default_grader(p.reference, p.choices, p.tests)
        key = _canonical(spec)
        specs[p.id] = key
        if key not in raw_specs:
            raw_specs[key] = (spec, p)
        spec_name = spec if isinstance(spec, str) else spec.get("name")
        uses_judge = spec_name == "judge"
        hashes[p.id] = hashlib.sha256(_canonical(
            [key, p.reference, p.choices, p.tests, judge if uses_judge else None]).encode()).hexdigest()[:24]
    for key, (spec, first) in raw_specs.items():
        spec_name = spec if isinstance(spec, str) else str(spec.get("name"))
        names[key] = grader_spec_json(spec)
        if spec == NO_GRADER:
            loaded[key] = None
            continue
        from_line = first.grader is not None
        at = f"{where(name, first.line, 'grader')}: " if from_line else ""
        if spec_name == "judge" and judge is None:
            if from_line:
                raise UsageError(f"{at}the judge grader needs a judge LLM: pass --judge LLM_ID")
            if run_grader is not None:
                raise UsageError("the judge grader needs a judge LLM: pass --judge LLM_ID", param="grader")
            raise UsageError(f"{where(name, first.line)}: it has no reference, choices or tests to grade against, so "
                             "it needs the judge grader: pass --judge LLM_ID (or give the line a reference)")
        try:
            loaded[key] = load_grader(spec, judge=judge_call)
        except MixLLMError as exc:
            if from_line:
                raise DataError(f"{at}{exc.message}") from None
            raise UsageError(exc.message, param="grader") from None
    inline = {key for key, (spec, _) in raw_specs.items()
              if (spec if isinstance(spec, str) else spec.get("name")) in INLINE_GRADERS and loaded[key] is not None}
    return _Grading(loaded, inline, names, specs, hashes)


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class _LLMRun:
    llm: LLM
    url: str
    headers: dict[str, str]
    base_body: dict[str, Any]
    pending: list[int]  # prompt indexes to call, in file order
    pace: Pace
    sem: asyncio.Semaphore
    answered: int = 0
    failed: int = 0
    skipped: int = 0
    failed_in_row: int = 0
    given_up: str | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def note_error(self, message: str) -> None:
        if message in self.errors or len(self.errors) < ERRORS_KEPT:
            self.errors[message] = self.errors.get(message, 0) + 1


class _Run:
    """One run's state on the event loop."""

    def __init__(self, *, prompts: Sequence[Prompt], runs: dict[str, _LLMRun], judge: _LLMRun | None,
                 grading: _Grading, journal: Journal, state: JournalState, options: CollectOptions,
                 scrub: Callable[[str], str], progress: Callable[[CollectProgress], None] | None,
                 to_grade: list[tuple[str, str]]) -> None:
        self.prompts = prompts
        self.by_id = {p.id: p for p in prompts}
        self.runs = runs
        self.judge = judge
        self.grading = grading
        self.journal = journal
        self.state = state
        self.options = options
        self.scrub = scrub
        self.progress_cb = progress
        self.to_grade_first = to_grade
        self.total = sum(len(r.pending) for r in runs.values())
        self.cap = SpendCap(options.max_usd, state.spent_usd)
        self.spent_before = state.spent_usd
        self.graded = 0
        self.grade_errors: dict[str, int] = {}
        self.grade_errors_other = 0  # beyond the 20 distinct messages kept
        from .graders import GradeTask

        self.grade_task = GradeTask
        self.to_grade = len(to_grade)
        self.started = time.monotonic()
        self._last_progress = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.judge_client: httpx.AsyncClient | None = None
        self.global_sem: asyncio.Semaphore | None = None
        self.grade_sem: asyncio.Semaphore | None = None
        self.grade_tasks: set[asyncio.Task[None]] = set()

    # --- progress ---------------------------------------------------------------------------
    def snapshot(self) -> CollectProgress:
        answered = sum(r.answered for r in self.runs.values())
        failed = sum(r.failed for r in self.runs.values())
        skipped = sum(r.skipped for r in self.runs.values())
        return CollectProgress(
            total=self.total, done=answered + failed + skipped, answered=answered, failed=failed,
            graded=self.graded, to_grade=self.to_grade, spent_usd=self.cap.spent, max_usd=self.options.max_usd,
            elapsed_s=time.monotonic() - self.started, stopping="spend cap" if self.cap.stopped else None)

    def tick(self, force: bool = False) -> None:
        if self.progress_cb is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self.progress_cb(self.snapshot())

    # --- main -------------------------------------------------------------------------------
    async def main(self) -> None:
        import httpx

        self.loop = asyncio.get_running_loop()
        self.global_sem = asyncio.Semaphore(self.options.concurrency)
        self.grade_sem = asyncio.Semaphore(MAX_PENDING_GRADES)
        self.executor = ThreadPoolExecutor(self.options.grade_workers, thread_name_prefix="mixllm-grade")
        timeout = httpx.Timeout(self.options.timeout_s, connect=min(self.options.timeout_s, 30.0))
        # One SSL context for every client: building one reads the CA bundle (~35 ms of CPU).
        ssl_context = _ssl_context()

        def client(connections: int) -> httpx.AsyncClient:
            # One small pool per worker: httpcore scans its whole pool on every request, so one shared
            # pool of 32+ connections costs ~1.7 ms of CPU a call more (docs/COLLECT.md).
            return httpx.AsyncClient(timeout=timeout, verify=ssl_context,
                                     limits=httpx.Limits(max_connections=connections,
                                                         max_keepalive_connections=connections))

        clients: list[httpx.AsyncClient] = []
        ticker = asyncio.create_task(self._ticker())
        try:
            if self.judge is not None:
                self.judge_client = client(min(self.options.grade_workers, self.options.concurrency))
                clients.append(self.judge_client)
            workers = [asyncio.create_task(self._grade_backlog())]  # answers of earlier runs, beside new calls
            for run in self.runs.values():
                n = min(self.options.slots or run.llm.slots, self.options.concurrency, len(run.pending))
                run.sem = asyncio.Semaphore(self.options.slots or run.llm.slots)
                if self.judge is not None and self.judge.llm.id == run.llm.id:
                    self.judge.sem = run.sem  # the judge's calls share the LLM's slots
                it = iter(run.pending)
                for _ in range(n):
                    c = client(1)
                    clients.append(c)
                    workers.append(asyncio.create_task(self._worker(run, it, c)))
            await asyncio.gather(*workers)
            while self.grade_tasks:
                await asyncio.gather(*list(self.grade_tasks))
        finally:
            ticker.cancel()
            for t in self.grade_tasks:
                t.cancel()
            for c in clients:
                await c.aclose()
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.tick(force=True)

    async def _grade_backlog(self) -> None:
        for k, pair in enumerate(self.to_grade_first):
            await self._schedule_grade(pair)
            if k % 64 == 63:
                await asyncio.sleep(0)  # inline grades do not yield: let the calls in flight go on

    async def _ticker(self) -> None:
        """Progress when nothing else happens, and the journal's fsync at most once a second."""
        assert self.loop is not None
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S * 2)
            self.tick()
            await self.loop.run_in_executor(None, self.journal.sync)

    async def _worker(self, run: _LLMRun, pending: Any, client: httpx.AsyncClient) -> None:
        for index in pending:
            if run.given_up is not None or self.cap.stopped:
                run.skipped += 1
                continue
            await self._call_pair(run, self.prompts[index], client)
            self.tick()

    async def _call_pair(self, run: _LLMRun, prompt: Prompt, client: httpx.AsyncClient) -> None:
        llm = run.llm
        body = {**run.base_body, "messages": prompt.request_messages()}
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        prompt_bytes = prompt.size_bytes
        reserve = worst_case_usd(prompt_bytes, self.options.max_tokens, llm.input_usd_per_mtok, llm.output_usd_per_mtok)
        reply = await self._call(run, client, data, reserve, prompt.id)
        if reply is None:
            return
        reply_, spend, estimated = reply
        prompt_tokens, response_tokens = reply_.prompt_tokens, reply_.completion_tokens
        if estimated:
            prompt_tokens = prompt_tokens if prompt_tokens is not None else -(-prompt_bytes // 4)
            response_tokens = response_tokens if response_tokens is not None else -(-len(reply_.text.encode()) // 4)
        assert prompt_tokens is not None and response_tokens is not None
        cost = (prompt_tokens * llm.input_usd_per_mtok + response_tokens * llm.output_usd_per_mtok) / 1e6
        rec: dict[str, Any] = {
            "t": "answer", "id": prompt.id, "llm": llm.id, "key": prompt.key, "text": reply_.text,
            "prompt_tokens": prompt_tokens, "response_tokens": response_tokens, "cost_usd": cost, "spend_usd": spend,
            "latency_ms": round(reply_.latency_ms, 3),
            "ttft_ms": None if reply_.ttft_ms is None else round(reply_.ttft_ms, 3),
            "usage": "estimated" if estimated else "reported", "finish": reply_.finish, "at": round(time.time(), 3)}
        self.journal.append(rec)  # before grading: a paid answer is never lost
        self.state.answers[(prompt.id, llm.id)] = rec
        run.answered += 1
        run.failed_in_row = 0
        if self.grading.grader_of(prompt.id) is not None:
            self.to_grade += 1
            await self._schedule_grade((prompt.id, llm.id))

    async def _call(self, run: _LLMRun, client: httpx.AsyncClient, data: bytes, reserve: float,
                    pid: str | None) -> tuple[Reply, float, bool] | None:
        """The call with its retries: (the reply, what it counts against the cap, usage estimated?), or
        None when it failed (recorded on `run`) or the cap stopped it. `pid` None: a judge call."""
        assert self.global_sem is not None
        llm = run.llm
        last: CallFailed | None = None
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                assert last is not None
                await asyncio.sleep(backoff_s(attempt, self.options.backoff_s, last.retry_after_s))
            await run.pace.wait_turn()
            if run.given_up is not None and pid is not None:
                run.skipped += 1
                return None
            async with self.global_sem, run.sem:
                if not await self.cap.reserve(reserve):
                    if pid is not None:
                        run.skipped += 1
                    return None
                try:
                    reply = await call_once(client, run.url, run.headers, data, llm_id=llm.id, scrub=self.scrub)
                except CallFailed as exc:
                    spent = reserve if exc.billed else 0.0
                    self.cap.settle(reserve, spent)
                    if spent:
                        self.journal.append({"t": "spend", "usd": spent, "llm": llm.id, "id": pid,
                                             "why": exc.message[:200], "at": round(time.time(), 3)})
                    last = exc
                except BaseException:  # cancelled mid-call (Ctrl-C): it may be billed; count its worst case
                    self.cap.settle(reserve, reserve)
                    self.journal.append({"t": "spend", "usd": reserve, "llm": llm.id, "id": pid,
                                         "why": "interrupted mid-call", "at": round(time.time(), 3)})
                    raise
                else:
                    estimated = reply.prompt_tokens is None or reply.completion_tokens is None
                    actual = reserve if estimated else (reply.prompt_tokens * llm.input_usd_per_mtok  # type: ignore[operator]
                                                        + reply.completion_tokens * llm.output_usd_per_mtok) / 1e6  # type: ignore[operator]
                    self.cap.settle(reserve, actual)
                    return reply, actual, estimated
            if last.retry_after_s is not None:
                run.pace.pause(last.retry_after_s)
            if last.scope != "retry":
                break
        assert last is not None
        if pid is None:
            raise _JudgeFailed(last.message)
        run.failed += 1
        run.failed_in_row += 1
        run.note_error(last.message)
        if last.scope == "llm":
            run.given_up = last.message
        elif run.failed_in_row >= GIVE_UP_AFTER and run.given_up is None:
            run.given_up = f"{GIVE_UP_AFTER} prompts in a row failed after {self.options.max_retries} retries " \
                           f"(last: {last.message})"
        return None

    # --- grading ----------------------------------------------------------------------------
    async def _schedule_grade(self, pair: tuple[str, str]) -> None:
        """Grade an answer: at once on the event loop for the built-in text graders (microseconds;
        a thread hand-off costs ten times the grading), else in the grader threads."""
        assert self.grade_sem is not None
        spec = self.grading.spec_of[pair[0]]
        if spec in self.grading.inline and len(self.state.answers[pair]["text"]) <= INLINE_MAX_CHARS:
            self._graded(pair, spec, self._grade_outcome(spec, self._grade_task(pair)))
            return
        await self.grade_sem.acquire()
        task = asyncio.create_task(self._grade_in_thread(pair, spec))
        self.grade_tasks.add(task)
        task.add_done_callback(self.grade_tasks.discard)

    async def _grade_in_thread(self, pair: tuple[str, str], spec: str) -> None:
        assert self.grade_sem is not None and self.loop is not None
        try:
            outcome = await self.loop.run_in_executor(self.executor, self._grade_outcome, spec, self._grade_task(pair))
            self._graded(pair, spec, outcome)
        finally:
            self.grade_sem.release()

    def _grade_task(self, pair: tuple[str, str]) -> Any:
        prompt = self.by_id[pair[0]]
        return self.grade_task(id=prompt.id, prompt=prompt.query, answer=self.state.answers[pair]["text"],
                               reference=prompt.reference, choices=prompt.choices, tests=prompt.tests)

    def _grade_outcome(self, spec: str, task: Any) -> float | None | str:
        """The grade, or the message of why there is none (a grader's bug must not end a paid run)."""
        grader = self.grading.graders[spec]
        assert grader is not None
        name = self.grading.names[spec]
        try:
            quality = grader.grade(task)
        except Exception as exc:  # noqa: BLE001 - reported, and the answer stays ungraded
            return f"grader {name}: {type(exc).__name__}: {exc}"
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, (int, float))
                                    or not (math.isfinite(quality) and 0 <= quality <= 1)):
            return f"grader {name}: returned {quality!r}, not a quality in [0, 1] or None"
        return None if quality is None else float(quality)

    def _graded(self, pair: tuple[str, str], spec: str, outcome: float | None | str) -> None:
        if isinstance(outcome, str):
            self._grade_error(outcome)
        else:
            rec = {"t": "grade", "id": pair[0], "llm": pair[1], "g": self.grading.hash_of[pair[0]],
                   "grader": self.grading.names[spec], "quality": outcome}
            self.journal.append(rec)
            self.state.grades[pair] = rec
            self.graded += 1
            if not self.options.keep_answers:
                self.state.answers[pair].pop("text", None)  # graded: the journal keeps it, memory need not
        self.tick()

    def _grade_error(self, message: str) -> None:
        msg = self.scrub(message)
        if msg in self.grade_errors or len(self.grade_errors) < 20:
            self.grade_errors[msg] = self.grade_errors.get(msg, 0) + 1
        else:
            self.grade_errors_other += 1

    def judge_call(self, messages: list[dict[str, str]]) -> str:
        """The JudgeCall graders get: blocking, from a grader thread; the call runs on the event loop
        with the judge LLM's slots, retries and the spend cap."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self._judge(messages), self.loop)
        return future.result()

    async def _judge(self, messages: list[dict[str, str]]) -> str:
        assert self.judge is not None and self.judge_client is not None
        run = self.judge
        llm = run.llm
        data = json.dumps({**run.base_body, "messages": messages}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8", "surrogatepass")
        reserve = worst_case_usd(len(data), self.options.max_tokens, llm.input_usd_per_mtok, llm.output_usd_per_mtok)
        out = await self._call(run, self.judge_client, data, reserve, None)
        if out is None:
            raise _JudgeFailed("the spend cap leaves no room for the judge's call")
        reply, spend, _ = out
        self.journal.append({"t": "spend", "usd": spend, "llm": llm.id, "why": "judge", "at": round(time.time(), 3)})
        return reply.text


def _ssl_context() -> Any:
    """httpx's default SSL context (certifi, SSL_CERT_FILE / SSL_CERT_DIR honoured), built once."""
    import httpx

    make: Any = getattr(httpx, "create_ssl_context", None)
    if make is None:  # httpx 0.27 keeps it private
        from httpx._config import create_ssl_context as make
    return make()


class _JudgeFailed(MixLLMError):
    """The judge LLM could not grade an answer (after retries, or the spend cap)."""


# ---------------------------------------------------------------------------------------------
# the dataset and the summary, from the journal


def _outcomes(prompts: Sequence[Prompt], state: JournalState, grading: _Grading,
              keep_answers: bool) -> tuple[list[Any], int]:
    """The dataset records (prompts with at least one answer, in file order) and how many answers
    have no current grade."""
    from ..dataset import Outcome, Record

    by_prompt: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for (pid, llm_id), rec in state.answers.items():
        by_prompt.setdefault(pid, []).append((llm_id, rec))
    records, ungraded = [], 0
    for p in prompts:
        answers = by_prompt.get(p.id)
        if not answers:
            continue
        outcomes = {}
        for llm_id, rec in answers:
            grade = state.grades.get((p.id, llm_id))
            current = grade is not None and grade.get("g") == grading.hash_of[p.id]
            if not current and grading.grader_of(p.id) is not None:
                ungraded += 1
            outcomes[llm_id] = Outcome(
                quality=grade["quality"] if current and grade is not None else None,
                prompt_tokens=rec["prompt_tokens"], response_tokens=rec["response_tokens"], cost_usd=rec["cost_usd"],
                latency_ms=rec.get("latency_ms"), ttft_ms=rec.get("ttft_ms"),
                answer=rec["text"] if keep_answers else None,
                grader=grade["grader"] if current and grade is not None else None)
        records.append(Record(id=p.id, query=p.query, task=p.task, outcomes=outcomes))
    return records, ungraded


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _summaries(prompts: Sequence[Prompt], state: JournalState, grading: _Grading,
               llm_ids: Sequence[str], runs: Mapping[str, _LLMRun]) -> tuple[LLMSummary, ...]:
    ids = {p.id for p in prompts}
    out = []
    for llm_id in llm_ids:
        recs = [(pid, r) for (pid, lid), r in state.answers.items() if lid == llm_id and pid in ids]
        qualities = []
        for pid, _ in recs:
            g = state.grades.get((pid, llm_id))
            if g is not None and g.get("g") == grading.hash_of[pid] and g.get("quality") is not None:
                qualities.append(float(g["quality"]))
        ttfts = [r["ttft_ms"] for _, r in recs if r.get("ttft_ms") is not None]
        gen_tokens = gen_ms = 0.0
        for _, r in recs:
            if r.get("ttft_ms") is not None and r["usage"] == "reported" and r["response_tokens"] > 1:
                gen_tokens += r["response_tokens"] - 1
                gen_ms += max(r["latency_ms"] - r["ttft_ms"], 0.0)
        run = runs.get(llm_id)
        out.append(LLMSummary(
            llm=llm_id, outcomes=len(recs), graded=len(qualities),
            mean_quality=round(statistics.fmean(qualities), 6) if qualities else None,
            spent_usd=round(sum(r["spend_usd"] for _, r in recs), 8),
            latency_ms_p50=_median([r["latency_ms"] for _, r in recs]), ttft_ms_p50=_median(ttfts),
            output_tokens_per_s=round(gen_tokens / (gen_ms / 1000.0), 3) if gen_ms > 0 and gen_tokens else None,
            truncated=sum(1 for _, r in recs if r.get("finish") == "length"),
            estimated_usage=sum(1 for _, r in recs if r.get("usage") == "estimated"),
            missing=len(prompts) - len(recs) if run is not None else 0,
            answered_run=run.answered if run else 0, failed_run=run.failed if run else 0,
            skipped_run=run.skipped if run else 0, given_up=run.given_up if run else None,
            errors=tuple(f"{m} (x{n})" if n > 1 else m for m, n in run.errors.items()) if run else ()))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# the entry point


def collect(prompts_path: str | os.PathLike[str], out_path: str | os.PathLike[str], catalogue: Catalogue, *,
            llms: Sequence[str] | None = None, options: CollectOptions | None = None,
            progress: Callable[[CollectProgress], None] | None = None,
            environ: Mapping[str, str] | None = None) -> CollectReport:
    """Collect the chosen LLMs' graded outcomes on a prompt file into a routing dataset (see the
    module docstring). Returns the report; raises MixLLMError before any call for bad input (prompt
    file, LLMs, graders, options, a journal whose prompts changed)."""
    from ..dataset import write_dataset
    from ..upstream import upstream_call

    options = options or CollectOptions()
    environ = os.environ if environ is None else environ
    started = time.monotonic()
    out = Path(out_path)
    name = str(prompts_path)
    pfile = read_prompts(prompts_path)
    prompts = pfile.prompts
    chosen = choose_llms(catalogue, llms)
    judge_llm = None
    if options.judge is not None:
        if options.judge not in catalogue:
            raise UsageError(f"unknown LLM {options.judge!r}; known: {', '.join(catalogue.ids)}", param="judge")
        judge_llm = catalogue.get(options.judge)
        if judge_llm.base_url is None:
            raise UsageError(f"LLM {options.judge!r} has no base_url in the catalogue, so it cannot judge",
                             param="judge")
    # Every request, key and grader is checked before the first call.
    extra: dict[str, Any] = {"max_tokens": options.max_tokens, "stream": options.stream}
    if options.temperature is not None:
        extra["temperature"] = options.temperature
    built: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {}
    for llm in [*chosen, *([judge_llm] if judge_llm else [])]:
        built[llm.id] = upstream_call(llm, extra, environ)
    secrets = [environ.get(llm.api_key_env or "", "") for llm in [*chosen, *([judge_llm] if judge_llm else [])]]
    scrub = redactor(secrets)

    holder: dict[str, _Run] = {}

    def judge_call(messages: list[dict[str, str]]) -> str:
        return holder["run"].judge_call(messages)

    grading = _plan_grading(prompts, options.grader, options.judge, judge_call if judge_llm else None, name)
    journal_path = options.journal or journal_path_for(out)
    if not options.dry_run and not journal_path.exists() and out.is_file() and out.stat().st_size:
        raise UsageError(f"{out} exists and has no journal beside it ({journal_path.name}): it is not a collect "
                         "run's output, and collect would replace it; choose another --out", param="out")
    journal = Journal(journal_path)
    state = peek(journal_path) if options.dry_run else journal.open()
    try:
        by_id = {p.id: p for p in prompts}
        changed = [(by_id[pid], llm_id) for (pid, llm_id), rec in state.answers.items()
                   if pid in by_id and rec.get("key") != by_id[pid].key]
        if changed:
            p = min((c[0] for c in changed), key=lambda q: q.line)
            raise DataError(
                f"{where(name, p.line, 'id')}: prompt {p.id!r} is not the one {journal_path} holds answers for "
                f"(its text changed; {len({c[0].id for c in changed})} prompts differ); collect it under a new id, "
                f"use another --out, or move the journal away to start over")
        warnings = list(pfile.warnings)
        if state.torn_bytes:
            warnings.append(f"{journal_path}: cut a torn last record ({state.torn_bytes} bytes) left by a killed run")
        resumed = sum(1 for (pid, lid) in state.answers if pid in by_id)
        elsewhere = len({pid for (pid, _) in state.answers if pid not in by_id})
        if elsewhere:
            warnings.append(f"{journal_path} holds answers for {elsewhere} prompts that are not in {name}; "
                            "they are left out of the dataset")
        if resumed and not options.dry_run:
            records, _ = _outcomes(prompts, state, grading, options.keep_answers)
            write_dataset(records, out)
        runs: dict[str, _LLMRun] = {}
        for llm in chosen:
            url, headers, body = built[llm.id]
            pending = [i for i, p in enumerate(prompts) if (p.id, llm.id) not in state.answers]
            runs[llm.id] = _LLMRun(llm=llm, url=url, headers=headers, base_body=body, pending=pending,
                                   pace=Pace(options.rpm), sem=asyncio.Semaphore(1))
        judge_run = None
        if judge_llm is not None:
            url, headers, body = built[judge_llm.id]
            judge_run = _LLMRun(llm=judge_llm, url=url, headers=headers, base_body=body, pending=[],
                                pace=runs[judge_llm.id].pace if judge_llm.id in runs else Pace(options.rpm),
                                sem=asyncio.Semaphore(options.slots or judge_llm.slots))
        to_grade = []
        for pid, llm_id in state.answers:
            if pid not in by_id or grading.grader_of(pid) is None:
                continue
            g = state.grades.get((pid, llm_id))
            if g is None or g.get("g") != grading.hash_of[pid]:
                to_grade.append((pid, llm_id))
            elif not options.keep_answers:
                state.answers[(pid, llm_id)].pop("text", None)  # graded already: not needed in memory
        worst = sum(worst_case_usd(prompts[i].size_bytes, options.max_tokens, r.llm.input_usd_per_mtok,
                                   r.llm.output_usd_per_mtok) for r in runs.values() for i in r.pending)
        run = _Run(prompts=prompts, runs=runs, judge=judge_run, grading=grading, journal=journal, state=state,
                   options=options, scrub=scrub, progress=progress, to_grade=to_grade)
        holder["run"] = run
        interrupted = False
        if not options.dry_run and (run.total or to_grade):
            try:
                asyncio.run(run.main())
            except KeyboardInterrupt:
                interrupted = True
            finally:
                records, ungraded = _outcomes(prompts, state, grading, options.keep_answers)
                write_dataset(records, out)
        else:
            records, ungraded = _outcomes(prompts, state, grading, options.keep_answers)
            if not options.dry_run:
                write_dataset(records, out)
        llm_ids = [llm.id for llm in chosen] + sorted({lid for (_, lid) in state.answers} - {c.id for c in chosen})
        summaries = _summaries(prompts, state, grading, llm_ids, runs)
        return CollectReport(
            out=out, journal=journal_path, prompts=len(prompts), llms=tuple(llm.id for llm in chosen),
            planned_calls=run.total, resumed_answers=resumed,
            answered_run=sum(r.answered for r in runs.values()), failed_run=sum(r.failed for r in runs.values()),
            skipped_run=sum(r.skipped for r in runs.values()), graded_run=run.graded,
            grade_errors=sum(run.grade_errors.values()) + run.grade_errors_other, ungraded=ungraded,
            spent_usd_run=round(run.cap.spent - run.spent_before, 8), spent_usd_total=round(run.cap.spent, 8),
            max_usd=options.max_usd, worst_case_usd=round(worst, 8), capped=run.cap.stopped,
            refused_usd=None if run.cap.refused_usd is None else round(run.cap.refused_usd, 8),
            max_tokens=options.max_tokens, records=len(records),
            elapsed_s=round(time.monotonic() - started, 3), dry_run=options.dry_run, per_llm=summaries,
            judge=options.judge, warnings=tuple(warnings),
            grade_error_messages=tuple(f"{m} (x{n})" if n > 1 else m for m, n in run.grade_errors.items()),
            interrupted=interrupted)
    finally:
        journal.close()
