"""Routing commands: `route`, `tags`, `llms`, `stats`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import MixLLMError, UsageError
from .app import (
    BudgetOpt,
    CatalogueOpt,
    HomeOpt,
    JsonOpt,
    LambdaOpt,
    LogQueriesOpt,
    app,
)


@app.command("route")
def route_cmd(
    query: Annotated[str | None, typer.Argument(help="The query to route.")] = None,
    jsonl: Annotated[
        str | None,
        typer.Option("--jsonl", help="Route a JSONL file of {\"id\"?, \"query\", \"budget\"?} lines ('-' = stdin)."),
    ] = None,
    budget: BudgetOpt = None,
    lam: LambdaOpt = None,
    as_json: JsonOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="With --jsonl: stop at the first bad line.")] = False,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, max=4096, help="With --jsonl: lines encoded together (64).")
    ] = None,
    max_wait_s: Annotated[
        float | None,
        typer.Option("--max-wait-s", min=0.0, help="Waiting-time tolerance τ in seconds (default $MIXLLM_MAX_WAIT_S or 30)."),
    ] = None,
    strict_wait: Annotated[
        bool, typer.Option("--strict-wait", help="Never pick an LLM whose expected wait exceeds τ if another meets it.")
    ] = False,
    no_queue: Annotated[
        bool, typer.Option("--no-queue", help="Dry run: ignore the queue state and record nothing (every wait 0).")
    ] = False,
    log_queries: LogQueriesOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Pick the LLM for a query (or for every line of a JSONL file).

    Prints a table of every candidate (predicted quality, cost, wait, score), the choice and the
    decision id, and on stderr the `mixllm feedback` command to paste once you know how the answer
    went; --json prints exactly one JSON object; --jsonl prints one JSON line per input line, in order.

    Example: mixllm route "Write a haiku about rain" --budget low
    """
    from .. import output
    from ..routing.router import Router, RouteRequest, WaitPolicy
    from ..state import open_store

    if (query is None) == (jsonl is None):
        raise UsageError("give either a QUERY or --jsonl FILE, not both and not neither")
    if jsonl is None and (strict or batch_size is not None):
        raise UsageError("goes with --jsonl FILE (a single QUERY has no lines)", param="strict" if strict else "batch_size")
    if no_queue and log_queries:
        raise UsageError("a dry run records nothing, so there is no query to log", param=("no_queue", "log_queries"))
    batch_size = 64 if batch_size is None else batch_size
    policy = WaitPolicy.default(max_wait_s, strict=strict_wait)
    state = None if no_queue else open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    router = Router.load(home, catalogue, store=state)
    if jsonl is not None:
        from ..routing.jsonl import route_jsonl

        route_jsonl(router, jsonl, budget, lam, emit=output.json_line, flush=sys.stdout.flush, strict=strict,
                    batch_size=batch_size, state=state, policy=policy, log_queries=log_queries,
                    warn=lambda message: output.note(f"Warning: {message}"))
        return
    request = RouteRequest(query=query or "", budget=budget, lam=lam, policy=policy)
    (decision,) = router.route_batch([request], state=state, log_queries=log_queries)
    if as_json:
        output.json_line(decision.to_dict())
        return
    if decision.budget is not None:
        output.note(router.preset(decision.budget).describe(router.artifacts.reference_llm))
    if router.unrouted:
        output.note(f"not routed (no heads): {', '.join(router.unrouted)}")
    # The feedback command repeats where this decision lives and which catalogue it was made with.
    options = [*(["--home", str(home)] if home is not None else []),
               *(["--catalogue", str(catalogue)] if catalogue is not None else [])]
    output.route_table(decision, options)


@app.command("tags")
def tags_cmd(
    query: Annotated[str, typer.Argument(help="The query to tag.")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Show the tags mixllm derives for a query and the domain they put it in (for debugging).

    The domain needs an artifact set trained with --tags; otherwise only the tags are shown.

    Example: mixllm tags "Why does a plastic rod have a negative charge after being rubbed with fur?"
    """
    from .. import output
    from ..routing.tags import tag_query

    report = tag_query(query, home)
    if as_json:
        output.json_line(report)
        return
    output.tags_report(report)


@app.command("llms")
def llms_cmd(as_json: JsonOpt = False, home: HomeOpt = None, catalogue: CatalogueOpt = None) -> None:
    """List the pool: prices, latency figures, endpoints, and whether each LLM has trained heads or is cold.

    Figures the catalogue leaves to their defaults are marked so ("500 (default)"; --json: each
    row's `defaults`). An endpoint shows the key's variable name and whether it is set, never the key.

    Example: mixllm llms --json
    """
    from .. import output
    from ..training.pool import catalogue_drift, list_llms

    rows = list_llms(home, catalogue)
    drift = catalogue_drift(home, catalogue)
    if drift:
        output.note(f"Warning: {drift}")
    if as_json:
        output.json_line(rows)
        return
    output.llms_table(rows)


@app.command("stats")
def stats_cmd(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Decisions, feedback counts and online updates per LLM, from the home's state.

    Example: mixllm stats --json
    """
    from .. import output
    from ..state import open_store

    store = open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    report = store.stats() if store.exists() else {"decisions": 0, "feedback": 0, "per_llm": {}}
    from ..routing.router import Router

    try:
        online = Router.load(home, store=store).online
    except MixLLMError:
        online = None
    report["online"] = None if online is None else {
        "applied_through_seq": online.last_seq, "updates_per_llm": online.counts, "kappa": round(online.kappa, 4),
        "refits_per_llm": {llm: r["refits"] for llm, r in online.refit.items() if r["refits"]}}
    if as_json:
        output.json_line(report)
        return
    output.stats_table(report)

