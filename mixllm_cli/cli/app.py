"""The Typer app, the options several commands share, and the helpers behind them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.progress import TaskID

app = typer.Typer(
    name="mixllm",
    help="Route each query to the LLM that best balances quality, cost and waiting time.",
    no_args_is_help=True,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell). typer imports its
    # completion module either way, so this costs `mixllm --help` about 0.5 ms.
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Where trained artifacts and state live (default: $MIXLLM_HOME or the user data dir)."),
]


CatalogueOpt = Annotated[
    Path | None,
    typer.Option("--catalogue", help="LLM catalogue YAML (default: <home>/models.yaml, else the shipped models.yaml)."),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]


LogQueriesOpt = Annotated[
    bool, typer.Option("--log-queries", help="Keep the raw query text in the decision log (default: a hash).")
]


NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the embedding cache (<home>/cache/embeddings).")
]


def _budgets(incomplete: str) -> list[str]:
    """Shell completion of --budget: the preset names."""
    from ..routing.request import BUDGETS

    return [b for b in BUDGETS if b.startswith(incomplete)]


BudgetOpt = Annotated[
    str | None,
    typer.Option("--budget", "-b", help="very-low | low | medium | high (default: medium).", autocompletion=_budgets),
]


LambdaOpt = Annotated[
    float | None,
    typer.Option("--lambda", help="Willingness to pay λ >= 0, instead of a --budget preset."),
]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"mixllm {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Route each query to the LLM that best balances quality, cost and waiting time.

    Example: mixllm route "Write a haiku about rain" --budget low
    """


def _tolerance(max_wait_s: float | None) -> float:
    from ..routing.request import default_tolerance

    return default_tolerance(max_wait_s)


def _cache(home: Path | None, disabled: bool) -> Path | None:
    """The embedding-cache folder of the home (embcache), or None with --no-cache."""
    if disabled:
        return None
    from ..embcache import cache_dir

    return cache_dir(home)


PLAIN_AFTER_S = 2.0  # without a terminal, a stage says nothing until it has run this long (short jobs stay quiet)
PLAIN_EVERY_S = 10.0  # ... then a status line at most this often, and one when it ends


class _progress:
    """Progress on stderr, never stdout: a rich bar in a terminal; otherwise (CI logs, pipes), for a
    stage running over PLAIN_AFTER_S, a plain line, then one at most every PLAIN_EVERY_S seconds and
    one when it ends."""

    def __enter__(self) -> Callable[[str, int, int], None]:
        import os

        if os.environ.get("MIXLLM_PROGRESS", "").strip().lower() in ("off", "0", "no"):
            return lambda stage, done, total: None
        if not sys.stderr.isatty():
            return _plain_lines()
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(transient=True, console=Console(stderr=True))
        self._bar.__enter__()
        self._tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done)

        return update

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if hasattr(self, "_bar"):
            self._bar.__exit__(kind, value, tb)



def _plain_lines() -> Callable[[str, int, int], None]:
    import time

    last: dict[str, float] = {}
    started: dict[str, float] = {}

    def update(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        begun = started.setdefault(stage, now)
        if now - begun < PLAIN_AFTER_S:
            return
        if stage not in last or done >= total or now - last[stage] >= PLAIN_EVERY_S:
            last[stage] = now
            note = f" in {now - begun:.1f} s" if done >= total else ""
            sys.stderr.write(f"{stage}: {done}/{total}{note}\n")
            sys.stderr.flush()

    return update
