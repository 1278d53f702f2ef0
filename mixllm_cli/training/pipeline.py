"""Offline training on full feedback: heads per LLM, A_l, the cost scale, calibrated presets.

scikit-learn is used here (imported inside the functions) and never on the routing path: every
fitted estimator is exported to a plain-numpy head from `predictors`.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..artifacts import llm_file_stem, save_head
from ..core.decision import route_indices
from ..core.features import build_features, fit_feature_spec
from ..core.heads import LENGTH, QUALITY, ConstantHead, ForestHead, Head, KNNHead, LinearHead, MLPHead
from ..errors import DataError
from ..files import atomic_write_bytes, dump_json, publish_dir, sha256_file, staging_dir
from ..manifest import MANIFEST, MANIFEST_FORMAT
from ..training_rows import TrainingRows, save_training_rows

QUALITY_FAMILIES = ("logistic", "rf", "mlp", "knn")
LENGTH_FAMILIES = ("ridge", "rf", "mlp", "knn")
DEFAULT_FAMILIES = {QUALITY: "logistic", LENGTH: "ridge"}
# Share of always-<dearest LLM>'s cost each preset aims to spend (on out-of-fold predictions).
PRESET_TARGETS = {"very-low": 0.05, "low": 0.10, "medium": 0.25, "high": 0.50}
# Inverse regularisation of the logistic quality heads, chosen on training folds (docs/HEADS.md).
LOGISTIC_C = 0.3
RIDGE_ALPHA = 1.0
TRAINING_ROWS = "training_rows.npz"
PROJECTION = "projection.npz"
# Train the tag-enhanced embedding by default? Decided by benchmarks/tags_study.py (docs/TAGS.md).
TAGS_DEFAULT = False
MIN_OUTCOMES = 20  # fewer than this: a constant prior instead of a fitted head
LAMBDA_GRID = np.logspace(-3, 4, 281)

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


def outcome_table(records: Sequence[Any], llm_ids: Sequence[str]) -> OutcomeTable:
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


# ---------------------------------------------------------------- fitting and export


def _soft_labels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Quality may be fractional: fit a classifier on (x, 1) with weight y and (x, 0) with 1 − y."""
    if np.isin(y, (0.0, 1.0)).all():
        return x, y, None  # the usual 0/1 case needs no doubling
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1.0 - y])
    keep = ww > 0
    return xx[keep], yy[keep], ww[keep]


def _forest_head(kind: str, est: Any, n_train: int) -> ForestHead:
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
    offset = 0
    depth = 0
    for tree in est.estimators_:
        t = tree.tree_
        roots.append(offset)
        feats.append(t.feature.astype(np.int32))
        thrs.append(t.threshold.astype(np.float32))
        # Leaves point at themselves so the walk can run a fixed number of steps.
        idx = np.arange(t.node_count)
        lefts.append(np.where(t.children_left >= 0, t.children_left, idx).astype(np.int32) + offset)
        rights.append(np.where(t.children_right >= 0, t.children_right, idx).astype(np.int32) + offset)
        vals.append(t.value[:, 0, 0].astype(np.float32))
        depth = max(depth, int(t.max_depth))
        offset += t.node_count
    feature = np.concatenate(feats)
    feature[feature < 0] = -1
    return ForestHead(
        kind=kind,
        family="rf",
        n_train=n_train,
        feature=feature,
        threshold=np.concatenate(thrs),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        value=np.concatenate(vals),
        roots=np.array(roots, dtype=np.int32),
        max_depth=depth,
    )


def fit_head(family: str, kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0, c: float = LOGISTIC_C) -> Head:
    """Fit one head with scikit-learn and export it to numpy. Length targets are raw tokens."""
    n = len(y)
    target = np.asarray(y, dtype=np.float64) if kind == QUALITY else np.log1p(np.maximum(y, 0.0))
    if n < MIN_OUTCOMES or np.ptp(target) == 0:
        return ConstantHead(kind=kind, family="constant", n_train=n, value=float(target.mean()) if n else 0.0)
    if family in ("logistic", "ridge"):
        if kind == QUALITY:
            from sklearn.linear_model import LogisticRegression

            xx, yy, ww = _soft_labels(x, target)
            est = LogisticRegression(C=c, max_iter=2000).fit(xx, yy, sample_weight=ww)
            return LinearHead(kind=kind, family="logistic", n_train=n, coef=est.coef_[0].astype(np.float32),
                              intercept=float(est.intercept_[0]), logistic=True)
        from sklearn.linear_model import Ridge

        est = Ridge(alpha=RIDGE_ALPHA).fit(x, target)
        return LinearHead(kind=kind, family="ridge", n_train=n, coef=est.coef_.astype(np.float32),
                          intercept=float(est.intercept_), logistic=False)
    if family == "rf":
        from sklearn.ensemble import RandomForestRegressor

        est = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, max_features="sqrt",
                                    n_jobs=-1, random_state=seed).fit(x, target)
        return _forest_head(kind, est, n)
    if family == "mlp":
        from sklearn.neural_network import MLPRegressor

        est = MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-3, learning_rate_init=1e-3, max_iter=300,
                           early_stopping=True, random_state=seed).fit(x, target)
        return MLPHead(kind=kind, family="mlp", n_train=n,
                       weights=[w.astype(np.float32) for w in est.coefs_],
                       biases=[b.astype(np.float32) for b in est.intercepts_], logistic=False)
    if family == "knn":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return KNNHead(kind=kind, family="knn", n_train=n, points=xn.astype(np.float32),
                       targets=target.astype(np.float32), k=20)
    raise DataError(f"unknown head family '{family}'")


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(n) % folds


def out_of_fold(family: str, kind: str, x: np.ndarray, y: np.ndarray, folds: np.ndarray, seed: int = 0,
                c: float = LOGISTIC_C) -> np.ndarray:
    """Predictions for every row from a head that did not see it (NaN where y is missing)."""
    pred = np.full(len(y), np.nan)
    known = ~np.isnan(y)
    for f in np.unique(folds):
        train = known & (folds != f)
        test = folds == f
        head = fit_head(family, kind, x[train], y[train], seed, c)
        pred[test] = head.predict(x[test])
    return pred


def a_inverse(embeddings: np.ndarray) -> np.ndarray:
    """A_l⁻¹ with A_l = I + Σ e·eᵀ over the queries LLM l has an outcome for."""
    e = np.asarray(embeddings, dtype=np.float64)
    a = np.eye(e.shape[1]) + e.T @ e
    return np.linalg.inv(a).astype(np.float32)


# ---------------------------------------------------------------- presets


def cost_shares(quality_pred: np.ndarray, cost_norm_pred: np.ndarray, real_cost: np.ndarray, ref: int,
                lambdas: np.ndarray = LAMBDA_GRID) -> np.ndarray:
    """Share of always-`ref`'s real cost spent by the router at each λ (no uncertainty, no wait)."""
    zeros = np.zeros_like(quality_pred)
    total_ref = np.nansum(real_cost[:, ref])
    rows = np.arange(len(real_cost))
    shares = []
    for lam in lambdas:
        idx, _ = route_indices(quality_pred, cost_norm_pred, zeros, zeros, lam)
        shares.append(np.nansum(real_cost[rows, idx]) / total_ref)
    return np.array(shares)


def calibrate_presets(shares: np.ndarray, lambdas: np.ndarray = LAMBDA_GRID,
                      targets: dict[str, float] = PRESET_TARGETS) -> dict[str, dict[str, float]]:
    """For each target, the largest λ of the grid whose cost share stays within the target."""
    out = {}
    for name, target in targets.items():
        ok = np.nonzero(shares <= target)[0]
        lam = float(lambdas[ok[-1]]) if len(ok) else float(lambdas[0])
        share = float(shares[ok[-1]]) if len(ok) else float(shares[0])
        out[name] = {"lambda": lam, "target_cost_share": target, "train_cost_share": round(share, 4)}
    return out


# ---------------------------------------------------------------- the whole pipeline


def train_offline(
    data_path: Path,
    catalogue: Any,
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
    tag_settings: Any = None,
) -> dict[str, Any]:
    """Train a complete artifact set from a routing dataset and publish it atomically at `out_dir`;
    `cache` is an embedding-cache folder (embcache) or None. With `tags`, the tag pipeline (tags.py)
    trains a projection of the encoder's embedding that every head reads (`tag_settings`: a
    tags.TagSettings, default the validated one)."""
    from ..core.encoder import Encoder
    from ..dataset import read_dataset

    started = time.perf_counter()
    families = {**DEFAULT_FAMILIES, **(families or {})}
    records = read_dataset(Path(data_path))
    llm_ids = [i for i in catalogue.ids if any(i in r.outcomes and r.outcomes[i] is not None for r in records)]
    if not llm_ids:
        raise DataError(f"{data_path}: no outcomes for any LLM of the catalogue ({', '.join(catalogue.ids)})")
    table = outcome_table(records, llm_ids)

    from ..embcache import encode_cached

    encoder = Encoder.from_dir(encoder_dir)
    enc, _ = encode_cached(lambda texts: encode_with_progress(encoder, texts, progress), Path(encoder_dir),
                           table.queries, cache)
    tag_run = None
    emb = enc.embeddings
    if tags:
        from ..core.tagging import fit_tag_pipeline

        progress("tags", 0, 1)
        tag_run = fit_tag_pipeline(table.queries, enc.embeddings, lambda texts: encoder.encode(texts).embeddings,
                                   tasks=table.tasks, given=[r.tags for r in records], settings=tag_settings,
                                   seed=seed)
        emb = tag_run.model.projection.apply(enc.embeddings)
        progress("tags", 1, 1)
    spec = fit_feature_spec(enc.token_ids, n_buckets) if n_buckets else None
    x = build_features(emb, enc.token_ids, spec)

    # The cost scale: the mean real cost per query of the dearest LLM in the data.
    mean_cost = np.nanmean(table.cost_usd, axis=0)
    ref = int(np.nanargmax(mean_cost))
    cost_scale = float(mean_cost[ref])

    staging = staging_dir(out_dir)
    try:
        heads_meta: dict[str, Any] = {}
        (staging / "heads").mkdir()
        fold = fold_ids(len(records), folds, seed)
        oof_q = np.zeros((len(records), len(llm_ids)))
        oof_len = np.zeros((len(records), len(llm_ids)))
        price_in = np.array([catalogue.get(i).input_usd_per_mtok for i in llm_ids]) / 1e6
        price_out = np.array([catalogue.get(i).output_usd_per_mtok for i in llm_ids]) / 1e6
        total_steps = len(llm_ids)
        for j, llm in enumerate(llm_ids):
            progress("heads", j, total_steps)
            yq, ylen = table.quality[:, j], table.response_tokens[:, j]
            has_q, has_len = ~np.isnan(yq), ~np.isnan(ylen)
            qh = fit_head(families[QUALITY], QUALITY, x[has_q], yq[has_q], seed)
            lh = fit_head(families[LENGTH], LENGTH, x[has_len], ylen[has_len], seed)
            oof_q[:, j] = out_of_fold(families[QUALITY], QUALITY, x, yq, fold, seed)
            oof_len[:, j] = out_of_fold(families[LENGTH], LENGTH, x, ylen, fold, seed)
            stem = llm_file_stem(llm)
            entry: dict[str, Any] = {}
            for kind, head, y in ((QUALITY, qh, yq[has_q]), (LENGTH, lh, ylen[has_len])):
                rel = f"heads/{stem}.{kind}.joblib"
                save_head(head, staging / rel)
                entry[kind] = {"file": rel, "sha256": sha256_file(staging / rel), "family": head.family,
                               "n_train": head.n_train, "mean_target": float(y.mean()) if len(y) else None}
            rel = f"heads/{stem}.ainv.npy"
            np.save(staging / rel, a_inverse(emb[has_q | has_len]), allow_pickle=False)
            entry["ainv"] = {"file": rel, "sha256": sha256_file(staging / rel), "n_train": int((has_q | has_len).sum())}
            heads_meta[llm] = entry
        progress("heads", total_steps, total_steps)

        oof_q = np.nan_to_num(oof_q, nan=0.0)
        oof_len = np.nan_to_num(oof_len, nan=0.0)
        p_tok = enc.n_tokens.astype(np.float64)
        cost_pred = (p_tok[:, None] * price_in + oof_len * price_out) / cost_scale
        real_cost = np.where(np.isnan(table.cost_usd), np.nanmean(table.cost_usd, axis=0), table.cost_usd)
        shares = cost_shares(oof_q, cost_pred, real_cost, ref)
        presets = calibrate_presets(shares)

        # The rows online refits start from (online.py): the encoder's embeddings (the set's
        # projection is applied when they are read), token ids and outcomes.
        save_training_rows(staging / TRAINING_ROWS, TrainingRows(
            llm_ids=llm_ids, embeddings=enc.embeddings, token_ids=enc.token_ids,
            quality=table.quality, response_tokens=table.response_tokens))
        rows_meta = {"file": TRAINING_ROWS, "sha256": sha256_file(staging / TRAINING_ROWS), "llms": llm_ids}

        tags_meta = None
        if tag_run is not None:
            np.savez(staging / PROJECTION, **tag_run.model.to_arrays())
            tags_meta = {"file": PROJECTION, "sha256": sha256_file(staging / PROJECTION), **tag_run.report}
        features_meta = None
        if spec is not None:
            np.savez(staging / "features.npz", **spec.to_arrays())
            features_meta = {"file": "features.npz", "sha256": sha256_file(staging / "features.npz"),
                             "n_buckets": spec.n_buckets}
        enc_meta = json.loads((Path(encoder_dir) / "encoder.json").read_text())
        manifest = {
            "format": MANIFEST_FORMAT,
            "created_by": f"mixllm {__version__}",
            "versions": _versions(),
            "encoder": {"name": enc_meta.get("name"), "files": enc_meta["files"]},
            "catalogue_fingerprint": catalogue.fingerprint(),
            "training_data": {"file": Path(data_path).name, "sha256": sha256_file(Path(data_path)),
                              "rows": len(records)},
            "families": families,
            "features": features_meta,
            "tags": tags_meta,
            "training_rows": rows_meta,
            "cost_scale_usd": cost_scale,
            "reference_llm": llm_ids[ref],
            "presets": presets,
            "heads": heads_meta,
            "seed": seed,
        }
        if Path(encoder_dir).resolve() == (Path(out_dir) / "encoder").resolve():
            # Rebuilding a set in place (the shipped default): the new set carries the encoder.
            # Otherwise the set reuses the shipped encoder by sha256 (see artifacts._encoder_dir).
            shutil.copytree(encoder_dir, staging / "encoder")
        atomic_write_bytes(staging / MANIFEST, dump_json(manifest))
        publish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "artifacts": str(out_dir),
        "rows": len(records),
        "llms": llm_ids,
        "presets": presets,
        "reference_llm": llm_ids[ref],
        "cost_scale_usd": cost_scale,
        "tags": None if tag_run is None else {"k": tag_run.report["k"], "seconds": tag_run.report["seconds"]},
        "seconds": round(time.perf_counter() - started, 1),
    }


def encode_with_progress(encoder: Any, texts: list[str], progress: Progress, chunk: int = 256) -> Any:
    """Encode in chunks so a progress bar can move; returns one merged `Encoded`."""
    from ..core.encoder import Encoded

    parts = []
    for start in range(0, len(texts), chunk):
        progress("encode", start, len(texts))
        parts.append(encoder.encode(texts[start:start + chunk]))
    progress("encode", len(texts), len(texts))
    return Encoded(
        embeddings=np.vstack([p.embeddings for p in parts]),
        token_ids=[t for p in parts for t in p.token_ids],
        n_tokens=np.concatenate([p.n_tokens for p in parts]),
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scikit-learn", "onnxruntime", "tokenizers", "joblib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
