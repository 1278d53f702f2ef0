"""add-llm / remove-llm / llms on the tiny world: only the new LLM's heads change, writes are atomic."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import CHAT, CODE


class Crash(BaseException):
    """Stands in for the process being killed between two writes (nothing may catch it)."""


ADD = ["add-llm", "newbie", "--input-usd-per-mtok", "0.5", "--output-usd-per-mtok", "1.5"]


@pytest.fixture
def pool_home(trained_home):
    return trained_home


@pytest.fixture
def newbie_data(tmp_path):
    """Outcomes for `newbie` only: it is good at code, bad at chat."""
    path = tmp_path / "newbie.jsonl"
    rng = np.random.default_rng(1)
    with open(path, "w") as f:
        for i in range(80):
            code = i % 2 == 0
            q = (CODE if code else CHAT)[int(rng.integers(5))]
            out = {"quality": 1.0 if code else 0.0, "prompt_tokens": 8, "response_tokens": 50,
                   "cost_usd": (8 * 0.5 + 50 * 1.5) / 1e6}
            f.write(json.dumps({"id": f"n{i}", "query": q, "outcomes": {"newbie": out}}) + "\n")
    return path


def snapshot(home):
    """sha256 of every file under the home's artifact set and catalogue."""
    files = sorted(p for p in home.rglob("*") if p.is_file() and not {"archive", "cache"} & set(p.parts))
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def llms(cli):
    code, out, err = cli("llms", "--json")
    assert code == 0, err
    return {r["id"]: r for r in json.loads(out)}


def test_add_llm_trains_only_its_own_heads(pool_home, newbie_data, cli):
    before = snapshot(pool_home)
    code, out, err = cli(*ADD, "--data", newbie_data, "--ttft-ms", "300")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "trained" and report["outcomes"] == 80
    after = snapshot(pool_home)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"artifacts/manifest.json", "models.yaml", "artifacts/heads/newbie.quality.joblib",
                       "artifacts/heads/newbie.length.joblib", "artifacts/heads/newbie.ainv.npy",
                       "artifacts/heads/newbie.rows.npz"}  # the rows its online refits start from
    from mixllm_cli.training_rows import load_training_rows

    rows = load_training_rows(pool_home / "artifacts" / "heads" / "newbie.rows.npz")
    assert rows.llm_ids == ["newbie"] and rows.quality.shape == (80, 1)
    row = llms(cli)["newbie"]
    assert row["status"] == "trained" and row["outcomes"] == 80 and row["ttft_ms"] == 300
    code, out, _ = cli("route", CODE[0], "--json")
    cands = {c["llm"]: c for c in json.loads(out)["candidates"]}
    code, out2, _ = cli("route", CHAT[0], "--json")
    cands_chat = {c["llm"]: c for c in json.loads(out2)["candidates"]}
    assert cands["newbie"]["predicted_quality"] > cands_chat["newbie"]["predicted_quality"] + 0.2


def test_add_llm_first_change_copies_the_shipped_set(tiny, tiny_trained, newbie_data, cli, tmp_path, monkeypatch):
    """A user with no home set yet: the default's heads are copied byte-identical, then extended."""
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny / "shipped", shipped)
    shutil.copytree(tiny_trained / "artifacts", shipped, dirs_exist_ok=True)
    monkeypatch.setenv("MIXLLM_DEFAULT_ARTIFACTS", str(shipped))
    monkeypatch.setenv("MIXLLM_DEFAULT_CATALOGUE", str(tiny / "models.yaml"))
    home = tmp_path / "new-home"
    code, _, err = cli(*ADD, "--data", newbie_data, "--home", home)
    assert code == 0, err
    for p in (shipped / "heads").iterdir():
        assert (home / "artifacts" / "heads" / p.name).read_bytes() == p.read_bytes()
    assert (tiny / "models.yaml").read_text() != (home / "models.yaml").read_text()  # the copy changed
    assert "newbie" not in (tiny / "models.yaml").read_text()  # the shipped one did not


@pytest.mark.parametrize("args, message", [
    (["add-llm", "big", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1"],
     "Error: LLM 'big' is already in the catalogue; remove it first to replace it"),
    (["add-llm", "bad id!", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1"], "Error: LLM 'bad id!': id:"),
    (["add-llm", "x", "--input-usd-per-mtok", "-1", "--output-usd-per-mtok", "1"],
     "Error: LLM 'x': input_usd_per_mtok: must be >= 0"),
    (["add-llm", "x", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1", "--explore-share", "2"],
     "Error: --explore-share: must be in [0, 1] (got 2.0)"),
])
def test_add_llm_refusals_change_nothing(pool_home, cli, args, message):
    before = snapshot(pool_home)
    code, out, err = cli(*args)
    assert code in (1, 2) and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert snapshot(pool_home) == before


def test_add_llm_with_no_outcomes_for_it(pool_home, tiny, cli):
    before = snapshot(pool_home)
    code, _, err = cli(*ADD, "--data", tiny / "train.jsonl")
    assert code == 1
    assert err == f"Error: {tiny / 'train.jsonl'}: no outcomes for LLM 'newbie'; nothing to train its heads on\n"
    assert snapshot(pool_home) == before


def test_cold_llm_explores_a_capped_share(pool_home, cli):
    code, out, err = cli(*ADD, "--explore-share", "0.3")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "cold" and 0 < report["prior_quality"] <= 1
    assert llms(cli)["newbie"]["status"] == "cold"
    from mixllm_cli.routing.router import Router

    router = Router.load()
    queries = [f"{w} number {i}" for i in range(300) for w in ("sum",)]
    preds = router.predict(queries)
    j = router.llm_ids.index("newbie")
    share = preds.available[:, j].mean()
    assert 0.2 < share < 0.4  # the sha256 keys put ~30% of distinct queries under the cap
    assert preds.available[:, [i for i in range(len(router.llm_ids)) if i != j]].all()
    idx, _ = router.decide(preds, 1.0)
    assert not np.any((idx == j) & ~preds.available[:, j])  # never routed outside its share
    # The same query is always in or out: the cap is deterministic across processes.
    again = router.predict(queries[:20])
    np.testing.assert_array_equal(again.available, preds.available[:20])


def test_cold_llm_with_zero_share_is_never_offered(pool_home, cli):
    assert cli(*ADD, "--explore-share", "0")[0] == 0
    code, out, _ = cli("route", CODE[0], "--json", "--lambda", "1000")
    assert code == 0
    cand = next(c for c in json.loads(out)["candidates"] if c["llm"] == "newbie")
    assert cand["cold"] is True and cand["score"] is None


def test_remove_llm_archives_heads_and_never_routes_there(pool_home, cli):
    manifest = json.loads((pool_home / "artifacts" / "manifest.json").read_text())
    files = {k: pool_home / "artifacts" / manifest["heads"]["big"][k]["file"] for k in ("quality", "length", "ainv")}
    digests = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in files.items()}
    code, out, err = cli("remove-llm", "big")
    assert code == 0, err
    archive = pool_home / "archive"
    (folder,) = list(archive.iterdir())
    for k, p in files.items():
        assert not p.exists()
        assert hashlib.sha256((folder / p.name).read_bytes()).hexdigest() == digests[k]
    entry = json.loads((folder / "entry.json").read_text())
    assert entry["catalogue"]["id"] == "big"
    assert "big" not in llms(cli)
    for lam in ("0", "1000"):
        _, out, _ = cli("route", CODE[0], "--json", "--lambda", lam)
        assert "big" not in {c["llm"] for c in json.loads(out)["candidates"]}


def test_remove_unknown_and_last(pool_home, cli):
    code, _, err = cli("remove-llm", "nope")
    assert code == 1 and err == "Error: unknown LLM 'nope'; known: big, vendor/small, mid\n"
    assert cli("remove-llm", "big")[0] == 0
    assert cli("remove-llm", "mid")[0] == 0
    code, _, err = cli("remove-llm", "vendor/small")
    assert code == 1 and "it is the only LLM" in err


def test_remove_then_add_back(pool_home, newbie_data, cli):
    assert cli(*ADD, "--data", newbie_data)[0] == 0
    assert cli("remove-llm", "newbie")[0] == 0
    code, _, err = cli(*ADD, "--data", newbie_data)
    assert code == 0, err
    assert llms(cli)["newbie"]["status"] == "trained"


@pytest.mark.parametrize("fail_at", ["manifest", "catalogue"])
def test_a_crash_between_steps_never_leaves_a_catalogue_naming_an_llm_without_heads(
        pool_home, newbie_data, cli, monkeypatch, fail_at):
    from mixllm_cli.training import pool

    target = {"manifest": "_write_manifest", "catalogue": "save_catalogue"}[fail_at]

    def crash(*a, **k):
        raise Crash

    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(pool, target, crash)
        cli(*ADD, "--data", newbie_data)
    assert "newbie" not in (pool_home / "models.yaml").read_text()
    code, out, err = cli("route", CODE[0], "--json")
    assert code == 0, err
    assert "newbie" not in {c["llm"] for c in json.loads(out)["candidates"]}
    # And the add can simply be run again.
    assert cli(*ADD, "--data", newbie_data)[0] == 0
    assert llms(cli)["newbie"]["status"] == "trained"


def test_a_crash_during_remove_leaves_a_routable_pool(pool_home, cli, monkeypatch):
    from mixllm_cli.training import pool

    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(pool, "_write_manifest", lambda *a: (_ for _ in ()).throw(Crash()))
        cli("remove-llm", "big")
    code, out, _ = cli("route", CODE[0], "--json", "--lambda", "1000")
    assert code == 0
    assert "big" not in {c["llm"] for c in json.loads(out)["candidates"]}
