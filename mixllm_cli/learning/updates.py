"""Online updates: folding logged feedback events into the online model (`learning.online`).

What feedback changes, for the LLM that was chosen (the design is in `learning.online`'s docstring
and docs/ONLINE.md): every event updates A_l⁻¹ by Sherman–Morrison; binary events take one
policy-gradient step on the dynamic-feedback network; outcomes are counted, and with refits
switched on (MIXLLM_ONLINE_REFIT=1) an LLM's linear heads are refitted once it has gathered
REFIT_MIN new outcomes and REFIT_GROWTH more rows than at its last fit. `catch_up` runs these over
every logged event not yet in the snapshot, in log order.

A cold LLM (no heads: priors and capped exploration) learns online too, refits switched on or not
(they are opt-in because refitting good offline heads on selection-biased feedback hurt; a cold
LLM has no heads to hurt, only a prior that knows nothing of the query):

- every event for it updates its own A⁻¹ = (I + Σ e·eᵀ)⁻¹, starting from I (`ColdState.a_inv`);
  the router keeps using A = I for it while it is cold, as before;
- once it has COLD_MIN_OUTCOMES = 100 logged outcomes with a quality signal (refined quality, or
  good / bad read as 1 / 0; one per decision, the latest label), its two heads are fitted on them
  alone (`fit_cold`): quality a logistic regression on soft labels with the offline fit's C
  (scikit-learn's LogisticRegression on doubled rows, as `training.fitters` fits quality heads,
  whatever the quality values; numpy L-BFGS, `core.optim`), length a ridge regression on
  log1p(response tokens) with the offline α (solved exactly, as scikit-learn's Ridge) when at
  least MIN_OUTCOMES (20, the offline rule) of those outcomes report tokens, else the
  median-length prior stays. All outcomes alike (every one good, say): a constant head at their
  mean, a 0 or 1 pulled in by half an outcome so its logit stays finite. Only linear heads,
  whatever family the set trained with: feedback fits in numpy and never imports scikit-learn.
  From then on the router serves it as a warm LLM: every query, its heads, its A⁻¹.
- Why 100 (docs/ONLINE.md, "A cold LLM learns online", has the tables): on the shipped training
  rows, each of the 11 LLMs in turn playing the new one, heads fitted on n of its outcomes.
  Accuracy alone would say about 30: the logistic head beats the constant fitted on the same n
  outcomes (held-out Brier score) in 70-76% of draws for n ≤ 20, 82% at 30, 92-95% at 60-100
  and ≥ 98% from 200; the L2 penalty, not the row count, keeps a fit over 4,480 features stable
  at any of these n. But routing takes an argmax over the heads, and a noisy head wins exactly
  where its errors are optimistic: at n = 30 the router sent the new LLM 11-14% of queries (9.1%
  with heads from all rows) and did worse than keeping it cold (5% exploration) by 0.2-0.7
  points of utility ×100 at the low, medium and high budgets. At n = 100 it is as good as cold
  or better at all three (+0.02, +0.04, +0.21), and better still at 200 (+0.4). So 100 is the
  fewest outcomes from which serving the heads costs nothing against the prior; below it the
  capped exploration is the better use of what little is known.
- It is fitted again as outcomes gather, at the thresholds 100, 150, 225, ... (each 1.5× the last,
  `cold_thresholds`) up to COLD_MAX_ROWS = 2,000 (about the rows an offline-trained LLM has;
  beyond that, `mixllm fit-llm` on its collected outcomes, which can use any head family): at
  most 9 fits, whose rows sum to under 4× the last fit's, so the cost per event stays bounded
  (the last, at 2,000 rows × 4,480 features, takes ~2.5 s; one at 100 rows ~0.1 s). Each fit
  reads the first T labelled outcomes (T the largest threshold reached) from the log and starts
  from zero, so it is a function of the log alone: a live catch-up and `catch_up(rebuild=True)`
  fit the same rows and give the same heads (a label corrected after a fit enters at the next
  one, or at a rebuild).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.heads import LOGISTIC_C, MIN_OUTCOMES, RIDGE_ALPHA, LinearHead
from .online import (
    REWARD_WINDOW,
    SNAPSHOT_FORMAT,
    ColdState,
    DFNet,
    OnlineModel,
    base_identity,
    cold_incarnation,
    load_snapshot,
    save_snapshot,
)

if TYPE_CHECKING:
    from ..artifacts import ArtifactSet
    from ..manifest import FileEntry
    from ..state.base import StoreBase

REFIT_MIN = 32
REFIT_GROWTH = 0.10
# Head refits are opt-in (MIXLLM_ONLINE_REFIT=1): in the continual-training study they moved the
# router towards the cheap LLMs and lost quality at equal cost on some splits (docs/ONLINE.md).
REFIT_ENV = "MIXLLM_ONLINE_REFIT"
# A cold LLM's heads (see the module docstring for why these numbers).
COLD_MIN_OUTCOMES = 100
COLD_GROWTH = 1.5
COLD_MAX_ROWS = 2000
COLD_MAX_ITER = 200


def refits_enabled() -> bool:
    return os.environ.get(REFIT_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def apply_event(model: OnlineModel, event: dict[str, Any], artifacts: ArtifactSet) -> None:
    """Fold one feedback event (joined with its decision) into the model. Heads are refitted
    later, by `refit_due`, when enough outcomes have gathered.

    Each decision counts once however many events were sent for it (the flags of
    `StoreBase.feedback_since`; an event without them counts as a first): only its first event
    updates A⁻¹ (a second e·eᵀ for the same query would claim twice the evidence) and the count of
    outcomes towards a refit; only its first binary event trains the dynamic-feedback network (a
    policy-gradient step cannot be taken back, and replaying the whole log for every changed thumb
    would make one request cost a rebuild); the counts per kind count decisions. Refits and cold fits
    read one outcome per decision, with the latest value of each field (`StoreBase.outcomes_for`): the
    latest label replaces the earlier ones there. The log keeps every event."""
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
    first = bool(event.get("first", True))
    if event.get("first_of_kind", True):
        c[event["kind"]] += 1
    base = artifacts.heads.get(llm)
    if base is not None:
        if first:
            a = model.a_inv.get(llm, base.a_inv.astype(np.float64))
            ae = a @ e
            model.a_inv[llm] = a - np.outer(ae, ae) / (1.0 + e @ ae)
    else:
        _cold_event(model, event, e, artifacts)
    if first and llm in model.refit and any(event.get(k) is not None for k in ("quality", "good", "response_tokens")):
        model.refit[llm]["outcomes"] += 1
    if event["kind"] == "binary" and event.get("first_of_kind", True):
        if model.df is None:
            model.df = DFNet.fresh(sorted(artifacts.heads), len(e))
        if llm in model.df.llm_order:
            r = float(event["good"])
            model.df.reinforce(e, model.df.llm_order.index(llm), r - model.baseline)
            model.rewards = (model.rewards + [r])[-REWARD_WINDOW:]
            n = sum(v["binary"] for v in model.counts.values())
            model.baseline += (r - model.baseline) / max(n, 1)


def _cold_event(model: OnlineModel, event: dict[str, Any], e: np.ndarray, artifacts: ArtifactSet) -> None:
    """One event for an LLM without heads: if it is cold, its A⁻¹ and its count of labelled events."""
    llm = event["llm"]
    key = cold_incarnation(artifacts.manifest, llm)
    if key is None:
        return  # not cold (an LLM removed since): nothing to learn for it
    seq = int(event["seq"])
    st = model.cold.get(llm)
    if st is None or st.key != key:  # its first event, or the first of a new incarnation: start afresh
        st = model.cold[llm] = ColdState(key=key, after_seq=seq - 1, next_check=COLD_MIN_OUTCOMES)
    if seq <= st.after_seq:
        return  # an earlier incarnation's event (a rebuild that kept the boundary its snapshot knew)
    if event.get("first", True):  # each decision once (see `apply_event`)
        a = np.eye(len(e)) if st.a_inv is None else st.a_inv
        ae = a @ e
        st.a_inv = a - np.outer(ae, ae) / (1.0 + e @ ae)
    if event.get("quality") is not None or event.get("good") is not None:
        st.signals += 1  # every label, a relabel too: only says when to read the log (`fit_cold` counts outcomes)


def cold_thresholds() -> list[int]:
    """The numbers of labelled outcomes at which a cold LLM's heads are fitted: 100, 150, 225, ... ≤ 2,000."""
    out = [COLD_MIN_OUTCOMES]
    while out[-1] < COLD_MAX_ROWS:
        out.append(min(math.ceil(out[-1] * COLD_GROWTH), COLD_MAX_ROWS))
    return out


def cold_due(model: OnlineModel, artifacts: ArtifactSet) -> list[str]:
    """Cold LLMs (of this incarnation) whose labelled events have reached their next check."""
    return [llm for llm, st in model.cold.items()
            if st.next_check and st.signals >= st.next_check and st.key == cold_incarnation(artifacts.manifest, llm)]


def fit_cold(model: OnlineModel, llm: str, artifacts: ArtifactSet, store: StoreBase) -> bool:
    """Fit a cold LLM's heads on its first T labelled outcomes, T the largest threshold its log has
    reached (`cold_thresholds`); True if they were fitted (False: relabels made the count of events
    run ahead of the distinct outcomes; it looks again once enough new events could make up for it)."""
    from ..core.features import build_features, unpack_lexical

    st = model.cold[llm]
    outcomes = store.outcomes_for(llm, st.after_seq)  # one per decision, in log order, the latest label
    labels = [_label(o) for o in outcomes]
    labelled = [k for k, y in enumerate(labels) if y is not None]
    steps = cold_thresholds()
    target = max([t for t in steps if t <= len(labelled)], default=0)
    fitted = target > st.fitted
    if fitted:
        rows = outcomes[:labelled[target - 1] + 1]  # the first `target` labelled outcomes, and those between
        emb = np.stack([np.frombuffer(o["embedding"], dtype=np.float32) for o in rows])
        ids = [unpack_lexical(o["token_ids"]) for o in rows]
        x = build_features(artifacts.embed(emb), ids, artifacts.features)
        q = [k for k in range(len(rows)) if labels[k] is not None]
        st.quality = _fit_or_constant(x[q], np.array([labels[k] for k in q], dtype=np.float64), logistic=True)
        t = [k for k, o in enumerate(rows) if o["response_tokens"] is not None]
        if len(t) >= MIN_OUTCOMES:
            y = np.log1p(np.array([float(rows[k]["response_tokens"]) for k in t]))
            st.length, st.length_rows = _fit_or_constant(x[t], y, logistic=False), len(t)
        else:
            st.length, st.length_rows = None, 0  # too few reported lengths: the median-length prior stays
        st.fitted = target
        st.fits += 1
    later = [t for t in steps if t > st.fitted]
    # Each new event adds at most one distinct outcome: no need to read the log again sooner.
    st.next_check = st.signals + (later[0] - len(labelled)) if later else 0
    return fitted


def _label(outcome: dict[str, Any]) -> float | None:
    """An outcome's quality: refined quality, or a thumbs up / down as 1 / 0; None without either."""
    if outcome["quality"] is not None:
        return float(outcome["quality"])
    return None if outcome["good"] is None else float(outcome["good"])


def _fit_or_constant(x: np.ndarray, y: np.ndarray, *, logistic: bool) -> tuple[np.ndarray, float]:
    """The offline objective's optimum from a fixed start (zero weights, the mean's intercept), or, when
    every target is the same, that constant (a probability of 0 or 1 pulled in by half an outcome,
    so its logit is finite)."""
    from ..core.optim import refit_linear

    n = len(y)
    mean = float(y.mean())
    if logistic:
        eps = 0.5 / n
        p = min(max(mean, eps), 1.0 - eps)
        start = math.log(p / (1.0 - p))
    else:
        start = mean
    coef = np.zeros(x.shape[1])
    if np.ptp(y) == 0:
        return coef, start
    if not logistic:
        return _ridge(x, y, RIDGE_ALPHA)
    return refit_linear(x, y, logistic=True, coef=coef, intercept=start, c=LOGISTIC_C, max_iter=COLD_MAX_ITER)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """The exact minimiser of Σ (y − xw − b)² + α‖w‖² (scikit-learn's Ridge: centred, intercept not
    penalised), solved in whichever of the n×n (dual) or d×d (primal) systems is smaller. L-BFGS
    needs hundreds of steps on these ill-conditioned features (4 s at 2,000 rows); this takes
    min(n, d)²·max(n, d) flops once."""
    x = np.asarray(x, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    xc, yc = x - x_mean, np.asarray(y, dtype=np.float64) - y_mean
    n, d = xc.shape
    if n <= d:
        gram = xc @ xc.T
        gram[np.diag_indices(n)] += alpha
        w = xc.T @ np.linalg.solve(gram, yc)
    else:
        gram = xc.T @ xc
        gram[np.diag_indices(d)] += alpha
        w = np.linalg.solve(gram, xc.T @ yc)
    return w, y_mean - float(x_mean @ w)


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
    from ..core.features import build_features, unpack_lexical
    from ..core.optim import refit_linear

    r = model.refit[llm]
    logged = store.outcomes_for(llm, r["after_seq"])
    x_off, yq_off, ylen_off = offline.for_llm(llm, artifacts)
    if logged:
        emb = np.stack([np.frombuffer(o["embedding"], dtype=np.float32) for o in logged])
        ids = [unpack_lexical(o["token_ids"]) for o in logged]
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


def catch_up(home: Path, artifacts: ArtifactSet, store: StoreBase, rebuild: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Fold every logged event the snapshot has not seen (all of them with `rebuild`).

    A snapshot older than SNAPSHOT_FORMAT 2 is rebuilt: it folded cold LLMs' events without
    counting them. A rebuild keeps the cold LLMs' incarnation boundaries the replaced snapshot
    knew (`_keep_incarnations`), so an LLM removed and added again does not learn from its
    earlier self's outcomes. `progress(stage, done, total)` hears of the replay ("feedback events")
    and the refits ("refits") as they go."""
    previous = load_snapshot(home, artifacts, store)
    if previous is not None and previous.snapshot_format < SNAPSHOT_FORMAT:
        previous, rebuild = None, True
    model = None if rebuild else previous
    if model is None:
        model = OnlineModel(base=base_identity(artifacts))
        if previous is not None:
            _keep_incarnations(model, previous, artifacts)
    events = store.feedback_since(model.last_seq)
    tell = progress or (lambda stage, done, total: None)
    for k, ev in enumerate(events):
        if k % 256 == 0:
            tell("feedback events", k, len(events))
        apply_event(model, ev, artifacts)
        model.last_seq = ev["seq"]
    tell("feedback events", len(events), len(events))
    refitted = refit_due(model, artifacts)
    cold = cold_due(model, artifacts)
    offline = OfflineRows()
    for k, llm in enumerate(refitted):
        tell("refits", k, len(refitted) + len(cold))
        refit_heads(model, llm, artifacts, store, offline)
    cold_fitted = []
    for k, llm in enumerate(cold):
        tell("refits", len(refitted) + k, len(refitted) + len(cold))
        if fit_cold(model, llm, artifacts, store):
            cold_fitted.append(llm)
    tell("refits", len(refitted) + len(cold), len(refitted) + len(cold))
    for llm in [k for k, st in model.cold.items() if st.key != cold_incarnation(artifacts.manifest, k)]:
        del model.cold[llm]  # removed, or added again and not heard from since: nothing of it serves
    if events or rebuild:
        save_snapshot(home, model, store)
    return {"applied": len(events), "last_seq": model.last_seq, "refitted": refitted, "cold_fitted": cold_fitted}


def _keep_incarnations(model: OnlineModel, previous: OnlineModel, artifacts: ArtifactSet) -> None:
    """Before a rebuild: each cold LLM's events up to where the previous snapshot says its current
    incarnation began belong to an earlier one. With no state for it there (or one of an earlier
    incarnation), everything that snapshot folded for it did."""
    for llm in artifacts.manifest.cold:
        key = cold_incarnation(artifacts.manifest, llm)
        if key is None:
            continue
        st = previous.cold.get(llm)
        after = st.after_seq if st is not None and st.key == key else previous.last_seq
        model.cold[llm] = ColdState(key=key, after_seq=after, next_check=COLD_MIN_OUTCOMES)
