"""Per-LLM heads served as plain numpy objects.

Each LLM has a quality head (predicted probability that the answer is good, in [0, 1]) and a
response-length head (predicted response tokens). Heads are fitted with scikit-learn at training
time (`training/fitters.py`) and exported to the small classes below, so loading and routing never
import scikit-learn (it costs ~1 s of start-up). Each head is saved as one joblib file; the
artifact manifest holds its sha256, checked before `joblib.load` (a joblib file is code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

QUALITY = "quality"
LENGTH = "length"
HEAD_KINDS = (QUALITY, LENGTH)

# The linear heads' objectives, shared by the offline fit (training) and online refits (learning).
LOGISTIC_C = 0.3  # inverse regularisation of the logistic quality heads, chosen on training folds (docs/HEADS.md)
RIDGE_ALPHA = 1.0  # L2 penalty of the ridge length heads (on log1p tokens)
MIN_OUTCOMES = 20  # fewer outcomes than this: a constant prior instead of a fitted head


def _finish(kind: str, raw: np.ndarray) -> np.ndarray:
    """Map a head's raw output to its target's range: probabilities, or tokens from log1p."""
    raw = np.asarray(raw, dtype=np.float64)
    if kind == QUALITY:
        return np.clip(raw, 0.0, 1.0)
    return np.expm1(np.clip(raw, 0.0, 20.0))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class Head:
    """Base: `kind` is QUALITY or LENGTH; length heads predict log1p(tokens) internally."""

    kind: str
    family: str
    n_train: int

    def raw(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _finish(self.kind, self.raw(np.asarray(x, dtype=np.float32)))


@dataclass
class ConstantHead(Head):
    """A prior: the same value for every query (used when an LLM has too few outcomes)."""

    value: float = 0.0

    def raw(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value)


@dataclass
class LinearHead(Head):
    """Logistic (quality) or linear (log length) model: link(x·w + b)."""

    coef: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    intercept: float = 0.0
    logistic: bool = False

    def raw(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.coef + self.intercept
        return _sigmoid(z) if self.logistic else z


class HeadBank:
    """Several heads evaluated together: the linear ones as one matrix product (one BLAS call for a
    whole catalogue instead of one per head, ~0.1 ms less per routed query), the others one by one.

    Holds the heads it was built from, so `same_heads` can tell (by identity) when a refit has
    replaced one and the bank must be rebuilt.
    """

    def __init__(self, heads: list[Head]):
        self.heads = list(heads)
        self._lin = np.array([i for i, h in enumerate(self.heads) if isinstance(h, LinearHead)], dtype=np.intp)
        self._other = [i for i, h in enumerate(self.heads) if not isinstance(h, LinearHead)]
        lin = [h for h in self.heads if isinstance(h, LinearHead)]
        d = len(lin[0].coef) if lin else 0
        self._w = np.zeros((d, len(lin)), np.float32)
        for k, h in enumerate(lin):
            self._w[:, k] = h.coef
        self._b = np.array([h.intercept for h in lin], np.float32)
        self._logistic = np.array([h.logistic for h in lin], dtype=bool)
        self._quality = np.array([h.kind == QUALITY for h in lin], dtype=bool)

    def same_heads(self, heads: list[Head]) -> bool:
        return len(heads) == len(self.heads) and all(a is b for a, b in zip(heads, self.heads))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, len(heads)) float64: column j is `heads[j].predict(x)`."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty((len(x), len(self.heads)))
        if len(self._lin):
            z = x @ self._w + self._b
            z = np.where(self._logistic, _sigmoid(z), z)
            q = self._quality
            out[:, self._lin[q]] = _finish(QUALITY, z[:, q])
            out[:, self._lin[~q]] = _finish(LENGTH, z[:, ~q])
        for j in self._other:
            out[:, j] = self.heads[j].predict(x)
        return out


@dataclass
class MLPHead(Head):
    """A small ReLU network; the last layer is logistic for quality, linear for length."""

    weights: list[np.ndarray] = field(default_factory=list)
    biases: list[np.ndarray] = field(default_factory=list)
    logistic: bool = False

    def raw(self, x: np.ndarray) -> np.ndarray:
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        out = h[:, 0]
        return _sigmoid(out) if self.logistic else out


@dataclass
class KNNHead(Head):
    """Mean target of the k most cosine-similar training queries."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    k: int = 10

    def raw(self, x: np.ndarray) -> np.ndarray:
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sims = xn @ self.points.T
        k = min(self.k, self.points.shape[0])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return self.targets[top].mean(axis=1)


@dataclass
class ForestHead(Head):
    """A random forest's trees flattened into arrays; prediction walks all trees at once."""

    feature: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    threshold: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    left: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    right: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    roots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    max_depth: int = 0

    def raw(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self.max_depth):
            feat = self.feature[node]
            leaf = feat < 0
            if leaf.all():
                break
            go_left = x[rows, np.where(leaf, 0, feat)] <= self.threshold[node]
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        return self.value[node].mean(axis=1)


