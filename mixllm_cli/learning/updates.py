"""Online updates: folding logged feedback events into the online model (`learning.online`).

What feedback changes, for the LLM that was chosen (the design is in `learning.online`'s docstring
and docs/ONLINE.md): every event updates A_l⁻¹ by Sherman–Morrison; binary events take one
policy-gradient step on the dynamic-feedback network; outcomes are counted, and with refits
switched on (MIXLLM_ONLINE_REFIT=1) an LLM's linear heads are refitted once it has gathered
REFIT_MIN new outcomes and REFIT_GROWTH more rows than at its last fit. `catch_up` runs these over
every logged event not yet in the snapshot, in log order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.heads import LOGISTIC_C, MIN_OUTCOMES, RIDGE_ALPHA, LinearHead
from .online import REWARD_WINDOW, DFNet, OnlineModel, base_identity, load_snapshot, save_snapshot

if TYPE_CHECKING:
    from ..artifacts import ArtifactSet
    from ..manifest import FileEntry
    from ..state.base import StoreBase

REFIT_MIN = 32
REFIT_GROWTH = 0.10
# Head refits are opt-in (MIXLLM_ONLINE_REFIT=1): in the continual-training study they moved the
# router towards the cheap LLMs and lost quality at equal cost on some splits (docs/ONLINE.md).
REFIT_ENV = "MIXLLM_ONLINE_REFIT"


def refits_enabled() -> bool:
    return os.environ.get(REFIT_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def apply_event(model: OnlineModel, event: dict[str, Any], artifacts: ArtifactSet) -> None:
    """Fold one feedback event (joined with its decision) into the model. Heads are refitted
    later, by `refit_due`, when enough outcomes have gathered."""
    llm = event["llm"]
    e = artifacts.embed(np.frombuffer(event["embedding"], dtype=np.float32)[None, :])[0].astype(np.float64)
    c = model.counts.setdefault(llm, {"refined": 0, "binary": 0})
    meta = artifacts.manifest.heads.get(llm)
    if meta is not None and model.derived_from.get(llm) != meta.quality.sha256:
        # First feedback for these heads (or the LLM was removed and added again): start its
        # online state from the current offline heads, never from an earlier incarnation's.
        model.heads.pop(llm, None)
        model.a_inv.pop(llm, None)
        model.derived_from[llm] = meta.quality.sha256
        model.refit.pop(llm, None)
    if meta is not None and llm not in model.refit:
        model.refit[llm] = {"after_seq": int(event["seq"]) - 1, "outcomes": 0, "fitted": 0, "refits": 0}
    c[event["kind"]] += 1
    base = artifacts.heads.get(llm)
    if base is not None:
        a = model.a_inv.get(llm, base.a_inv.astype(np.float64))
        ae = a @ e
        model.a_inv[llm] = a - np.outer(ae, ae) / (1.0 + e @ ae)
    if llm in model.refit and any(event.get(k) is not None for k in ("quality", "good", "response_tokens")):
        model.refit[llm]["outcomes"] += 1
    if event["kind"] == "binary":
        if model.df is None:
            model.df = DFNet.fresh(sorted(artifacts.heads), len(e))
        if llm in model.df.llm_order:
            r = float(event["good"])
            model.df.reinforce(e, model.df.llm_order.index(llm), r - model.baseline)
            model.rewards = (model.rewards + [r])[-REWARD_WINDOW:]
            n = sum(v["binary"] for v in model.counts.values())
            model.baseline += (r - model.baseline) / max(n, 1)


def refit_due(model: OnlineModel, artifacts: ArtifactSet) -> list[str]:
    """LLMs with at least REFIT_MIN new outcomes and REFIT_GROWTH more rows than at their last fit
    (none unless refits are switched on: `refits_enabled`)."""
    if not refits_enabled():
        return []
    due = []
    for llm, r in model.refit.items():
        meta = artifacts.manifest.heads.get(llm)
        if meta is None or llm not in artifacts.heads:
            continue
        n_offline = int(meta.ainv.n_train)
        new = r["outcomes"] - r["fitted"]
        if new >= max(REFIT_MIN, REFIT_GROWTH * (n_offline + r["fitted"])):
            due.append(llm)
    return due


def refit_heads(model: OnlineModel, llm: str, artifacts: ArtifactSet, store: StoreBase, offline: OfflineRows) -> None:
    """Refit the LLM's linear heads on its offline rows plus every outcome logged for it."""
    from ..core.features import build_features
    from ..core.optim import refit_linear

    r = model.refit[llm]
    logged = store.outcomes_for(llm, r["after_seq"])
    x_off, yq_off, ylen_off = offline.for_llm(llm, artifacts)
    if logged:
        emb = np.stack([np.frombuffer(o["embedding"], dtype=np.float32) for o in logged])
        ids = [np.frombuffer(o["token_ids"], dtype=np.int32) for o in logged]
        x_new = build_features(artifacts.embed(emb), ids, artifacts.features)
    else:
        x_new = np.zeros((0, x_off.shape[1] if x_off is not None else 0), np.float32)
    yq_new = np.array([o["quality"] if o["quality"] is not None else
                       (np.nan if o["good"] is None else float(o["good"])) for o in logged], dtype=np.float64)
    ylen_new = np.array([np.nan if o["response_tokens"] is None else np.log1p(o["response_tokens"])
                         for o in logged], dtype=np.float64)
    if x_off is not None:
        x_all = np.vstack([x_off, x_new])
        targets = {"quality": np.concatenate([yq_off, yq_new]),
                   "length": np.concatenate([np.log1p(ylen_off), ylen_new])}
    else:
        x_all, targets = x_new, {"quality": yq_new, "length": ylen_new}
    base = artifacts.heads[llm]
    for kind in ("quality", "length"):
        head = getattr(base, kind)
        y = targets[kind]
        keep = ~np.isnan(y)
        if not isinstance(head, LinearHead) or keep.sum() < MIN_OUTCOMES or np.ptp(y[keep]) == 0:
            continue
        coef, intercept = model.heads.get(llm, {}).get(kind, (head.coef, head.intercept))
        model.heads.setdefault(llm, {})[kind] = refit_linear(
            x_all[keep], y[keep], logistic=head.logistic, coef=coef, intercept=intercept,
            c=LOGISTIC_C, alpha=RIDGE_ALPHA)
    r["fitted"] = r["outcomes"]
    r["refits"] += 1


class OfflineRows:
    """The training rows of the artifact set (and of LLMs added with data), loaded on first use and
    turned into head features once per `catch_up`."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[np.ndarray, Any]] = {}

    def for_llm(self, llm: str, artifacts: ArtifactSet) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(features, quality, response tokens) of the LLM's offline rows; (None, [], []) without any."""
        from ..core.features import build_features
        from ..training_rows import load_training_rows

        heads = artifacts.manifest.heads.get(llm)
        entry: FileEntry | None = heads.rows if heads is not None else None
        if entry is None:
            shared = artifacts.manifest.training_rows
            if shared is None or llm not in shared.llms:
                return None, np.zeros(0), np.zeros(0)
            entry = shared
        key = entry.file
        if key not in self._cache:
            rows = load_training_rows(entry.verify(artifacts.path))
            x = build_features(artifacts.embed(rows.embeddings), rows.token_ids, artifacts.features)
            self._cache[key] = (x, rows)
        x, rows = self._cache[key]
        quality, tokens = rows.column(llm)
        return x, quality, tokens


def catch_up(home: Path, artifacts: ArtifactSet, store: StoreBase, rebuild: bool = False) -> dict[str, Any]:
    """Fold every logged event the snapshot has not seen (all of them with `rebuild`)."""
    model = None if rebuild else load_snapshot(home, artifacts, store)
    if model is None:
        model = OnlineModel(base=base_identity(artifacts))
    events = store.feedback_since(model.last_seq)
    for ev in events:
        apply_event(model, ev, artifacts)
        model.last_seq = ev["seq"]
    refitted = refit_due(model, artifacts)
    offline = OfflineRows()
    for llm in refitted:
        refit_heads(model, llm, artifacts, store, offline)
    if events or rebuild:
        save_snapshot(home, model, store)
    return {"applied": len(events), "last_seq": model.last_seq, "refitted": refitted}
