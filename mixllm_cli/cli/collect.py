"""`mixllm collect`: call your LLMs on your prompts, grade the answers, write a routing dataset."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from .app import CatalogueOpt, HomeOpt, QuietOpt, app, progress_off

if TYPE_CHECKING:
    from ..collect.runner import CollectProgress, CollectReport

STATUS_EVERY_S = 15.0  # a plain status line this often when stderr is not a terminal


# Over 60 lines only by its option declarations and --help text; the body is short.
@app.command("collect")
def collect_cmd(
    prompts: Annotated[Path, typer.Argument(help="Prompt file (JSONL: id, query or messages, reference, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Routing dataset to write (JSONL); its journal is "
                                      "OUT.journal.")],
    llms: Annotated[str | None, typer.Option("--llms", help="LLMs to call, comma-separated (default: every "
                                             "catalogue LLM with a base_url).")] = None,
    grader: Annotated[str | None, typer.Option("--grader", help="Grader for lines without their own: choice | exact "
                      "| normalized | number | regex | python | judge | none | module:attr | an entry point | a JSON "
                      "spec like '{\"name\": \"regex\", \"pattern\": \"...\"}' (default: chosen per line from its "
                      "reference, choices or tests).")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Catalogue LLM the judge grader asks.")] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", help="Hard spend cap in USD over the journal's "
                       "runs: no call starts whose worst case could pass it.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="max_tokens sent with every call (bounds the "
                          "answer and the worst-case cost).")] = 1024,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="Calls in flight at once, all LLMs "
                           "together.")] = 32,
    slots: Annotated[int | None, typer.Option("--slots", help="Calls in flight per LLM (default: its catalogue "
                     "slots).")] = None,
    rpm: Annotated[float | None, typer.Option("--rpm", help="Requests per minute per LLM (evenly spaced).")] = None,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Retries of a call on 429, 5xx, timeouts and "
                           "connection errors (exponential backoff with jitter, Retry-After honoured).")] = 5,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="An attempt fails when the endpoint sends nothing "
                         "for this long.")] = 120.0,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Sampling temperature to send "
                           "(default: the endpoint's).")] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Ask for whole answers (no time to first token "
                         "measured); for endpoints that cannot stream.")] = False,
    keep_answers: Annotated[bool, typer.Option("--keep-answers", help="Keep each answer's text in the dataset "
                            "(outcome field `answer`).")] = False,
    journal: Annotated[Path | None, typer.Option("--journal", help="Journal file (default: OUT.journal).")] = None,
    grade_workers: Annotated[int, typer.Option("--grade-workers", help="Threads for the python, judge and your own "
                             "graders (the built-in text graders run inline).")] = 8,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be called and its worst-case cost; "
                       "call nothing.")] = False,
    update_catalogue: Annotated[bool, typer.Option("--update-catalogue", help="Write each LLM's measured median "
                                "TTFT and output tokens/s into <home>/models.yaml.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the whole report as one JSON object on "
                       "stdout (the summary table stays on stderr).")] = False,
    quiet: QuietOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Call each chosen catalogue LLM on each prompt, grade the answers, and write a routing dataset.

    Every answer is appended to OUT.journal the moment it arrives (before grading), so a killed
    or interrupted run loses nothing it paid for: run the same command again to resume; it calls
    no (prompt, LLM) pair twice. Exit 1 when pairs are left undone (spend cap, failing LLMs).

    Example: mixllm collect prompts.jsonl --out data.jsonl --max-usd 5 --update-catalogue
    """
    from ..catalogue import load_catalogue
    from ..collect.runner import CollectIncomplete, CollectOptions, collect
    from ..paths import catalogue_path, home_dir

    if dry_run and update_catalogue:
        raise UsageError("a dry run measures nothing to write into the catalogue", param=("dry_run", "update_catalogue"))
    chosen = [x.strip() for x in llms.split(",") if x.strip()] if llms is not None else None
    options = CollectOptions(
        grader=_grader_spec(grader), judge=judge, max_tokens=max_tokens, max_usd=max_usd, concurrency=concurrency,
        slots=slots, rpm=rpm, max_retries=max_retries, timeout_s=timeout_s, temperature=temperature,
        stream=not no_stream, keep_answers=keep_answers, journal=journal, grade_workers=grade_workers,
        dry_run=dry_run)
    cat = load_catalogue(catalogue_path(home, catalogue))
    with _status(quiet) as status:
        report = collect(prompts, out, cat, llms=chosen, options=options, progress=status)
    _summary(report)
    if update_catalogue and not dry_run:
        from ..collect.figures import update_latency_figures

        target = home_dir(home) / "models.yaml"
        for line in update_latency_figures(target, cat, [s for s in report.per_llm if s.llm in report.llms]):
            sys.stderr.write(f"{target}: {line}\n")
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
    problem = report.problem()
    if problem:
        raise CollectIncomplete(problem)


def _grader_spec(value: str | None) -> str | dict[str, Any] | None:
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        spec = json.loads(value)
    except ValueError as exc:
        raise UsageError(f"not valid JSON: {exc}", param="grader") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UsageError("a JSON grader spec must be an object with a name, like {\"name\": \"regex\", ...}",
                         param="grader")
    return spec


@contextlib.contextmanager
def _status(quiet: bool = False) -> Iterator[Callable[[CollectProgress], None]]:
    """Progress on stderr: a rich bar on a terminal, else a plain line every STATUS_EVERY_S seconds;
    nothing with --quiet or MIXLLM_PROGRESS=off (the summary at the end still prints)."""
    if progress_off(quiet):
        yield lambda p: None
        return
    if not sys.stderr.isatty():
        last = [time.monotonic()]

        def line(p: CollectProgress) -> None:
            now = time.monotonic()
            if now - last[0] < STATUS_EVERY_S:
                return
            last[0] = now
            eta = f", ETA {_duration(p.elapsed_s / p.done * (p.total - p.done))}" if 0 < p.done < p.total else ""
            cap = f" of ${p.max_usd:g}" if p.max_usd is not None else ""
            stop = f"; stopping: {p.stopping}" if p.stopping else ""
            sys.stderr.write(f"collect: {p.done}/{p.total} calls, {p.failed} errors, graded {p.graded}/{p.to_grade}, "
                             f"${p.spent_usd:.4f}{cap} spent{eta}{stop}\n")

        yield line
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("${task.fields[spent]:.4f}"), TextColumn("{task.fields[errors]} errors"),
                   TextColumn("graded {task.fields[graded]}"), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    tasks: list[Any] = []

    def update(p: CollectProgress) -> None:
        if not tasks:
            tasks.append(bar.add_task("calls", total=p.total or None, spent=0.0, errors=0, graded="0/0"))
        what = "calls" if p.stopping is None else f"calls (stopping: {p.stopping})"
        bar.update(tasks[0], completed=p.done, description=what, spent=p.spent_usd, errors=p.failed,
                   graded=f"{p.graded}/{p.to_grade}")

    with bar:
        yield update


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _summary(report: CollectReport) -> None:
    """The end-of-run summary for people, on stderr."""
    from ..output import Column, console_on, print_table

    err = sys.stderr.write
    for w in report.warnings:
        err(f"Warning: {w}\n")
    if report.dry_run:
        per = ", ".join(f"{s.llm} {s.missing}" for s in report.per_llm if s.llm in report.llms)
        err(f"dry run: {report.planned_calls} calls to make ({per}), worst case ${report.worst_case_usd:.4f} at "
            f"--max-tokens; {report.resumed_answers} answers already in {report.journal}\n")
        return
    columns = [Column("LLM", "left", key=True), Column("outcomes"), Column("errors", drop=1),
               Column("mean quality"), Column("$ spent"), Column("p50 latency ms", drop=3),
               Column("p50 TTFT ms", drop=4), Column("tok/s", drop=2)]
    rows = [[s.llm, f"{s.outcomes}/{report.prompts}" if s.llm in report.llms else str(s.outcomes), str(s.failed_run),
             "-" if s.mean_quality is None else f"{s.mean_quality:.3f}", f"{s.spent_usd:.4f}", _num(s.latency_ms_p50),
             _num(s.ttft_ms_p50), _num(s.output_tokens_per_s)] for s in report.per_llm]
    print_table(console_on(sys.stderr), columns, rows)
    for s in report.per_llm:
        if s.given_up:
            err(f"{s.llm}: given up: {s.given_up}\n")
        for e in s.errors:
            err(f"{s.llm}: {e}\n")
        if s.truncated:
            err(f"{s.llm}: {s.truncated} answers stopped at --max-tokens\n")
        if s.estimated_usage:
            err(f"{s.llm}: {s.estimated_usage} answers came without usage: tokens estimated, "
                "cost counted at its worst case\n")
    for e in report.grade_error_messages:
        err(f"grading: {e}\n")
    err(f"{report.answered_run} answered, {report.failed_run} failed, {report.graded_run} graded this run "
        f"({report.resumed_answers} answers resumed); ${report.spent_usd_run:.4f} spent this run, "
        f"${report.spent_usd_total:.4f} in all; {report.records} records written to {report.out} "
        f"(journal: {report.journal}) in {report.elapsed_s:.1f} s\n")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
