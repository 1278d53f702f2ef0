"""What a crash leaves behind gets finished or cleaned (issue 16, item 8): an interrupted
`remove-llm` is finished by running it again; temp files and staging folders of killed writers
are swept by the next write in their folder, and never a live writer's; a replica restarted
after feedback was committed but not yet folded serves it from its first request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import CHAT, CODE

from mixllm_cli import files

ADD = ["add-llm", "newbie", "--input-usd-per-mtok", "0.5", "--output-usd-per-mtok", "1.5"]


class Crash(BaseException):
    """Stands in for the process being killed between two writes (nothing may catch it)."""


def crash(*args, **kwargs):
    raise Crash


def manifest_of(home):
    return json.loads((home / "artifacts" / "manifest.json").read_text())


def route_candidates(cli, *args):
    code, out, err = cli("route", CODE[0], "--json", "--lambda", "1000", *args)
    assert code == 0, err
    return {c["llm"] for c in json.loads(out)["candidates"]}


@pytest.fixture
def newbie_data(tmp_path):
    path = tmp_path / "newbie.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            out = {"quality": float(i % 2), "prompt_tokens": 8, "response_tokens": 50, "cost_usd": 1e-6}
            f.write(json.dumps({"id": f"n{i}", "query": (CODE + CHAT)[i % 10], "outcomes": {"newbie": out}}) + "\n")
    return path


# ---------------------------------------------------------------- an interrupted remove-llm


@pytest.mark.parametrize("llm", ["big", "newbie-cold"])
@pytest.mark.parametrize("step", ["save_catalogue", "_write_manifest", "_delete_unreferenced"])
def test_an_interrupted_remove_llm_is_finished_by_running_it_again(trained_home, cli, monkeypatch, llm, step):
    """remove-llm writes the archive, the catalogue, the manifest, then deletes the files: killed
    before any of the last three, running it again finishes the job with the same archive."""
    from mixllm_cli.training import pool

    if llm == "newbie-cold":
        llm = "newbie"
        assert cli(*ADD)[0] == 0
    entry = manifest_of(trained_home)["heads"].get(llm, {})
    own = [e["file"] for k, e in entry.items() if k in ("quality", "length", "ainv", "rows")]
    own = [f for f in own if sum(f == e[k]["file"] for e in manifest_of(trained_home)["heads"].values()
                                 for k in ("quality", "length", "ainv") if k in e) == 1]  # not a shared A⁻¹
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(pool, step, crash)
        cli("remove-llm", llm)
    code, out, err = cli("remove-llm", llm)
    if not own and step == "_delete_unreferenced":
        # a cold LLM has no files: with the manifest written, the first run had done everything
        assert code == 1 and err.startswith(f"Error: unknown LLM '{llm}'")
        out = json.dumps({"llm": llm, "archive": manifest_of(trained_home)["history"][-1]["archive"]})
    else:
        assert code == 0, err
    report = json.loads(out)
    assert report["llm"] == llm
    manifest = manifest_of(trained_home)
    assert llm not in manifest["heads"] and llm not in manifest.get("cold", {})
    assert llm not in (trained_home / "models.yaml").read_text()
    for f in own:
        assert not (trained_home / "artifacts" / f).exists()
    (archive,) = (trained_home / "archive").iterdir()  # the first run's, reused
    assert report["archive"] == str(archive) == manifest["history"][-1]["archive"]
    for f in own:
        assert (archive / f.split("/")[-1]).is_file()
    assert llm not in route_candidates(cli)
    # and now it is gone: a third run says so, as for any unknown LLM
    code, _, err = cli("remove-llm", llm)
    assert code == 1 and err.startswith(f"Error: unknown LLM '{llm}'")


def test_remove_llm_of_an_unknown_id_still_says_unknown(trained_home, cli):
    code, _, err = cli("remove-llm", "nope")
    assert code == 1 and err == "Error: unknown LLM 'nope'; known: big, vendor/small, mid\n"


# ---------------------------------------------------------------- leftovers of killed writers


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def leave(path, age_s: float = 0.0, folder: bool = False):
    """A leftover at `path` (a folder holding a file, or a file), `age_s` old."""
    if folder:
        (path / "heads").mkdir(parents=True)
        (path / "heads" / "x.joblib").write_bytes(b"half a head")
    else:
        path.write_bytes(b"half a file")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_the_next_write_sweeps_what_killed_writers_left_and_nothing_else(trained_home, cli, newbie_data, live_pid):
    host, dead = files._host(), dead_pid()
    arts, heads = trained_home / "artifacts", trained_home / "artifacts" / "heads"
    gone = [
        leave(arts / f".manifest.json.p{dead}h{host}.abcd1234.tmp"),  # a killed manifest write
        leave(heads / f".newbie.quality.joblib.p{dead}h{host}.abcd1234.tmp"),
        leave(heads / f".fit.p{dead}h{host}.abcd1234.staging", folder=True),  # a killed add-llm's scratch
        leave(trained_home / f".artifacts.p{dead}h{host}.abcd1234.staging", folder=True),  # a killed train-offline's
        leave(trained_home / f".models.yaml.p{dead}h{host}.abcd1234.tmp"),
        # from versions that named no owner: only old ones, and only those of the file being written
        leave(arts / ".manifest.json.qrst7890.tmp", age_s=2 * files.STALE_TMP_S),
        leave(heads / ".fit-k2j4h5g6", age_s=2 * files.STALE_STAGING_S, folder=True),
    ]
    kept = [
        leave(arts / f".manifest.json.p{live_pid}h{host}.efgh5678.tmp"),  # a live writer's
        leave(arts / f".manifest.json.p{os.getpid()}h{host}.ijkl9012.tmp"),  # this process's (another thread's)
        leave(trained_home / f".artifacts.p{live_pid}h{host}.efgh5678.staging", folder=True),
        leave(arts / f".manifest.json.p{dead}h{'0' * 8 if host != '0' * 8 else '1' * 8}.mnop3456.tmp"),  # another host's
        leave(arts / ".manifest.json.uvwx1234.tmp"),  # no owner, fresh: maybe a live older version's
        leave(arts / ".notes.tmp", age_s=10 * files.STALE_STAGING_S),  # not ours at all
        leave(arts / ".features.npz.abcd1234.tmp", age_s=2 * files.STALE_TMP_S),  # no owner, and not written now
    ]
    code, _, err = cli(*ADD, "--data", newbie_data)  # writes heads, the manifest and the catalogue
    assert code == 0, err
    assert [p for p in gone if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert "newbie" in route_candidates(cli)


def test_train_offline_sweeps_a_killed_runs_staging_folder(tiny, cli, tmp_path, live_pid):
    home = tmp_path / "h"
    home.mkdir()
    host = files._host()
    dead = leave(home / f".artifacts.p{dead_pid()}h{host}.abcd1234.staging", folder=True)
    old = leave(home / ".artifacts.zyxw9876.staging", age_s=2 * files.STALE_STAGING_S, folder=True)
    live = leave(home / f".artifacts.p{live_pid}h{host}.efgh5678.staging", folder=True)
    code, _, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml", "--home", home)
    assert code == 0, err
    assert not dead.exists() and not old.exists() and live.exists()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == [live.name]


def test_a_writes_temp_file_names_its_owner_and_is_gone_after(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    files.atomic_write_bytes(target, b"x")
    assert seen[0].startswith(f".f.json.{files.owner_tag()}.") and seen[0].endswith(".tmp")
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ---------------------------------------------------------------- a restarted replica


def test_a_restarted_replica_serves_feedback_committed_just_before_the_crash(trained_home, store_url):
    """Feedback committed, then the process died before folding it (no catch-up ran): the next
    Service folds it at start-up, so its very first request sees it."""
    from mixllm_cli.learning.feedback import parse_feedback, record_feedback
    from mixllm_cli.routing.request import RouteRequest
    from mixllm_cli.routing.router import Router
    from mixllm_cli.serve.app import Service
    from mixllm_cli.state import open_store

    store = open_store(trained_home, store_url)
    try:
        router = Router.load(trained_home, store=store)
        (decision,) = router.route_batch([RouteRequest(CODE[0])], state=store)
        before = router.predict([CODE[0]])
        fb = parse_feedback({"id": decision.decision_id, "quality": 1.0, "response_tokens": 40}, "feedback")
        (result,) = record_feedback(router, store, [("feedback", fb)], trained_home, apply=False)  # then: killed
        assert result.status == "recorded"
        assert Router.load(trained_home, store=store).online is None  # nothing folded yet
    finally:
        store.close()
    service = Service(trained_home, store_url=store_url)
    try:
        online = service.router.online
        assert online is not None and online.last_seq >= 1
        after = service.router.predict([CODE[0]])
        j = list(after.llm_ids).index(decision.choice)
        assert after.uncertainty[0, j] < before.uncertainty[0, j]  # the chosen LLM has seen this query now
    finally:
        service.close()
