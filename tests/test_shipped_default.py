"""The shipped default artifact set: verified, complete, and routing as recorded.

Golden values were recorded from `tools/build_default.py`'s output; retraining the default
changes them, and this test must then be updated in the same commit.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from mixllm_cli.artifacts import load_artifact_set
from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.paths import REPO_ROOT, shipped_artifacts_dir
from mixllm_cli.routing.router import Router

GOLDEN_QUERY = "Write a python function to reverse a linked list."
GOLDEN_CHOICE = "gpt-3.5-turbo-1106"
GOLDEN_QUALITY = {"gpt-4-1106-preview": 0.7713, "gpt-3.5-turbo-1106": 0.7568, "claude-v1": 0.6630}


@pytest.fixture(scope="module")
def router():
    return Router.load(REPO_ROOT / "no-such-home")


def test_every_listed_file_verifies_and_every_llm_has_heads():
    cat = load_catalogue(REPO_ROOT / "models.yaml")
    s = load_artifact_set(shipped_artifacts_dir())
    assert set(s.heads) == set(cat.ids)
    m = s.manifest
    assert m.catalogue_fingerprint == cat.fingerprint()
    assert m.reference_llm == "gpt-4-1106-preview"
    assert {"python", "numpy", "scikit-learn", "onnxruntime"} <= set(m.versions)
    encoder = json.loads((shipped_artifacts_dir() / "encoder" / "encoder.json").read_text())
    assert m.encoder.files == encoder["files"]
    lams = [s.presets[b].lam for b in ("very-low", "low", "medium", "high")]
    assert lams == sorted(lams)


def test_golden_decision(router):
    d = router.route([GOLDEN_QUERY], "medium")[0]
    assert d.choice == GOLDEN_CHOICE
    got = {c.llm: c.quality for c in d.candidates}
    for llm, q in GOLDEN_QUALITY.items():
        assert got[llm] == pytest.approx(q, abs=2e-3)


def test_budget_buys_quality_on_real_test_queries(router):
    """On 120 held-out RouterBench queries, spending more buys predicted and real quality."""
    from mixllm_cli.dataset import read_dataset
    from mixllm_cli.evaluation.replay import evaluate

    recs = read_dataset(REPO_ROOT / "data/routerbench/test.jsonl")
    rng = np.random.default_rng(0)
    sample = [recs[i] for i in sorted(rng.choice(len(recs), 120, replace=False))]
    report = evaluate(router, sample)
    by = {r["policy"].split(" (")[0]: r for r in report["results"]}
    assert by["mixllm very-low"]["cost_pct_of_best"] < by["mixllm high"]["cost_pct_of_best"]
    assert by["mixllm high"]["quality_pct_of_best"] > by["mixllm very-low"]["quality_pct_of_best"]
    cheapest = next(r for r in report["results"] if r["policy"].endswith("(cheapest)"))
    assert by["mixllm medium"]["quality_pct_of_best"] > cheapest["quality_pct_of_best"]


def test_cli_route_on_the_shipped_default(tmp_path):
    env = {"MIXLLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "mixllm_cli", "route", GOLDEN_QUERY, "--budget", "medium",
                           "--json"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["choice"] == GOLDEN_CHOICE


def test_add_llm_over_the_shipped_training_queries_encodes_nothing(tmp_path, monkeypatch, cli):
    """The shipped training rows seed a fresh home's embedding cache (embcache): an LLM added with
    outcomes on the default's own training queries trains without running the encoder once, and
    on the very vectors the encoder gives (float32, as encoded)."""
    from mixllm_cli.core.encoder import Encoder
    from mixllm_cli.training_rows import load_seed_rows

    seeds = load_seed_rows(shipped_artifacts_dir() / "training_rows.npz")
    assert seeds is not None and len(seeds.query_sha256) == 2225
    monkeypatch.setenv("MIXLLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MIXLLM_DEFAULT_ARTIFACTS", raising=False)
    data = tmp_path / "new-llm.jsonl"
    with (REPO_ROOT / "examples" / "claude-v1.jsonl").open() as src, data.open("w") as dst:
        for line in src:
            row = json.loads(line)
            row["outcomes"] = {"my/new-llm": row["outcomes"]["claude-v1"]}
            dst.write(json.dumps(row) + "\n")
    fresh = Encoder.from_dir(shipped_artifacts_dir() / "encoder").encode([row["query"] for row in map(
        json.loads, data.read_text().splitlines()[:3])])

    def refuse(self, texts, *args, **kwargs):
        raise AssertionError(f"the encoder ran on {len(texts)} texts")

    monkeypatch.setattr(Encoder, "encode", refuse)
    code, out, err = cli("add-llm", "my/new-llm", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "2",
                         "--data", data)
    assert code == 0, err
    assert json.loads(out)["status"] == "trained"
    monkeypatch.undo()
    from mixllm_cli.embcache import QueryCache, encoder_identity, query_key, text_sha256

    ident = encoder_identity(shipped_artifacts_dir() / "encoder")
    first = json.loads(data.read_text().splitlines()[0])["query"]
    with QueryCache(tmp_path / "home" / "cache" / "embeddings") as cache:
        (vec, _), = cache.get([query_key(ident, text_sha256(first))]).values()
    np.testing.assert_allclose(vec, fresh.embeddings[0], atol=2e-6)  # another CPU's kernels round differently
