"""`mixllm evaluate`: replay a labelled split (presets, streams, the λ sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..dataset import Record
    from ..routing.router import Router

from ..errors import UsageError
from .app import (
    CatalogueOpt,
    HomeOpt,
    JsonOpt,
    NoCacheOpt,
    QuietOpt,
    _cache,
    _progress,
    _tolerance,
    app,
    require_module,
)


# Over 60 lines only by its option declarations and --help text; the body is short.
@app.command("evaluate")
def evaluate_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled routing dataset (JSONL) to replay.")],
    as_json: JsonOpt = False,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="Replay as a stream arriving at this rate (e.g. 10/s) on a simulated clock."),
    ] = None,
    max_wait_s: Annotated[
        float | None, typer.Option("--max-wait-s", min=0.0, help="Stream: tolerance τ; later answers score 0.")
    ] = None,
    no_penalty: Annotated[bool, typer.Option("--no-penalty", help="Stream: drop the waiting-time penalty.")] = False,
    strict_wait: Annotated[bool, typer.Option("--strict-wait", help="Stream: apply the hard waiting rule.")] = False,
    sweep: Annotated[bool, typer.Option("--sweep", help="Sweep λ and report the quality–cost frontier and AIQ.")] = False,
    lambdas: Annotated[
        int | None,
        typer.Option("--lambdas", max=10_000,
                     help="Sweep: λ to start from, log-spaced in [1e-6, 1e6]; up to 4x as many more are added "
                          "where the curve jumps (1x with --rate; default 50)."),
    ] = None,
    baselines_from: Annotated[
        Path | None,
        typer.Option("--baselines-from", help="Sweep: fit the learned baselines on this training split (JSONL)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Sweep: write a PNG of the curves (matplotlib).")] = None,
    no_cache: NoCacheOpt = False,
    quiet: QuietOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Replay a labelled split: each budget preset beside always-best, always-cheapest and the oracle.

    With --rate (or an arrival_s on every line) the split is replayed as a stream: each LLM
    serves `slots` calls at once, service times come from the recorded response tokens, and an
    answer that waited longer than --max-wait-s scores 0.

    With --sweep: the router's curve over --lambdas values of λ (refined where the curve jumps, and
    through each preset), the single LLMs, their hull and the oracle (and, with --baselines-from
    TRAIN.jsonl, the learned baselines fitted on TRAIN): AIQ over cost shares [0, 1], % of the best
    LLM's quality at 10/15/20/25/50% of its cost, and the cost share needed for 90/95/100% of its
    quality ("—" where a policy has no point in range). Embeddings are cached by content hash.

    Example: mixllm evaluate data/routerbench/test.jsonl --rate 10/s --max-wait-s 30
    """
    from .. import output
    from ..dataset import read_dataset
    from ..evaluation.replay import evaluate, evaluate_stream, parse_rate
    from ..routing.router import Router

    rate_per_s = parse_rate(rate) if rate else None  # a usage error before any loading
    if not sweep and (baselines_from is not None or plot is not None or lambdas is not None):
        raise UsageError("--lambdas, --baselines-from and --plot go with --sweep")
    if sweep and strict_wait:
        raise UsageError("the sweep replays no hard waiting rule; drop --strict-wait or --sweep",
                         param=("sweep", "strict_wait"))
    if baselines_from is not None:
        require_module("sklearn")
    if plot is not None:
        require_module("matplotlib")
    router = Router.load(home, catalogue)
    records = read_dataset(data, warn=_warn)
    stream = rate is not None or (not sweep and bool(records) and all(r.arrival_s is not None for r in records))
    stream_flags = [f for f, given in (("max_wait_s", max_wait_s is not None), ("no_penalty", no_penalty),
                                       ("strict_wait", strict_wait)) if given]
    if stream_flags and not stream:
        raise UsageError("goes with a stream replay: give --rate (or an arrival_s on every line of the data)",
                         param=stream_flags[0])
    if sweep:
        _sweep(router, records, str(data), lambdas=50 if lambdas is None else lambdas, baselines_from=baselines_from, plot=plot,
               as_json=as_json, cache=_cache(home, no_cache), rate_per_s=rate_per_s,
               tolerance_s=_tolerance(max_wait_s), penalty=not no_penalty, quiet=quiet)
        return
    with _progress(quiet) as progress:
        if stream:
            report = evaluate_stream(router, records, rate_per_s=rate_per_s, tolerance_s=_tolerance(max_wait_s),
                                     penalty=not no_penalty, strict=strict_wait, cache=_cache(home, no_cache),
                                     progress=progress)
        else:
            report = evaluate(router, records, cache=_cache(home, no_cache), progress=progress)
    if as_json:
        output.json_line(report)
        return
    if stream:
        output.note(f"stream: {report['rows']} queries at {report['rate_per_s'] or 'their arrival_s'} per s, "
                    f"tolerance {report['tolerance_s']:g} s, penalty {'on' if report['penalty'] else 'off'}; "
                    f"% of {report['best_llm']} without any waiting constraint")
    else:
        output.note(f"{report['rows']} queries; {report['rows_with_missing_quality']} hold an LLM outcome with no "
                    "recorded quality, scored 0 if picked")
    output.evaluation_table(report)


def _warn(message: str) -> None:
    """A warning from the library (e.g. dataset keys it ignored), for the person: stderr."""
    from .. import output

    output.note(f"Warning: {message}")


def _sweep(router: Router, records: list[Record], dataset: str, *, lambdas: int, baselines_from: Path | None,
           plot: Path | None, as_json: bool, cache: Path | None, rate_per_s: float | None, tolerance_s: float,
           penalty: bool, quiet: bool) -> None:
    """`evaluate --sweep`: the λ frontier beside the baselines, as a table or JSON (and a plot)."""
    from .. import output
    from ..dataset import read_dataset
    from ..evaluation.sweep import sweep as run_sweep

    train = read_dataset(baselines_from, warn=_warn) if baselines_from is not None else None
    with _progress(quiet) as progress:
        report = run_sweep(router, records, n_lambdas=lambdas, train_records=train, cache=cache,
                           rate_per_s=rate_per_s, tolerance_s=tolerance_s, penalty=penalty, dataset=dataset,
                           progress=progress)
    if plot is not None:
        from ..evaluation.plot import sweep_plot

        sweep_plot(report, plot)
        output.note(f"plot written to {plot}")
    if as_json:
        output.json_line(report)
    else:
        output.sweep_table(report)
