"""Two routing ideas not in head_variants.py, judged on train only (5-fold out of fold).

    python benchmarks/new_ideas.py [--write benchmarks/out/new_ideas.md]

Same data, features, folds and cost estimate as head_variants.py (ridge length heads out of fold;
the test split is never read). % of always-GPT-4's quality reachable within each cost share.

(a) Pairwise escalation. For every cheaper LLM l two logistic heads (C = LOGISTIC_C) predict
    P(GPT-4 right, l wrong) and P(l right, GPT-4 wrong) on the query; their difference d̂_l
    estimates E[q_GPT-4 − q_l] directly, so the correlation between the two LLMs' outcomes on a
    query (hard queries defeat both) is learned instead of assumed away by two independent heads.
    At each λ the shipped rule picks the best cheaper LLM l*; GPT-4 is then scored with quality
    q̂_l* + d̂_l*, so it is picked when λ·d̂_l* beats its extra cost. One λ sweep, as shipped.
(b) A λ per predicted task. A task classifier (multinomial logistic on the same features, out of
    fold) assigns each query a task; each task gets its own λ. "in-sample" picks the best triple
    on the very rows it is scored on (three free parameters: optimistic); "nested" picks the
    triple on the other four folds' rows and applies it to the fifth, against the shipped single
    λ picked the same nested way; nested policies are scored as (quality, cost) shares, since the
    cost they land on is not the cap.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import REF, emit, train_study
from compare_heads import frontier

from mixllm_cli.core.decision import route_indices
from mixllm_cli.core.heads import LOGISTIC_C, QUALITY
from mixllm_cli.training.fitters import out_of_fold
from mixllm_cli.training.presets import LAMBDA_GRID

CAPS = (0.10, 0.15, 0.20, 0.25)


def picks(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    zeros = np.zeros_like(q)
    return np.stack([route_indices(q, c, zeros, zeros, lam)[0] for lam in LAMBDA_GRID])


def pairwise_picks(q: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(n_λ, n) picks: the best cheaper LLM l* by the shipped rule, GPT-4 scored as q̂_l* + d̂_l*."""
    rows, others = np.arange(len(q)), np.arange(1, q.shape[1])
    zeros = np.zeros_like(q)
    out = []
    for lam in LAMBDA_GRID:
        cheap = others[route_indices(q[:, others], c[:, others], zeros[:, others], zeros[:, others], lam)[0]]
        qq = q.copy()
        qq[:, REF] = q[rows, cheap] + d[rows, cheap]
        out.append(route_indices(qq, c, zeros, zeros, lam)[0])
    return np.stack(out)


def best_within(idx: np.ndarray, quality: np.ndarray, cost: np.ndarray, caps=CAPS) -> list[float]:
    """Like compare_heads.frontier, from precomputed picks: best quality share within each cap."""
    rows = np.arange(len(quality))
    cs = cost[rows, idx].sum(1) / cost[:, REF].sum()
    qs = np.nansum(quality[rows, idx], 1) / np.nansum(quality[:, REF])
    return [float(qs[cs <= cap].max(initial=0.0)) for cap in caps]


def best_triple(cq: list[tuple[np.ndarray, np.ndarray]], budget: float) -> tuple[int, ...]:
    """λ indices (one per group) maximising the summed quality with summed cost ≤ budget."""
    (c0, q0), (c1, q1), *rest = cq
    c01, q01 = (c0[:, None] + c1[None, :]).ravel(), (q0[:, None] + q1[None, :]).ravel()
    if not rest:
        q01 = np.where(c01 <= budget, q01, -np.inf)
        k = int(np.argmax(q01))
        return divmod(k, len(c1))
    (c2, q2), = rest
    order = np.argsort(c2)
    pref = np.maximum.accumulate(q2[order])
    arg = order[np.array([int(np.argmax(q2[order][: i + 1])) for i in range(len(order))])]
    pos = np.searchsorted(c2[order], budget - c01, side="right") - 1
    tot = np.where(pos >= 0, q01 + pref[np.maximum(pos, 0)], -np.inf)
    k = int(np.argmax(tot))
    i, j = divmod(k, len(c1))
    return i, j, int(arg[pos[k]])


def group_sums(idx: np.ndarray, quality: np.ndarray, cost: np.ndarray, groups: np.ndarray, rows: np.ndarray):
    """Per group: (cost, quality) totals at every λ, over `rows` only."""
    r = np.arange(len(quality))
    qsel, csel = np.nan_to_num(quality[r, idx]), cost[r, idx]
    return [(csel[:, rows & (groups == g)].sum(1), qsel[:, rows & (groups == g)].sum(1)) for g in np.unique(groups)]


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    st = train_study()
    t, x, folds, cost, n_llm = st.table, st.x, st.folds, st.cost, st.n_llm
    q = np.nan_to_num(np.stack([out_of_fold("logistic", QUALITY, x, t.quality[:, j], folds) for j in range(n_llm)], 1))
    lines = ["| policy (train, 5-fold out of fold) | " + " | ".join(f"≤{int(100 * c)}% cost" for c in CAPS) + " |",
             "|---|" + "---|" * len(CAPS)]

    def row(name: str, vals: list[float]) -> None:
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
        print(lines[-1], flush=True)

    row("shipped: logistic C=0.3, one λ", frontier(q, cost, t.quality, t.cost_usd, REF, CAPS))
    shipped_idx = picks(q, cost)
    row("shipped, scored from this script's own picks (a check: same numbers)", best_within(shipped_idx, t.quality, t.cost_usd))

    # (a) pairwise escalation heads
    d = np.zeros_like(q)
    g = t.quality[:, REF]
    for j in range(1, n_llm):
        both = ~np.isnan(g) & ~np.isnan(t.quality[:, j])
        up = np.where(both, (g > t.quality[:, j]).astype(float), np.nan)
        down = np.where(both, (t.quality[:, j] > g).astype(float), np.nan)
        d[:, j] = (np.nan_to_num(out_of_fold("logistic", QUALITY, x, up, folds))
                   - np.nan_to_num(out_of_fold("logistic", QUALITY, x, down, folds)))
    pair_idx = pairwise_picks(q, cost, d)
    row("(a) pairwise escalation: GPT-4 scored q̂_l* + d̂(GPT-4 − l*)", best_within(pair_idx, t.quality, t.cost_usd))
    # Diagnostic: the same rule with d̂ from the two independent heads (q̂_GPT-4 − q̂_l*).
    indep = q[:, [REF]] - q
    row("(a′) same rule, d̂ = q̂_GPT-4 − q̂_l* (independent heads; control)",
        best_within(pairwise_picks(q, cost, indep), t.quality, t.cost_usd))

    # (b) a λ per predicted task
    tasks = np.array(t.tasks)
    names = sorted(set(tasks))
    y_task = np.searchsorted(names, tasks)
    task_hat = np.zeros(len(tasks), dtype=int)
    for f in np.unique(folds):
        m = LogisticRegression(C=LOGISTIC_C, max_iter=2000).fit(x[folds != f], y_task[folds != f])
        task_hat[folds == f] = m.predict(x[folds == f])
    acc = float((task_hat == y_task).mean())
    total_q, total_c = np.nansum(t.quality[:, REF]), t.cost_usd[:, REF].sum()
    everything = np.ones(len(tasks), dtype=bool)
    sums = group_sums(shipped_idx, t.quality, t.cost_usd, task_hat, everything)
    in_sample = []
    for cap in CAPS:
        k = best_triple(sums, cap * total_c)
        in_sample.append(sum(s[1][i] for s, i in zip(sums, k)) / total_q)
    row(f"(b) a λ per predicted task, in-sample triple (task accuracy {100 * acc:.1f}%; optimistic)", in_sample)

    lines += ["", ("Nested λ choice (chosen on four folds' rows, applied to the fifth): quality % / cost % of "
              "always-GPT-4 on train, for a target of ≤ 20% cost."), "",
              "| policy | quality % | cost % |", "|---|---|---|"]
    one = np.zeros(len(tasks), dtype=int)
    for name, groups in (("shipped: one λ", one), ("(b) a λ per predicted task", task_hat)):
        got_q = got_c = 0.0
        for f in np.unique(folds):
            inner = group_sums(shipped_idx, t.quality, t.cost_usd, groups, folds != f)
            budget = 0.20 * t.cost_usd[folds != f, REF].sum()
            if len(inner) == 1:
                c0, q0 = inner[0]
                k = (int(np.argmax(np.where(c0 <= budget, q0, -np.inf))),)
            else:
                k = best_triple(inner, budget)
            outer = group_sums(shipped_idx, t.quality, t.cost_usd, groups, folds == f)
            got_c += sum(s[0][i] for s, i in zip(outer, k))
            got_q += sum(s[1][i] for s, i in zip(outer, k))
        lines.append(f"| {name} | {100 * got_q / total_q:.1f} | {100 * got_c / total_c:.1f} |")
        print(lines[-1], flush=True)
    emit(lines, args.write)


if __name__ == "__main__":
    main()
