"""Online learning from partial feedback: only the chosen LLM's outcome is ever seen.

Applied in micro-batches: each `mixllm feedback` call (one event, or a whole --jsonl file)
first commits its events to the log (`state.feedback`), then folds every event not yet in the
snapshot into it, in log order, and writes the snapshot atomically. The log is the truth:
`feedback --rebuild` recomputes the snapshot from the offline artifacts by replaying the whole
log, and a crash after the log write loses nothing (the next call catches up).

Known gap: `--rebuild` replays every logged event on the current heads; if an LLM id was removed
and added again, events logged for its earlier incarnation are replayed onto the new heads (the
decision log does not yet record which head version made the prediction). Live updates do not
have this problem: the first event for new heads starts their online state afresh.

What one event changes, for the LLM that was chosen:
- every event: A_l ← A_l + e·eᵀ, kept as A_l⁻¹ by Sherman–Morrison (the uncertainty term);
- refined feedback (observed quality, response tokens): one gradient step on that LLM's linear
  heads (logistic quality head: log-loss; ridge length head: squared error on log(1 + tokens)),
  learning rate 0.002, with a weak pull (1e-3) back towards the offline weights so a long run of
  feedback cannot drift without bound. Heads of other families are not updated online.
- binary feedback (good / bad): one policy-gradient step (REINFORCE, running-mean baseline,
  learning rate 1e-3) on a small shared network f_df(e) → one score per LLM (384 → 64 → 64 → M,
  ReLU). Routing adds κ·tanh(s_df − mean s_df) to every score, κ = 0.005 / (var + 0.01) capped at
  0.05, var the variance of the last 100 rewards: noisy feedback weighs less, and the bonus can
  never outweigh more than 0.05 of score. A thumbs up/down is also a noisy quality label: it takes
  a half-size gradient step (0.001) on the quality head, because the network alone, at the
  paper's learning rate, moves too little in a few hundred events.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .predictors import LinearHead
from .store import atomic_write_bytes

SNAPSHOT = Path("online") / "snapshot.npz"
# Chosen on a validation split carved from train (docs/ONLINE.md): larger steps buy more quality
# at a fixed budget but move the router along the cost axis and hurt the quality-at-equal-cost.
HEAD_LR = 0.002
BINARY_HEAD_LR = 0.001  # a thumbs up/down says less than an observed quality: half the step
KAPPA_CAP = 0.05
HEAD_PRIOR = 1e-3
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
    _cols: np.ndarray | None = None

    # ---------------------------------------------------------------- serving

    def overlay(self, llm: str, h: Any, head_sha256: str | None = None) -> Any:
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
        return float(min(KAPPA_CAP, 0.1 * KAPPA_CAP / (np.var(self.rewards) + 0.01)))

    def bonus(self, e: np.ndarray) -> np.ndarray | float:
        if self.df is None or self._cols is None or not self.rewards:
            return 0.0
        s, _ = self.df.forward(np.asarray(e, dtype=np.float64))
        s = np.tanh(s - s.mean(axis=1, keepdims=True))  # bounded: the bonus never exceeds κ
        out = np.where(self._cols >= 0, s[:, np.maximum(self._cols, 0)], 0.0)
        return self.kappa * out

    # ---------------------------------------------------------------- learning

    def apply(self, event: dict[str, Any], artifacts: Any, x: np.ndarray | None = None) -> None:
        """Fold one feedback event (joined with its decision) into the model; `x` are its head
        features when the caller built them in a batch."""
        from .features import build_features

        llm = event["llm"]
        e = np.frombuffer(event["embedding"], dtype=np.float32).astype(np.float64)
        c = self.counts.setdefault(llm, {"refined": 0, "binary": 0})
        meta = artifacts.manifest.get("heads", {}).get(llm)
        if meta is not None and self.derived_from.get(llm) != meta["quality"]["sha256"]:
            # First feedback for these heads (or the LLM was removed and added again): start its
            # online state from the current offline heads, never from an earlier incarnation's.
            self.heads.pop(llm, None)
            self.a_inv.pop(llm, None)
            self.derived_from[llm] = meta["quality"]["sha256"]
        c[event["kind"]] += 1
        base = artifacts.heads.get(llm)
        if base is not None:
            a = self.a_inv.get(llm, base.a_inv.astype(np.float64))
            ae = a @ e
            self.a_inv[llm] = a - np.outer(ae, ae) / (1.0 + e @ ae)
        if base is not None and (event["kind"] == "refined" or event.get("good") is not None):
            if x is None:
                ids = np.frombuffer(event["token_ids"], dtype=np.int32)
                x = build_features(e[None, :].astype(np.float32), [ids], artifacts.features)[0]
            x = np.asarray(x, dtype=np.float64)
            if event.get("quality") is not None:
                self._sgd(llm, "quality", base.quality, x, float(event["quality"]))
            elif event.get("good") is not None:  # a thumbs up/down is a noisy quality label
                self._sgd(llm, "quality", base.quality, x, float(event["good"]), lr=BINARY_HEAD_LR)
            if event.get("response_tokens") is not None:
                self._sgd(llm, "length", base.length, x, float(np.log1p(event["response_tokens"])))
        if event["kind"] == "binary":
            if self.df is None:
                self.df = DFNet.fresh(sorted(artifacts.heads), len(e))
            if llm in self.df.llm_order:
                r = float(event["good"])
                self.df.reinforce(e, self.df.llm_order.index(llm), r - self.baseline)
                self.rewards = (self.rewards + [r])[-REWARD_WINDOW:]
                n = sum(v["binary"] for v in self.counts.values())
                self.baseline += (r - self.baseline) / max(n, 1)

    def _sgd(self, llm: str, kind: str, head: Any, x: np.ndarray, target: float, lr: float | None = None) -> None:
        if not isinstance(head, LinearHead):
            return
        lr = HEAD_LR if lr is None else lr
        w0, b0 = head.coef.astype(np.float64), float(head.intercept)
        w, b = self.heads.setdefault(llm, {}).get(kind, (w0.copy(), b0))
        z = x @ w + b
        pred = 1.0 / (1.0 + np.exp(-z)) if head.logistic else z
        err = pred - target  # the gradient of log-loss (logistic) and of ½·squared error (linear)
        w = w - lr * (err * x + HEAD_PRIOR * (w - w0))
        b = b - lr * err
        self.heads[llm][kind] = (w, b)

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
                "derived_from": self.derived_from,
                "llms": {_stem(llm): llm for llm in set(self.a_inv) | set(self.heads)}}
        arrays["meta"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_path(cls, path: Path) -> OnlineModel:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            names = meta["llms"]
            model = cls(base=meta["base"], last_seq=meta["last_seq"], rewards=meta["rewards"],
                        baseline=meta["baseline"], counts=meta["counts"],
                        derived_from=meta.get("derived_from", {}))
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


def base_identity(artifacts: Any) -> str:
    """What a snapshot builds on: the artifact manifest's training run (unchanged by add/remove)."""
    m = artifacts.manifest
    ident = json.dumps([m.get("training_data"), m.get("seed"), m.get("families"), m.get("created_by")],
                       sort_keys=True)
    import hashlib

    return hashlib.sha256(ident.encode()).hexdigest()


def load_snapshot(home: Path, artifacts: Any) -> OnlineModel | None:
    path = Path(home) / SNAPSHOT
    if not path.is_file():
        return None
    try:
        model = OnlineModel.from_path(path)
    except (OSError, ValueError, KeyError):
        return None  # a damaged snapshot is only a cache: `feedback --rebuild` recreates it
    return model if model.base == base_identity(artifacts) else None


def save_snapshot(home: Path, model: OnlineModel) -> None:
    atomic_write_bytes(Path(home) / SNAPSHOT, model.to_bytes())


def catch_up(home: Path, artifacts: Any, store: Any, rebuild: bool = False) -> dict[str, Any]:
    """Fold every logged event the snapshot has not seen (all of them with `rebuild`)."""
    model = None if rebuild else load_snapshot(home, artifacts)
    if model is None:
        model = OnlineModel(base=base_identity(artifacts))
    from .features import build_features

    events = store.feedback_since(model.last_seq)
    xs: list[np.ndarray | None] = [None] * len(events)
    refined = [k for k, ev in enumerate(events) if ev["kind"] == "refined" or ev.get("good") is not None]
    if refined:  # build every refined event's features in one vectorised call
        emb = np.stack([np.frombuffer(events[k]["embedding"], dtype=np.float32) for k in refined])
        ids = [np.frombuffer(events[k]["token_ids"], dtype=np.int32) for k in refined]
        for k, x in zip(refined, build_features(emb, ids, artifacts.features)):
            xs[k] = x
    for ev, x in zip(events, xs):
        model.apply(ev, artifacts, x)
        model.last_seq = ev["seq"]
    if events or rebuild:
        save_snapshot(home, model)
    return {"applied": len(events), "last_seq": model.last_seq}

