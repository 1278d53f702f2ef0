"""`mixllm feedback`: tell mixllm how routed calls went."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import FeedbackError, UsageError
from .app import (
    CatalogueOpt,
    HomeOpt,
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
    good: Annotated[bool | None, typer.Option("--good/--bad", help="Binary: thumbs up or down.")] = None,
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

    store = open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    router = Router.load(home, catalogue, store=store)
    if rebuild:
        if decision_id or jsonl:
            raise UsageError("--rebuild: give no DECISION_ID and no --jsonl")
        from ..learning.updates import catch_up

        output.json_line(catch_up(home_dir(home), router.offline_artifacts, store, rebuild=True))
        return
    if (decision_id is None) == (jsonl is None):
        raise UsageError("give either a DECISION_ID or --jsonl FILE, not both and not neither")
    if jsonl is None:
        given = {"id": decision_id, "quality": quality, "good": good, "response_tokens": response_tokens,
                 "latency_ms": latency_ms, "ttft_ms": ttft_ms, "cost_usd": cost_usd}
        fb = parse_feedback({k: v for k, v in given.items() if v is not None}, "feedback")
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
    bad = sum(r.status == "error" for r in results)
    if bad:
        raise FeedbackError(f"{name}: {bad} line(s) not recorded; see the error objects in the output")

