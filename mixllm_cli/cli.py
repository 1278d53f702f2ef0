"""The `mixllm` command: one thin client of the library.

Each command parses its options, calls one library function and renders the result. Known
failures (`MixLLMError`) become one `Error: ...` line per problem on stderr and exit 1 (2 for
usage errors); anything else is a bug and raises (set MIXLLM_DEBUG=1 for the full traceback
of known errors too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import FeedbackError, MixLLMError, UsageError
from .upstream import DEFAULT_COOLDOWN_S, DEFAULT_FALLBACKS

app = typer.Typer(
    name="mixllm",
    help="Route each query to the LLM that best balances quality, cost and waiting time.",
    no_args_is_help=True,
    add_completion=False,
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
BudgetOpt = Annotated[
    str | None,
    typer.Option("--budget", "-b", help="very-low | low | medium | high (default: medium)."),
]
LambdaOpt = Annotated[
    float | None,
    typer.Option("--lambda", help="Willingness to pay λ >= 0, instead of a --budget preset."),
]


def _version(value: bool) -> None:
    if value:
        from . import __version__

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


@app.command("train-offline")
def train_offline_cmd(
    data: Annotated[Path, typer.Argument(help="Routing dataset (JSONL with every LLM's outcomes).")],
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    quality_head: Annotated[str, typer.Option(help="Quality head family: logistic | rf | mlp | knn.")] = "logistic",
    length_head: Annotated[str, typer.Option(help="Length head family: ridge | rf | mlp | knn.")] = "ridge",
    seed: Annotated[int, typer.Option(help="Random seed for folds and estimators.")] = 0,
    tags: Annotated[
        bool | None,
        typer.Option("--tags/--no-tags", help="Train the tag-enhanced embedding (docs/TAGS.md) or keep the general "
                     "one (default: --no-tags, the better one on RouterBench)."),
    ] = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Train per-LLM heads on full feedback and calibrate the budget presets.

    Writes a new artifact set to <home>/artifacts atomically. With --tags, query tags (the
    dataset's `tags` field, else derived keyphrases plus `task`) are grouped into domains and a
    projection of the embedding is trained to gather each domain; routing applies it.

    Example: mixllm train-offline data/routerbench/train.jsonl --home ./myrouter
    """
    from . import output
    from .catalogue import load_catalogue
    from .paths import catalogue_path, home_artifacts_dir, shipped_artifacts_dir
    from .training.fitters import LENGTH_FAMILIES, QUALITY_FAMILIES
    from .training.pipeline import TAGS_DEFAULT, train_offline

    if quality_head not in QUALITY_FAMILIES:
        raise UsageError(f"--quality-head: unknown family '{quality_head}'; choose one of: {', '.join(QUALITY_FAMILIES)}")
    if length_head not in LENGTH_FAMILIES:
        raise UsageError(f"--length-head: unknown family '{length_head}'; choose one of: {', '.join(LENGTH_FAMILIES)}")
    cat = load_catalogue(catalogue_path(home, catalogue))
    with _progress() as progress:
        report = train_offline(data, cat, home_artifacts_dir(home), shipped_artifacts_dir() / "encoder",
                               families={"quality": quality_head, "length": length_head}, seed=seed,
                               progress=progress, cache=_cache(home, no_cache),
                               tags=TAGS_DEFAULT if tags is None else tags)
    output.training_summary(report)


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
    from . import output
    from .routing.tags import tag_query

    report = tag_query(query, home)
    if as_json:
        output.json_line(report)
        return
    output.tags_report(report)


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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=4096, help="With --jsonl: lines encoded together.")] = 64,
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

    Prints a table of every candidate (predicted quality, cost, wait, score) and the choice;
    --json prints exactly one JSON object; --jsonl prints one JSON line per input line, in order.

    Example: mixllm route "Write a haiku about rain" --budget low
    """
    from . import output
    from .routing.router import Router, RouteRequest, WaitPolicy
    from .state import open_store

    if (query is None) == (jsonl is None):
        raise UsageError("give either a QUERY or --jsonl FILE, not both and not neither")
    policy = WaitPolicy.default(max_wait_s, strict=strict_wait)
    state = None if no_queue else open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    router = Router.load(home, catalogue, store=state)
    if jsonl is not None:
        from .routing.jsonl import route_jsonl

        route_jsonl(router, jsonl, budget, lam, emit=output.json_line, flush=sys.stdout.flush, strict=strict,
                    batch_size=batch_size, state=state, policy=policy, log_queries=log_queries)
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
    output.route_table(decision)


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
    lambdas: Annotated[int, typer.Option("--lambdas", help="Sweep: how many λ, log-spaced in [1e-6, 1e6].")] = 50,
    baselines_from: Annotated[
        Path | None,
        typer.Option("--baselines-from", help="Sweep: fit the learned baselines on this training split (JSONL)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Sweep: write a PNG of the curves (matplotlib).")] = None,
    no_cache: NoCacheOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Replay a labelled split: each budget preset beside always-best, always-cheapest and the oracle.

    With --rate (or an arrival_s on every line) the split is replayed as a stream: each LLM
    serves `slots` calls at once, service times come from the recorded response tokens, and an
    answer that waited longer than --max-wait-s scores 0.

    With --sweep: the router's curve over --lambdas values of λ, the single LLMs, their hull and the
    oracle (and, with --baselines-from TRAIN.jsonl, the learned baselines fitted on TRAIN): AIQ over
    cost shares [0, 1], % of the best LLM's quality at 10/15/20/25/50% of its cost, and the cost
    share needed for 90/95/100% of its quality. Embeddings are cached by content hash.

    Example: mixllm evaluate data/routerbench/test.jsonl --rate 10/s --max-wait-s 30
    """
    from . import output
    from .dataset import read_dataset
    from .evaluation.replay import evaluate, evaluate_stream, parse_rate
    from .routing.router import Router

    rate_per_s = parse_rate(rate) if rate else None  # a usage error before any loading
    if not sweep and (baselines_from is not None or plot is not None):
        raise UsageError("--baselines-from and --plot go with --sweep")
    router = Router.load(home, catalogue)
    records = read_dataset(data)
    if sweep:
        from .evaluation.sweep import sweep as run_sweep

        train = read_dataset(baselines_from) if baselines_from is not None else None
        with _progress() as progress:
            report = run_sweep(router, records, n_lambdas=lambdas, train_records=train,
                               cache=_cache(home, no_cache), rate_per_s=rate_per_s,
                               tolerance_s=_tolerance(max_wait_s), penalty=not no_penalty,
                               progress=lambda name: progress(f"fitting {name}", 0, 1))
        if plot is not None:
            from .evaluation.plot import sweep_plot

            sweep_plot(report, plot)
            output.note(f"plot written to {plot}")
        if as_json:
            output.json_line(report)
        else:
            output.sweep_table(report)
        return
    stream = rate is not None or (records and all(r.arrival_s is not None for r in records))
    if stream:
        report = evaluate_stream(router, records, rate_per_s=rate_per_s, tolerance_s=_tolerance(max_wait_s),
                                 penalty=not no_penalty, strict=strict_wait, cache=_cache(home, no_cache))
    else:
        report = evaluate(router, records, cache=_cache(home, no_cache))
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


@app.command("add-llm")
def add_llm_cmd(
    llm_id: Annotated[str, typer.Argument(metavar="ID", help="The new LLM's id, e.g. meta/llama-3.1-8b.")],
    input_usd_per_mtok: Annotated[float, typer.Option("--input-usd-per-mtok", help="USD per 1M prompt tokens.")],
    output_usd_per_mtok: Annotated[float, typer.Option("--output-usd-per-mtok", help="USD per 1M response tokens.")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Routing dataset with this LLM's outcomes (JSONL).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: the id).")] = None,
    ttft_ms: Annotated[float | None, typer.Option("--ttft-ms", help="Time to first token (default 500).")] = None,
    output_tokens_per_s: Annotated[
        float | None, typer.Option("--output-tokens-per-s", help="Output speed (default 50).")
    ] = None,
    slots: Annotated[int | None, typer.Option("--slots", help="Concurrent requests (default 4).")] = None,
    explore_share: Annotated[
        float, typer.Option("--explore-share", help="Without --data: the share of queries a cold LLM may be offered.")
    ] = 0.05,
    home: HomeOpt = None,
) -> None:
    """Add an LLM to your pool, training only its own two heads (cold without --data).

    Every other LLM's heads stay byte-identical. Your catalogue is <home>/models.yaml (copied
    from the shipped one on the first change).

    Example: mixllm add-llm mistralai/mixtral-8x7b-chat --input-usd-per-mtok 0.6 --output-usd-per-mtok 0.6 --data outcomes.jsonl
    """
    from . import output
    from .training.pool import add_llm, llm_from_options

    llm = llm_from_options(llm_id, name, input_usd_per_mtok, output_usd_per_mtok, ttft_ms, output_tokens_per_s, slots)
    with _progress() as progress:
        report = add_llm(llm, data, home=home, explore_share=explore_share, progress=progress)
    output.json_line(report)


@app.command("remove-llm")
def remove_llm_cmd(
    llm_id: Annotated[str, typer.Argument(metavar="ID", help="The LLM to remove.")],
    home: HomeOpt = None,
) -> None:
    """Remove an LLM from your pool; its heads are archived under <home>/archive/.

    Example: mixllm remove-llm claude-v1
    """
    from . import output
    from .training.pool import remove_llm

    output.json_line(remove_llm(llm_id, home=home))


@app.command("llms")
def llms_cmd(as_json: JsonOpt = False, home: HomeOpt = None, catalogue: CatalogueOpt = None) -> None:
    """List the pool: prices, latency figures, and whether each LLM has trained heads or is cold.

    Example: mixllm llms --json
    """
    from . import output
    from .training.pool import list_llms

    rows = list_llms(home, catalogue)
    if as_json:
        output.json_line(rows)
        return
    output.llms_table(rows)


def _tolerance(max_wait_s: float | None) -> float:
    from .routing.request import default_tolerance

    return default_tolerance(max_wait_s)


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
    from . import output
    from .learning.feedback import Feedback, parse_feedback, record_feedback
    from .paths import home_dir
    from .routing.router import Router
    from .state import open_store

    store = open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    router = Router.load(home, catalogue, store=store)
    if rebuild:
        if decision_id or jsonl:
            raise UsageError("--rebuild: give no DECISION_ID and no --jsonl")
        from .learning.online import catch_up

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
    from .dataset import iter_jsonl, open_source

    stream, name, close = open_source(jsonl)
    items: list[tuple[str, Feedback | MixLLMError]] = []
    try:
        for lineno, obj in iter_jsonl(stream, name):
            where = f"{name}:{lineno}"
            try:
                items.append((where, obj if isinstance(obj, MixLLMError) else parse_feedback(obj, where)))
            except MixLLMError as exc:
                items.append((where, exc))
    finally:
        if close:
            stream.close()
    results = record_feedback(router, store, items, home_dir(home))
    for r in results:
        output.json_line({"line": int(r.where.rsplit(":", 1)[1]), **r.to_dict()})
    bad = sum(r.status == "error" for r in results)
    if bad:
        raise FeedbackError(f"{name}: {bad} line(s) not recorded; see the error objects in the output")


@app.command("stats")
def stats_cmd(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Decisions, feedback counts and online updates per LLM, from the home's state.

    Example: mixllm stats --json
    """
    from . import output
    from .state import open_store

    store = open_store(home)  # $MIXLLM_STORE, else <home>/state.sqlite3
    report = store.stats() if store.exists() else {"decisions": 0, "feedback": 0, "per_llm": {}}
    from .routing.router import Router

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


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8080,
    store: Annotated[
        str | None,
        typer.Option("--store", help="State store URL: postgresql://USER@HOST:PORT/DB to share one state between "
                                     "replicas (default: $MIXLLM_STORE, else <home>/state.sqlite3)."),
    ] = None,
    fallbacks: Annotated[
        int,
        typer.Option("--fallbacks", min=0, help="Chat completions: when the chosen LLM's endpoint fails (unreachable, "
                                                "429, 5xx), route again without it, at most this many more times."),
    ] = DEFAULT_FALLBACKS,
    cooldown_s: Annotated[
        float,
        typer.Option("--cooldown-s", min=0.0, help="Chat completions: skip an LLM whose endpoint failed for this many "
                                                   "seconds (0: never skip)."),
    ] = DEFAULT_COOLDOWN_S,
    log_queries: LogQueriesOpt = False,
    home: HomeOpt = None,
    catalogue: CatalogueOpt = None,
) -> None:
    """Serve the router over HTTP: /v1/route, /v1/feedback, /v1/llms, /v1/chat/completions, /metrics.

    Needs the serve extra: pip install -e '.[serve]'. The OpenAPI schema is at /docs and /openapi.json.

    Example: mixllm serve --port 8080 --store postgresql://mixllm@127.0.0.1:5432/mixllm
    """
    from . import output
    from .serve.app import Service, serve  # a missing serve extra is one Error: line (see `run`)

    service = Service(home, catalogue, store, log_queries=log_queries, fallbacks=fallbacks,
                      cooldown_s=cooldown_s)  # fails fast: one Error: line
    output.note(f"mixllm serving {len(service.router.llm_ids)} LLMs on http://{host}:{port} "
                f"(store: {service.store_name}; OpenAPI at /docs)")
    serve(service, host, port)


def _cache(home: Path | None, disabled: bool) -> Path | None:
    """The embedding-cache folder of the home (embcache), or None with --no-cache."""
    if disabled:
        return None
    from .embcache import cache_dir

    return cache_dir(home)


class _progress:
    """A rich progress bar on stderr (only when stderr is a terminal)."""

    def __enter__(self):
        if not sys.stderr.isatty():
            return lambda stage, done, total: None
        from rich.progress import Progress

        self._bar = Progress(transient=True, console=None)
        self._bar.__enter__()
        self._tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done)

        return update

    def __exit__(self, *exc):
        if hasattr(self, "_bar"):
            self._bar.__exit__(*exc)
        return False


# Modules of the optional extras (pyproject.toml): a command that needs a missing one says which
# extra to install, in one line, instead of a traceback.
OPTIONAL_MODULES = {"sklearn": "train", "matplotlib": "plot", "onnx": "build", "safetensors": "build",
                    "fastapi": "serve", "uvicorn": "serve", "httpx": "serve", "psycopg": "serve",
                    "prometheus_client": "serve", "pydantic": "serve", "orjson": "serve"}


def _option(param: str) -> str:
    """A library parameter as the command line spells it: `max_wait_s` is `--max-wait-s`."""
    return "--" + param.replace("_", "-")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit code; known errors become `Error:` lines."""
    try:
        app(args=argv, prog_name="mixllm", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except MixLLMError as exc:
        if os.environ.get("MIXLLM_DEBUG"):
            raise
        for line in exc.render(_option).splitlines() or [type(exc).__name__]:
            sys.stderr.write(f"Error: {line}\n")
        return exc.exit_code
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None or os.environ.get("MIXLLM_DEBUG"):
            raise
        sys.stderr.write(f"Error: this needs the '{extra}' extra ({exc.name} is not installed): "
                         f"python -m pip install -e '.[{extra}]'\n")
        return 1
    except BrokenPipeError:
        # `mixllm route --jsonl big.jsonl | head`: the reader left; exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


def main() -> None:
    """Console-script entry point."""
    # numpy's OpenBLAS starts a thread per core when numpy is imported, and those threads
    # busy-wait after every product. Ours are small (a batch of queries times the heads), so the
    # extra thread only burns CPU the encoder needs: on 2 cores it cost `mixllm serve` 1.5 ms of
    # CPU per routed query (docs/SERVE.md). Set OPENBLAS_NUM_THREADS yourself to override.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(run())
