"""Every test gets its own home; a tiny but real world (encoder, catalogue, data) is built once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_encoder import make_tiny_encoder

TINY_CATALOGUE = """\
version: 1
llms:
  - id: big
    name: Big model
    input_usd_per_mtok: 10.0
    output_usd_per_mtok: 30.0
    ttft_ms: 500
    output_tokens_per_s: 20
    slots: 4
    sources: {prices: test, ttft_ms: test, output_tokens_per_s: test, slots: test}
  - id: vendor/small
    name: Small model
    input_usd_per_mtok: 0.2
    output_usd_per_mtok: 0.2
    ttft_ms: 200
    output_tokens_per_s: 100
    slots: 8
    sources: {prices: test, ttft_ms: test, output_tokens_per_s: test, slots: test}
  - id: mid
    name: Middle model
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 2.0
    ttft_ms: 300
    output_tokens_per_s: 60
    slots: 8
    sources: {prices: test, ttft_ms: test, output_tokens_per_s: test, slots: test}
"""

CODE = ["write a python function to sum two numbers", "write a function to sum numbers", "python function to sum two",
        "write python to sum the numbers", "write a python function"]
CHAT = ["tell me a story about the dog", "tell me about the cat", "what is the capital of france",
        "explain why the sky is blue", "tell me a story about a cat"]


def tiny_records(n: int = 120, seed: int = 0) -> list[dict]:
    """Code queries: only `big` succeeds and answers at length; chat: everyone succeeds, briefly."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        code = i % 2 == 0
        query = (CODE if code else CHAT)[int(rng.integers(5))]
        outcomes = {}
        for llm, (p_in, p_out) in {"big": (10.0, 30.0), "vendor/small": (0.2, 0.2), "mid": (1.0, 2.0)}.items():
            good = llm == "big" or not code or (llm == "mid" and rng.random() < 0.3)
            prompt, resp = len(query.split()), (200 if code else 20) + int(rng.integers(10))
            outcomes[llm] = {"quality": 1.0 if good else 0.0, "prompt_tokens": prompt, "response_tokens": resp,
                             "cost_usd": (prompt * p_in + resp * p_out) / 1e6}
        out.append({"id": f"q{i}", "query": query, "task": "code" if code else "chat", "outcomes": outcomes})
    return out


@pytest.fixture(scope="session")
def encoder_cache(tmp_path_factory):
    """One per-user encoder cache (optimised graphs, stamps) for the whole session, never ~/.cache."""
    return tmp_path_factory.mktemp("encoder-cache")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch, encoder_cache):
    """No test reads or writes the real user data dir (nor the real user cache)."""
    home = tmp_path / "home"
    monkeypatch.setenv("MIXLLM_HOME", str(home))
    monkeypatch.setenv("MIXLLM_ENCODER_CACHE", str(encoder_cache))
    monkeypatch.delenv("MIXLLM_DEBUG", raising=False)
    monkeypatch.delenv("MIXLLM_ONLINE_REFIT", raising=False)
    # Progress lines appear only when a phase runs over 2 s: on a busy machine they would land in
    # the stderr some tests compare. Off here; test_cli checks them with the delay set to 0.
    monkeypatch.setenv("MIXLLM_PROGRESS", "off")
    return home


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny encoder posing as the shipped default, a 3-LLM catalogue and a labelled dataset."""
    root = tmp_path_factory.mktemp("tiny")
    shipped = root / "shipped"
    make_tiny_encoder(shipped / "encoder")
    (root / "models.yaml").write_text(TINY_CATALOGUE)
    with open(root / "train.jsonl", "w") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in tiny_records())
    return root


@pytest.fixture
def tiny(tiny_world, monkeypatch):
    monkeypatch.setenv("MIXLLM_DEFAULT_ARTIFACTS", str(tiny_world / "shipped"))
    return tiny_world


def _train_tiny(tiny_world, home, **kw):
    """Train an artifact set on the tiny world into `home`, with the tiny encoder posing as shipped."""
    import os

    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.training.pipeline import train_offline

    old = os.environ.get("MIXLLM_DEFAULT_ARTIFACTS")
    os.environ["MIXLLM_DEFAULT_ARTIFACTS"] = str(tiny_world / "shipped")
    try:
        train_offline(tiny_world / "train.jsonl", load_catalogue(tiny_world / "models.yaml"), home / "artifacts",
                      tiny_world / "shipped" / "encoder", n_buckets=64, folds=3, **kw)
    finally:
        if old is None:
            os.environ.pop("MIXLLM_DEFAULT_ARTIFACTS")
        else:
            os.environ["MIXLLM_DEFAULT_ARTIFACTS"] = old
    return home


@pytest.fixture(scope="session")
def tiny_trained(tiny_world, tmp_path_factory):
    """A home with an artifact set trained on the tiny world (trained once per session)."""
    return _train_tiny(tiny_world, tmp_path_factory.mktemp("trained-home"))


@pytest.fixture(scope="session")
def tiny_trained_tags(tiny_world, tmp_path_factory):
    """A home with an artifact set trained on the tiny world WITH the tag-enhanced embedding."""
    return _train_tiny(tiny_world, tmp_path_factory.mktemp("trained-tags-home"), tags=True)


def _private_home(trained, tiny, home, monkeypatch):
    """A private copy of a trained tiny home, the tiny catalogue as the user's: state written by one
    test (the queue, the pool) never leaks into another."""
    import shutil

    shutil.copytree(trained, home, ignore=shutil.ignore_patterns("state.sqlite3*"))
    shutil.copy(tiny / "models.yaml", home / "models.yaml")
    monkeypatch.setenv("MIXLLM_HOME", str(home))
    return home


@pytest.fixture
def tags_home(tiny, tiny_trained_tags, tmp_path, monkeypatch):
    """A private copy of the tags-trained tiny home."""
    return _private_home(tiny_trained_tags, tiny, tmp_path / "tags-home", monkeypatch)


@pytest.fixture
def trained_home(tiny, tiny_trained, tmp_path, monkeypatch):
    """A private copy of the trained tiny home."""
    return _private_home(tiny_trained, tiny, tmp_path / "trained-home", monkeypatch)


@pytest.fixture
def cli(capsys):
    """Run `mixllm ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from mixllm_cli.cli import run

    def invoke(*args: str) -> tuple[int, str, str]:
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server for the session (tests/pgcluster.py). Skipped with the reason
    when it cannot start, except in CI (CI=1), where that is a failure."""
    import os

    from pgcluster import Cluster, ClusterUnavailable

    try:
        cluster = Cluster().start()
    except ClusterUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster):
    """A URL to an empty schema of the session's cluster, private to this test."""
    import uuid

    import psycopg

    schema = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{pg_cluster.url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each backend in turn: a store URL for `state.open_store`."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    return request.getfixturevalue("pg_url")
