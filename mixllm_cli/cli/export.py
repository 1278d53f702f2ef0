"""`mixllm export-prompts`: the logged traffic as a prompt file for `mixllm collect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import HomeOpt, app


@app.command("export-prompts")
def export_prompts_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Prompt file to write (JSONL of {\"id\", \"query\"}).")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only decisions from then on: an ISO date or date-time (local time without an "
                                     "offset), unix seconds, or an age like 7d or 12h."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many prompts (oldest first).")] = None,
    dedupe: Annotated[
        bool, typer.Option("--dedupe/--keep-duplicates", help="Write each distinct query once (default) or every time.")
    ] = True,
    task: Annotated[str | None, typer.Option("--task", help="A task name to give every line (e.g. traffic).")] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="State store URL (default: $MIXLLM_STORE, else <home>/state.sqlite3)."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Write the queries that route / serve logged with --log-queries as a prompt file for collect.

    Each line is {"id": <decision id>, "query": ...}, oldest first; decisions logged without
    their text (no --log-queries) are counted and left out. Prints a JSON summary on stdout.
    Then relabel your traffic: mixllm collect OUT --out data.jsonl --judge LLM_ID.

    Example: mixllm export-prompts --out traffic.jsonl --since 7d
    """
    from .. import output
    from ..collect.from_log import export_prompts, parse_since, without_text_note

    report = export_prompts(out, home=home, store_url=store, since=None if since is None else parse_since(since),
                            limit=limit, dedupe=dedupe, task=task)
    output.json_line(report.to_dict())
    left_out = f"; {report.duplicates} repeated queries written once" if report.duplicates else ""
    output.note(f"wrote {report.prompts} prompts to {report.out}{left_out}")
    if report.without_text:
        output.note(without_text_note(report.without_text))
    if report.skipped:
        output.note(f"{report.skipped} logged queries left out: too long for a prompt line")
    if report.truncated:
        output.note(f"stopped at {report.prompts} prompts; more decisions are logged (use --since to export them)")
