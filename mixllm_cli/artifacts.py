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

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .core.features import FeatureSpec
from .core.heads import LENGTH, QUALITY, Head
from .core.projection import Projection, transform_embeddings
from .errors import ArtifactError
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

    @property
    def projection(self) -> Projection | None:
        return None if self.tag_model is None else self.tag_model.projection

    def embed(self, encoder_embeddings: np.ndarray) -> np.ndarray:
        """The embedding this set's heads, A⁻¹ and feedback net read: the encoder's vectors through the
        set's projection (unchanged without one). Stored vectors (training rows, the decision log) are
        always the encoder's, so a log outlives a retrained projection."""
        return transform_embeddings(self.projection, encoder_embeddings)


def load_artifact_set(set_dir: Path, llm_ids: list[str] | None = None) -> ArtifactSet:
    """Load the manifest and the heads of `llm_ids` (all listed when None), verifying each file."""
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
        encoder_dir=_encoder_dir(set_dir, manifest),
        features=features,
        heads=heads,
        presets=_presets(manifest.presets),
        cost_scale_usd=float(manifest.cost_scale_usd),
        reference_llm=manifest.reference_llm,
        tag_model=tag_model,
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


def _encoder_dir(set_dir: Path, manifest: Manifest) -> Path:
    """The set's own encoder, or the shipped one when the set reuses it (same sha256)."""
    files = manifest.encoder.files
    if not files:
        raise ArtifactError(f"{set_dir / MANIFEST}: encoder: no files listed")
    for candidate in (set_dir / "encoder", shipped_artifacts_dir() / "encoder"):
        if all((candidate / name).is_file() for name in files):
            for name, sha in files.items():
                verify(candidate, name, sha)
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
