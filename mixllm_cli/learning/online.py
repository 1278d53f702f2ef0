"""Online learning from partial feedback: only the chosen LLM's outcome is ever seen.

Applied in micro-batches: each `mixllm feedback` call (one event, or a whole --jsonl file)
first commits its events to the log (`state.feedback`), then folds every event not yet in the
snapshot into it, in log order, and writes the snapshot atomically. The log is the truth:
`feedback --rebuild` recomputes the snapshot from the offline artifacts by replaying the whole
log, and a crash after the log write loses nothing (the next call catches up).

What feedback changes, for the LLM that was chosen:
- every event: A_l ← A_l + e·eᵀ, kept as A_l⁻¹ by Sherman–Morrison (the uncertainty term);
- outcomes (refined quality, or a thumbs up/down read as quality 1/0; response tokens) are
  counted, and when an LLM has gathered enough new ones its two heads are REFITTED on its offline
  training rows plus every outcome logged for it (`learning.updates`, `core.optim`: the same
  objectives as the offline
  fit, numpy L-BFGS warm-started from the current head). "Enough": at least REFIT_MIN = 32 new
  outcomes and at least REFIT_GROWTH = 10% of the rows of the last fit, so the number of refits
  grows with the log of the data and their total cost stays proportional to one refit per 10%
  of new data. One refit (2,500 rows × 4,480 features) takes ~0.1–0.3 s per head.
  Why a refit and not per-event gradient steps: feedback is selection-biased (the router sends
  the dearest LLM the queries it judges hard, so that LLM's failures come from hard queries), and
  a model p(quality | x) refitted on all rows is unbiased under selection on x, while gradient
  steps weigh each recent online row far more than an offline one and learned the bias: they
  hurt test quality at 30:70 in the previous study (docs/ONLINE.md).
  Only linear heads (the default logistic / ridge families) are refitted; others keep their
  offline fit. A refit needs the set's training rows (`training_rows.npz`, or the rows add-llm
  stored for that LLM); without them the LLM refits on its logged outcomes alone once it has
  MIN_OUTCOMES of them.
- binary feedback (good / bad) also takes one policy-gradient step (REINFORCE, running-mean
  baseline, learning rate 1e-3) on a small shared network f_df(e) → one score per LLM
  (384 → 64 → 64 → M, ReLU). Routing adds κ·tanh(s_df − mean s_df) to every score,
  κ = 0.005 / (var + 0.01) capped at 0.05, var the variance of the last 100 rewards: noisy
  feedback weighs less, and the bonus can never outweigh more than 0.05 of score.

Known gap: `--rebuild` replays every logged event on the current heads; if an LLM id was removed
and added again, events logged for its earlier incarnation are replayed onto the new heads (the
decision log does not yet record which head version made the prediction). Live updates do not
have this problem: the first event for new heads starts their online state afresh, and refits
read only the outcomes logged since.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.heads import LinearHead
from ..files import atomic_write_bytes

if TYPE_CHECKING:
    from ..artifacts import ArtifactSet, LLMHeads
    from ..state.base import StoreBase

SNAPSHOT = Path("online") / "snapshot.npz"
KAPPA_CAP = 0.05
DF_LR = 1e-3
DF_HIDDEN = 64
REWARD_WINDOW = 100


def _stem(llm: str) -> str:
    return llm.replace("/", "__").replace(":", "_")


@dataclass
class DFNet:
    """The dynamic-feedback network: a 3-layer ReLU MLP from the embedding to one score per LLM."""

    llm_order: list[str]
    w: list[np.ndarray]
    b: list[np.ndarray]

    @classmethod
    def fresh(cls, llm_order: list[str], dim: int, seed: int = 0) -> DFNet:
        rng = np.random.default_rng(seed)
        sizes = [dim, DF_HIDDEN, DF_HIDDEN, len(llm_order)]
        w = [rng.normal(0, np.sqrt(2.0 / sizes[k]), (sizes[k], sizes[k + 1])) for k in range(3)]
        w[-1] *= 0.01  # start near zero: no opinion before any feedback
        return cls(list(llm_order), w, [np.zeros(sizes[k + 1]) for k in range(3)])

    def forward(self, e: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        acts = [e]
        h = e
        for k in range(3):
            h = h @ self.w[k] + self.b[k]
            if k < 2:
                h = np.maximum(h, 0.0)
            acts.append(h)
        return h, acts

    def reinforce(self, e: np.ndarray, action: int, advantage: float, lr: float = DF_LR) -> None:
        """Ascend advantage · ∇ log softmax(f(e))[action]."""
        logits, acts = self.forward(e[None, :])
        p = np.exp(logits - logits.max())
        p /= p.sum()
        grad = -p
        grad[0, action] += 1.0
        grad *= advantage
        for k in (2, 1, 0):
            gw, gb = acts[k].T @ grad, grad.sum(axis=0)
            if k > 0:
                grad = (grad @ self.w[k].T) * (acts[k] > 0)
            self.w[k] += lr * gw
            self.b[k] += lr * gb


@dataclass
class OnlineModel:
    base: str  # sha256 of the artifact manifest's training identity this snapshot builds on
    last_seq: int = 0
    a_inv: dict[str, np.ndarray] = field(default_factory=dict)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)  # llm → {kind: (coef, intercept, sha)}
    df: DFNet | None = None
    rewards: list[float] = field(default_factory=list)
    baseline: float = 0.5
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    derived_from: dict[str, str] = field(default_factory=dict)  # llm → sha256 of the offline head updated
    # llm → {"after_seq": outcomes of these heads are logged after it, "outcomes": how many so far,
    #        "fitted": how many the last refit used, "refits": how many refits}
    refit: dict[str, dict[str, int]] = field(default_factory=dict)
    _cols: np.ndarray | None = None

    # ---------------------------------------------------------------- serving

    def overlay(self, llm: str, h: LLMHeads, head_sha256: str | None = None) -> LLMHeads:
        """The LLM's heads with online updates applied, only if they derive from these very files
        (an LLM removed and added again gets fresh heads: old updates must not land on them)."""
        if llm in self.derived_from and head_sha256 is not None and self.derived_from[llm] != head_sha256:
            return h
        new = h
        upd = self.heads.get(llm, {})
        for kind in ("quality", "length"):
            if kind in upd and isinstance(getattr(h, kind), LinearHead):
                coef, intercept = upd[kind]
                new = replace(new, **{kind: replace(getattr(h, kind), coef=coef.astype(np.float32),
                                                    intercept=float(intercept))})
        if llm in self.a_inv:
            new = replace(new, a_inv=self.a_inv[llm].astype(np.float32))
        return new

    def bind(self, llm_ids: tuple[str, ...]) -> None:
        order = self.df.llm_order if self.df else []
        self._cols = np.array([order.index(i) if i in order else -1 for i in llm_ids])

    @property
    def kappa(self) -> float:
        if len(self.rewards) < 2:
            return 0.0
        return min(KAPPA_CAP, 0.1 * KAPPA_CAP / (float(np.var(self.rewards)) + 0.01))

    def bonus(self, e: np.ndarray) -> np.ndarray | float:
        if self.df is None or self._cols is None or not self.rewards:
            return 0.0
        s, _ = self.df.forward(np.asarray(e, dtype=np.float64))
        s = np.tanh(s - s.mean(axis=1, keepdims=True))  # bounded: the bonus never exceeds κ
        out = np.where(self._cols >= 0, s[:, np.maximum(self._cols, 0)], 0.0)
        return self.kappa * out

    # ---------------------------------------------------------------- learning


    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        for llm, a in self.a_inv.items():
            arrays[f"ainv__{_stem(llm)}"] = a
        for llm, kinds in self.heads.items():
            for kind, (w, b) in kinds.items():
                arrays[f"{kind}_coef__{_stem(llm)}"] = w
                arrays[f"{kind}_intercept__{_stem(llm)}"] = np.array(b)
        if self.df is not None:
            for k in range(3):
                arrays[f"df_w{k}"], arrays[f"df_b{k}"] = self.df.w[k], self.df.b[k]
        meta = {"base": self.base, "last_seq": self.last_seq, "rewards": self.rewards, "baseline": self.baseline,
                "counts": self.counts, "df_llms": self.df.llm_order if self.df else None,
                "derived_from": self.derived_from, "refit": self.refit,
                "llms": {_stem(llm): llm for llm in set(self.a_inv) | set(self.heads)}}
        arrays["meta"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        return buf.getvalue()

    @classmethod
    def from_path(cls, path: Path) -> OnlineModel:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            names = meta["llms"]
            model = cls(base=meta["base"], last_seq=meta["last_seq"], rewards=meta["rewards"],
                        baseline=meta["baseline"], counts=meta["counts"],
                        derived_from=meta.get("derived_from", {}), refit=meta.get("refit", {}))
            for key in z.files:
                if key.startswith("ainv__"):
                    model.a_inv[names[key[6:]]] = z[key]
                for kind in ("quality", "length"):
                    if key.startswith(f"{kind}_coef__"):
                        stem = key[len(kind) + 7:]
                        model.heads.setdefault(names[stem], {})[kind] = (
                            z[key], float(z[f"{kind}_intercept__{stem}"]))
            if meta["df_llms"]:
                model.df = DFNet(meta["df_llms"], [z[f"df_w{k}"] for k in range(3)], [z[f"df_b{k}"] for k in range(3)])
        return model


def base_identity(artifacts: ArtifactSet) -> str:
    """What a snapshot builds on: the artifact manifest's training run (unchanged by add/remove)."""
    m = artifacts.manifest
    ident = json.dumps([m.training_data.to_json(), m.seed, m.families, m.created_by], sort_keys=True)
    import hashlib

    return hashlib.sha256(ident.encode()).hexdigest()


def load_snapshot(home: Path, artifacts: ArtifactSet, store: StoreBase | None = None) -> OnlineModel | None:
    """The home's snapshot file, or the store's when it shares one between replicas (PostgreSQL)."""
    if store is not None and store.shares_snapshot:
        data = store.read_snapshot()
        if data is None:
            return None
        source: Any = io.BytesIO(data)
    else:
        source = Path(home) / SNAPSHOT
        if not source.is_file():
            return None
    try:
        model = OnlineModel.from_path(source)
    except (OSError, ValueError, KeyError):
        return None  # a damaged snapshot is only a cache: `feedback --rebuild` recreates it
    return model if model.base == base_identity(artifacts) else None


def save_snapshot(home: Path, model: OnlineModel, store: StoreBase | None = None) -> None:
    if store is not None and store.shares_snapshot:
        store.write_snapshot(model.to_bytes(), model.last_seq)
        return
    atomic_write_bytes(Path(home) / SNAPSHOT, model.to_bytes())


