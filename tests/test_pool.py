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


def test_removing_the_last_trained_llm_needs_force(pool_home, cli):
    assert cli("add-llm", "newbie", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1")[0] == 0  # cold
    assert cli("remove-llm", "big")[0] == 0
    assert cli("remove-llm", "mid")[0] == 0
    before = (pool_home / "models.yaml").read_bytes()
    code, out, err = cli("remove-llm", "vendor/small")
    assert (code, out) == (2, "") and "last LLM with trained heads" in err and "--force" in err
    assert (pool_home / "models.yaml").read_bytes() == before  # nothing touched
    code, out, err = cli("remove-llm", "vendor/small", "--force")
    assert code == 0, err
    assert json.loads(out)["llm"] == "vendor/small"


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


# --- add-llm with an endpoint, set-endpoint ------------------------------------------------------

ENDPOINT = ["--base-url", "https://api.example.com/v1", "--api-key-env", "NEWBIE_KEY"]


def entry_of(home, llm_id):
    import yaml

    return next(e for e in yaml.safe_load((home / "models.yaml").read_text())["llms"] if e["id"] == llm_id)


def test_add_llm_states_only_its_flags_and_llms_marks_the_defaults(pool_home, cli, monkeypatch):
    monkeypatch.delenv("NEWBIE_KEY", raising=False)
    code, out, err = cli(*ADD, *ENDPOINT, "--ttft-ms", "300")
    assert code == 0, err
    assert err == ("Warning: NEWBIE_KEY is not set in this environment; `mixllm serve` and `mixllm collect` read "
                   "newbie's API key from it\n")
    assert json.loads(out)["status"] == "cold"
    assert entry_of(pool_home, "newbie") == {"id": "newbie", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5,
                                             "ttft_ms": 300, "base_url": "https://api.example.com/v1",
                                             "api_key_env": "NEWBIE_KEY"}
    row = llms(cli)["newbie"]
    assert row["defaults"] == ["name", "output_tokens_per_s", "slots"]
    assert (row["ttft_ms"], row["output_tokens_per_s"], row["slots"]) == (300, 50, 4)
    assert row["sources"]["slots"] == "default" and row["api_key_set"] is False
    assert llms(cli)["big"]["defaults"] == []
    code, out, _ = cli("llms")
    line = next(x for x in out.splitlines() if x.lstrip().startswith("newbie"))
    assert "50 (default)" in line and "4 (default)" in line and "300 (default)" not in line
    assert "  newbie: https://api.example.com/v1, key in $NEWBIE_KEY (not set)\n" in out


def test_endpoint_commands_never_print_or_store_the_key(pool_home, cli, monkeypatch):
    secret = "sk-test-" + "s3cr3t" * 6
    monkeypatch.setenv("NEWBIE_KEY", secret)
    runs = [cli(*ADD, *ENDPOINT), cli("set-endpoint", "big", *ENDPOINT), cli("llms"), cli("llms", "--json")]
    assert all(code == 0 for code, _, _ in runs)
    assert runs[0][2] == "" and runs[1][2] == ""  # the variable is set: no warning
    for _, out, err in runs:
        assert secret not in out + err
    assert secret not in (pool_home / "models.yaml").read_text()
    assert llms(cli)["big"]["api_key_set"] is True


def test_set_endpoint_sets_changes_and_clears(pool_home, cli):
    from mixllm_cli.catalogue import load_catalogue

    fingerprint = load_catalogue(pool_home / "models.yaml").fingerprint()
    code, out, err = cli("set-endpoint", "mid", "--base-url", "http://127.0.0.1:9/v1", "--upstream-model", "m-1")
    assert code == 0, err
    assert json.loads(out) == {"llm": "mid", "base_url": "http://127.0.0.1:9/v1", "api_key_env": None,
                               "upstream_model": "m-1", "catalogue": str(pool_home / "models.yaml")}
    assert err == ""
    # a flag not given keeps its value
    assert cli("set-endpoint", "mid", "--base-url", "https://mid.example.com/v1")[0] == 0
    assert entry_of(pool_home, "mid")["upstream_model"] == "m-1"
    assert entry_of(pool_home, "mid")["base_url"] == "https://mid.example.com/v1"
    # --clear with flags: exactly the flags given
    assert cli("set-endpoint", "mid", "--clear", "--base-url", "https://other.example.com/v1")[0] == 0
    mid = entry_of(pool_home, "mid")
    assert mid["base_url"] == "https://other.example.com/v1" and "upstream_model" not in mid
    # --clear alone: gone, and the entry reads as before
    assert cli("set-endpoint", "mid", "--clear")[0] == 0
    assert not {"base_url", "api_key_env", "upstream_model"} & set(entry_of(pool_home, "mid"))
    assert load_catalogue(pool_home / "models.yaml").fingerprint() == fingerprint  # trained artifacts stay valid
    code, out, _ = cli("route", CODE[0], "--json")
    assert code == 0 and json.loads(out)["choice"]


@pytest.mark.parametrize("args, code, message", [
    (["set-endpoint", "mid", "--base-url", "api.example.com"],
     2, "Error: --base-url: must be an http(s) URL like https://api.example.com/v1 (got 'api.example.com')"),
    (["set-endpoint", "mid", "--base-url", "https://u:sk-x@api.example.com/v1"],
     2, "Error: --base-url: must not hold credentials (user:key@); name the key's environment variable in api_key_env"),
    (["set-endpoint", "mid", "--api-key-env", "sk-live-123"],
     2, ("Error: --api-key-env: must be the NAME of an environment variable holding the key, like OPENAI_API_KEY "
        "(got 'sk-live-123')")),
    (["set-endpoint", "mid", "--api-key-env", "MID_KEY"], 2, "Error: --base-url: mid has no endpoint yet; give its --base-url"),
    (["set-endpoint", "mid"], 2, "Error: give --base-url, --api-key-env or --upstream-model to set, or --clear"),
    (["set-endpoint", "nope", "--base-url", "https://a.example.com/v1"], 1, "Error: unknown LLM 'nope'; known: big"),
    ([*ADD, "--base-url", "ftp://x"], 2, "Error: --base-url: must be an http(s) URL"),
])
def test_endpoint_refusals_change_nothing(pool_home, cli, args, code, message):
    before = snapshot(pool_home)
    got, out, err = cli(*args)
    assert (got, out) == (code, "")
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert snapshot(pool_home) == before


def test_set_endpoint_first_change_copies_the_shipped_catalogue(tiny, cli, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped.yaml"
    shutil.copy(tiny / "models.yaml", shipped)
    monkeypatch.setenv("MIXLLM_DEFAULT_CATALOGUE", str(shipped))
    home = tmp_path / "fresh"
    code, _, err = cli("set-endpoint", "big", "--base-url", "http://10.0.0.5/v1", "--api-key-env", "BIG_KEY",
                       "--home", home)
    assert code == 0
    assert "plain http to 10.0.0.5: its API key would cross the network unencrypted" in err
    assert shipped.read_bytes() == (tiny / "models.yaml").read_bytes()
    assert entry_of(home, "big")["base_url"] == "http://10.0.0.5/v1"
    assert entry_of(home, "mid") == entry_of(tiny, "mid")  # the others as the shipped file states them


# --- fit-llm: heads for a cold (or warm) LLM from collected outcomes ------------------------------


def head_files(home, llm_id):
    manifest = json.loads((home / "artifacts" / "manifest.json").read_text())
    entry = manifest["heads"][llm_id]
    return {k: entry[k]["file"] for k in ("quality", "length", "ainv", "rows") if k in entry}


def others_unchanged(before, after, llm_id):
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    stem = llm_id.replace("/", "__")
    return {k for k in changed if not k.startswith(f"artifacts/heads/{stem}.")} == {"artifacts/manifest.json"}


def test_fit_llm_gives_a_cold_llm_heads_and_touches_nothing_else(pool_home, newbie_data, cli):
    assert cli(*ADD)[0] == 0
    assert llms(cli)["newbie"]["status"] == "cold"
    before = snapshot(pool_home)
    code, out, err = cli("fit-llm", "newbie", "--data", newbie_data)
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "trained" and report["was"] == "cold"
    assert report["outcomes"] == 80 and report["outcomes_with_quality"] == 80 and report["archive"] is None
    after = snapshot(pool_home)
    assert others_unchanged(before, after, "newbie")  # the catalogue too
    assert set(head_files(pool_home, "newbie").values()) == {
        "heads/newbie.quality.joblib", "heads/newbie.length.joblib", "heads/newbie.ainv.npy", "heads/newbie.rows.npz"}
    manifest = json.loads((pool_home / "artifacts" / "manifest.json").read_text())
    assert "newbie" not in manifest.get("cold", {}) and manifest["history"][-1]["op"] == "fit-llm"
    row = llms(cli)["newbie"]
    assert row["status"] == "trained" and row["outcomes"] == 80
    _, out, _ = cli("route", CODE[0], "--json")
    code_q = {c["llm"]: c for c in json.loads(out)["candidates"]}["newbie"]
    _, out, _ = cli("route", CHAT[0], "--json")
    chat_q = {c["llm"]: c for c in json.loads(out)["candidates"]}["newbie"]
    assert code_q["cold"] is False and code_q["score"] is not None  # offered on every query now
    assert code_q["predicted_quality"] > chat_q["predicted_quality"] + 0.2


def test_fit_llm_retrains_a_warm_llm_beside_its_old_heads(pool_home, tmp_path, cli):
    """`mid` (trained offline) gets heads from new outcomes: new files, old ones archived then deleted."""
    old = head_files(pool_home, "mid")
    old_bytes = {k: (pool_home / "artifacts" / f).read_bytes() for k, f in old.items()}
    data = tmp_path / "mid.jsonl"
    with open(data, "w") as f:
        for i in range(40):
            out = {"quality": 1.0 if i % 2 else 0.0, "prompt_tokens": 8, "response_tokens": 30, "cost_usd": 1e-5}
            f.write(json.dumps({"id": f"m{i}", "query": (CODE if i % 2 else CHAT)[i % 5], "outcomes": {"mid": out}}) + "\n")
    before = snapshot(pool_home)
    code, out, err = cli("fit-llm", "mid", "--data", data)
    assert code == 0, err
    report = json.loads(out)
    assert report["was"] == "trained" and report["outcomes"] == 40
    assert others_unchanged(before, snapshot(pool_home), "mid")
    new = head_files(pool_home, "mid")
    assert not set(new.values()) & set(old.values())
    for f in old.values():
        assert not (pool_home / "artifacts" / f).exists()
    archive = pool_home / "archive"
    (folder,) = list(archive.iterdir())
    for k, f in old.items():
        assert (folder / f.split("/")[-1]).read_bytes() == old_bytes[k]
    _, out, _ = cli("route", CODE[0], "--json")
    mid = {c["llm"]: c for c in json.loads(out)["candidates"]}["mid"]
    _, out, _ = cli("route", CHAT[0], "--json")
    assert mid["predicted_quality"] > {c["llm"]: c for c in json.loads(out)["candidates"]}["mid"]["predicted_quality"]
    # and again: the names alternate back to free ones, never onto a file the manifest lists
    assert cli("fit-llm", "mid", "--data", data)[0] == 0
    assert all((pool_home / "artifacts" / f).is_file() for f in head_files(pool_home, "mid").values())


def test_a_crash_during_fit_llm_leaves_the_old_heads_serving(pool_home, newbie_data, cli, monkeypatch):
    from mixllm_cli.training import pool

    assert cli(*ADD, "--data", newbie_data)[0] == 0
    _, out, _ = cli("route", CODE[0], "--json")
    before = {c["llm"]: c["predicted_quality"] for c in json.loads(out)["candidates"]}
    flipped = newbie_data.parent / "flipped.jsonl"
    flipped.write_text(newbie_data.read_text().replace('"quality": 1.0', "Q").replace('"quality": 0.0', '"quality": 1.0')
                       .replace("Q", '"quality": 0.0'))
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(pool, "_write_manifest", lambda *a: (_ for _ in ()).throw(Crash()))
        cli("fit-llm", "newbie", "--data", flipped)
    code, out, err = cli("route", CODE[0], "--json")
    assert code == 0, err  # every listed file still matches its sha256
    assert {c["llm"]: c["predicted_quality"] for c in json.loads(out)["candidates"]} == before


def test_fit_llm_refuses_too_few_outcomes_and_the_llm_stays_cold(pool_home, newbie_data, cli, tmp_path):
    assert cli(*ADD)[0] == 0
    few = tmp_path / "few.jsonl"
    few.write_text("".join(newbie_data.read_text().splitlines(keepends=True)[:19]))
    before = snapshot(pool_home)
    code, out, err = cli("fit-llm", "newbie", "--data", few)
    assert (code, out) == (1, "")
    assert err == (f"Error: {few}: 19 outcomes with a quality for LLM 'newbie'; its heads need at least 20 (fewer "
                   "give a constant head, worse than staying cold); collect more, e.g. "
                   "`mixllm collect PROMPTS.jsonl --llms newbie`\n")
    assert snapshot(pool_home) == before and llms(cli)["newbie"]["status"] == "cold"
    code, _, err = cli("fit-llm", "nope", "--data", few)
    assert code == 1 and err.startswith("Error: unknown LLM 'nope'")
    assert cli("remove-llm", "newbie")[0] == 0
    code, _, err = cli(*ADD, "--data", few)  # add-llm --data applies the same minimum
    assert code == 1 and "19 outcomes with a quality for LLM 'newbie'" in err
    assert "newbie" not in llms(cli)


# --- train-offline --catalogue X --home H keeps X in H --------------------------------------------

MINIMAL_X = """\
# my pool: ids and prices only
version: 1
llms:
  - {id: big, input_usd_per_mtok: 10, output_usd_per_mtok: 30}
  - {id: vendor/small, input_usd_per_mtok: 0.2, output_usd_per_mtok: 0.2}
  - {id: mid, input_usd_per_mtok: 1, output_usd_per_mtok: 2}
"""


def test_train_offline_keeps_its_catalogue_in_the_home(tiny, cli, tmp_path):
    x = tmp_path / "mine.yaml"
    x.write_text(MINIMAL_X)
    home = tmp_path / "h"
    home.mkdir()
    (home / "models.yaml").write_text((tiny / "models.yaml").read_text().replace("Big model", "Old big"))
    code, out, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", x, "--home", home)
    assert code == 0, err
    assert (home / "models.yaml").read_text() == MINIMAL_X  # kept as written, comments too
    (previous,) = (home / "archive").iterdir()
    assert "Old big" in previous.read_text()
    assert f"catalogue: {x} is now {home / 'models.yaml'} (the previous one is archived as {previous})" in err
    # every later command in H uses it, without --catalogue
    code, out, err = cli("llms", "--json", "--home", home)
    assert code == 0 and err == ""
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == {"big", "vendor/small", "mid"} and rows["mid"]["defaults"] == [
        "name", "ttft_ms", "output_tokens_per_s", "slots"]
    code, out, err = cli("route", CODE[0], "--json", "--lambda", "1000", "--home", home)
    assert code == 0, err
    assert json.loads(out)["choice"] == "big"
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--json", "--home", home)
    assert code == 0, err
    # training again from the home's own catalogue leaves it alone
    code, _, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", home / "models.yaml", "--home", home)
    assert code == 0 and "is now" not in err
    assert len(list((home / "archive").iterdir())) == 1


def test_a_crash_between_publish_and_keep_is_reported_and_repaired(tiny, cli, tmp_path, monkeypatch):
    """The documented window: the new set is published, the catalogue not yet written."""
    from mixllm_cli.training import pool

    x = tmp_path / "mine.yaml"
    x.write_text(MINIMAL_X)
    home = tmp_path / "h"
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(pool, "keep_catalogue", lambda *a, **k: (_ for _ in ()).throw(Crash()))
        cli("train-offline", tiny / "train.jsonl", "--catalogue", x, "--home", home)
    assert (home / "artifacts" / "manifest.json").is_file() and not (home / "models.yaml").exists()
    code, _, err = cli("llms", "--home", home)  # the shipped catalogue is in use: says so
    assert code == 0 and err.startswith("Warning: ") and f"names LLMs {home / 'artifacts'} has no heads for" in err
    assert "`mixllm train-offline DATA.jsonl --catalogue MODELS.yaml`" in err
    code, _, err = cli("route", CODE[0], "--home", home)
    assert code == 1 and "no trained heads for any LLM of the catalogue" in err
    assert cli("train-offline", tiny / "train.jsonl", "--catalogue", x, "--home", home)[0] == 0
    code, _, err = cli("llms", "--home", home)
    assert code == 0 and err == ""
    assert cli("route", CODE[0], "--home", home)[0] == 0


def test_failed_training_keeps_the_homes_catalogue(tiny, cli, tmp_path):
    x = tmp_path / "mine.yaml"
    x.write_text(MINIMAL_X)
    home = tmp_path / "h"
    home.mkdir()
    (home / "models.yaml").write_text((tiny / "models.yaml").read_text())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "query": "hi", "outcomes": {"big": {"quality": 2}}}\n')
    code, _, _ = cli("train-offline", bad, "--catalogue", x, "--home", home)
    assert code == 1
    assert (home / "models.yaml").read_text() == (tiny / "models.yaml").read_text()
