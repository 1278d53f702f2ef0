"""Is an int8-compute encoder with static (calibrated) activation scales as good as the shipped one?

    python benchmarks/int8_encoder_study.py [--rounds 6] [--n-long 300] [--calib 300]
                                            [--percentile 99.999] [--no-train] [--work DIR]

Issue 18, item 5. The shipped encoder (artifacts/encoder/model.onnx) stores its weights in int8
but computes in fp32 (onnxruntime folds the Cast·Mul dequantisation at session creation). This
study builds, in a temporary folder (never the repo), an encoder whose linear layers compute in
int8, and compares it with the shipped one:

1. build: fold the shipped graph's weights to fp32 initialisers (the exact values the shipped
   session computes with), `quant_pre_process`, then `quantize_static`: QDQ format, activations
   uint8 with ONE FIXED scale per tensor calibrated on `--calib` RouterBench TRAIN queries
   (tokenised by the shipped tokenizer as `Encoder` does, one query per run, so no padding enters
   the ranges), weights int8 per output channel (exactly the shipped int8 values: the shipped
   weights are already per-row int8). Only the 36 weight MatMuls compute in int8 (onnxruntime
   fuses them into MatMulIntegerToFloat, fp32 out); attention scores and context stay fp32 and
   MatMul outputs are not re-quantised (both cost quality for little speed; see docs/INT8.md).
   Ranges: MinMax, or with `--percentile P` the P-th / (100-P)-th percentiles of each tensor
   (computed here: onnxruntime's histogram calibrators need same-shaped runs).
2. batch independence: each probe query encoded alone vs (a) through `Encoder.encode` among
   other queries and (b) run directly in padded batches of other widths; np.array_equal.
3. throughput: bench_encoder.py's long few-shot prompts (truncated to 128 tokens) and the
   RouterBench test split, shipped and int8 alternated round by round (ABBA order), median q/s.
4. quality: cosine between shipped and int8 vectors on the test split; then heads retrained on
   each encoder's embeddings (`train_offline` on train, seed 0, the CLI's defaults, no cache) and
   the λ sweep on test (`sweep`, 50 λ): AIQ and quality at 20% of GPT-4's cost.

Threads: the library default (MIXLLM_THREADS, else min(4, cpus)); MIXLLM_ENCODER_SPIN=0 as in
bench_encoder.py. Prints a markdown report; `--write FILE` also saves it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # like the CLI
os.environ.setdefault("MIXLLM_ENCODER_SPIN", "0")  # like bench_encoder.py

import numpy as np
from bench_encoder import few_shot_prompt

from mixllm_cli.core.encoder import MODEL_FILE, TOKENIZER_FILE, Encoder, _thread_count
from mixllm_cli.dataset import read_dataset

SHIPPED = ROOT / "artifacts" / "encoder"
TRAIN = ROOT / "data" / "routerbench" / "train.jsonl"
TEST = ROOT / "data" / "routerbench" / "test.jsonl"
# activation x activation products: kept fp32 (quantising them lowers the cosine, buys no speed)
LAST_HIDDEN = "layer5/output_norm"  # the last LayerNorm, what mean pooling reads
ATTENTION = [f"layer{i}/{k}" for i in range(6) for k in ("scores", "context_heads")]


# --------------------------------------------------------------------------- build


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fold_weights(src: Path, dst: Path) -> None:
    """Replace each Cast(int8 initialiser)·Mul(scale initialiser) by its fp32 product, so the
    quantiser sees constant weights (the same values the shipped session folds them into)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    dropped, folded = set(), []
    for node in graph.node:
        cast = producer.get(node.input[0]) if node.op_type == "Mul" else None
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits or node.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[cast.input[0]]).astype(np.float32)
        folded.append(numpy_helper.from_array(q * numpy_helper.to_array(inits[node.input[1]]), node.output[0]))
        dropped |= {node.name, cast.name}
    nodes = [n for n in graph.node if n.name not in dropped]
    used = {i for n in nodes for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + folded)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def calibration_feeds(texts: list[str]) -> list[dict[str, np.ndarray]]:
    """One unpadded run per text, tokenised by the shipped tokenizer exactly as Encoder does
    (left truncation to 128 tokens, [CLS]/[SEP])."""
    tokenizer = Encoder.from_dir(SHIPPED)._tokenizer
    feeds = []
    for e in tokenizer.encode_batch(texts):
        ids = np.array([e.ids], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return feeds


def make_reader(feeds: list[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(feeds))

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(feeds[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    return Reader()


def linear_inputs(model_path: Path) -> list[str]:
    """The activation tensors that feed the weight MatMuls (what gets a static scale)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    return sorted({n.input[0] for n in graph.node if n.op_type == "MatMul" and n.name not in ATTENTION})


def percentile_overrides(model_path: Path, feeds: list[dict[str, np.ndarray]], percentile: float) -> dict:
    """TensorQuantOverrides with each linear input's range cut at the given two-sided percentiles."""
    import onnx
    import onnxruntime as ort

    names = linear_inputs(model_path)
    model = onnx.load(str(model_path))
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for name, out in zip(names, session.run(names, feed), strict=True):
            values[name].append(out.ravel())
    overrides = {}
    for name, parts in values.items():
        flat = np.concatenate(parts)
        lo, hi = np.percentile(flat, [100 - percentile, percentile])
        overrides[name] = [{"rmin": np.float32(min(lo, 0.0)), "rmax": np.float32(max(hi, 0.0))}]
    return overrides


def build_int8(work: Path, calib_texts: list[str], percentile: float | None) -> Path:
    """Write work/int8/ (model.onnx, tokenizer.json, encoder.json with sha256s, licence files)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "int8"
    out.mkdir(parents=True)
    folded, pre = work / "fp32_folded.onnx", work / "fp32_pre.onnx"
    feeds = calibration_feeds(calib_texts)
    with contextlib.chdir(work):  # the quantisation tools may leave temporary files in the cwd
        fold_weights(SHIPPED / MODEL_FILE, folded)
        # symbolic shape inference cannot follow the Slice on Shape(input_ids); ONNX's own can
        quant_pre_process(str(folded), str(pre), skip_symbolic_shape=True)
        extra: dict = {"QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                       "OpTypesToExcludeOutputQuantization": ["MatMul"], "CalibStridedMinMax": 50}
        if percentile is not None:
            extra["TensorQuantOverrides"] = percentile_overrides(pre, feeds, percentile)
        quantize_static(str(pre), str(out / MODEL_FILE), make_reader(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul"], nodes_to_exclude=ATTENTION, per_channel=True,
                        reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    for name in (TOKENIZER_FILE, "LICENSE", "NOTICE"):
        shutil.copy(SHIPPED / name, out / name)
    meta = json.loads((SHIPPED / "encoder.json").read_text())
    meta.update(name=f"{meta['name']} (int8 static, study)",
                weights="int8 per-channel; int8 compute, static uint8 activation scales",
                files={n: sha256_file(out / n) for n in (MODEL_FILE, TOKENIZER_FILE)})
    (out / "encoder.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


# --------------------------------------------------------------------------- batch independence


def padded_run(encoder: Encoder, texts: list[str], width: int) -> np.ndarray:
    """Run the graph once on `texts` right-padded to `width` (as Encoder pads a run)."""
    session = encoder._get_session()
    encodings = encoder._tokenizer.encode_batch(texts)
    ids = np.full((len(texts), width), encoder._pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, e in enumerate(encodings):
        ids[r, :len(e.ids)], mask[r, :len(e.ids)] = e.ids, 1
    feed = {k: v for k, v in {"input_ids": ids, "attention_mask": mask,
                               "token_type_ids": np.zeros_like(ids)}.items() if k in encoder._input_names}
    return session.run(["embedding"], feed)[0]


def batch_independence(encoder: Encoder, probes: list[str], others: list[str]) -> dict:
    """How many probes get the bit-identical vector alone and (a) via Encoder.encode among
    others, (b) padded to wider runs with other queries; plus the largest difference seen."""
    rng = random.Random(1)
    lengths = [len(e.ids) for e in encoder._tokenizer.encode_batch(probes)]
    same_encode = same_padded = runs = 0
    worst = 0.0
    for probe, n in zip(probes, lengths, strict=True):
        alone = encoder.encode([probe]).embeddings[0]
        mates = rng.sample(others, 15)
        mixed = encoder.encode([*mates[:7], probe, *mates[7:]], batch_size=32).embeddings[7]
        same_encode += bool(np.array_equal(alone, mixed))
        worst = max(worst, float(np.abs(alone - mixed).max()))
        ok = True
        mate_len = max(len(e.ids) for e in encoder._tokenizer.encode_batch(mates[:2]))
        for width in sorted({n, min(n + 1, 128), min(n + 17, 128), 128}):
            for batch, row in (([probe], 0), ([mates[0], probe, mates[1]], 1)):
                vec = padded_run(encoder, batch, width if row == 0 else max(width, mate_len))[row]
                runs += 1
                ok &= bool(np.array_equal(alone, vec))
                worst = max(worst, float(np.abs(alone - vec).max()))
        same_padded += ok
    return {"probes": len(probes), "identical_via_encode": same_encode, "identical_all_paddings": same_padded,
            "padded_runs": runs, "max_abs_diff": worst}


def hidden_independence(encoder: Encoder, probes: list[str], others: list[str]) -> int:
    """How many probes get bit-identical last hidden states (their own n rows, before pooling)
    alone and padded to wider runs among other queries: whether only the pooling differs."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(encoder.model_path))
    model.graph.output.extend([onnx.helper.make_tensor_value_info(LAST_HIDDEN, onnx.TensorProto.FLOAT, None)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = _thread_count()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    tok = encoder._tokenizer
    rng, same = random.Random(3), 0
    for probe in probes:
        mates = rng.sample(others, 2)
        n = len(tok.encode(probe).ids)
        widths = {n, min(n + 17, 128), 128, max(n, *(len(e.ids) for e in tok.encode_batch(mates)))}
        runs = [_hidden(session, tok, [probe], n)[0, :n]]
        runs += [_hidden(session, tok, [mates[0], probe, mates[1]], w)[1, :n] for w in sorted(widths)
                 if w >= max(len(e.ids) for e in tok.encode_batch(mates))]
        same += all(np.array_equal(runs[0], r) for r in runs[1:])
    return same


def _hidden(session, tok, texts: list[str], width: int) -> np.ndarray:
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, e in enumerate(tok.encode_batch(texts)):
        ids[r, :len(e.ids)], mask[r, :len(e.ids)] = e.ids, 1
    return session.run([LAST_HIDDEN], {"input_ids": ids, "attention_mask": mask})[0]


# --------------------------------------------------------------------------- speed


def throughput(encoders: dict[str, Encoder], texts: list[str], rounds: int) -> dict[str, list[float]]:
    """Queries/s of each encoder on `texts`, alternated ABBA round by round so load hits both."""
    names = list(encoders)
    for e in encoders.values():
        e.encode(texts[:64])  # warm: session, allocator arenas
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            encoders[name].encode(texts)
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return rates


# --------------------------------------------------------------------------- retrain + sweep


def train_and_sweep(encoder_src: Path, home: Path) -> dict:
    """Train a set on train with this encoder (the set carries its own copy: train_offline's
    in-place path, so artifacts._encoder_dir finds it by sha256) and sweep it on test."""
    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.evaluation.sweep import sweep
    from mixllm_cli.paths import catalogue_path, home_artifacts_dir
    from mixllm_cli.routing.router import Router
    from mixllm_cli.training.pipeline import train_offline

    out = home_artifacts_dir(home)
    shutil.copytree(encoder_src, out / "encoder")
    start = time.perf_counter()
    train_offline(TRAIN, load_catalogue(catalogue_path(home)), out, out / "encoder", seed=0, cache=None)
    trained = time.perf_counter() - start
    router = Router.load(home)
    assert router.artifacts.encoder_dir.resolve() == (out / "encoder").resolve(), router.artifacts.encoder_dir
    report = sweep(router, read_dataset(TEST), n_lambdas=50, cache=None, dataset=str(TEST))
    mix = next(c for c in report["curves"] if c["name"] == "mixllm")
    return {"aiq": 100 * mix["aiq"], "q@20%": 100 * mix["quality_share_at_cost_share"]["0.2"],
            "q@10%": 100 * mix["quality_share_at_cost_share"]["0.1"],
            "presets": {k: (100 * v["quality_share"], 100 * v["cost_share"]) for k, v in report["presets"].items()},
            "train_s": trained, "sweep_s": time.perf_counter() - start - trained}


# --------------------------------------------------------------------------- report


def cpu_flags() -> str:
    flags = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni"))


def spread(v: list[float]) -> str:
    return f"{statistics.median(v):.1f} q/s (min {min(v):.1f}, max {max(v):.1f}, n {len(v)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n-long", type=int, default=300)
    parser.add_argument("--calib", type=int, default=300, help="RouterBench train queries to calibrate on")
    parser.add_argument("--percentile", type=float, default=None, help="clip ranges at this percentile (MinMax without)")
    parser.add_argument("--no-train", action="store_true", help="skip the retrain + sweep comparison")
    parser.add_argument("--work", type=Path, default=None, help="keep the work folder here (default: a temp dir)")
    parser.add_argument("--write", default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="int8_study_")) if args.work is None else args.work
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"# int8-compute encoder study ({time.strftime('%Y-%m-%d %H:%M')})", "",
             (f"cpu_count {os.cpu_count()}, intra-op threads {_thread_count()}, {cpu_flags()}, "
              f"load average at start {', '.join(f'{x:.2f}' for x in os.getloadavg())}"), ""]
    train_q = [r.query for r in read_dataset(TRAIN)]
    test_q = [r.query for r in read_dataset(TEST)]
    calib = random.Random(0).sample(train_q, args.calib)
    t0 = time.perf_counter()
    int8_dir = build_int8(work, calib, args.percentile)
    method = "MinMax" if args.percentile is None else f"percentile {args.percentile:g}"
    lines.append(f"built {int8_dir / MODEL_FILE} in {time.perf_counter() - t0:.0f} s "
                 f"(QDQ u8/s8 per-channel, {method}, {args.calib} train queries)")
    encoders = {"fp32 (shipped)": Encoder.from_dir(SHIPPED), "int8": Encoder.from_dir(int8_dir)}

    lines += ["", "## Batch independence (np.array_equal, alone vs in batches)", ""]
    probes = random.Random(2).sample(test_q, 20)
    for name, enc in encoders.items():
        b = batch_independence(enc, probes, test_q)
        lines.append(f"- {name}: via Encoder.encode among 15 others {b['identical_via_encode']}/{b['probes']}; "
                     f"every padded run ({b['padded_runs']} runs, widths n, n+1, n+17, 128, alone and with "
                     f"2 others) {b['identical_all_paddings']}/{b['probes']}; max |diff| {b['max_abs_diff']:.3g}; "
                     f"last hidden state before pooling identical alone vs padded among 2 others "
                     f"{hidden_independence(enc, probes, test_q)}/{len(probes)}")
    print("\n".join(lines), flush=True)

    ref, emb = (e.encode(test_q).embeddings for e in encoders.values())
    cos = (ref * emb).sum(axis=1)
    lines += ["", "## Cosine, shipped vs int8, test split", "",
              (f"mean {cos.mean():.5f}, min {cos.min():.5f}, 1st percentile {np.percentile(cos, 1):.5f} "
               f"({len(cos)} queries)")]

    rng = random.Random(0)
    long_q = [few_shot_prompt(rng) for _ in range(args.n_long)]
    lines += ["", "## Throughput (alternated, ABBA)", ""]
    for label, texts in ((f"{args.n_long} long few-shot prompts (bench_encoder.py, truncated to 128 tokens)", long_q),
                         (f"{len(test_q)} RouterBench test queries", test_q)):
        rates = throughput(encoders, texts, args.rounds)
        (a, ra), (b, rb) = rates.items()
        ratios = [y / x for x, y in zip(ra, rb, strict=True)]
        lines.append(f"- {label}: {a} {spread(ra)}; {b} {spread(rb)}; int8/fp32 ratio of medians "
                     f"{statistics.median(rb) / statistics.median(ra):.2f} "
                     f"(per round {min(ratios):.2f}-{max(ratios):.2f})")
        print(lines[-1], flush=True)

    if not args.no_train:
        lines += ["", "## Heads retrained on each encoder (train), λ sweep on test (50 λ)", "",
                  "| encoder | AIQ | q@10% | q@20% | presets quality / cost % | train s | sweep s |", "|---|---|---|---|---|---|---|"]
        results = {}
        for name, src in (("fp32 (shipped)", SHIPPED), ("int8", int8_dir)):
            r = results[name] = train_and_sweep(src, work / f"home_{'int8' if name == 'int8' else 'fp32'}")
            presets = "; ".join(f"{k} {q:.2f}/{c:.2f}" for k, (q, c) in r["presets"].items())
            lines.append(f"| {name} | {r['aiq']:.2f} | {r['q@10%']:.2f} | {r['q@20%']:.2f} | {presets} | "
                         f"{r['train_s']:.0f} | {r['sweep_s']:.0f} |")
            print(lines[-1], flush=True)
        f, i = results["fp32 (shipped)"], results["int8"]
        lines += ["", f"int8 − fp32: AIQ {i['aiq'] - f['aiq']:+.2f} points, q@20% {i['q@20%'] - f['q@20%']:+.2f} points"]
    lines += ["", f"work folder: {work}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()
