"""Change the candidate pool without retraining the rest: add-llm, fit-llm, remove-llm, set-endpoint,
llms, and the catalogue `train-offline --catalogue X` keeps in the home.

The user's pool lives under the home: `<home>/models.yaml` (a copy of the shipped catalogue made
on the first change; the shipped file stays read-only) and `<home>/artifacts/` (a copy of the
shipped set's heads on the first change, the encoder is shared by sha256).

Write order keeps one invariant across crashes: the catalogue never names an LLM that the
artifact set cannot serve. Adding writes the heads, then the manifest, then the catalogue;
removing writes the catalogue, then the manifest, and deletes the heads only after archiving
them. A crash between steps leaves at worst an unreferenced file or a manifest entry for an LLM
the catalogue does not name, both ignored by routing and overwritten by the next add.

Heads are always written to files no manifest entry names (the usual `heads/<llm>.<kind>...`
names when free, else `heads/<llm>.<time>.<kind>...`; `<llm>` is `artifacts.llm_file_stem`, which
no other id shares, nor is any other's `<llm>.<time>`), so the manifest in place never points at a
file being rewritten: `fit-llm` on a warm LLM writes its new heads beside the old ones, archives
the old ones under `<home>/archive/`, switches the manifest, and only then deletes them.

An interrupted `remove-llm` is finished by running it again: the LLM is then gone from the
catalogue but still in the manifest (a crash before the manifest was written; the rest is done,
reusing the archive the first run made), or gone from both with its files still there (a crash
before they were deleted; they are deleted once the archive the manifest's history names holds
them). Scratch folders and temp files that a killed command left are swept by the next write in
their folder (`files.sweep_leftovers`).

A "cold" LLM (added without data) has no heads. Until feedback trains it, the router estimates
its quality optimistically as the best pool LLM's mean training quality and its response length
as the pool's median mean length (both stated in the manifest), and offers it only on a capped,
deterministic share of queries (those whose sha256 falls under `explore_share`); within that
share its A = I uncertainty bonus and the optimistic prior decide whether it wins. `fit-llm ID
--data DATA.jsonl` (e.g. the output of `mixllm collect --llms ID`) gives it heads, or retrains a
warm LLM's, from at least MIN_OUTCOMES (core/heads: 20) outcomes with a quality: below that
`fit_head` would fall back to a constant head, which predicts the same quality for every query and
would end the LLM's exploration for nothing, so both `add-llm --data` and `fit-llm` refuse and the
LLM stays as it was.

`train-offline --catalogue X --home H` keeps X as `H/models.yaml` (`keep_catalogue`), so every
later command in H routes on the catalogue the set was trained with. Order: the artifact set is
published first, the catalogue written after it (atomically; a different previous `H/models.yaml`
is archived first). Writing the catalogue first would leave H naming LLMs without heads whenever
training fails (bad data is far likelier than a crash). The window between the two writes is one
atomic rename of a small file; a crash inside it leaves H with the new set and the previous
catalogue. Nothing checks the manifest's `catalogue_fingerprint` against the catalogue at load
(`artifacts.load_artifact_set` and `Router` route the catalogue LLMs that have heads, priced by the
catalogue), so H then routes among the previous catalogue's LLMs that the new set has heads for
(or, if none, fails with "no trained heads ... run `mixllm train-offline`"). `mixllm llms` says so
(`catalogue_drift`: the catalogue and the set name different LLMs), and running the same
`train-offline` again repairs it (the embedding cache makes the rerun cheap).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import STAMP_FORMAT, llm_file_stem, write_llm_heads
from ..catalogue import (
    LLM,
    Catalogue,
    dump_catalogue,
    load_catalogue,
    loads_catalogue,
    save_catalogue,
    upstream_problems,
    with_llm,
    without_llm,
)
from ..core.heads import MIN_OUTCOMES
from ..errors import CatalogueError, DataError, MixLLMError, UsageError
from ..files import (
    atomic_write_bytes,
    dump_json,
    publish_dir,
    recover_published,
    sha256_file,
    staging_dir,
    sweep_leftovers,
    temp_dir,
)
from ..manifest import MANIFEST, ColdEntry, FileEntry, LLMHeadsEntry, Manifest
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
    """Add `llm` to the user's pool; train only its two heads from `data` (cold without data).

    The report's `warnings` (for the person: print them on stderr) say when the LLM's endpoint
    cannot be used from this environment as it is (`endpoint_warnings`)."""
    started = time.perf_counter()
    if not 0.0 <= explore_share <= 1.0:
        raise UsageError(f"must be in [0, 1] (got {explore_share})", param="explore_share")
    catalogue = load_pool_catalogue(home)
    with_llm(catalogue, llm)  # refuse a duplicate before touching anything
    report: dict[str, Any] = {"llm": llm.id}

    trained = None if data is None else _fit_heads(llm, Path(data), home, progress, report)
    set_dir = ensure_home_set(home)
    manifest = Manifest.read(set_dir)
    if trained is not None:
        entry = _place_heads(set_dir, manifest, llm.id, trained)
        manifest = manifest.with_heads(llm.id, entry).with_history(
            "add-llm", llm.id, outcomes=trained.fitted.n_rows, data_sha256=sha256_file(trained.data))
        report["status"] = "trained"
    else:
        manifest = _add_cold(manifest, llm.id, explore_share)
        cold = manifest.cold[llm.id]
        report.update(status="cold", prior_quality=cold.prior_quality,
                      prior_response_tokens=cold.prior_response_tokens, explore_share=explore_share)
    _write_manifest(set_dir, manifest)
    save_catalogue(with_llm(catalogue, llm), user_catalogue_path(home))
    report["warnings"] = [*report.get("warnings", []), *endpoint_warnings(llm)]
    report["seconds_total"] = round(time.perf_counter() - started, 3)
    return report


def fit_llm_heads(llm_id: str, data: Path, *, home: Path | str | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Give a pool LLM (cold, or warm: retrained) its two heads from `data`; nothing else changes.

    The catalogue is left as it is and every other LLM's files stay byte-identical. A warm LLM's
    previous heads are archived under `<home>/archive/`. The heads are fitted on `data` alone (to
    keep what the LLM was trained on before, pass a dataset that holds both). Refuses, changing
    nothing, when `data` holds fewer than MIN_OUTCOMES outcomes with a quality for the LLM.
    """
    started = time.perf_counter()
    llm = load_pool_catalogue(home).get(llm_id)
    report: dict[str, Any] = {"llm": llm.id}
    trained = _fit_heads(llm, Path(data), home, progress, report)
    set_dir = ensure_home_set(home)
    manifest = Manifest.read(set_dir)
    old = manifest.heads.get(llm.id)
    report["was"] = "trained" if old else ("cold" if llm.id in manifest.cold else "no heads")
    entry = _place_heads(set_dir, manifest, llm.id, trained)
    archive = None
    if old is not None:
        archive = _archive(home, llm.id, set_dir, old.files, {"catalogue": llm.to_dict(), "heads": old.to_json(),
                                                              "replaced_by": "fit-llm"})
    new = manifest.with_heads(llm.id, entry).with_history(
        "fit-llm", llm.id, outcomes=trained.fitted.n_rows, data_sha256=sha256_file(trained.data))
    _write_manifest(set_dir, new)  # from here on, routing uses the new heads
    if old is not None:
        _delete_unreferenced(set_dir, new, old.files)
    report.update(status="trained", archive=None if archive is None else str(archive),
                  seconds_total=round(time.perf_counter() - started, 3))
    return report


@dataclass(frozen=True)
class _Trained:
    """A new LLM's fitted heads, the rows they were fitted on, and the dataset those came from."""

    fitted: FittedLLM
    rows: TrainingRows
    data: Path


def _place_heads(set_dir: Path, manifest: Manifest, llm_id: str, trained: _Trained) -> LLMHeadsEntry:
    """Write the LLM's heads, A⁻¹ and training rows into the set, each under a name no entry of
    `manifest` refers to; returns the entry that lists them (the manifest is not written)."""
    fitted = trained.fitted
    heads_dir = set_dir / "heads"
    sweep_leftovers(heads_dir, unowned=(".fit-",))  # scratch of killed add-llm / fit-llm runs
    scratch = temp_dir(heads_dir, ".fit.")
    try:
        entry = write_llm_heads(scratch, llm_id, fitted.heads, mean_quality=fitted.mean_quality,
                                mean_length=fitted.mean_length, n_rows=fitted.n_rows)
        rel = f"heads/{llm_file_stem(llm_id)}.rows.npz"  # what online refits of this LLM start from
        save_training_rows(scratch / rel, trained.rows)
        entry = replace(entry, rows=FileEntry.of(scratch, rel))
        taken = _referenced(manifest)
        defaults = [e.file for e in entry.files]
        stamp = datetime.now(timezone.utc).strftime(STAMP_FORMAT)
        stem = llm_file_stem(llm_id)
        # One time for all four files, so a head and its A⁻¹ keep names that belong together.
        # No stem is another's `<stem>.<time>` (llm_file_stem), so this is no other LLM's usual name.
        names = (defaults if not (set(defaults) & taken)
                 else [f.replace(f"heads/{stem}.", f"heads/{stem}.{stamp}.", 1) for f in defaults])
        for src, dst in zip(defaults, names, strict=True):
            os.replace(scratch / src, set_dir / dst)
        _fsync_dir(heads_dir)
        moved = dict(zip(defaults, names, strict=True))
        return replace(entry, quality=replace(entry.quality, file=moved[entry.quality.file]),
                       length=replace(entry.length, file=moved[entry.length.file]),
                       ainv=replace(entry.ainv, file=moved[entry.ainv.file]),
                       rows=replace(entry.rows, file=moved[entry.rows.file]) if entry.rows else None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _referenced(manifest: Manifest) -> set[str]:
    """Every file an entry of the manifest names (relative to the set)."""
    files = {f.file for e in manifest.heads.values() for f in e.files}
    for extra in (manifest.training_rows, manifest.features, manifest.tags):
        if extra is not None:
            files.add(extra.file)
    return files


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # make the renames durable where the OS allows
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _archive(home: Path | str | None, llm_id: str, set_dir: Path, files: list[FileEntry],
             entry: dict[str, Any]) -> Path:
    """Copy an LLM's files and a JSON account of them to `<home>/archive/<llm>-<time>/`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    archive = home_dir(home) / "archive" / f"{llm_file_stem(llm_id)}-{stamp}"
    archive.mkdir(parents=True)
    for f in files:
        shutil.copy2(set_dir / f.file, archive / Path(f.file).name)
    atomic_write_bytes(archive / "entry.json", dump_json({**entry, "removed_from": str(set_dir)}))
    return archive


def _delete_unreferenced(set_dir: Path, manifest: Manifest, files: list[FileEntry]) -> None:
    """Delete those of `files` that `manifest` no longer refers to."""
    keep = _referenced(manifest)
    for f in files:
        if f.file not in keep:
            (set_dir / f.file).unlink(missing_ok=True)


def _add_cold(manifest: Manifest, llm_id: str, explore_share: float) -> Manifest:
    """List the LLM as cold, with the priors that stand in for its heads."""
    quality, length = cold_priors(manifest)
    cold = ColdEntry(prior_quality=quality, prior_response_tokens=length, explore_share=explore_share,
                     prior_rule=COLD_PRIOR_RULE)
    return manifest.with_cold(llm_id, cold).with_history("add-llm", llm_id, cold=True)


def _fit_heads(llm: LLM, data: Path, home: Path | str | None, progress: Progress | None,
               report: dict[str, Any]) -> _Trained:
    """Encode the queries that have an outcome for `llm` and fit its two heads and A⁻¹.

    Refused before any encoding when fewer than MIN_OUTCOMES outcomes carry a quality."""
    from ..artifacts import load_artifact_set
    from ..core.encoder import Encoder
    from ..core.features import build_features
    from ..dataset import read_dataset
    from ..embcache import cache_dir, encode_cached, encoder_identity, seeds_for_set, text_sha256
    from ..paths import active_artifacts_dir
    from .fitters import fit_llm
    from .pipeline import encode_with_progress, outcome_table

    records = [r for r in read_dataset(data, warn=report.setdefault("warnings", []).append)
               if r.outcomes.get(llm.id) is not None]
    if not records:
        raise DataError(f"{data}: no outcomes for LLM '{llm.id}'; nothing to train its heads on")
    table = outcome_table(records, [llm.id])
    has_q = ~np.isnan(table.quality[:, 0])
    if not has_q.any():
        raise DataError(f"{data}: every outcome for LLM '{llm.id}' has quality null; cannot train its quality head")
    if has_q.sum() < MIN_OUTCOMES:
        raise DataError(f"{data}: {int(has_q.sum())} outcomes with a quality for LLM '{llm.id}'; its heads need at "
                        f"least {MIN_OUTCOMES} (fewer give a constant head, worse than staying cold); collect more, "
                        f"e.g. `mixllm collect PROMPTS.jsonl --llms {llm.id}`")
    base = load_artifact_set(active_artifacts_dir(home), llm_ids=[])

    t0 = time.perf_counter()
    encoder = Encoder.from_dir(base.encoder_dir)
    enc, _ = encode_cached(lambda texts: encode_with_progress(encoder, texts, progress or (lambda *_: None)),
                           base.encoder_dir, table.queries, cache_dir(home), seed_rows=seeds_for_set(base.path))
    report["seconds_embedding"] = round(time.perf_counter() - t0, 3)

    t1 = time.perf_counter()
    emb = base.embed(enc.embeddings)  # the set's tag-enhanced embedding, if it has one
    x = build_features(emb, enc.token_ids, base.features)
    fitted = fit_llm(base.manifest.families, x, emb, table.quality[:, 0], table.response_tokens[:, 0])
    rows = TrainingRows(llm_ids=[llm.id], embeddings=enc.embeddings, token_ids=enc.token_ids,
                        quality=table.quality, response_tokens=table.response_tokens,
                        query_sha256=[text_sha256(q) for q in table.queries], encoder=encoder_identity(base.encoder_dir))
    report["seconds_fit"] = round(time.perf_counter() - t1, 3)
    report["outcomes"] = len(records)
    report["outcomes_with_quality"] = int(has_q.sum())
    return _Trained(fitted, rows, data)


def remove_llm(llm_id: str, *, home: Path | str | None = None, force: bool = False) -> dict[str, Any]:
    """Remove `llm_id` from the user's pool; its heads move to `<home>/archive/`.

    Removing the last LLM with trained heads is refused unless `force`: the cold ones left are
    offered only on their exploration share, so most queries would find no LLM at all.
    Run again after a crash cut it short, it finishes the job (see the module docstring); the
    report then says `"finished": true`."""
    started = time.perf_counter()
    catalogue = load_pool_catalogue(home)
    if llm_id not in catalogue:
        report = _finish_removal(llm_id, home)
        if report is not None:
            return {**report, "seconds_total": round(time.perf_counter() - started, 3)}
    entry_llm = catalogue.get(llm_id)  # an unknown one raises, naming the known ones
    smaller = without_llm(catalogue, llm_id)
    set_dir = ensure_home_set(home)
    manifest = Manifest.read(set_dir)
    heads = manifest.heads.get(llm_id)
    cold = manifest.cold.get(llm_id)
    if heads is not None and not force and not any(i in manifest.heads for i in smaller.ids):
        raise UsageError(f"{llm_id!r} is the last LLM with trained heads: without it only cold LLMs remain, "
                         "offered on their exploration share only, so most queries would find no LLM; train "
                         "another first (`mixllm fit-llm ID --data D`), or remove it anyway with --force")

    files = heads.files if heads else []
    account = {"llm": llm_id, "catalogue": entry_llm.written(), "heads": heads.to_json() if heads else None,
               "cold": cold.to_json() if cold else None}
    archive = _archived(home, llm_id, set_dir, manifest, account) or _archive(home, llm_id, set_dir, files, account)

    save_catalogue(smaller, user_catalogue_path(home))  # from here on, routing never picks it
    smaller_manifest = manifest.without(llm_id).with_history("remove-llm", llm_id, archive=str(archive))
    _write_manifest(set_dir, smaller_manifest)
    _delete_unreferenced(set_dir, smaller_manifest, files)
    return {"llm": llm_id, "archive": str(archive), "seconds_total": round(time.perf_counter() - started, 3)}


def _finish_removal(llm_id: str, home: Path | str | None) -> dict[str, Any] | None:
    """Finish a `remove_llm` of an LLM the catalogue no longer names; None when there is nothing
    of it left to remove (then it is simply unknown)."""
    set_dir = home_artifacts_dir(home)
    recover_published(set_dir)
    if not (set_dir / MANIFEST).is_file():
        return None
    manifest = Manifest.read(set_dir)
    heads, cold = manifest.heads.get(llm_id), manifest.cold.get(llm_id)
    if heads is not None or cold is not None:
        # Cut after the catalogue was written: write the manifest, delete the files.
        files = heads.files if heads else []
        account = {"llm": llm_id, "catalogue": None, "heads": heads.to_json() if heads else None,
                   "cold": cold.to_json() if cold else None}
        archive = _archived(home, llm_id, set_dir, manifest, account) or _archive(home, llm_id, set_dir, files, account)
        smaller = manifest.without(llm_id).with_history("remove-llm", llm_id, archive=str(archive))
        _write_manifest(set_dir, smaller)
        _delete_unreferenced(set_dir, smaller, files)
        return {"llm": llm_id, "archive": str(archive), "finished": True}
    # Cut after the manifest was written: delete the files its archive holds copies of.
    last = next((h for h in reversed(manifest.history) if h.get("op") == "remove-llm" and h.get("llm") == llm_id),
                None)
    if last is None or not isinstance(last.get("archive"), str):
        return None
    archive = Path(last["archive"])
    try:
        account = json.loads((archive / "entry.json").read_bytes())
        files = LLMHeadsEntry.from_json(account["heads"], "entry.json: heads").files if account.get("heads") else []
    except (OSError, ValueError, KeyError, TypeError, MixLLMError):
        return None
    keep = _referenced(manifest)
    left = [f for f in files if f.file not in keep and (set_dir / f.file).is_file()
            and (archive / Path(f.file).name).is_file() and sha256_file(set_dir / f.file) == f.sha256]
    if not left:
        return None
    for f in left:
        (set_dir / f.file).unlink(missing_ok=True)
    return {"llm": llm_id, "archive": str(archive), "finished": True}


def _archived(home: Path | str | None, llm_id: str, set_dir: Path, manifest: Manifest,
              account: dict[str, Any]) -> Path | None:
    """The archive an earlier, interrupted `remove_llm` made of these very files, if any (one that
    the manifest's history names belongs to a removal that finished)."""
    folder = home_dir(home) / "archive"
    done = {h.get("archive") for h in manifest.history if h.get("op") == "remove-llm"}
    for candidate in sorted(folder.glob(f"{llm_file_stem(llm_id)}-*"), reverse=True):
        if str(candidate) in done:
            continue
        try:
            entry = json.loads((candidate / "entry.json").read_bytes())
        except (OSError, ValueError):
            continue
        if (isinstance(entry, dict) and entry.get("llm") == llm_id and entry.get("removed_from") == str(set_dir)
                and entry.get("heads") == account["heads"] and entry.get("cold") == account["cold"]
                and "replaced_by" not in entry):
            return candidate
    return None


def list_llms(home: Path | str | None = None, catalogue_file: Path | str | None = None,
              store: StoreBase | None = None) -> list[dict[str, Any]]:
    """The pool: each catalogue LLM with its prices, latency figures and training status.

    `defaults` lists the figures the catalogue leaves to their defaults; `sources` says where each
    figure comes from; the endpoint shows the key's variable name and whether it is set, never the key.
    """
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
            "defaults": list(llm.defaults),
            "sources": dict(llm.sources),
            "base_url": llm.base_url,
            "api_key_env": llm.api_key_env,
            "api_key_set": None if llm.api_key_env is None else bool(os.environ.get(llm.api_key_env)),
            "upstream_model": llm.upstream_model,
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


def catalogue_drift(home: Path | str | None = None, catalogue_file: Path | str | None = None) -> str | None:
    """A note when the catalogue in use and the active artifact set name different LLMs (e.g. after
    a crash between `train-offline`'s publish and its catalogue write), saying what to do; None when
    every catalogue LLM is served (trained or cold) and every served LLM is in the catalogue.

    LLM ids, not the manifest's `catalogue_fingerprint`: the fingerprint also covers figures that
    legitimately change after training (a measured TTFT, a new slot count) and pool changes do not
    update it, while a mismatch of ids is what actually changes what routing can pick."""
    from ..paths import active_artifacts_dir

    path = catalogue_path(home, catalogue_file)
    set_dir = active_artifacts_dir(home)
    manifest = Manifest.read(set_dir)
    ids = load_catalogue(path).ids
    served = set(manifest.heads) | set(manifest.cold)
    missing = [i for i in ids if i not in served]
    extra = sorted(served - set(ids))
    if not missing and not extra:
        return None
    parts = ([f"{path} names LLMs {set_dir} has no heads for ({', '.join(missing)})"] if missing else []) + (
        [f"{set_dir} has heads for LLMs {path} does not name ({', '.join(extra)})"] if extra else [])
    return ("; ".join(parts) + ". If they should match, train again with that catalogue: "
            "`mixllm train-offline DATA.jsonl --catalogue MODELS.yaml`, or use `mixllm add-llm` / `remove-llm`")


def llm_from_options(llm_id: str, name: str | None, input_usd: float, output_usd: float, ttft_ms: float | None,
                     tokens_per_s: float | None, slots: int | None, *, base_url: str | None = None,
                     api_key_env: str | None = None, upstream_model: str | None = None) -> LLM:
    """Build a catalogue entry from add-llm's flags: the entry states only the flags given, so the
    other figures stay documented defaults (catalogue/checks.DEFAULTS) and `mixllm llms` shows them so."""
    endpoint = {"base_url": base_url, "api_key_env": api_key_env, "upstream_model": upstream_model}
    check_endpoint(endpoint)
    figures: dict[str, Any] = {"name": name, "ttft_ms": ttft_ms, "output_tokens_per_s": tokens_per_s,
                               "slots": slots, **endpoint}
    stated = {k: v for k, v in figures.items() if v is not None}
    return LLM(id=llm_id, input_usd_per_mtok=input_usd, output_usd_per_mtok=output_usd, **stated,
               given=frozenset(stated))


def check_endpoint(fields: Mapping[str, str | None]) -> None:
    """Validate the endpoint fields given (None: not given); a bad one is a UsageError naming it."""
    given = {k: v for k, v in fields.items() if v is not None}
    for name, message in upstream_problems(given):
        raise UsageError(message, param=name)


def endpoint_warnings(llm: LLM) -> list[str]:
    """What would stop `serve` or `collect` from calling the LLM's endpoint from this environment now.

    Never the key's value: only whether the variable is set."""
    out = []
    if llm.api_key_env is not None and not os.environ.get(llm.api_key_env):
        out.append(f"{llm.api_key_env} is not set in this environment; `mixllm serve` and `mixllm collect` "
                   f"read {llm.id}'s API key from it")
    if llm.base_url is not None and llm.api_key_env is not None and llm.base_url.startswith("http://"):
        from urllib.parse import urlsplit

        host = urlsplit(llm.base_url).hostname or ""
        if not _is_loopback(host):
            out.append(f"{llm.id}'s base_url is plain http to {host}: its API key would cross the network "
                       "unencrypted; use https")
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def update_llm(llm_id: str, *, home: Path | str | None = None, sources: Mapping[str, str] | None = None,
               **changes: Any) -> LLM:
    """Change fields of a pool LLM in `<home>/models.yaml` (written atomically; copied from the
    shipped catalogue on the first change); an upstream field set to None is removed. Returns the new
    entry. Routing figures (prices, speeds, slots) change the catalogue's fingerprint; name, sources
    and the endpoint do not."""
    catalogue = load_pool_catalogue(home)
    new = catalogue.get(llm_id).updated(sources, **changes)
    save_catalogue(Catalogue(tuple(new if e.id == llm_id else e for e in catalogue.llms)), user_catalogue_path(home))
    return new


def set_endpoint(llm_id: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 upstream_model: str | None = None, clear: bool = False,
                 home: Path | str | None = None) -> dict[str, Any]:
    """Set, change or (`clear`) remove a pool LLM's endpoint; fields not given keep their value.

    With `clear` and fields, the endpoint becomes exactly the fields given. The result must have a
    `base_url` unless it is empty. The report names the key's variable, never its value; its
    `warnings` are for the person (stderr)."""
    given = {"base_url": base_url, "api_key_env": api_key_env, "upstream_model": upstream_model}
    check_endpoint(given)
    if not clear and all(v is None for v in given.values()):
        raise UsageError("give --base-url, --api-key-env or --upstream-model to set, or --clear to remove the endpoint")
    llm = load_pool_catalogue(home).get(llm_id)
    endpoint: dict[str, str | None] = {} if clear else dict(llm.endpoint)
    endpoint.update({k: v for k, v in given.items() if v is not None})
    if endpoint and "base_url" not in endpoint:
        raise UsageError(f"{llm_id} has no endpoint yet; give its --base-url", param="base_url")
    changes: dict[str, Any] = {k: endpoint.get(k) for k in given}
    new = update_llm(llm_id, home=home, **changes)
    return {"llm": new.id, **{k: getattr(new, k) for k in given}, "catalogue": str(user_catalogue_path(home)),
            "warnings": endpoint_warnings(new)}


def keep_catalogue(catalogue_file: Path | str, trained: Catalogue, home: Path | str | None = None
                   ) -> dict[str, Any] | None:
    """Make the catalogue an artifact set was just trained with the home's own (`<home>/models.yaml`).

    Call it after the set is published (see the module docstring for why, and for the crash
    window). The file's bytes are kept as written (comments too) when they still hold `trained`;
    if the file changed meanwhile, `trained` itself is written. A different previous
    `<home>/models.yaml` is archived first. Returns None when `catalogue_file` already is it.
    """
    source, target = Path(catalogue_file), user_catalogue_path(home)
    with contextlib.suppress(OSError):
        if target.exists() and source.samefile(target):
            return None
    try:
        raw = source.read_bytes()
        data = raw if loads_catalogue(raw, str(source)) == trained else dump_catalogue(trained).encode("utf-8")
    except (OSError, CatalogueError):
        data = dump_catalogue(trained).encode("utf-8")
    previous = None
    if target.is_file() and target.read_bytes() != data:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        previous = home_dir(home) / "archive" / f"models-{stamp}.yaml"
        previous.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, previous)
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise CatalogueError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return {"catalogue": str(target), "from": str(source), "previous": None if previous is None else str(previous)}
