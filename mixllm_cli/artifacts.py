"""Load an artifact set: manifest first, every file's sha256 checked before it is read.

Layout of a set (the shipped default `artifacts/`, or `<home>/artifacts/`):

    manifest.json          versions, fingerprints, presets, cost scale, and a sha256 per file (manifest.py)
    encoder/               model.onnx + tokenizer.json (a trained set may reuse the shipped one)
    features.npz           the lexical feature spec (idf weights), numpy only, no pickle
    projection.npz         the tag-enhanced embedding (tags.py, projection.py), only in sets trained with tags
    heads/<llm>.quality.joblib, heads/<llm>.length.joblib   one file per LLM per head
    heads/<llm>.ainv.npy   A_l⁻¹ for the uncertainty term, numpy only, no pickle

`<llm>` is `llm_file_stem(id)`, a name that no other id shares (on a case-insensitive file system
too); the manifest records every file's name, and a set is always read through it, so sets
written with the earlier names (`meta/llama` → `meta__llama`, the shipped one among them) load
as they are.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .core.encoder import GRAPH_DATA_FILE, MODEL_FILE
from .core.features import FeatureSpec
from .core.heads import LENGTH, QUALITY, Head
from .core.projection import Projection, transform_embeddings
from .errors import ArtifactError
from .files import atomic_write_bytes, dump_json, publish_dir, sha256_file, staging_dir
from .manifest import (
    MANIFEST,
    AinvFile,
    FeaturesFile,
    FileEntry,
    HeadFile,
    LLMHeadsEntry,
    Manifest,
    PresetEntry,
    verify,
)
from .paths import shipped_artifacts_dir

if TYPE_CHECKING:
    from .core.tagging import TagModel


# Ids written as they are: lower case, no separator, so no two of them fold to one name on a
# case-insensitive file system and none can be read as another's hashed or time-stamped name.
_PLAIN_STEM = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# The time pool changes put in a file name when the usual one is taken (`<stem>.<time>.<kind>...`);
# an id with a part of that shape is hashed, so no stem is another's `<stem>.<time>`, in any case.
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_STAMP_PART = re.compile(r"(?:^|\.)\d{8}t\d{12}z(?:\.|$)")
# Names Windows keeps for devices, whatever follows the first dot ("con.quality.joblib" included).
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})


def llm_file_stem(llm_id: str) -> str:
    """The file-name stem of an LLM's files: two different ids never share one.

    An id of lower-case letters, digits, '.', '_' and '-' is its own stem ('claude-v1'); any other
    gets a readable slug and the first 16 hex digits of the sha256 of the exact id ('meta/Llama' →
    'meta_llama~b6ad…', 'meta::llama' → 'meta_llama~37f4…'). Every stem is lower-case ASCII,
    only hashed ones hold '~', and none is another's `<stem>.<time>` (STAMP_FORMAT), so the map
    stays one-to-one on file systems that fold case (macOS, Windows) or normalise Unicode. Sets
    written before kept 'meta__llama'-style names: they stay valid, since the manifest names each
    file (see the module docstring)."""
    if (_PLAIN_STEM.fullmatch(llm_id) and llm_id.split(".", 1)[0] not in _RESERVED
            and not _STAMP_PART.search(llm_id)):
        return llm_id
    slug = re.sub(r"[^a-z0-9.-]+", "_", llm_id.lower()).strip("._-")[:64] or "llm"
    head, dot, tail = slug.partition(".")
    if head in _RESERVED:
        slug = f"{head}_{dot}{tail}"
    digest = hashlib.sha256(llm_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{slug}~{digest}"


@dataclass(frozen=True)
class Preset:
    name: str
    lam: float
    target_cost_share: float

    def describe(self, reference_llm: str) -> str:
        return (
            f"budget {self.name}: λ={self.lam:.4g}, calibrated to spend about "
            f"{self.target_cost_share:.0%} of always-{reference_llm}'s cost on the training data"
        )


@dataclass(frozen=True)
class LLMHeads:
    quality: Head
    length: Head
    a_inv: np.ndarray  # (dim, dim) inverse of A_l = I + Σ e·eᵀ


@dataclass(frozen=True)
class ColdLLM:
    """An LLM added without data: priors instead of heads, offered on a capped share of queries."""

    prior_quality: float
    prior_response_tokens: float
    explore_share: float


@dataclass(frozen=True)
class ArtifactSet:
    path: Path
    manifest: Manifest
    encoder_dir: Path
    features: FeatureSpec | None
    heads: dict[str, LLMHeads]
    cold: dict[str, ColdLLM]
    presets: dict[str, Preset]
    cost_scale_usd: float
    reference_llm: str
    tag_model: TagModel | None = None  # only in sets trained with tags
    encoder_cache: Path | None = None  # <home>/cache/encoder when loaded with one (`load_artifact_set`)

    def graph_cache(self) -> GraphCache | None:
        """Where the encoder's optimised graph is kept between processes, if this set was loaded with a cache."""
        sha = self.manifest.encoder.files.get(MODEL_FILE)
        return None if self.encoder_cache is None or sha is None else GraphCache(self.encoder_cache, sha)

    @property
    def projection(self) -> Projection | None:
        return None if self.tag_model is None else self.tag_model.projection

    def embed(self, encoder_embeddings: np.ndarray) -> np.ndarray:
        """The embedding this set's heads, A⁻¹ and feedback net read: the encoder's vectors through the
        set's projection (unchanged without one). Stored vectors (training rows, the decision log) are
        always the encoder's, so a log outlives a retrained projection."""
        return transform_embeddings(self.projection, encoder_embeddings)


def load_artifact_set(set_dir: Path, llm_ids: list[str] | None = None, *, cache: Path | None = None) -> ArtifactSet:
    """Load the manifest and the heads of `llm_ids` (all listed when None), verifying each file.

    `cache` (`encoder_cache_dir(home)`): the encoder's files are checked with stamps
    (`verify_stamped`) and its optimised graph is kept there (`ArtifactSet.graph_cache`).
    """
    manifest = Manifest.read(set_dir)
    wanted = list(manifest.heads) if llm_ids is None else llm_ids
    features = _load_features(set_dir, manifest.features)
    tag_model = _load_tag_model(set_dir, manifest.tags)
    heads = _load_heads(set_dir, manifest.heads, wanted)
    cold = {
        llm_id: ColdLLM(float(c.prior_quality), float(c.prior_response_tokens), float(c.explore_share))
        for llm_id, c in manifest.cold.items()
        if llm_ids is None or llm_id in llm_ids
    }
    return ArtifactSet(
        path=set_dir,
        cold=cold,
        manifest=manifest,
        encoder_dir=_encoder_dir(set_dir, manifest, cache),
        features=features,
        heads=heads,
        presets=_presets(manifest.presets),
        cost_scale_usd=float(manifest.cost_scale_usd),
        reference_llm=manifest.reference_llm,
        tag_model=tag_model,
        encoder_cache=cache,
    )


def _presets(entries: Mapping[str, PresetEntry]) -> dict[str, Preset]:
    """Cheapest first: the order users read them in."""
    ordered = sorted(entries.items(), key=lambda kv: (float(kv[1].lam), float(kv[1].target_cost_share)))
    return {name: Preset(name=name, lam=float(p.lam), target_cost_share=float(p.target_cost_share))
            for name, p in ordered}


def _load_features(set_dir: Path, entry: FeaturesFile | None) -> FeatureSpec | None:
    if entry is None:
        return None
    with np.load(entry.verify(set_dir), allow_pickle=False) as npz:
        return FeatureSpec.from_arrays(dict(npz))


def _load_tag_model(set_dir: Path, entry: FileEntry | None) -> TagModel | None:
    if entry is None:
        return None
    from .core.tagging import TagModel

    path = entry.verify(set_dir)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return TagModel.from_arrays(dict(npz))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable projection file ({exc})") from None


def _load_heads(set_dir: Path, entries: Mapping[str, LLMHeadsEntry], llm_ids: Collection[str]) -> dict[str, LLMHeads]:
    """The heads of the listed LLMs that have an entry; LLMs trained on the same rows share one A⁻¹,
    loaded (and held in memory) once."""
    heads: dict[str, LLMHeads] = {}
    a_invs: dict[str, np.ndarray] = {}
    for llm_id in llm_ids:
        entry = entries.get(llm_id)
        if entry is None:
            continue
        quality = load_head(entry.quality.verify(set_dir))
        length = load_head(entry.length.verify(set_dir))
        sha = entry.ainv.sha256
        if sha not in a_invs:
            a_invs[sha] = np.load(entry.ainv.verify(set_dir), allow_pickle=False)
        heads[llm_id] = LLMHeads(quality=quality, length=length, a_inv=a_invs[sha])
    return heads


def _encoder_dir(set_dir: Path, manifest: Manifest, cache: Path | None = None) -> Path:
    """The set's own encoder, or the shipped one when the set reuses it (same sha256)."""
    files = manifest.encoder.files
    if not files:
        raise ArtifactError(f"{set_dir / MANIFEST}: encoder: no files listed")
    for candidate in (set_dir / "encoder", shipped_artifacts_dir() / "encoder"):
        if all((candidate / name).is_file() for name in files):
            for name, sha in files.items():
                verify_stamped(candidate, name, sha, cache)
            return candidate
    raise ArtifactError(f"{set_dir / 'encoder'}: encoder files missing ({', '.join(sorted(files))})")


def write_llm_heads(set_dir: Path, llm_id: str, heads: LLMHeads, *, mean_quality: float | None,
                    mean_length: float | None, n_rows: int) -> LLMHeadsEntry:
    """Write one LLM's two heads and A⁻¹ under `set_dir/heads/` (each file atomically) and return
    the manifest entry that lists them; `n_rows`: the rows A⁻¹ sums over."""
    stem = llm_file_stem(llm_id)
    written: dict[str, HeadFile] = {}
    for kind, head, mean in ((QUALITY, heads.quality, mean_quality), (LENGTH, heads.length, mean_length)):
        rel = f"heads/{stem}.{kind}.joblib"
        save_head(head, set_dir / rel)
        written[kind] = HeadFile.of(set_dir, rel, family=head.family, n_train=head.n_train, mean_target=mean)
    rel = f"heads/{stem}.ainv.npy"
    save_npy(set_dir / rel, heads.a_inv)
    return LLMHeadsEntry(quality=written[QUALITY], length=written[LENGTH],
                         ainv=AinvFile.of(set_dir, rel, n_train=n_rows))


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write one array as .npy (no pickles), atomically."""
    import io

    from .files import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def save_head(head: Head, path: Path) -> None:
    """Write one head with joblib, atomically (temp file, then rename)."""
    import io

    import joblib

    from .files import atomic_write_bytes

    buf = io.BytesIO()
    joblib.dump(head, buf, compress=3)
    atomic_write_bytes(path, buf.getvalue())


# Heads pickled before the package was layered name their classes `mixllm_cli.predictors.*`
# (the shipped set among them); those classes live in `core.heads`.
_PICKLED_HEAD_MODULES = ("mixllm_cli.predictors",)


def load_head(path: Path) -> Head:
    """Unpickle a head. Callers must have checked the file's sha256 against the manifest."""
    import sys

    import joblib

    from .core import heads

    for name in _PICKLED_HEAD_MODULES:
        sys.modules.setdefault(name, heads)

    head = joblib.load(path)
    if not isinstance(head, Head):
        raise ArtifactError(f"{path}: not a mixllm head (got {type(head).__name__})")
    return head


# ---------------------------------------------------------------- the encoder's cache (per user)
#
# A cold `mixllm route` spent more time creating the ONNX session (optimising the graph) and
# hashing the 23 MB model than encoding. Both are cached per user, not per home: the optimised
# graph (~55 MB) depends on the model, onnxruntime and the CPU, never on the home, so every home
# shares one copy. Both fall back to the full path when anything is off; deleting the folder is
# always safe (docs/STARTUP.md).

ENCODER_CACHE_ENV = "MIXLLM_ENCODER_CACHE"  # a folder, or "off"
STAMPS = "stamps.json"
GRAPH_META = "graph.json"
GRAPH_FORMAT = 1
RACY_NS = 2_000_000_000  # a file changed this recently is not stamped: file times are coarse


def encoder_cache_dir(home: Path | str | None = None) -> Path | None:
    """Where the optimised encoder graphs and the stamps of checked files are kept:
    `$MIXLLM_ENCODER_CACHE`, else `$XDG_CACHE_HOME/mixllm/encoder` (`~/.cache/mixllm/encoder`);
    None with MIXLLM_ENCODER_CACHE=off. `home` is not used (kept for callers that pass one)."""
    raw = os.environ.get(ENCODER_CACHE_ENV, "").strip()
    if raw.lower() in ("off", "0", "no"):
        return None
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "mixllm" / "encoder"


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def verify_stamped(folder: Path, rel: str, sha256: str, cache: Path | None) -> Path:
    """`manifest.verify`, without reading the file again while it is unchanged since it last matched.

    A match is stamped in `cache/stamps.json` with the file's size, mtime, ctime, inode and device
    (as git's index does); a file with that same identity is not hashed again. Any write, rename,
    copy over or `touch` moves the ctime, which no program can set back. Nothing is stamped for a
    file changed less than RACY_NS before its check, nor without a (writable) `cache`.
    """
    path = folder / rel
    if cache is None:
        return verify(folder, rel, sha256)
    try:
        st = path.stat()
    except OSError:
        return verify(folder, rel, sha256)  # says what is missing
    key, mark = str(path.resolve()), [sha256, *_identity(st)]
    stamps = _read_json(cache / STAMPS)
    if stamps.get(key) == mark:
        return path
    verify(folder, rel, sha256)
    if time.time_ns() - st.st_ctime_ns > RACY_NS:
        stamps[key] = mark
        with contextlib.suppress(OSError):  # a read-only home only loses the speed-up
            atomic_write_bytes(cache / STAMPS, dump_json(stamps))
    return path


@functools.cache
def cpu_signature() -> str:
    """What a fully optimised graph may depend on: the machine type and the CPU's feature flags."""
    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("flags", "Features")):  # x86, arm
                flags = line.partition(":")[2]
                break
    text = f"{os.uname().machine if hasattr(os, 'uname') else os.name}|{' '.join(sorted(flags.split()))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GraphCache:
    """Optimised copies of one encoder model (`core.encoder.GraphCache`).

    Each copy is a folder `<cache>/graph-<key>/`: ORT's fully optimised `model.onnx`, its
    weights `model.data`, and `graph.json` naming the source model's sha256, onnxruntime's
    version, the CPU (`cpu_signature`: the full optimisation level may pick CPU-specific
    layouts) and each file's sha256, all checked before the copy is loaded. A copy that is
    missing or fails a check is ignored, and replaced by the next session made from the model.
    """

    folder: Path
    source_sha256: str

    def _fields(self, runtime: str) -> dict[str, object]:
        return {"format": GRAPH_FORMAT, "source_sha256": self.source_sha256, "onnxruntime": runtime,
                "cpu": cpu_signature()}

    def entry(self, runtime: str) -> Path:
        """The folder of the copy for this model, runtime and CPU."""
        key = hashlib.sha256(json.dumps(self._fields(runtime), sort_keys=True).encode()).hexdigest()[:16]
        return self.folder / f"graph-{key}"

    def find(self, runtime: str) -> Path | None:
        fields, entry = self._fields(runtime), self.entry(runtime)
        meta = _read_json(entry / GRAPH_META)
        files = meta.get("files")
        if any(meta.get(k) != v for k, v in fields.items()) or not isinstance(files, dict) \
                or sorted(files) != sorted((MODEL_FILE, GRAPH_DATA_FILE)):
            return None
        try:
            for name, sha in files.items():
                verify_stamped(entry, name, str(sha), self.folder)
        except (ArtifactError, OSError):
            return None
        return entry / MODEL_FILE

    def new_target(self, runtime: str) -> Path | None:
        try:
            return staging_dir(self.entry(runtime)) / MODEL_FILE
        except OSError:  # a read-only home: no copy, the session is made as before
            return None

    def publish(self, target: Path, runtime: str) -> None:
        staging = target.parent
        try:
            files = {name: sha256_file(staging / name) for name in (MODEL_FILE, GRAPH_DATA_FILE)}
            atomic_write_bytes(staging / GRAPH_META, dump_json({**self._fields(runtime), "files": files}))
            publish_dir(staging, self.entry(runtime))
        except OSError:  # e.g. another process published the same copy first
            self.discard(target)

    def discard(self, target: Path) -> None:
        shutil.rmtree(target.parent, ignore_errors=True)
