"""Training and pool commands: `train-offline`, `add-llm`, `fit-llm`, `remove-llm`, `set-endpoint`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .app import (
    CatalogueOpt,
    HomeOpt,
    NoCacheOpt,
    QuietOpt,
    _cache,
    _progress,
    app,
    require_module,
)

# The endpoint flags `add-llm` and `set-endpoint` share (catalogue fields base_url, api_key_env,
# upstream_model; docs/CATALOGUE.md).
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (no key in it)."),
]
ApiKeyEnvOpt = Annotated[
    str | None,
    typer.Option("--api-key-env", help="NAME of the environment variable holding the API key (never the key)."),
]
UpstreamModelOpt = Annotated[
    str | None, typer.Option("--upstream-model", help="Model name the endpoint expects (default: the id).")
]


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
    quiet: QuietOpt = False,
) -> None:
    """Train per-LLM heads on full feedback and calibrate the budget presets.

    Writes a new artifact set to <home>/artifacts atomically. With --catalogue, that catalogue
    then becomes <home>/models.yaml (a different previous one is archived under <home>/archive/),
    so every later command in the home uses it. With --tags, query tags (the dataset's `tags`
    field, else derived keyphrases plus `task`) are grouped into domains and a projection of the
    embedding is trained to gather each domain; routing applies it.

    Example: mixllm train-offline data/routerbench/train.jsonl --home ./myrouter
    """
    from .. import output
    from ..catalogue import load_catalogue
    from ..embcache import default_seeds
    from ..paths import catalogue_path, home_artifacts_dir, shipped_artifacts_dir
    from ..training.fitters import LENGTH_FAMILIES, QUALITY_FAMILIES
    from ..training.pipeline import TAGS_DEFAULT, train_offline
    from ..training.pool import keep_catalogue

    if quality_head not in QUALITY_FAMILIES:
        raise UsageError(f"--quality-head: unknown family '{quality_head}'; choose one of: {', '.join(QUALITY_FAMILIES)}")
    if length_head not in LENGTH_FAMILIES:
        raise UsageError(f"--length-head: unknown family '{length_head}'; choose one of: {', '.join(LENGTH_FAMILIES)}")
    require_module("sklearn")
    cat = load_catalogue(catalogue_path(home, catalogue))
    with _progress(quiet) as progress:
        report = train_offline(data, cat, home_artifacts_dir(home), shipped_artifacts_dir() / "encoder",
                               families={"quality": quality_head, "length": length_head}, seed=seed,
                               progress=progress, cache=_cache(home, no_cache),
                               seed_rows=() if no_cache else default_seeds(home),
                               tags=TAGS_DEFAULT if tags is None else tags)
    kept = None if catalogue is None else keep_catalogue(catalogue, cat, home)  # only after the set is published
    output.training_summary(report)
    if kept is not None:
        output.note(f"catalogue: {kept['from']} is now {kept['catalogue']}"
                    + (f" (the previous one is archived as {kept['previous']})" if kept["previous"] else ""))


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
        float | None,
        typer.Option("--explore-share", help="Without --data: the share of queries a cold LLM may be offered (0.05)."),
    ] = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    upstream_model: UpstreamModelOpt = None,
    home: HomeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Add an LLM to your pool, training only its own two heads (cold without --data).

    Every other LLM's heads stay byte-identical. Your catalogue is <home>/models.yaml (copied
    from the shipped one on the first change); figures not given stay defaults (docs/CATALOGUE.md).

    Example: mixllm add-llm mistralai/mixtral-8x7b-chat --input-usd-per-mtok 0.6 --output-usd-per-mtok 0.6 --data outcomes.jsonl
    """
    from .. import output
    from ..training.pool import add_llm, llm_from_options

    if data is not None and explore_share is not None:
        raise UsageError("an LLM added with --data is trained, not cold: it has no exploration share",
                         param=("data", "explore_share"))
    explore_share = 0.05 if explore_share is None else explore_share
    llm = llm_from_options(llm_id, name, input_usd_per_mtok, output_usd_per_mtok, ttft_ms, output_tokens_per_s, slots,
                           base_url=base_url, api_key_env=api_key_env, upstream_model=upstream_model)
    if data is not None:
        require_module("sklearn")
    with _progress(quiet) as progress:
        report = add_llm(llm, data, home=home, explore_share=explore_share, progress=progress)
    for warning in report.pop("warnings"):
        output.note(f"Warning: {warning}")
    output.json_line(report)


@app.command("fit-llm")
def fit_llm_cmd(
    llm_id: Annotated[str, typer.Argument(metavar="ID", help="An LLM of your pool (cold, or trained: retrained).")],
    data: Annotated[Path, typer.Option("--data", help="Routing dataset with this LLM's outcomes (JSONL), "
                                       "e.g. from `mixllm collect --llms ID`.")],
    home: HomeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train (or retrain) one pool LLM's two heads from its outcomes in --data.

    For an LLM added cold, or one to retrain on new outcomes; every other LLM's heads stay
    byte-identical and the catalogue is unchanged. Needs at least 20 outcomes with a quality;
    a retrained LLM's previous heads are archived under <home>/archive/.

    Example: mixllm fit-llm my/new-model --data collected.jsonl
    """
    from .. import output
    from ..training.pool import fit_llm_heads

    require_module("sklearn")
    with _progress(quiet) as progress:
        report = fit_llm_heads(llm_id, data, home=home, progress=progress)
    for warning in report.pop("warnings", []):
        output.note(f"Warning: {warning}")
    output.json_line(report)


@app.command("set-endpoint")
def set_endpoint_cmd(
    llm_id: Annotated[str, typer.Argument(metavar="ID", help="An LLM of your pool.")],
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    upstream_model: UpstreamModelOpt = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the endpoint (with other flags: replace it whole).")
                     ] = False,
    home: HomeOpt = None,
) -> None:
    """Set or change where `serve` and `collect` call an LLM (an OpenAI-compatible endpoint).

    Flags not given keep their value; --clear removes the endpoint. Writes <home>/models.yaml
    atomically (copied from the shipped one on the first change). The API key itself is never
    stored or printed: only the name of the environment variable that holds it.

    Example: mixllm set-endpoint gpt-4o-mini --base-url https://api.openai.com/v1 --api-key-env OPENAI_API_KEY
    """
    from .. import output
    from ..training.pool import set_endpoint

    report = set_endpoint(llm_id, base_url=base_url, api_key_env=api_key_env, upstream_model=upstream_model,
                          clear=clear, home=home)
    for warning in report.pop("warnings"):
        output.note(f"Warning: {warning}")
    output.json_line(report)


@app.command("remove-llm")
def remove_llm_cmd(
    llm_id: Annotated[str, typer.Argument(metavar="ID", help="The LLM to remove.")],
    force: Annotated[bool, typer.Option("--force", help="Remove it even if it is the last LLM with trained "
                                                        "heads (then only cold LLMs remain).")] = False,
    home: HomeOpt = None,
) -> None:
    """Remove an LLM from your pool; its heads are archived under <home>/archive/.

    Example: mixllm remove-llm claude-v1
    """
    from .. import output
    from ..training.pool import remove_llm

    output.json_line(remove_llm(llm_id, home=home, force=force))

