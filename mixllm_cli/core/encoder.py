"""The sentence encoder: tokenize, run the ONNX graph, return L2-normalised vectors.

An encoder folder holds `model.onnx` (inputs `input_ids`, `attention_mask`; output
`embedding`, pooling and normalisation inside the graph) and `tokenizer.json` (whose
truncation settings decide what the model sees). `tools/build_encoder.py` builds the shipped
one; `tests/tiny_encoder.py` builds a tiny one in the same format.

numpy, tokenizers and onnxruntime are imported inside the functions that use them, so that
importing this module (and hence `mixllm --help`) stays instant.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ArtifactError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    from tokenizers import Encoding, Tokenizer

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
SPIN_ENV = "MIXLLM_ENCODER_SPIN"  # "1": encoder threads busy-wait between runs (default: they sleep)
THREADS_ENV = "MIXLLM_THREADS"
OUTPUT_NAME = "embedding"
_REBUILD_HINT = "rebuild it with `python tools/build_encoder.py`"
# ORT writes the optimised graph's weights (~55 MB for the shipped model: its int8 weights folded
# to fp32) beside the graph, in this file, which is memory-mapped when the graph is loaded.
GRAPH_DATA_FILE = "model.data"


class GraphCache(Protocol):
    """Where an optimised copy of the model is kept between processes (`artifacts.GraphCache`).

    ORT spends most of a session's creation optimising the graph (folding the int8 weights to
    fp32, fusing attention and layer norms); a copy saved once loads with optimisation off, and
    computes the same vectors: the same graph runs the same kernels.
    """

    def find(self, runtime: str) -> Path | None:
        """A verified optimised graph for `runtime` (the onnxruntime version), or None."""

    def new_target(self, runtime: str) -> Path | None:
        """Where to write a new optimised graph (a file in a private folder), or None (read-only)."""

    def publish(self, target: Path, runtime: str) -> None:
        """Keep the graph just written at `target`; never raises (the cache only saves time)."""

    def discard(self, target: Path) -> None:
        """Remove what a failed attempt left at `target`; never raises."""


@dataclass(frozen=True)
class Encoded:
    """What `Encoder.encode` returns, row i for texts[i]."""

    embeddings: np.ndarray  # (n, dim) float32, L2-normalised
    token_ids: list[np.ndarray]  # per text, ALL non-special token ids, untruncated (int32)
    n_tokens: np.ndarray  # (n,) int64 untruncated count of non-special tokens


def encode_in_chunks(encode: Any, texts: list[str], progress: Any = None, chunk: int = 256) -> Encoded:
    """`encode(texts)` run in chunks of `chunk` texts, so a long job can report
    `progress("encode", done, total)` as it goes; returns one merged `Encoded`, row i for texts[i]
    (the vectors are the same as one call's: a query's vector never depends on its batch)."""
    import numpy as np

    parts = []
    for start in range(0, len(texts), chunk):
        if progress is not None:
            progress("encode", start, len(texts))
        parts.append(encode(texts[start:start + chunk]))
    if progress is not None:
        progress("encode", len(texts), len(texts))
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return encode([])
    return Encoded(
        embeddings=np.vstack([p.embeddings for p in parts]),
        token_ids=[t for p in parts for t in p.token_ids],
        n_tokens=np.concatenate([p.n_tokens for p in parts]),
    )


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; {_REBUILD_HINT}")
    try:
        with path.open("rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise ArtifactError(f"{path}: not readable ({exc.strerror}); {_REBUILD_HINT}") from exc
    if not first:
        raise ArtifactError(f"{path}: empty file; {_REBUILD_HINT}")


# What one model run costs beyond its tokens, in tokens. A 6-layer encoder spends its time in
# per-token matrix products, so every padding token is paid in full and batching saves only the
# run's fixed cost: on one thread a run of B texts of L tokens takes about (B·L + 8) token-times;
# on two threads each run also pays for waking and joining the second, and short texts in runs
# planned with 32-64 encoded fastest (`python benchmarks/bench_encoder.py`, 3 runs: 48 gave
# 564-593 queries/s in groups of 32 against 497-527 for fixed runs of 32; in groups of 64,
# 614-660 against 599-633).
RUN_OVERHEAD_TOKENS = 48


def plan_batches(sorted_lengths: Sequence[int], max_batch: int,
                 overhead: int = RUN_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Cut length-sorted sequences into runs of at most `max_batch` that cost least in all.

    A run of rows i..j-1 pads every row to the longest, sorted_lengths[j-1], so it costs
    (j - i)·sorted_lengths[j-1] + `overhead` tokens; dynamic programming over the cut points
    gives the cheapest plan (n·max_batch steps). Returns [start, end) pairs in order.
    """
    n = len(sorted_lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = sorted_lengths[j - 1]
        for i in range(max(0, j - max_batch), j):
            cost = best[i] + overhead + (j - i) * width
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    return runs[::-1]


# Where the kernel exposes cgroups (a container's CPU quota); tests point it at a temp folder.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
MAX_THREADS = 4  # more buys little for a 6-layer model and starves the rest of the process


def _read_ints(path: Path) -> list[int] | None:
    """The whitespace-separated numbers of a cgroup file ('max' counts as -1), or None if unreadable."""
    try:
        words = path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return [-1 if w == "max" else int(w) for w in words]
    except ValueError:
        return None


def _quota_cpus(quota: int, period: int) -> int | None:
    """CPUs a CFS quota allows (rounded up: 1.5 CPUs can keep 2 threads busy half the time)."""
    if quota <= 0 or period <= 0:
        return None
    return max(1, -(-quota // period))


def _cgroup_dirs(proc_cgroup: Path) -> dict[str, list[str]]:
    """The process's cgroup path per hierarchy ('' for v2, else the v1 controller list)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return {}
    out: dict[str, list[str]] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            # The process's own cgroup and every ancestor up to the root: a parent's quota binds too.
            rel, chain = parts[2].strip("/"), []
            while rel:
                chain.append(rel)
                rel = rel.rpartition("/")[0]
            out[parts[1]] = [*chain, ""]
    return out


def cgroup_cpu_limit(root: Path | None = None, proc_cgroup: Path | None = None) -> int | None:
    """The CPU quota of the process's cgroup and its ancestors (v2 `cpu.max`, v1
    `cpu.cfs_quota_us`), in whole CPUs rounded up, or None when there is none (or the files cannot
    be read). `root` and `proc_cgroup` default to CGROUP_ROOT and PROC_CGROUP."""
    root = CGROUP_ROOT if root is None else root
    limits: list[int] = []
    dirs = _cgroup_dirs(PROC_CGROUP if proc_cgroup is None else proc_cgroup)
    for rel in dirs.get("", [""]):
        values = _read_ints(root / rel / "cpu.max")
        if values is not None and len(values) == 2 and (n := _quota_cpus(*values)):
            limits.append(n)
    v1 = next((chain for ctl, chain in dirs.items() if "cpu" in ctl.split(",")), [""])
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for rel in v1:
            folder = root / mount / rel
            quota, period = _read_ints(folder / "cpu.cfs_quota_us"), _read_ints(folder / "cpu.cfs_period_us")
            if quota and period and (n := _quota_cpus(quota[0], period[0])):
                limits.append(n)
    return min(limits) if limits else None


def usable_cpus(root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """CPUs this process may really use: its affinity mask (taskset, cpuset), capped by a cgroup
    CPU quota (docker --cpus, a Kubernetes limit); os.cpu_count() counts the whole machine."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, proc_cgroup)
    return max(1, n if limit is None else min(n, limit))


def _thread_count() -> int:
    """Encoder threads: $MIXLLM_THREADS, else min(MAX_THREADS, usable_cpus())."""
    raw = os.environ.get(THREADS_ENV)
    if raw is None or raw.strip() == "":
        return min(MAX_THREADS, usable_cpus())
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{THREADS_ENV} must be a positive integer, got {raw!r}")
    return value


def _spinning() -> bool:
    """Whether the encoder's worker threads busy-wait for more work: only with $MIXLLM_ENCODER_SPIN=1.

    A spinning worker holds its core after every parallel step. When another process (or the
    server's own event loop) wants that core, the two take turns and every step waits for the
    slower: with one of 2 cores busy, 2 spinning threads routed at p50 34 ms against 11 ms
    asleep, and ran JSONL at 51 against 83 queries/s (`benchmarks/bench_threads.py`,
    docs/STARTUP.md). Sleeping workers cost little when the cores are free.
    """
    return os.environ.get(SPIN_ENV, "0") == "1"


class Encoder:
    """Text -> L2-normalised vectors, plus untruncated token ids for lexical features.

    Build one with `Encoder.from_dir(path)`; the ONNX session is created on first use and
    reused. Encoding is safe to call from several threads.
    """

    def __init__(self, model_path: Path, tokenizer: Tokenizer, graph_cache: GraphCache | None = None) -> None:
        self.model_path = model_path
        self._graph_cache = graph_cache
        truncation: dict[str, Any] = tokenizer.truncation or {}
        padding: dict[str, Any] = tokenizer.padding or {}
        self._truncate_left = bool(truncation) and truncation["direction"] == "left"
        # With stride 0 the overflow pieces are exactly the dropped tokens, so one tokenizer
        # call gives both the model's input and the full text; on 1,000 queries that is ~1.6x
        # faster than a second, untruncated call (benchmarks/bench_encoder.py prints both).
        self._full_tokenizer: Tokenizer | None = None
        if truncation and truncation["stride"] != 0:
            from tokenizers import Tokenizer as _Tokenizer

            self._full_tokenizer = _Tokenizer.from_str(tokenizer.to_str())
            self._full_tokenizer.no_truncation()
            self._full_tokenizer.no_padding()
        self._pad_id = int(padding["pad_id"]) if padding else 0
        self._pad_left = bool(padding) and padding["direction"] == "left"
        # We pad per length-sorted batch ourselves (with the file's pad id and side), so the
        # tokenizer must not pad the whole call to its longest text.
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._session: onnxruntime.InferenceSession | None = None
        self._input_names: tuple[str, ...] = ()
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, path: Path, graph_cache: GraphCache | None = None) -> Encoder:
        """Open an encoder folder; raises ArtifactError naming a missing or corrupt file.

        Checks that model.onnx and tokenizer.json exist and are readable and loads the
        tokenizer; the model itself is loaded on first use (from `graph_cache`'s optimised copy
        when it has one). Integrity (sha256) is the artifact manifest's job, not this one's.
        """
        path = Path(path)
        model_path = path / MODEL_FILE
        tokenizer_path = path / TOKENIZER_FILE
        _check_readable(model_path)
        _check_readable(tokenizer_path)
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ArtifactError(f"{tokenizer_path}: not a valid tokenizer ({_one_line(exc)}); {_REBUILD_HINT}") from exc
        return cls(model_path, tokenizer, graph_cache)

    # ------------------------------------------------------------------ session

    def _get_session(self) -> onnxruntime.InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def _create_session(self) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        cache, runtime, threads = self._graph_cache, ort.__version__, _thread_count()  # a bad setting raises here
        session = None
        cached = cache.find(runtime) if cache is not None else None
        if cached is not None:
            try:
                session = self._new_session(cached, threads, optimise=False)
            except Exception:  # noqa: BLE001 - ORT's errors are bare Exceptions; optimise again
                session = None
        if session is None:
            session = self._optimised_session(cache, runtime, threads)
        names = tuple(i.name for i in session.get_inputs())
        unknown = sorted(set(names) - {"input_ids", "attention_mask", "token_type_ids"})
        if unknown or "input_ids" not in names:
            raise ArtifactError(f"{self.model_path}: unexpected model inputs {list(names)}")
        outputs = session.get_outputs()
        if not any(o.name == OUTPUT_NAME for o in outputs):
            raise ArtifactError(f"{self.model_path}: no '{OUTPUT_NAME}' output")
        self._input_names = names
        return session

    def _optimised_session(self, cache: GraphCache | None, runtime: str, threads: int) -> onnxruntime.InferenceSession:
        """A session on the model as shipped, fully optimised; the optimised graph is saved to the
        cache on the way when there is one (and the session made again without saving if that fails)."""
        if cache is not None and (target := cache.new_target(runtime)) is not None:
            try:
                session = self._new_session(self.model_path, threads, optimise=True, save_to=target)
            except Exception:  # noqa: BLE001 - e.g. a full disk: saving is only a speed-up, retried without
                cache.discard(target)
            else:
                cache.publish(target, runtime)
                return session
        try:
            return self._new_session(self.model_path, threads, optimise=True)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ArtifactError(
                f"{self.model_path}: cannot load the ONNX model ({_one_line(exc)}); {_REBUILD_HINT}"
            ) from exc

    @staticmethod
    def _new_session(model: Path, threads: int, *, optimise: bool,
                     save_to: Path | None = None) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        options = ort.SessionOptions()
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_ENABLE_ALL if optimise else level.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # core modules never print; keep ORT warnings quiet
        if not _spinning():
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if save_to is not None:
            options.optimized_model_filepath = str(save_to)
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                             GRAPH_DATA_FILE)
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    @property
    def dim(self) -> int:
        """Length of an embedding (from the model's output shape; loads the model)."""
        output = next(o for o in self._get_session().get_outputs() if o.name == OUTPUT_NAME)
        dim = output.shape[-1]
        if not isinstance(dim, int):
            raise ArtifactError(f"{self.model_path}: '{OUTPUT_NAME}' has no fixed width")
        return dim

    # ------------------------------------------------------------------ encoding

    def _full_ids(self, text_encoding: Encoding) -> np.ndarray:
        """All non-special ids of one text, in order, including what truncation dropped."""
        import numpy as np

        parts = [text_encoding, *text_encoding.overflowing]
        if self._truncate_left:
            parts.reverse()  # left truncation lists the dropped pieces from the end backwards
        kept = [np.asarray(p.ids, dtype=np.int32)[np.asarray(p.special_tokens_mask) == 0] for p in parts]
        return kept[0] if len(kept) == 1 else np.concatenate(kept)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Encoded:
        """Encode texts; row i of the result belongs to texts[i].

        Texts are run in length-sorted batches so that a batch pads little; a text's vector
        does not depend on its batch-mates beyond float rounding. An empty string is
        encoded as [CLS][SEP] (callers reject empty queries).
        """
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single str")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        texts = list(texts)
        session = self._get_session()
        dim = self.dim
        if not texts:
            return Encoded(np.zeros((0, dim), np.float32), [], np.zeros(0, np.int64))

        encodings = self._tokenizer.encode_batch(texts)
        if self._full_tokenizer is None:
            token_ids = [self._full_ids(e) for e in encodings]
        else:
            token_ids = [
                np.asarray(e.ids, dtype=np.int32)
                for e in self._full_tokenizer.encode_batch(texts, add_special_tokens=False)
            ]
        n_tokens = np.array([len(t) for t in token_ids], dtype=np.int64)

        model_ids = [e.ids for e in encodings]
        lengths = np.array([len(x) for x in model_ids], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        embeddings = np.empty((len(texts), dim), dtype=np.float32)
        for start, end in plan_batches(lengths[order].tolist(), batch_size):
            rows = order[start:end]
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = int(lengths[i])
                cols = slice(width - n, width) if self._pad_left else slice(0, n)
                ids[r, cols] = model_ids[i]
                mask[r, cols] = 1
            available = {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(ids),
            }
            feed = {name: available[name] for name in self._input_names}
            try:
                (batch_out,) = session.run([OUTPUT_NAME], feed)
            except Exception as exc:  # e.g. a tokenizer whose ids do not fit the model
                raise ArtifactError(
                    f"{self.model_path}: inference failed ({_one_line(exc)}); does tokenizer.json belong to this model?"
                ) from exc
            embeddings[rows] = batch_out
        return Encoded(embeddings=embeddings, token_ids=token_ids, n_tokens=n_tokens)
