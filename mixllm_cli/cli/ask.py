"""`mixllm ask`: route a query and stream the chosen LLM's answer."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import UsageError
from .app import (
    BudgetOpt,
    CatalogueOpt,
    HomeOpt,
    LambdaOpt,
    LogQueriesOpt,
    app,
    require_module,
)


@app.command("ask")
def ask_cmd(
    query: Annotated[str, typer.Argument(help="The question ('-' reads it from stdin).")],
    budget: BudgetOpt = None,
    lam: LambdaOpt = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, max=32768, help="The most tokens the answer may have.")
    ] = 1024,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", min=0.1, max=3600.0, help="Give up on an endpoint silent this long (s).")
    ] = 300.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (the decision, answer, usage) at the end.")
    ] = False,
    log_queries: LogQueriesOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the answer: no summary on stderr.")] = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Route a query, then stream the chosen LLM's answer from its endpoint to stdout.

    On stderr: who answered, how fast, at what cost, and the `mixllm feedback` command for the
    decision. When the chosen LLM's endpoint fails before answering, the query goes to the next
    choice (at most 2 more). The call's real tokens, latency and cost are recorded as feedback.

    Example: mixllm ask "Write a haiku about rain" --budget low
    """
    if budget is not None and lam is not None:
        raise UsageError("give one, not both", param=("budget", "lambda"))
    require_module("httpx")
    from .. import output
    from ..asking import ask
    from ..paths import home_dir
    from ..routing.router import Router
    from ..state import open_store

    text = sys.stdin.read().rstrip("\r\n") if query == "-" else query
    store = open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    router = Router.load(home, catalogue, store=store)
    shown: list[str] = []  # the last piece written: the answer's line is ended however the call ends

    def show(piece: str) -> None:
        _write(piece)
        shown[:] = [piece]

    try:
        answer = ask(router, store, home_dir(home), text, budget=budget, lam=lam, max_tokens=max_tokens,
                     timeout_s=timeout_s, log_queries=log_queries, on_delta=None if as_json else show,
                     warn=lambda message: output.note(f"Warning: {message}"))
    finally:
        if shown and not shown[0].endswith("\n"):
            _write("\n")
    if as_json:
        output.json_line(answer.to_dict())
        return
    if not quiet:
        options = [*(["--home", str(home)] if home is not None else []),
                   *(["--catalogue", str(catalogue)] if catalogue is not None else [])]
        output.answer_notes(answer, options)


def _write(text: str) -> None:
    """A piece of the answer, shown the moment it arrives."""
    sys.stdout.write(text)
    sys.stdout.flush()
