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

A cold LLM (added without data: no heads, priors and capped exploration, `training/pool.py`)
learns online too: its own A⁻¹ = (I + Σ e·eᵀ)⁻¹ over its events, and once it has gathered enough
outcomes its two linear heads, fitted on its logged outcomes alone (`ColdState`; when and how in
`learning.updates`). The router then serves it as a warm LLM (`Router.use_online`). This
happens whether or not refits are switched on: refits are opt-in because they moved good
offline heads the wrong way; a cold LLM has no heads to spoil.

Incarnations: an LLM removed and added again must not inherit what feedback taught its earlier
self. Warm heads are told apart by the sha256 of their offline head (`derived_from`); a cold LLM
has none, so its state is keyed on its add (`cold_incarnation`: the manifest's history entry of
that add-llm), and the first event of a new incarnation starts its state afresh.

Known gap: `--rebuild` replays every logged event on the current heads; if an LLM id was removed
and added again, events logged for its earlier incarnation are replayed onto the new heads (the
decision log does not yet record which head version made the prediction). Live updates do not
have this problem: the first event for new heads starts their online state afresh, and refits
read only the outcomes logged since. For cold LLMs a rebuild over an existing snapshot keeps the
incarnation boundaries that snapshot recorded (`catch_up`), so only a rebuild from no snapshot
at all has the gap.

Snapshot format: `SNAPSHOT_FORMAT` (meta "format"; a snapshot without it is format 1). Newer
keys are optional on reading (`derived_from`, `refit`); a snapshot older than format 2 has folded
cold LLMs' events without counting them, so `catch_up` rebuilds it by replaying the log.
"""

from __future__ import annotations

import hashlib
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
    from ..manifest import Manifest
    from ..state.base import StoreBase

SNAPSHOT = Path("online") / "snapshot.npz"
# 1: A⁻¹, head overlays, the dynamic-feedback net, refit counters. 2: + cold LLMs' state (`cold`).
SNAPSHOT_FORMAT = 2
KAPPA_CAP = 0.05
DF_LR = 1e-3
DF_HIDDEN = 64
REWARD_WINDOW = 100


def _stem(llm: str) -> str:
    from ..artifacts import llm_file_stem

    return llm_file_stem(llm)  # one key per id: `a/b` and `a::b` must not share arrays


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
class ColdState:
    """What feedback has taught one incarnation of a cold LLM (`learning.updates` fills it in).

    `signals` counts its events with a quality signal (a label sent again for the same decision
    counts again: a cheap upper bound on its labelled outcomes, read from the log only when it
    reaches `next_check`). `fitted`: the labelled outcomes its heads were fitted on (0: still
    cold). `length` is None while too few response tokens were reported: the median-length prior
    stands in.
    """

    key: str  # `cold_incarnation`: which add of the LLM this state belongs to
    after_seq: int  # its events are logged after this seq (earlier ones were another incarnation's)
    signals: int = 0
    next_check: int = 0
    fitted: int = 0
    fits: int = 0
    length_rows: int = 0  # rows the length head was fitted on (0: the prior)
    a_inv: np.ndarray | None = None  # (I + Σ e·eᵀ)⁻¹ over its events; None before the first
    quality: tuple[np.ndarray, float] | None = None  # (coef, intercept) of the logistic head
    length: tuple[np.ndarray, float] | None = None  # (coef, intercept) of the ridge head on log1p(tokens)

    @property
    def warm(self) -> bool:
        return self.fitted > 0 and self.quality is not None and self.a_inv is not None

    def to_meta(self) -> dict[str, Any]:
        return {"key": self.key, "after_seq": self.after_seq, "signals": self.signals, "next_check": self.next_check,
                "fitted": self.fitted, "fits": self.fits, "length_rows": self.length_rows}


def cold_incarnation(manifest: Manifest, llm: str) -> str | None:
    """A key that changes each time `llm` is added cold (None when it is not cold): the position and
    content of its latest add-llm entry in the manifest's append-only history (its cold entry when
    the history has none)."""
    entry = manifest.cold.get(llm)
    if entry is None:
        return None
    added: Any = entry.to_json()
    for k in range(len(manifest.history) - 1, -1, -1):
        h = manifest.history[k]
        if isinstance(h, dict) and h.get("op") == "add-llm" and h.get("llm") == llm:
            added = [k, h]
            break
    return hashlib.sha256(json.dumps([llm, added], sort_keys=True, default=str).encode()).hexdigest()


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
    cold: dict[str, ColdState] = field(default_factory=dict)  # cold LLMs learning online (see `ColdState`)
    snapshot_format: int = SNAPSHOT_FORMAT  # of the snapshot this model was read from (1: before `cold`)
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

    def warm_heads(self, llm: str, key: str | None, prior_response_tokens: float) -> LLMHeads | None:
        """Heads for a cold LLM that feedback has made warm, if this model has them for the incarnation
        `key` (`cold_incarnation`); None while it stays cold. Without a fitted length head its length is
        the prior, as a constant linear head."""
        from ..artifacts import LLMHeads

        st = self.cold.get(llm)
        if st is None or key is None or st.key != key or not st.warm:
            return None
        assert st.quality is not None and st.a_inv is not None  # st.warm
        coef, b = st.quality
        quality = LinearHead(kind="quality", family="logistic", n_train=st.fitted, coef=coef.astype(np.float32),
                             intercept=float(b), logistic=True)
        if st.length is not None:
            lcoef, lb = st.length
            n_len = st.length_rows
        else:
            lcoef, lb, n_len = np.zeros_like(coef), float(np.log1p(prior_response_tokens)), 0
        length = LinearHead(kind="length", family="ridge", n_train=n_len, coef=lcoef.astype(np.float32),
                            intercept=float(lb), logistic=False)
        return LLMHeads(quality=quality, length=length, a_inv=st.a_inv.astype(np.float32))

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
        for llm, st in self.cold.items():
            stem = _stem(llm)
            if st.a_inv is not None:
                arrays[f"cold_ainv__{stem}"] = st.a_inv
            for kind, fit in (("quality", st.quality), ("length", st.length)):
                if fit is not None:
                    arrays[f"cold_{kind}_coef__{stem}"] = fit[0]
                    arrays[f"cold_{kind}_intercept__{stem}"] = np.array(fit[1])
        if self.df is not None:
            for k in range(3):
                arrays[f"df_w{k}"], arrays[f"df_b{k}"] = self.df.w[k], self.df.b[k]
        meta = {"format": SNAPSHOT_FORMAT, "base": self.base, "last_seq": self.last_seq, "rewards": self.rewards,
                "baseline": self.baseline, "counts": self.counts, "df_llms": self.df.llm_order if self.df else None,
                "derived_from": self.derived_from, "refit": self.refit,
                "cold": {llm: st.to_meta() for llm, st in self.cold.items()},
                "llms": {_stem(llm): llm for llm in set(self.a_inv) | set(self.heads) | set(self.cold)}}
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
                        derived_from=meta.get("derived_from", {}), refit=meta.get("refit", {}),
                        snapshot_format=int(meta.get("format", 1)))
            stems = {llm: s for s, llm in names.items()}  # as written, so older snapshots still load
            for llm, c in meta.get("cold", {}).items():
                stem = stems.get(llm, _stem(llm))
                fits = {kind: (z[f"cold_{kind}_coef__{stem}"], float(z[f"cold_{kind}_intercept__{stem}"]))
                        for kind in ("quality", "length") if f"cold_{kind}_coef__{stem}" in z.files}
                model.cold[llm] = ColdState(
                    key=str(c["key"]), after_seq=int(c["after_seq"]), signals=int(c["signals"]),
                    next_check=int(c["next_check"]), fitted=int(c["fitted"]), fits=int(c["fits"]),
                    length_rows=int(c.get("length_rows", 0)),
                    a_inv=z[f"cold_ainv__{stem}"] if f"cold_ainv__{stem}" in z.files else None,
                    quality=fits.get("quality"), length=fits.get("length"))
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
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged snapshot is only a cache: `feedback --rebuild` recreates it
    return model if model.base == base_identity(artifacts) else None


def save_snapshot(home: Path, model: OnlineModel, store: StoreBase | None = None) -> None:
    if store is not None and store.shares_snapshot:
        store.write_snapshot(model.to_bytes(), model.last_seq)
        return
    atomic_write_bytes(Path(home) / SNAPSHOT, model.to_bytes())


