"""Load an artifact set: manifest first, every file's sha256 checked before it is read.

Layout of a set (the shipped default `artifacts/`, or `<home>/artifacts/`):

    manifest.json          versions, fingerprints, presets, cost scale, and a sha256 per file
    encoder/               model.onnx + tokenizer.json (a trained set may reuse the shipped one)
    features.npz           the lexical feature spec (idf weights), numpy only, no pickle
    projection.npz         the tag-enhanced embedding (tags.py, projection.py), only in sets trained with tags
    heads/<llm>.quality.joblib, heads/<llm>.length.joblib   one file per LLM per head
    heads/<llm>.ainv.npy   A_l⁻¹ for the uncertainty term, numpy only, no pickle
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .core.features import FeatureSpec
from .core.heads import Head
from .core.projection import Projection, transform_embeddings
from .errors import ArtifactError
from .files import verified_path
from .manifest import read_manifest
from .paths import shipped_artifacts_dir


def llm_file_stem(llm_id: str) -> str:
    """A file-system-safe, reversible-enough stem for an LLM id ('meta/llama' → 'meta__llama')."""
    return llm_id.replace("/", "__").replace(":", "_")


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
    manifest: dict[str, Any]
    encoder_dir: Path
    features: FeatureSpec | None
    heads: dict[str, LLMHeads]
    cold: dict[str, ColdLLM]
    presets: dict[str, Preset]
    cost_scale_usd: float
    reference_llm: str
    tag_model: Any = None  # a tags.TagModel when the set was trained with tags, else None

    @property
    def projection(self) -> Projection | None:
        return None if self.tag_model is None else self.tag_model.projection

    def embed(self, encoder_embeddings: np.ndarray) -> np.ndarray:
        """The embedding this set's heads, A⁻¹ and feedback net read: the encoder's vectors through the
        set's projection (unchanged without one). Stored vectors (training rows, the decision log) are
        always the encoder's, so a log outlives a retrained projection."""
        return transform_embeddings(self.projection, encoder_embeddings)


def _encoder_dir(set_dir: Path, manifest: dict[str, Any]) -> Path:
    """The set's own encoder, or the shipped one when the set reuses it (same sha256)."""
    files = manifest.get("encoder", {}).get("files", {})
    if not files:
        raise ArtifactError(f"{set_dir / 'manifest.json'}: encoder: no files listed")
    for candidate in (set_dir / "encoder", shipped_artifacts_dir() / "encoder"):
        if all((candidate / name).is_file() for name in files):
            for name, sha in files.items():
                verified_path(candidate, name, sha)
            return candidate
    raise ArtifactError(f"{set_dir / 'encoder'}: encoder files missing ({', '.join(sorted(files))})")


def load_artifact_set(set_dir: Path, llm_ids: list[str] | None = None) -> ArtifactSet:
    """Load the manifest and the heads of `llm_ids` (all listed when None), verifying each file."""
    manifest = read_manifest(set_dir)
    try:
        heads_meta: dict[str, Any] = manifest["heads"]
        presets = {
            name: Preset(name=name, lam=float(p["lambda"]), target_cost_share=float(p["target_cost_share"]))
            for name, p in sorted(manifest["presets"].items(), key=lambda kv: (float(kv[1]["lambda"]), float(kv[1]["target_cost_share"])))
        }  # cheapest first: the order users read them in
        cost_scale = float(manifest["cost_scale_usd"])
        reference = str(manifest["reference_llm"])
        feat_meta = manifest.get("features")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{set_dir / 'manifest.json'}: malformed ({exc!r})") from None

    features = None
    if feat_meta:
        path = verified_path(set_dir, feat_meta["file"], feat_meta["sha256"])
        with np.load(path, allow_pickle=False) as npz:
            features = FeatureSpec.from_arrays(dict(npz))

    tag_model = None
    tags_meta = manifest.get("tags")
    if tags_meta:
        from .core.tagging import TagModel

        try:
            path = verified_path(set_dir, tags_meta["file"], tags_meta["sha256"])
        except (KeyError, TypeError):
            raise ArtifactError(f"{set_dir / 'manifest.json'}: tags: malformed entry") from None
        try:
            with np.load(path, allow_pickle=False) as npz:
                tag_model = TagModel.from_arrays(dict(npz))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: unreadable projection file ({exc})") from None

    heads: dict[str, LLMHeads] = {}
    a_invs: dict[str, np.ndarray] = {}
    for llm_id in heads_meta if llm_ids is None else llm_ids:
        meta = heads_meta.get(llm_id)
        if meta is None:
            continue
        quality = load_head(verified_path(set_dir, meta["quality"]["file"], meta["quality"]["sha256"]))
        length = load_head(verified_path(set_dir, meta["length"]["file"], meta["length"]["sha256"]))
        sha = meta["ainv"]["sha256"]
        if sha not in a_invs:  # LLMs trained on the same rows share one A⁻¹: load it (and use it) once
            a_invs[sha] = np.load(verified_path(set_dir, meta["ainv"]["file"], sha), allow_pickle=False)
        heads[llm_id] = LLMHeads(quality=quality, length=length, a_inv=a_invs[sha])

    cold = {
        llm_id: ColdLLM(float(c["prior_quality"]), float(c["prior_response_tokens"]), float(c["explore_share"]))
        for llm_id, c in manifest.get("cold", {}).items()
        if llm_ids is None or llm_id in llm_ids
    }
    return ArtifactSet(
        path=set_dir,
        cold=cold,
        manifest=manifest,
        encoder_dir=_encoder_dir(set_dir, manifest),
        features=features,
        heads=heads,
        presets=presets,
        cost_scale_usd=cost_scale,
        reference_llm=reference,
        tag_model=tag_model,
    )



def save_head(head: Head, path: Path) -> None:
    """Write one head with joblib, atomically (temp file, then rename)."""
    import io

    import joblib

    from .files import atomic_write_bytes

    buf = io.BytesIO()
    joblib.dump(head, buf, compress=3)
    atomic_write_bytes(path, buf.getvalue())


# Heads pickled before the package was layered name their classes `mixllm_cli.predictors.*`
# (the shipped set and homes trained then); the classes live in `core.heads` now.
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
        from .errors import ArtifactError

        raise ArtifactError(f"{path}: not a mixllm head (got {type(head).__name__})")
    return head
