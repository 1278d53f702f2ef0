"""Start-up caches in the home: the encoder's optimised graph and the stamps of checked files.

Each is only a speed-up: the vectors and routing decisions stay the same, a damaged or mismatched
copy is ignored and replaced, and a home that cannot be written still routes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mixllm_cli import artifacts
from mixllm_cli.artifacts import GRAPH_META, STAMPS, GraphCache, encoder_cache_dir, verify_stamped
from mixllm_cli.core.encoder import GRAPH_DATA_FILE, MODEL_FILE, Encoder
from mixllm_cli.errors import ArtifactError
from mixllm_cli.files import sha256_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "artifacts" / "encoder"
SHIPPED_SHA = json.loads((REPO / "artifacts" / "manifest.json").read_text())["encoder"]["files"][MODEL_FILE]
TEXTS = ["Explain TCP slow start", "hi", "Write a python function that merges two sorted lists " * 12,
         "Quel temps fait-il à Paris ?", "", "Summarise the French revolution in one sentence."]


@pytest.fixture()
def sessions(monkeypatch):
    """Every ONNX session the encoder makes: (model file, optimised?)."""
    made: list[tuple[Path, bool]] = []
    real = Encoder._new_session

    def spy(model, threads, *, optimise, save_to=None):
        made.append((Path(model), optimise))
        return real(model, threads, optimise=optimise, save_to=save_to)

    monkeypatch.setattr(Encoder, "_new_session", staticmethod(spy))
    return made


def cached_encoder(cache: Path) -> Encoder:
    return Encoder.from_dir(SHIPPED, GraphCache(cache, SHIPPED_SHA))


def runtime() -> str:
    import onnxruntime

    return onnxruntime.__version__


def test_the_optimised_graph_is_saved_then_reused(tmp_path, sessions):
    cache = tmp_path / "cache"
    first = cached_encoder(cache).encode(TEXTS).embeddings
    entry = GraphCache(cache, SHIPPED_SHA).entry(runtime())
    meta = json.loads((entry / GRAPH_META).read_text())
    assert meta["source_sha256"] == SHIPPED_SHA and meta["onnxruntime"] == runtime()
    assert meta["files"] == {name: sha256_file(entry / name) for name in (MODEL_FILE, GRAPH_DATA_FILE)}
    assert sessions == [(SHIPPED / MODEL_FILE, True)]

    second = cached_encoder(cache).encode(TEXTS).embeddings
    assert sessions[1:] == [(entry / MODEL_FILE, False)]  # loaded as it is, no optimisation
    assert np.array_equal(first, second)


def test_vectors_from_the_cached_graph_equal_the_normal_path(tmp_path):
    normal = Encoder.from_dir(SHIPPED)
    cache = tmp_path / "cache"
    cached_encoder(cache).encode(["warm the cache"])
    cached = cached_encoder(cache)
    assert GraphCache(cache, SHIPPED_SHA).find(runtime()) is not None
    for batch_size in (1, 3, 32):  # the same graph runs the same kernels: equal to the bit
        a = normal.encode(TEXTS, batch_size=batch_size)
        b = cached.encode(TEXTS, batch_size=batch_size)
        assert np.array_equal(a.embeddings, b.embeddings)
        assert np.array_equal(a.n_tokens, b.n_tokens)


def corrupt_in_place(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["weights", "graph", "meta field", "meta files", "missing weights"])
def test_a_damaged_or_mismatched_copy_is_ignored_and_replaced(tmp_path, sessions, damage):
    cache = tmp_path / "cache"
    expected = cached_encoder(cache).encode(TEXTS).embeddings
    store = GraphCache(cache, SHIPPED_SHA)
    entry = store.entry(runtime())
    meta_path = entry / GRAPH_META
    meta = json.loads(meta_path.read_text())
    if damage == "weights":
        corrupt_in_place(entry / GRAPH_DATA_FILE)
    elif damage == "graph":
        corrupt_in_place(entry / MODEL_FILE)
    elif damage == "meta field":
        meta_path.write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    elif damage == "meta files":
        meta_path.write_text(json.dumps({**meta, "files": {MODEL_FILE: meta["files"][MODEL_FILE]}}))
    else:
        (entry / GRAPH_DATA_FILE).unlink()
    assert store.find(runtime()) is None

    again = cached_encoder(cache).encode(TEXTS).embeddings
    assert sessions[-1] == (SHIPPED / MODEL_FILE, True)  # made from the model, not the damaged copy
    assert np.array_equal(again, expected)
    assert store.find(runtime()) == entry / MODEL_FILE  # replaced by a good copy
    assert json.loads(meta_path.read_text()) == meta


def test_the_copy_is_keyed_by_model_runtime_and_cpu(tmp_path, monkeypatch):
    store = GraphCache(tmp_path, SHIPPED_SHA)
    entry = store.entry("1.0")
    assert store.entry("1.1") != entry
    assert GraphCache(tmp_path, "f" * 64).entry("1.0") != entry
    monkeypatch.setattr(artifacts, "cpu_signature", lambda: "another-cpu")
    assert store.entry("1.0") != entry


def test_a_corrupt_model_is_still_one_error_and_leaves_nothing_in_the_cache(tmp_path):
    from tiny_encoder import make_tiny_encoder

    tiny = make_tiny_encoder(tmp_path / "tiny")
    (tiny / MODEL_FILE).write_bytes(b"\x00garbage, not protobuf" * 10)
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match="cannot load the ONNX model"):
        Encoder.from_dir(tiny, GraphCache(cache, "0" * 64)).encode(["what is the capital"])
    assert [p.name for p in cache.iterdir()] == []  # the failed attempt's folder is gone


def route_json(cli, *extra) -> dict:
    code, out, err = cli("route", "Explain TCP slow start", "--json", "--no-queue", *extra)
    assert code == 0, err
    return json.loads(out)


def test_routing_is_the_same_with_and_without_the_cache(cli, isolated_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXLLM_ENCODER_CACHE", str(tmp_path / "fresh-cache"))
    first = route_json(cli)  # a fresh cache: the session is optimised and saved
    cache = encoder_cache_dir()
    assert cache is not None and GraphCache(cache, SHIPPED_SHA).find(runtime()) is not None
    assert route_json(cli) == first  # from the saved copy
    monkeypatch.setenv("MIXLLM_ENCODER_CACHE", "off")
    assert encoder_cache_dir() is None
    assert route_json(cli) == first  # no cache at all


def test_a_cache_that_cannot_be_written_still_routes(cli, isolated_home, tmp_path, monkeypatch):
    # Tests run as root, where chmod cannot make a folder read-only: a file where the cache
    # folder goes makes every write into it fail the same way (OSError), stamps included.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MIXLLM_ENCODER_CACHE", str(blocked / "encoder"))
    first = route_json(cli)
    assert route_json(cli) == first
    assert blocked.read_text() == "not a folder"


def test_the_cache_is_per_user_and_shared_by_homes(monkeypatch, tmp_path):
    monkeypatch.delenv("MIXLLM_ENCODER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert encoder_cache_dir("one home") == encoder_cache_dir("another") == tmp_path / "xdg" / "mixllm" / "encoder"


# ---------------------------------------------------------------- stamps


def stamps_of(cache: Path) -> dict:
    path = cache / STAMPS
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_file_changed_just_now_is_hashed_but_not_stamped(tmp_path):
    folder, cache = tmp_path / "set", tmp_path / "cache"
    path = folder / "w.bin"
    path.parent.mkdir()
    path.write_bytes(b"weights" * 100)
    assert verify_stamped(folder, "w.bin", sha256_file(path), cache) == path
    assert str(path.resolve()) not in stamps_of(cache)  # its times may still move within one tick


def test_a_stamped_file_is_not_read_again_until_it_changes(tmp_path, monkeypatch):
    folder, cache = tmp_path / "set", tmp_path / "cache"
    path = folder / "w.bin"
    path.parent.mkdir()
    path.write_bytes(b"weights" * 100)
    sha = sha256_file(path)
    later = artifacts.time.time_ns() + 10 * artifacts.RACY_NS  # as if checked a while after it was written
    monkeypatch.setattr(artifacts.time, "time_ns", lambda: later)
    verify_stamped(folder, "w.bin", sha, cache)
    assert stamps_of(cache)[str(path.resolve())][0] == sha

    def no_hashing(*args):
        raise AssertionError("hashed a file whose stamp matches")

    monkeypatch.setattr(artifacts, "verify", no_hashing)
    assert verify_stamped(folder, "w.bin", sha, cache) == path
    monkeypatch.undo()

    # The same size, other bytes, a new file moved over it (as an atomic write does): hashed, refused.
    other = folder / "other.bin"
    other.write_bytes(b"WEIGHTS" * 100)
    os.replace(other, path)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        verify_stamped(folder, "w.bin", sha, cache)


def test_a_wrong_sha_is_refused_whatever_the_stamps(tmp_path):
    folder = tmp_path / "set"
    (folder).mkdir()
    (folder / "w.bin").write_bytes(b"abc")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        verify_stamped(folder, "w.bin", "0" * 64, tmp_path / "cache")
    with pytest.raises(ArtifactError, match="missing"):
        verify_stamped(folder, "nope.bin", "0" * 64, tmp_path / "cache")


# ---------------------------------------------------------------- --help


def test_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, io, contextlib; from mixllm_cli.cli import run\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out: assert run(['--help']) == 0\n"
            "assert 'route' in out.getvalue()\n"
            "heavy = [m for m in ('numpy', 'onnxruntime', 'tokenizers', 'joblib', 'sklearn', 'rich', 'pydantic', 'yaml')\n"
            "         if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
