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


def require_module(name: str) -> None:
    """Fail before any work (minutes of encoding) when an optional extra's module is missing: the
    ModuleNotFoundError becomes main's one line naming the extra to install."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)


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
PLAIN_EVERY_S = 10.0  # ... then a status line at most this often (even when the stage reports nothing), and one when it ends

QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress on stderr (warnings and errors still print).")
]


def progress_off(quiet: bool = False) -> bool:
    """True when progress must stay silent: --quiet, or MIXLLM_PROGRESS=off (0, no)."""
    import os

    return quiet or os.environ.get("MIXLLM_PROGRESS", "").strip().lower() in ("off", "0", "no")


class _progress:
    """Progress on stderr, never stdout: a rich bar in a terminal; otherwise (CI logs, pipes), for a
    stage running over PLAIN_AFTER_S, a plain line, then one at most every PLAIN_EVERY_S seconds
    (a background tick, so a long step that reports nothing still shows life) and one when it ends.
    `quiet` (or MIXLLM_PROGRESS=off) silences both."""

    def __init__(self, quiet: bool = False) -> None:
        self._quiet = quiet

    def __enter__(self) -> Callable[[str, int, int], None]:
        if progress_off(self._quiet):
            return lambda stage, done, total: None
        if not sys.stderr.isatty():
            self._plain = _PlainLines()
            return self._plain.update
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(transient=True, console=Console(stderr=True))
        self._bar.__enter__()
        self._tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done, total=total)

        return update

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if hasattr(self, "_bar"):
            self._bar.__exit__(kind, value, tb)
        if hasattr(self, "_plain"):
            self._plain.close()


class _PlainLines:
    """Plain status lines for a log: `update(stage, done, total)` from the job, and a daemon thread
    that repeats the running stage's status every PLAIN_EVERY_S seconds while it reports nothing."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._stage: tuple[str, int, int] | None = None
        self._begun: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="mixllm-progress", daemon=True)
        self._ticker.start()

    def update(self, stage: str, done: int, total: int) -> None:
        import time

        with self._lock:
            now = time.monotonic()
            begun = self._begun.setdefault(stage, now)
            self._stage = (stage, done, total) if done < total else None
            if now - begun < PLAIN_AFTER_S:
                return
            if stage not in self._last or done >= total or now - self._last[stage] >= PLAIN_EVERY_S:
                self._write(stage, done, total, now)

    def _write(self, stage: str, done: int, total: int, now: float) -> None:
        self._last[stage] = now
        took = now - self._begun[stage]
        note = f" in {took:.1f} s" if done >= total else f" ({took:.0f} s)"
        sys.stderr.write(f"{stage}: {done}/{total}{note}\n")
        sys.stderr.flush()

    def _tick(self) -> None:
        import time

        while not self._stop.wait(1.0):
            with self._lock:
                if self._stage is None:
                    continue
                stage, done, total = self._stage
                now = time.monotonic()
                if now - self._begun[stage] >= PLAIN_AFTER_S and now - self._last.get(stage, self._begun[stage]) >= (
                        PLAIN_EVERY_S if stage in self._last else 0.0):
                    self._write(stage, done, total, now)

    def close(self) -> None:
        self._stop.set()
