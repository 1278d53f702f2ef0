"""`mixllm feedback`: tell mixllm how routed calls went."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import FeedbackError, UsageError
from .app import (
    CatalogueOpt,
    HomeOpt,
    QuietOpt,
    _progress,
    app,
)


# Over 60 lines only by its option declarations and --help text; the body is short.
@app.command("feedback")
def feedback_cmd(
    decision_id: Annotated[
        str | None, typer.Argument(metavar="[DECISION_ID]", help="The decision_id that route printed.")
    ] = None,
    quality: Annotated[
        float | None, typer.Option("--quality", help="Refined: the observed quality of the answer, 0..1.")
    ] = None,
    good: Annotated[bool, typer.Option("--good", help="Binary: the answer was good (thumbs up).")] = False,
    bad: Annotated[bool, typer.Option("--bad", help="Binary: the answer was bad (thumbs down).")] = False,
    response_tokens: Annotated[int | None, typer.Option("--response-tokens", help="Tokens the LLM produced.")] = None,
    latency_ms: Annotated[float | None, typer.Option("--latency-ms", help="Observed end-to-end latency.")] = None,
    ttft_ms: Annotated[float | None, typer.Option("--ttft-ms", help="Observed time to first token.")] = None,
    cost_usd: Annotated[float | None, typer.Option("--cost-usd", help="Observed cost of the call.")] = None,
    jsonl: Annotated[
        str | None, typer.Option("--jsonl", help="A batch: JSONL of {\"id\", \"quality\"|\"good\", ...} ('-' = stdin).")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Recompute the learned state by replaying the whole feedback log.")
    ] = False,
    quiet: QuietOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Tell mixllm how a routed call went; it learns from it (only the chosen LLM's outcome).

    Refined: --quality (and --response-tokens, --latency-ms, --cost-usd); binary: --good / --bad;
    latency alone frees the call's queue slot and teaches the latency model. The same feedback sent
    twice counts once. One JSON result per event on stdout.

    Example: mixllm feedback d3f9a0c1b2e4d5f6 --quality 0.8 --response-tokens 180 --latency-ms 2300
    """
    from .. import output
    from ..learning.feedback import parse_feedback, record_feedback
    from ..paths import home_dir
    from ..routing.router import Router
    from ..state import open_store

    options = {"quality": quality, "good": good or None, "bad": bad or None, "response_tokens": response_tokens,
               "latency_ms": latency_ms, "ttft_ms": ttft_ms, "cost_usd": cost_usd}
    _check_options(decision_id, jsonl, rebuild, [name for name, value in options.items() if value is not None])
    store = open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    router = Router.load(home, catalogue, store=store)
    if rebuild:
        from ..learning.updates import catch_up

        with _progress(quiet) as progress:
            report = catch_up(home_dir(home), router.offline_artifacts, store, rebuild=True, progress=progress)
        output.json_line(report)
        return
    if jsonl is None:
        event = {"id": decision_id, **options, "good": True if good else (False if bad else None), "bad": None}
        fb = parse_feedback({k: v for k, v in event.items() if v is not None}, "feedback")
        (result,) = record_feedback(router, store, [("feedback", fb)], home_dir(home))
        if result.error is not None:
            raise type(result.error)(str(result.error).removeprefix("feedback: "))
        output.json_line(result.to_dict())
        return
    from ..learning.feedback import read_feedback_jsonl

    name, items = read_feedback_jsonl(jsonl)
    results = record_feedback(router, store, items, home_dir(home))
    for r in results:
        output.json_line({"line": int(r.where.rsplit(":", 1)[1]), **r.to_dict()})
    failed = sum(r.status == "error" for r in results)
    if failed:
        raise FeedbackError(f"{name}: {failed} line(s) not recorded; see the error objects in the output")



def _check_options(decision_id: str | None, jsonl: str | None, rebuild: bool, flags: list[str]) -> None:
    """Conflicting options are usage errors (exit 2), found before anything is loaded. `flags`
    names the event options given (`quality`, `good`, `bad`, `latency_ms`, ...)."""
    binary = [f for f in flags if f in ("good", "bad")]
    if len(binary) == 2:
        raise UsageError("a call was either good or bad: give one of them", param=("good", "bad"))
    if binary and "quality" in flags:
        raise UsageError("refined (--quality) or binary (--good / --bad) feedback, not both",
                         param=("quality", binary[0]))
    if rebuild:
        if decision_id is not None or jsonl is not None or flags:
            raise UsageError("give no DECISION_ID, --jsonl or event options: it replays the whole log",
                             param="rebuild")
        return
    if (decision_id is None) == (jsonl is None):
        raise UsageError("give either a DECISION_ID or --jsonl FILE, not both and not neither")
    if jsonl is not None and flags:
        raise UsageError("each line of --jsonl carries its own fields; give them there, not as options",
                         param=flags[0])
