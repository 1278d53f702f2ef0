"""A real but tiny encoder in the shipped format, for fast end-to-end tests.

`make_tiny_encoder(dir)` writes tokenizer.json (a WordLevel tokenizer with the same
[CLS]/[SEP], left-truncation and batch-longest padding conventions as the real one, cut at 16
tokens), model.onnx (Gather over a seeded random table, masked mean pooling, L2 norm, with
the real graph's input and output names) and encoder.json. The whole folder is a few KB and
loads in milliseconds through `Encoder.from_dir`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = [
    "what", "is", "the", "capital", "of", "france", "paris", "write", "a", "python",
    "function", "to", "sum", "two", "numbers", "explain", "why", "sky", "blue", "tell",
    "me", "story", "about", "dog", "cat", "?",
]  # fmt: skip
VOCAB = {token: i for i, token in enumerate(SPECIALS + WORDS)}
MAX_TOKENS = 16


def _write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])],
    )
    tok.enable_truncation(max_length=MAX_TOKENS, stride=0, strategy="longest_first", direction="left")
    tok.enable_padding(direction="right", pad_id=VOCAB["[PAD]"], pad_token="[PAD]")
    path.write_text(tok.to_str() + "\n", encoding="utf-8")


def tiny_table(dim: int = 8, seed: int = 0) -> np.ndarray:
    """The embedding table the tiny model gathers from (one row per vocab entry)."""
    return np.random.default_rng(seed).standard_normal((len(VOCAB), dim)).astype(np.float32)


def _write_model(path: Path, table: np.ndarray) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dim = table.shape[1]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"], name="gather"),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], name="mask_float", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axes_2"], ["mask3"], name="mask3"),
        helper.make_node("Mul", ["rows", "mask3"], ["masked"], name="masked"),
        helper.make_node("ReduceSum", ["masked", "axes_1"], ["summed"], name="sum", keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axes_1"], ["count"], name="count", keepdims=0),
        helper.make_node("Max", ["count", "count_floor"], ["count_safe"], name="count_safe"),
        helper.make_node("Div", ["summed", "count_safe"], ["pooled"], name="mean"),
        helper.make_node("ReduceL2", ["pooled"], ["norm"], name="norm", axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "norm_floor"], ["norm_safe"], name="norm_safe"),
        helper.make_node("Div", ["pooled", "norm_safe"], ["embedding"], name="normalize"),
    ]
    initializers = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([1], np.int64), "axes_1"),
        numpy_helper.from_array(np.array([2], np.int64), "axes_2"),
        numpy_helper.from_array(np.array(1e-9, np.float32), "count_floor"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "norm_floor"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-encoder",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mixllm tests/tiny_encoder.py", ir_version=8
    )
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString(deterministic=True))


def make_tiny_encoder(directory: Path, dim: int = 8, seed: int = 0) -> Path:
    """Write a tiny encoder folder (model.onnx, tokenizer.json, encoder.json); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(directory / "tokenizer.json")
    _write_model(directory / "model.onnx", tiny_table(dim, seed))
    files = {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in ("model.onnx", "tokenizer.json")
    }
    manifest = {
        "name": "tiny-test-encoder",
        "source": f"tests/tiny_encoder.py (seed {seed})",
        "license": "Apache-2.0",
        "dim": dim,
        "max_tokens": MAX_TOKENS,
        "truncation_side": "left",
        "weights": "fp32 random table",
        "files": files,
        "rebuild": f"make_tiny_encoder(path, dim={dim}, seed={seed})",
    }
    (directory / "encoder.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory
