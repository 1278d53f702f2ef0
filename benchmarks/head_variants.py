"""Can better quality heads buy the issue-6 target? Candidates judged on train only (5-fold OOF).

    python benchmarks/head_variants.py [--write benchmarks/out/head_variants.md]

Every candidate predicts each LLM's quality out of fold on data/routerbench/train.jsonl (5 folds,
seed 0; the test split is never read); a router built on those predictions (ridge length head
for the cost, no uncertainty or waiting term) is swept over λ and the table gives the best % of
always-GPT-4's quality reachable within 10/15/20/25% of its cost on train, with the Brier score.
Candidates: the shipped logistic head (C = 0.3) and other C values; a kNN head on the embedding
and its blends with the logistic head; the task made known (one-hot appended, an upper bound for
any task detector); a per-task mean (task known, no query signal); stacking every LLM's logit
with the task; per-LLM Platt recalibration (nested in the folds) and temperature sharpening.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import REF, emit, train_study
from compare_heads import frontier

from mixllm_cli.core.heads import QUALITY
from mixllm_cli.training.fitters import out_of_fold

CAPS = (0.10, 0.15, 0.20, 0.25)


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    st = train_study()
    t, enc, x, folds, cost, n_llm, ref = st.table, st.enc, st.x, st.folds, st.cost, st.n_llm, REF
    lines = ["| quality head | Brier | " + " | ".join(f"≤{int(100 * c)}% cost" for c in CAPS) + " |",
             "|---|---|" + "---|" * len(CAPS)]

    def report(name: str, p: np.ndarray) -> None:
        fr = frontier(np.nan_to_num(p), cost, t.quality, t.cost_usd, ref, CAPS)
        lines.append(f"| {name} | {np.nanmean((p - t.quality) ** 2):.4f} | " + " | ".join(f"{100 * v:.1f}" for v in fr)
                     + " |")
        print(lines[-1], flush=True)

    def oof(family: str, feats: np.ndarray, **kw) -> np.ndarray:
        return np.stack([out_of_fold(family, QUALITY, feats, t.quality[:, j], folds, **kw) for j in range(n_llm)], 1)

    logistic = oof("logistic", x)
    report("logistic C=0.3 (shipped)", logistic)
    for c in (0.5, 1.0):
        report(f"logistic C={c:g}", oof("logistic", x, c=c))
    knn = oof("knn", enc.embeddings)
    report("kNN on the embedding", knn)
    for w in (0.3, 0.5):
        report(f"blend (1−{w:g})·logistic + {w:g}·kNN", (1 - w) * logistic + w * knn)
    tasks = np.array(t.tasks)
    names = sorted(set(tasks))
    onehot = (tasks[:, None] == np.array(names)[None, :]).astype(np.float32)
    report("logistic + task one-hot (task known)", oof("logistic", np.hstack([x, 3 * onehot])))
    task_mean = np.zeros_like(logistic)
    for f in np.unique(folds):
        for task in names:
            m = tasks == task
            task_mean[(folds == f) & m] = np.nanmean(t.quality[(folds != f) & m], axis=0)
    report("per-task mean (task known, no query signal)", task_mean)
    z = np.log(np.clip(logistic, 1e-6, 1 - 1e-6) / (1 - np.clip(logistic, 1e-6, 1 - 1e-6)))
    stacked, platt = np.zeros_like(z), np.zeros_like(z)
    for f in np.unique(folds):
        tr = folds != f
        for j in range(n_llm):
            y = t.quality[:, j]
            ok = tr & ~np.isnan(y)
            yy = (y[ok] > 0.5).astype(int)
            m = LogisticRegression(C=1.0, max_iter=1000).fit(np.hstack([z[ok], onehot[ok]]), yy)
            stacked[~tr, j] = m.predict_proba(np.hstack([z[~tr], onehot[~tr]]))[:, 1]
            m = LogisticRegression(C=100).fit(z[ok, j:j + 1], yy)
            platt[~tr, j] = m.predict_proba(z[~tr, j:j + 1])[:, 1]
    report("stacked: every LLM's logit + task", stacked)
    report("Platt recalibration per LLM (nested)", platt)
    for temp in (1.5, 2.0):
        report(f"sharpened logit ×{temp:g}", 1 / (1 + np.exp(-temp * z)))
    emit(lines, args.write)


if __name__ == "__main__":
    main()
