"""Offline training on full feedback, in four steps: encode the queries, fit every LLM's heads and
A⁻¹ (with out-of-fold predictions), calibrate the budget presets on those, publish the set.

The fitting itself is `fitters.py`, the presets' arithmetic `presets.py`; what the set holds is
described by its manifest (`manifest.py`).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..artifacts import write_llm_heads
from ..core.features import FeatureSpec, build_features, fit_feature_spec
from ..core.heads import LENGTH, QUALITY, RIDGE_ALPHA, Head
from ..embcache import encoder_identity, text_sha256
from ..errors import DataError
from ..files import publish_dir, sha256_file, staging_dir
from ..manifest import DataFile, EncoderEntry, FeaturesFile, FileEntry, LLMHeadsEntry, Manifest, PresetEntry, RowsFile
from ..training_rows import TrainingRows, save_training_rows
from .fitters import DEFAULT_FAMILIES, FittedLLM, fit_llm, fold_ids, out_of_fold
from .presets import Calibration, calibrate_presets, cost_shares

if TYPE_CHECKING:
    from ..catalogue import Catalogue
    from ..core.encoder import Encoded, Encoder
    from ..core.tagging import TagRun, TagSettings
    from ..dataset import Record

TRAINING_ROWS = "training_rows.npz"
PROJECTION = "projection.npz"
FEATURES = "features.npz"
FIT_THREADS = 2  # heads fitted at once (2 cores here; more threads than cores only add switching)
# Train the tag-enhanced embedding by default? Decided by benchmarks/tags_study.py (docs/TAGS.md).
TAGS_DEFAULT = False

Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class OutcomeTable:
    """The dataset as arrays: rows are queries, columns are LLMs; NaN marks a missing value."""

    ids: list[str]
    queries: list[str]
    tasks: list[str | None]
    llm_ids: list[str]
    quality: np.ndarray
    response_tokens: np.ndarray
    prompt_tokens: np.ndarray
    cost_usd: np.ndarray


def outcome_table(records: Sequence[Record], llm_ids: Sequence[str]) -> OutcomeTable:
    n, m = len(records), len(llm_ids)
    q = np.full((n, m), np.nan)
    r = np.full((n, m), np.nan)
    p = np.full((n, m), np.nan)
    c = np.full((n, m), np.nan)
    col = {llm: j for j, llm in enumerate(llm_ids)}
    for i, rec in enumerate(records):
        for llm, out in rec.outcomes.items():
            j = col.get(llm)
            if j is None or out is None:
                continue
            if out.quality is not None:
                q[i, j] = out.quality
            r[i, j] = out.response_tokens
            p[i, j] = out.prompt_tokens
            c[i, j] = out.cost_usd
    return OutcomeTable(
        ids=[rec.id for rec in records],
        queries=[rec.query for rec in records],
        tasks=[rec.task for rec in records],
        llm_ids=list(llm_ids),
        quality=q,
        response_tokens=r,
        prompt_tokens=p,
        cost_usd=c,
    )


def encode_with_progress(encoder: Encoder, texts: list[str], progress: Progress, chunk: int = 256) -> Encoded:
    """Encode in chunks so a progress bar can move; returns one merged `Encoded`."""
    from ..core.encoder import encode_in_chunks

    return encode_in_chunks(encoder.encode, texts, progress, chunk)


@dataclass(frozen=True)
class Inputs:
    """What the heads are fitted on: the outcomes, the encoded queries, and their features."""

    table: OutcomeTable
    encoded: Encoded  # the encoder's output (what the training rows store)
    emb: np.ndarray  # the embedding the heads and A⁻¹ read (through the tag projection, if any)
    x: np.ndarray  # head features: emb plus the lexical features of `spec`
    spec: FeatureSpec | None
    tag_run: TagRun | None
    ref: int  # column of the dearest LLM: the cost scale's and the presets' reference
    cost_scale: float  # the mean real cost per query of that LLM
    warnings: tuple[str, ...] = ()  # what reading the data had to say (keys it ignored)


# ---------------------------------------------------------------- the pipeline


def train_offline(
    data_path: Path,
    catalogue: Catalogue,
    out_dir: Path,
    encoder_dir: Path,
    *,
    families: dict[str, str] | None = None,
    n_buckets: int = 4096,
    folds: int = 5,
    seed: int = 0,
    progress: Progress = _no_progress,
    cache: Path | None = None,
    tags: bool = TAGS_DEFAULT,
    tag_settings: TagSettings | None = None,
    seed_rows: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train a complete artifact set from a routing dataset and publish it atomically at `out_dir`;
    `cache` is an embedding-cache folder (embcache) or None. With `tags`, the tag pipeline
    (core/tagging.py) trains a projection of the encoder's embedding that every head reads
    (`tag_settings`: a TagSettings, default the validated one).

    The report's `warnings` are lines for the person training (the CLI prints them on stderr):
    keys the dataset reader ignored, and each budget preset that could not sit at its target
    (presets.py: unreachable, or moved to keep the presets distinct and ordered)."""
    started = time.perf_counter()
    families = {**DEFAULT_FAMILIES, **(families or {})}
    data_path, encoder_dir, out_dir = Path(data_path), Path(encoder_dir), Path(out_dir)
    inputs = encode(data_path, catalogue, encoder_dir, n_buckets=n_buckets, cache=cache, tags=tags,
                    tag_settings=tag_settings, seed=seed, progress=progress, seed_rows=seed_rows)
    staging = staging_dir(out_dir)
    try:
        heads, oof_quality, oof_length = fit(inputs, families, staging, folds=folds, seed=seed, progress=progress)
        calibration = calibrate(inputs, oof_quality, oof_length, catalogue)
        presets = calibration.presets
        manifest = _manifest(inputs, catalogue, data_path, encoder_dir, families, heads, presets, seed)
        manifest = publish(inputs, manifest, staging, out_dir, encoder_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    tag_run = inputs.tag_run
    return {
        "artifacts": str(out_dir),
        "rows": len(inputs.table.ids),
        "llms": inputs.table.llm_ids,
        "presets": {name: p.to_json() for name, p in presets.items()},
        "warnings": [*inputs.warnings, *calibration.warnings],
        "reference_llm": manifest.reference_llm,
        "cost_scale_usd": inputs.cost_scale,
        "tags": None if tag_run is None else {"k": tag_run.report["k"], "seconds": tag_run.report["seconds"]},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _too_few(data_path: Path, table: OutcomeTable) -> list[str]:
    """Refuse data on which no LLM can get a fitted quality head; warn about each LLM that cannot."""
    from ..core.heads import MIN_OUTCOMES

    graded = {llm: int(np.sum(~np.isnan(table.quality[:, j]))) for j, llm in enumerate(table.llm_ids)}
    short = {llm: n for llm, n in graded.items() if n < MIN_OUTCOMES}
    counts = ", ".join(f"{llm}: {n}" for llm, n in short.items())
    if len(short) == len(graded):
        raise DataError(f"{data_path}: too little data to train: {len(table.queries)} queries; each LLM's quality "
                        f"head needs at least {MIN_OUTCOMES} graded outcomes, and none has that many ({counts})")
    return [f"{llm}: only {n} graded outcomes (< {MIN_OUTCOMES}): its quality head is a constant, its mean"
            for llm, n in short.items()]


def encode(data_path: Path, catalogue: Catalogue, encoder_dir: Path, *, n_buckets: int, cache: Path | None,
           tags: bool, tag_settings: TagSettings | None, seed: int, progress: Progress,
           seed_rows: Sequence[Path] = ()) -> Inputs:
    """Read the outcomes of the catalogue's LLMs, encode the queries (through `cache`), fit the tag
    projection when asked and the lexical feature spec (none when `n_buckets` is 0)."""
    from ..core.encoder import Encoder
    from ..dataset import read_dataset
    from ..embcache import encode_cached

    warnings: list[str] = []
    records = read_dataset(data_path, warn=warnings.append)
    llm_ids = [i for i in catalogue.ids if any(i in r.outcomes and r.outcomes[i] is not None for r in records)]
    if not llm_ids:
        raise DataError(f"{data_path}: no outcomes for any LLM of the catalogue ({', '.join(catalogue.ids)})")
    table = outcome_table(records, llm_ids)
    warnings += _too_few(data_path, table)
    held = [Encoder.from_dir(encoder_dir)]  # dropped (with onnxruntime's buffers) once encoding is done
    enc, _ = encode_cached(lambda texts: encode_with_progress(held[0], texts, progress), encoder_dir,
                           table.queries, cache, seed_rows=seed_rows)
    tag_run = None
    emb = enc.embeddings
    if tags:
        from ..core.tagging import fit_tag_pipeline

        progress("tags", 0, 1)
        tag_run = fit_tag_pipeline(table.queries, enc.embeddings, lambda texts: held[0].encode(texts).embeddings,
                                   tasks=table.tasks, given=[r.tags for r in records], settings=tag_settings,
                                   seed=seed)
        emb = tag_run.model.projection.apply(enc.embeddings)
        progress("tags", 1, 1)
    held.clear()
    del records
    release_memory()  # the encoder's working memory, before the heads need theirs (peak RSS)
    spec = fit_feature_spec(enc.token_ids, n_buckets) if n_buckets else None
    mean_cost = np.nanmean(table.cost_usd, axis=0)
    ref = int(np.nanargmax(mean_cost))
    return Inputs(table=table, encoded=enc, emb=emb, x=build_features(emb, enc.token_ids, spec), spec=spec,
                  tag_run=tag_run, ref=ref, cost_scale=float(mean_cost[ref]), warnings=tuple(warnings))


def fit(inputs: Inputs, families: Mapping[str, str], staging: Path, *, folds: int, seed: int,
        progress: Progress) -> tuple[dict[str, LLMHeadsEntry], np.ndarray, np.ndarray]:
    """Fit every LLM's heads and A⁻¹ on all rows and write them into `staging` as they come; returns
    their manifest entries and the out-of-fold quality and length predictions (rows × LLMs, 0 where
    the outcome is missing) the presets are calibrated on.

    Ridge length heads come from one Gram matrix per set of rows (training/ridge.py); the LLMs'
    other heads are fitted on up to FIT_THREADS threads (BLAS and scikit-learn's solvers release
    the GIL; every fit is independent and seeded, so the result does not depend on the order)."""
    from concurrent.futures import ThreadPoolExecutor

    table, x = inputs.table, inputs.x
    n, m = len(table.ids), len(table.llm_ids)
    fold = fold_ids(n, folds, seed)
    oof_quality, oof_length = np.zeros((n, m)), np.zeros((n, m))
    lengths: list[Head | None] = [None] * m
    if families[LENGTH] == "ridge":
        from .ridge import length_heads

        progress("heads", 0, m)
        fitted_lengths, oof_length = length_heads(x, table.response_tokens, fold, RIDGE_ALPHA)
        lengths = list(fitted_lengths)
    entries: dict[str, LLMHeadsEntry] = {}
    (staging / "heads").mkdir()

    def one(j: int) -> tuple[FittedLLM, np.ndarray, np.ndarray | None]:
        yq, ylen = table.quality[:, j], table.response_tokens[:, j]
        fitted = fit_llm(families, x, inputs.emb, yq, ylen, seed, length=lengths[j])
        oof_q = out_of_fold(families[QUALITY], QUALITY, x, yq, fold, seed)
        oof_len = None if lengths[j] is not None else out_of_fold(families[LENGTH], LENGTH, x, ylen, fold, seed)
        return fitted, oof_q, oof_len

    with ThreadPoolExecutor(max_workers=fit_threads()) as pool:
        for j, (fitted, oof_q, oof_len) in enumerate(pool.map(one, range(m))):
            llm = table.llm_ids[j]
            progress("heads", j, m)
            oof_quality[:, j] = oof_q
            if oof_len is not None:
                oof_length[:, j] = oof_len
            entries[llm] = write_llm_heads(staging, llm, fitted.heads, mean_quality=fitted.mean_quality,
                                           mean_length=fitted.mean_length, n_rows=fitted.n_rows)
    progress("heads", m, m)
    return entries, np.nan_to_num(oof_quality, nan=0.0), np.nan_to_num(oof_length, nan=0.0)


def release_memory() -> None:
    """Hand freed memory back to the system: onnxruntime's buffers, once the encoder is dropped, stay
    in the C heap's free lists otherwise, and the fitting that follows would add to them."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the memory is reused by the process, only not returned


def fit_threads() -> int:
    """Threads fitting heads at once: the CPUs this process may use (affinity and cgroup quota, as the
    encoder counts them), at most FIT_THREADS."""
    from ..core.encoder import usable_cpus

    return max(1, min(FIT_THREADS, usable_cpus()))


def calibrate(inputs: Inputs, oof_quality: np.ndarray, oof_length: np.ndarray,
              catalogue: Catalogue) -> Calibration:
    """Each preset's λ, from routing the training queries on out-of-fold predictions priced by the
    catalogue (missing real costs: the LLM's mean), with a warning per preset off its target."""
    table = inputs.table
    price_in = np.array([catalogue.get(i).input_usd_per_mtok for i in table.llm_ids]) / 1e6
    price_out = np.array([catalogue.get(i).output_usd_per_mtok for i in table.llm_ids]) / 1e6
    prompt_tokens = inputs.encoded.n_tokens.astype(np.float64)
    cost_pred = (prompt_tokens[:, None] * price_in + oof_length * price_out) / inputs.cost_scale
    real_cost = np.where(np.isnan(table.cost_usd), np.nanmean(table.cost_usd, axis=0), table.cost_usd)
    return calibrate_presets(cost_shares(oof_quality, cost_pred, real_cost, inputs.ref),
                             reference=table.llm_ids[inputs.ref])


def _manifest(inputs: Inputs, catalogue: Catalogue, data_path: Path, encoder_dir: Path,
              families: dict[str, str], heads: dict[str, LLMHeadsEntry], presets: dict[str, PresetEntry],
              seed: int) -> Manifest:
    """The manifest's account of the run; `publish` adds the entries of the files it writes."""
    enc_meta = json.loads((encoder_dir / "encoder.json").read_text())
    return Manifest(
        created_by=f"mixllm {__version__}",
        versions=_versions(),
        encoder=EncoderEntry(name=enc_meta.get("name"), files=enc_meta["files"]),
        catalogue_fingerprint=catalogue.fingerprint(),
        training_data=DataFile(file=data_path.name, sha256=sha256_file(data_path), rows=len(inputs.table.ids)),
        families=families,
        features=None,
        cost_scale_usd=inputs.cost_scale,
        reference_llm=inputs.table.llm_ids[inputs.ref],
        presets=presets,
        heads=heads,
        seed=seed,
    )


def publish(inputs: Inputs, manifest: Manifest, staging: Path, out_dir: Path, encoder_dir: Path) -> Manifest:
    """Write the set's files besides the heads, list them in the manifest, write it, and swap
    `staging` in as `out_dir` (the old set or the new one, never a mix). Returns the manifest written."""
    table, enc = inputs.table, inputs.encoded
    # The rows online refits start from (learning/online.py): the encoder's embeddings (the set's
    # projection is applied when they are read), token ids and outcomes.
    save_training_rows(staging / TRAINING_ROWS, TrainingRows(
        llm_ids=table.llm_ids, embeddings=enc.embeddings, token_ids=enc.token_ids,
        quality=table.quality, response_tokens=table.response_tokens,
        query_sha256=[text_sha256(q) for q in table.queries], encoder=encoder_identity(encoder_dir)))
    manifest = replace(manifest, training_rows=RowsFile.of(staging, TRAINING_ROWS, llms=table.llm_ids))
    if inputs.tag_run is not None:
        np.savez(staging / PROJECTION, allow_pickle=False, **inputs.tag_run.model.to_arrays())
        manifest = replace(manifest, tags=FileEntry.of(staging, PROJECTION, extra=inputs.tag_run.report))
    if inputs.spec is not None:
        np.savez(staging / FEATURES, allow_pickle=False, **inputs.spec.to_arrays())
        manifest = replace(manifest, features=FeaturesFile.of(staging, FEATURES, n_buckets=inputs.spec.n_buckets))
    if encoder_dir.resolve() == (out_dir / "encoder").resolve():
        # Rebuilding a set in place (the shipped default): the new set carries the encoder.
        # Otherwise the set reuses the shipped encoder by sha256 (see artifacts._encoder_dir).
        shutil.copytree(encoder_dir, staging / "encoder")
    manifest.write(staging)
    publish_dir(staging, out_dir)
    return manifest


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scikit-learn", "onnxruntime", "tokenizers", "joblib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
