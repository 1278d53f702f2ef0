"""Each text embedded once per home: a per-query cache keyed by the encoder and the text.

`train-offline`, `add-llm`, `fit-llm` and `evaluate` (with its sweep and baselines) encode whole
datasets; encoding is nearly all of their run time. Every query's vector and token ids are kept
under the key sha256(encoder identity, sha256(text)), so any dataset that overlaps an earlier one
(another order, one query more, a subset) encodes only the queries never seen, and a changed
encoder or a changed text can never be served a stale vector. The encoder identity is the sha256
of its files (from `encoder.json`).

Storage: one SQLite file, `<home>/cache/embeddings/queries.sqlite3` (WAL, so parallel commands
share it; no pickles: a float32 vector and the packed token ids per row). About 1.5 KB for the
vector plus 2 bytes per token (RouterBench's long prompts: ~2.3 MB per 1,000 queries). Bounded:
beyond `$MIXLLM_CACHE_MAX_MB` (default 1024) the oldest rows are dropped down to 90% of the cap.
A damaged file is set aside and started afresh; a read-only home only loses the speed-up;
deleting the folder is always safe.

Seeds: an artifact set's `training_rows.npz` holds its training queries' vectors (float32) and
sha256s. `seed_rows` files given to `encode_cached` are imported once (each recorded by its
sha256), so `add-llm --data` over the shipped default's training queries encodes nothing even in
a fresh home.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import numpy as np

from .core.encoder import Encoded
from .paths import home_dir

CACHE_DIR = Path("cache") / "embeddings"
DB_NAME = "queries.sqlite3"
MAX_MB_ENV = "MIXLLM_CACHE_MAX_MB"
DEFAULT_MAX_MB = 1024
_LOOKUP_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 32,766; smaller keeps statements cheap)


def cache_dir(home: Path | str | None = None) -> Path:
    return home_dir(home) / CACHE_DIR


def encoder_identity(encoder_dir: Path) -> str:
    """The sha256 of the encoder's files as its `encoder.json` lists them (falls back to hashing)."""
    meta = Path(encoder_dir) / "encoder.json"
    if meta.is_file():
        files = json.loads(meta.read_text()).get("files")
        if files:
            return identity_of_files(files)
    h = hashlib.sha256()
    for name in ("model.onnx", "tokenizer.json"):
        h.update(hashlib.sha256((Path(encoder_dir) / name).read_bytes()).digest())
    return h.hexdigest()


def identity_of_files(files: object) -> str:
    """The encoder identity of the `files` entry of an `encoder.json` (or a manifest's encoder)."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def text_sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def query_key(identity: str, text_digest: bytes) -> bytes:
    """The cache key of one text under one encoder (32 bytes)."""
    return hashlib.sha256(identity.encode() + b"\0" + text_digest).digest()


def max_bytes() -> int:
    raw = os.environ.get(MAX_MB_ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0.0) * 1024 * 1024)


def _pack_ids(ids: np.ndarray) -> tuple[bytes, int]:
    ids = np.asarray(ids)
    if ids.size == 0 or int(ids.max()) < 2**16:
        return ids.astype("<u2").tobytes(), 2
    return ids.astype("<i4").tobytes(), 4


def _unpack_ids(blob: bytes, width: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u2" if width == 2 else "<i4").astype(np.int32)


class QueryCache:
    """The per-query store of one home (see the module docstring); use as a context manager."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._open()
        for old in self.path.parent.glob("*.npz"):  # whole-dataset entries of the earlier format: never read
            old.unlink(missing_ok=True)

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError:
            # Damaged (not a database, torn by a crash the journal could not repair): set it aside.
            os.replace(self.path, self.path.with_suffix(".damaged"))
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS q (key BLOB PRIMARY KEY, emb BLOB NOT NULL, ids BLOB NOT NULL, "
                       "width INTEGER NOT NULL, nbytes INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS seeds (sha256 TEXT PRIMARY KEY)")
            db.execute("SELECT count(*) FROM q").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, keys: Sequence[bytes], dim: int | None = None) -> dict[bytes, tuple[np.ndarray, np.ndarray]]:
        """The stored (vector, token ids) of the keys present; rows of the wrong size are skipped."""
        found: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            part = unique[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(part))
            for key, emb, ids, width in self.db.execute(f"SELECT key, emb, ids, width FROM q WHERE key IN ({marks})",
                                                         part):
                vec = np.frombuffer(emb, dtype="<f4")
                if (dim is not None and vec.size != dim) or width not in (2, 4) or len(ids) % width:
                    continue
                found[bytes(key)] = (vec, _unpack_ids(ids, width))
        return found

    def put(self, items: Sequence[tuple[bytes, np.ndarray, np.ndarray]]) -> None:
        """Store (key, vector, token ids) rows in one transaction, then keep the file within its cap."""
        rows = []
        for key, vec, ids in items:
            emb = np.asarray(vec, dtype="<f4").tobytes()
            blob, width = _pack_ids(ids)
            rows.append((key, emb, blob, width, len(key) + len(emb) + len(blob)))
        if not rows:
            return
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO q (key, emb, ids, width, nbytes) VALUES (?, ?, ?, ?, ?)", rows)
            self._bound()

    def _bound(self) -> None:
        cap = max_bytes()
        total = self.db.execute("SELECT coalesce(sum(nbytes), 0) FROM q").fetchone()[0]
        if total <= cap:
            return
        drop, target = 0, total - int(cap * 0.9)
        for rowid, nbytes in self.db.execute("SELECT rowid, nbytes FROM q ORDER BY rowid"):
            if drop >= target:
                self.db.execute("DELETE FROM q WHERE rowid < ?", (rowid,))
                return
            drop += nbytes
        self.db.execute("DELETE FROM q")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def seed(self, rows_path: Path, identity: str) -> int:
        """Import an artifact set's training rows (vectors + query sha256s) once; the rows added.
        Files without query sha256s, of another encoder, or already imported add nothing."""
        from .training_rows import load_seed_rows

        digest = hashlib.sha256(Path(rows_path).read_bytes()).hexdigest()
        if self.db.execute("SELECT 1 FROM seeds WHERE sha256 = ?", (digest,)).fetchone():
            return 0
        seed = load_seed_rows(rows_path)
        items: list[tuple[bytes, np.ndarray, np.ndarray]] = []
        if seed is not None and seed.encoder == identity:
            items = [(query_key(identity, d), e, t) for d, e, t in zip(seed.query_sha256, seed.embeddings,
                                                                       seed.token_ids)]
        with self._transaction():
            if items:
                self.db.executemany(
                    "INSERT OR IGNORE INTO q (key, emb, ids, width, nbytes) VALUES (?, ?, ?, ?, ?)",
                    [(k, np.asarray(e, "<f4").tobytes(), *_pack_ids(t), 0) for k, e, t in items])
                self.db.execute("UPDATE q SET nbytes = length(key) + length(emb) + length(ids) WHERE nbytes = 0")
            self.db.execute("INSERT OR IGNORE INTO seeds (sha256) VALUES (?)", (digest,))
            self._bound()
        return len(items)


def encode_cached(encode: Callable[[list[str]], Encoded], encoder_dir: Path, texts: Sequence[str],
                  directory: Path | None, seed_rows: Sequence[Path] = ()) -> tuple[Encoded, bool]:
    """`encode` applied only to the texts the cache in `directory` does not hold (all of them when
    None), in one call, in order; returns (result, every text was cached). `seed_rows` are
    training-rows files imported into the cache first (once each). Row i is texts[i]'s, exactly
    as `encode` gave it when it was first computed."""
    texts = list(texts)
    if directory is None or not texts:
        return encode(texts), False
    identity = encoder_identity(encoder_dir)
    keys = [query_key(identity, text_sha256(t)) for t in texts]
    try:
        cache = QueryCache(directory)
    except (OSError, sqlite3.Error):
        return encode(texts), False  # a read-only or broken home only loses the speed-up
    with cache:
        try:
            for path in seed_rows:
                if Path(path).is_file():
                    cache.seed(Path(path), identity)
            found = cache.get(keys)
        except (OSError, sqlite3.Error, ValueError, KeyError):
            found = {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        first_of: dict[bytes, int] = {}
        todo = [i for i in missing if first_of.setdefault(keys[i], i) == i]  # each distinct text once
        fresh = encode([texts[i] for i in todo]) if todo else None
        if fresh is not None:
            for row, i in enumerate(todo):
                found[keys[i]] = (fresh.embeddings[row], fresh.token_ids[row])
            try:
                cache.put([(keys[i], fresh.embeddings[row], fresh.token_ids[row]) for row, i in enumerate(todo)])
            except (OSError, sqlite3.Error):
                pass  # a read-only or full home only loses the speed-up
    if fresh is not None and len(todo) == len(texts):
        return fresh, False
    dim = next(iter(found.values()))[0].size if found else 0
    embeddings = np.empty((len(texts), dim), dtype=np.float32)
    token_ids: list[np.ndarray] = []
    for i, k in enumerate(keys):
        vec, ids = found[k]
        embeddings[i] = vec
        token_ids.append(np.asarray(ids, dtype=np.int32))
    n_tokens = np.array([len(t) for t in token_ids], dtype=np.int64)
    return Encoded(embeddings=embeddings, token_ids=token_ids, n_tokens=n_tokens), not missing


def default_seeds(home: Path | str | None = None) -> list[Path]:
    """The training rows a home's commands seed its cache with: its active set's and the shipped one's."""
    from .paths import active_artifacts_dir

    return seeds_for_set(active_artifacts_dir(home))


def seeds_for_set(set_dir: Path) -> list[Path]:
    """The training rows of the artifact set at `set_dir` and of the shipped default (each once)."""
    from .paths import shipped_artifacts_dir

    out: list[Path] = []
    for d in (Path(set_dir), shipped_artifacts_dir()):
        p = d / "training_rows.npz"
        if p.is_file() and p.resolve() not in {q.resolve() for q in out}:
            out.append(p)
    return out
