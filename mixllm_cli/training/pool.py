"""Change the candidate pool without retraining the rest: add-llm, remove-llm, llms.

The user's pool lives under the home: `<home>/models.yaml` (a copy of the shipped catalogue made
on the first change; the shipped file stays read-only) and `<home>/artifacts/` (a copy of the
shipped set's heads on the first change, the encoder is shared by sha256).

Write order keeps one invariant across crashes: the catalogue never names an LLM that the
artifact set cannot serve. Adding writes the heads, then the manifest, then the catalogue;
removing writes the catalogue, then the manifest, and deletes the heads only after archiving
them. A crash between steps leaves at worst an unreferenced file or a manifest entry for an LLM
the catalogue does not name, both ignored by routing and overwritten by the next add.

A "cold" LLM (added without data) has no heads. Until feedback trains it, the router estimates
its quality optimistically as the best pool LLM's mean training quality and its response length
as the pool's median mean length (both stated in the manifest), and offers it only on a capped,
deterministic share of queries (those whose sha256 falls under `explore_share`); within that
share its A = I uncertainty bonus and the optimistic prior decide whether it wins.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import llm_file_stem, write_llm_heads
from ..catalogue import LLM, Catalogue, load_catalogue, save_catalogue, with_llm, without_llm
from ..errors import DataError, UsageError
from ..files import atomic_write_bytes, dump_json, publish_dir, sha256_file, staging_dir
from ..manifest import MANIFEST, ColdEntry, FileEntry, Manifest
from ..paths import catalogue_path, home_artifacts_dir, home_dir, shipped_artifacts_dir
from ..training_rows import TrainingRows, save_training_rows

if TYPE_CHECKING:
    from ..state.base import StoreBase
    from .fitters import FittedLLM

DEFAULT_EXPLORE_SHARE = 0.05
COLD_PRIOR_RULE = ("quality: the best pool LLM's mean training quality (optimistic); "
                   "length: the median of the pool LLMs' mean response tokens")
Progress = Callable[[str, int, int], None]


def user_catalogue_path(home: Path | str | None = None) -> Path:
    return home_dir(home) / "models.yaml"


def load_pool_catalogue(home: Path | str | None = None) -> Catalogue:
    """The user's catalogue if it exists, else the shipped one."""
    return load_catalogue(catalogue_path(home))


def ensure_home_set(home: Path | str | None = None) -> Path:
    """The home's artifact set, first copied from the shipped default if the home has none."""
    target = home_artifacts_dir(home)
    if (target / MANIFEST).is_file():
        return target
    source = shipped_artifacts_dir()
    Manifest.read(source)  # fail early, with the usual message, if the default is missing
    staging = staging_dir(target)
    try:
        for item in source.iterdir():
            if item.name == "encoder":
                continue  # shared with the shipped set by sha256
            if item.is_dir():
                shutil.copytree(item, staging / item.name)
            else:
                shutil.copy2(item, staging / item.name)
        publish_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_manifest(set_dir: Path, manifest: Manifest) -> None:
    manifest.write(set_dir)


def cold_priors(manifest: Manifest) -> tuple[float, float]:
    """Optimistic quality prior and typical length for a cold LLM, from the pool's heads."""
    qualities = [float(e.quality.mean_target) for e in manifest.heads.values() if e.quality.mean_target is not None]
    lengths = [float(e.length.mean_target) for e in manifest.heads.values() if e.length.mean_target is not None]
    if not qualities:
        return 0.5, 100.0
    return max(qualities), float(np.median(lengths))


def add_llm(
    llm: LLM,
    data: Path | None = None,
    *,
    home: Path | str | None = None,
    explore_share: float = DEFAULT_EXPLORE_SHARE,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Add `llm` to the user's pool; train only its two heads from `data` (cold without data)."""
    started = time.perf_counter()
    if not 0.0 <= explore_share <= 1.0:
        raise UsageError(f"must be in [0, 1] (got {explore_share})", param="explore_share")
    catalogue = load_pool_catalogue(home)
    with_llm(catalogue, llm)  # refuse a duplicate before touching anything
    report: dict[str, Any] = {"llm": llm.id}

    trained = None if data is None else _fit_new_llm(llm, Path(data), home, progress, report)
    set_dir = ensure_home_set(home)
    manifest = Manifest.read(set_dir)
    if trained is not None:
        manifest = _add_trained(set_dir, manifest, llm.id, trained)
        report["status"] = "trained"
    else:
        manifest = _add_cold(manifest, llm.id, explore_share)
        cold = manifest.cold[llm.id]
        report.update(status="cold", prior_quality=cold.prior_quality,
                      prior_response_tokens=cold.prior_response_tokens, explore_share=explore_share)
    _write_manifest(set_dir, manifest)
    save_catalogue(with_llm(catalogue, llm), user_catalogue_path(home))
    report["seconds_total"] = round(time.perf_counter() - started, 3)
    return report


@dataclass(frozen=True)
class _Trained:
    """A new LLM's fitted heads, the rows they were fitted on, and the dataset those came from."""

    fitted: FittedLLM
    rows: TrainingRows
    data: Path


def _add_trained(set_dir: Path, manifest: Manifest, llm_id: str, trained: _Trained) -> Manifest:
    """Write the LLM's heads, A⁻¹ and training rows into the set; returns the manifest listing them."""
    fitted = trained.fitted
    entry = write_llm_heads(set_dir, llm_id, fitted.heads, mean_quality=fitted.mean_quality,
                            mean_length=fitted.mean_length, n_rows=fitted.n_rows)
    rel = f"heads/{llm_file_stem(llm_id)}.rows.npz"  # what online refits of this LLM start from
    save_training_rows(set_dir / rel, trained.rows)
    entry = replace(entry, rows=FileEntry.of(set_dir, rel))
    return manifest.with_heads(llm_id, entry).with_history("add-llm", llm_id, outcomes=fitted.n_rows,
                                                           data_sha256=sha256_file(trained.data))


def _add_cold(manifest: Manifest, llm_id: str, explore_share: float) -> Manifest:
    """List the LLM as cold, with the priors that stand in for its heads."""
    quality, length = cold_priors(manifest)
    cold = ColdEntry(prior_quality=quality, prior_response_tokens=length, explore_share=explore_share,
                     prior_rule=COLD_PRIOR_RULE)
    return manifest.with_cold(llm_id, cold).with_history("add-llm", llm_id, cold=True)


def _fit_new_llm(llm: LLM, data: Path, home: Path | str | None, progress: Progress | None,
                 report: dict[str, Any]) -> _Trained:
    """Encode the queries that have an outcome for `llm` and fit its two heads and A⁻¹."""
    from ..artifacts import load_artifact_set
    from ..core.encoder import Encoder
    from ..core.features import build_features
    from ..dataset import read_dataset
    from ..embcache import cache_dir, encode_cached
    from ..paths import active_artifacts_dir
    from .fitters import fit_llm
    from .pipeline import encode_with_progress, outcome_table

    records = [r for r in read_dataset(data) if r.outcomes.get(llm.id) is not None]
    if not records:
        raise DataError(f"{data}: no outcomes for LLM '{llm.id}'; nothing to train its heads on")
    table = outcome_table(records, [llm.id])
    base = load_artifact_set(active_artifacts_dir(home), llm_ids=[])

    t0 = time.perf_counter()
    encoder = Encoder.from_dir(base.encoder_dir)
    enc, _ = encode_cached(lambda texts: encode_with_progress(encoder, texts, progress or (lambda *_: None)),
                           base.encoder_dir, table.queries, cache_dir(home))
    report["seconds_embedding"] = round(time.perf_counter() - t0, 3)

    t1 = time.perf_counter()
    emb = base.embed(enc.embeddings)  # the set's tag-enhanced embedding, if it has one
    x = build_features(emb, enc.token_ids, base.features)
    has_q = ~np.isnan(table.quality[:, 0])
    if not has_q.any():
        raise DataError(f"{data}: every outcome for LLM '{llm.id}' has quality null; cannot train its quality head")
    fitted = fit_llm(base.manifest.families, x, emb, table.quality[:, 0], table.response_tokens[:, 0])
    rows = TrainingRows(llm_ids=[llm.id], embeddings=enc.embeddings, token_ids=enc.token_ids,
                        quality=table.quality, response_tokens=table.response_tokens)
    report["seconds_fit"] = round(time.perf_counter() - t1, 3)
    report["outcomes"] = len(records)
    report["outcomes_with_quality"] = int(has_q.sum())
    return _Trained(fitted, rows, data)


def remove_llm(llm_id: str, *, home: Path | str | None = None) -> dict[str, Any]:
    """Remove `llm_id` from the user's pool; its heads move to `<home>/archive/`."""
    started = time.perf_counter()
    catalogue = load_pool_catalogue(home)
    entry_llm = catalogue.get(llm_id)
    smaller = without_llm(catalogue, llm_id)
    set_dir = ensure_home_set(home)
    manifest = Manifest.read(set_dir)
    heads = manifest.heads.get(llm_id)
    cold = manifest.cold.get(llm_id)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    archive = home_dir(home) / "archive" / f"{llm_file_stem(llm_id)}-{stamp}"
    archive.mkdir(parents=True)
    files = [e.file for e in heads.files] if heads else []
    for rel in files:
        shutil.copy2(set_dir / rel, archive / Path(rel).name)
    atomic_write_bytes(archive / "entry.json", dump_json(
        {"catalogue": entry_llm.to_dict(), "heads": heads.to_json() if heads else None,
         "cold": cold.to_json() if cold else None, "removed_from": str(set_dir)}))

    save_catalogue(smaller, user_catalogue_path(home))  # from here on, routing never picks it
    _write_manifest(set_dir, manifest.without(llm_id).with_history("remove-llm", llm_id, archive=str(archive)))
    for rel in files:
        (set_dir / rel).unlink(missing_ok=True)
    return {"llm": llm_id, "archive": str(archive), "seconds_total": round(time.perf_counter() - started, 3)}


def list_llms(home: Path | str | None = None, catalogue_file: Path | str | None = None,
              store: StoreBase | None = None) -> list[dict[str, Any]]:
    """The pool: each catalogue LLM with its prices, latency figures and training status."""
    from ..paths import active_artifacts_dir
    from ..state import open_store

    catalogue = load_catalogue(catalogue_path(home, catalogue_file))
    set_dir = active_artifacts_dir(home)
    manifest = Manifest.read(set_dir)
    store = store if store is not None else open_store(home)
    live = store.exists()  # listing never creates the state database
    learned = store.learned() if live else {}
    depth = store.open_calls(time.time()) if live else {}
    rows = []
    for llm in catalogue:
        heads = manifest.heads.get(llm.id)
        cold = manifest.cold.get(llm.id)
        status = "trained" if heads else ("cold" if cold else "no heads")
        rows.append({
            "id": llm.id,
            "name": llm.name,
            "input_usd_per_mtok": llm.input_usd_per_mtok,
            "output_usd_per_mtok": llm.output_usd_per_mtok,
            "ttft_ms": llm.ttft_ms,
            "output_tokens_per_s": llm.output_tokens_per_s,
            "slots": llm.slots,
            "status": status,
            "outcomes": heads.ainv.n_train if heads else 0,
            "quality_head": heads.quality.family if heads else None,
            "length_head": heads.length.family if heads else None,
            "explore_share": cold.explore_share if cold else None,
            "learned_ttft_ms": round(learned[llm.id].ttft_ms, 1) if llm.id in learned else None,
            "learned_output_tokens_per_s": round(learned[llm.id].output_tokens_per_s, 2) if llm.id in learned else None,
            "latency_observations": learned[llm.id].n if llm.id in learned else 0,
            "latency_p50_p95_ms": store.latency_percentiles(llm.id) if llm.id in learned else None,
            "calls_in_flight": depth.get(llm.id, 0),
        })
    return rows


def llm_from_options(llm_id: str, name: str | None, input_usd: float, output_usd: float, ttft_ms: float | None,
                     tokens_per_s: float | None, slots: int | None) -> LLM:
    """Build a catalogue entry from add-llm's flags; unspecified latency figures are marked as defaults."""
    given = "given to mixllm add-llm"
    default = "default: not given to mixllm add-llm"
    return LLM(
        id=llm_id,
        name=name or llm_id,
        input_usd_per_mtok=input_usd,
        output_usd_per_mtok=output_usd,
        ttft_ms=500.0 if ttft_ms is None else ttft_ms,
        output_tokens_per_s=50.0 if tokens_per_s is None else tokens_per_s,
        slots=4 if slots is None else slots,
        sources=(("prices", given), ("ttft_ms", given if ttft_ms is not None else default),
                 ("output_tokens_per_s", given if tokens_per_s is not None else default),
                 ("slots", given if slots is not None else default)),
    )

