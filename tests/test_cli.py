"""End to end through the CLI on the tiny world: train-offline → route → evaluate, and every failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CODE_Q = "write a python function to sum two numbers"
CHAT_Q = "tell me a story about the dog"


@pytest.fixture
def trained(tiny, trained_home):
    return tiny


def test_train_offline_writes_a_verified_artifact_set(tiny, cli, isolated_home):
    code, out, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml")
    assert code == 0, err
    manifest = json.loads((isolated_home / "artifacts" / "manifest.json").read_text())
    assert set(manifest["heads"]) == {"big", "vendor/small", "mid"}
    assert manifest["reference_llm"] == "big"
    lams = [manifest["presets"][b]["lambda"] for b in ("very-low", "low", "medium", "high")]
    assert lams == sorted(lams)
    for entry in manifest["heads"].values():
        for part in ("quality", "length", "ainv"):
            assert (isolated_home / "artifacts" / entry[part]["file"]).is_file()
    assert manifest["versions"]["numpy"]
    assert out == ""  # the summary is for people: stderr


def test_route_follows_the_budget(trained, cli):
    code, out, _ = cli("route", CODE_Q, "--lambda", "1000", "--json", "--catalogue", trained / "models.yaml")
    assert code == 0
    assert json.loads(out)["choice"] == "big"
    code, out, _ = cli("route", CODE_Q, "--lambda", "0", "--json", "--catalogue", trained / "models.yaml")
    assert json.loads(out)["choice"] == "vendor/small"
    # The small model's head learned that it fails code and succeeds at chat.
    def small_quality(q):
        _, out, _ = cli("route", q, "--json", "--catalogue", trained / "models.yaml")
        return next(c for c in json.loads(out)["candidates"] if c["llm"] == "vendor/small")["predicted_quality"]

    assert small_quality(CHAT_Q) > small_quality(CODE_Q) + 0.2


def test_route_json_is_exactly_one_object(trained, cli):
    code, out, _ = cli("route", CODE_Q, "--budget", "low", "--json", "--catalogue", trained / "models.yaml")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["budget"] == "low"
    assert {c["llm"] for c in obj["candidates"]} == {"big", "vendor/small", "mid"}
    assert obj["choice"] == max(obj["candidates"], key=lambda c: c["score"])["llm"]


def test_route_table_for_people(trained, cli):
    code, out, err = cli("route", CODE_Q, "--budget", "high", "--catalogue", trained / "models.yaml")
    assert code == 0
    assert "pred. quality" in out and "choice:" in out
    assert "budget high" in err  # what the preset means goes to stderr


def test_route_jsonl_one_line_per_input_in_order(trained, cli, tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text(
        json.dumps({"id": "a", "query": CODE_Q, "budget": "high"}) + "\n"
        + "{not json\n"
        + json.dumps({"id": "c", "query": ""}) + "\n"
        + json.dumps({"id": 4, "query": CHAT_Q, "budget": "cheapest"}) + "\n"
        + json.dumps({"query": CHAT_Q}) + "\n"
    )
    code, out, err = cli("route", "--jsonl", src, "--catalogue", trained / "models.yaml", "--batch-size", "2")
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert [r.get("line") for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["id"] == "a" and rows[0]["choice"]
    assert "invalid JSON" in rows[1]["error"]
    assert rows[2]["error"].endswith("query: is empty") and rows[2]["id"] == "c"
    assert "unknown budget 'cheapest'" in rows[3]["error"]
    assert rows[4]["budget"] == "medium" and rows[4]["id"] is None
    assert code == 1
    assert err.strip() == f"Error: {src}: 3 line(s) could not be routed; see the error objects in the output"


def test_route_jsonl_reads_a_dataset_or_prompt_file_as_it_is(trained, cli, tiny, tmp_path):
    # A routing dataset (outcomes) and a prompt file (reference, choices) route as they are; the
    # keys route does not read are named once on stderr.
    src = tmp_path / "mixed.jsonl"
    lines = (tiny / "train.jsonl").read_text().splitlines()[:3]
    lines.append(json.dumps({"id": "p1", "query": CHAT_Q, "reference": 7, "choices": ["a", "b"]}))
    src.write_text("\n".join(lines) + "\n")
    code, out, err = cli("route", "--jsonl", src, "--catalogue", trained / "models.yaml")
    assert code == 0, err
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "p1"] and all(r["choice"] for r in rows)
    assert err.count("Warning:") == 1
    assert "'outcomes' (3 lines)" in err and "'reference' (1 lines)" in err and "'choices' (1 lines)" in err


def test_route_jsonl_blank_lines_keep_their_place(trained, cli, tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"query": CODE_Q}) + "\n\n   \n" + json.dumps({"query": CHAT_Q}) + "\n")
    code, out, err = cli("route", "--jsonl", src, "--catalogue", trained / "models.yaml")
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert code == 0, err
    assert [r["line"] for r in rows] == [1, 2, 3, 4]
    assert rows[1] == rows[2] | {"line": 2} == {"id": None, "line": 2, "skipped": "blank line"}
    assert rows[0]["choice"] and rows[3]["choice"]


def test_route_jsonl_strict_stops_at_the_first_bad_line(trained, cli, tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"query": CODE_Q}) + "\n" + json.dumps({"query": 5}) + "\n")
    code, _, err = cli("route", "--jsonl", src, "--strict", "--catalogue", trained / "models.yaml")
    assert code == 1
    assert err.strip() == f"Error: {src}:2: query: must be a string (got int)"


def test_route_jsonl_from_stdin_in_a_pipeline(trained, trained_home):
    lines = "".join(json.dumps({"id": i, "query": q}) + "\n" for i, q in enumerate([CODE_Q, CHAT_Q] * 3))
    env = {**__import__("os").environ, "MIXLLM_HOME": str(trained_home),
           "MIXLLM_DEFAULT_ARTIFACTS": str(trained / "shipped")}
    proc = subprocess.run([sys.executable, "-m", "mixllm_cli", "route", "--jsonl", "-", "--catalogue",
                           str(trained / "models.yaml")], input=lines.encode(), capture_output=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert [r["id"] for r in rows] == [str(i) for i in range(6)]


def test_evaluate_reports_presets_and_baselines(trained, cli):
    code, out, _ = cli("evaluate", trained / "train.jsonl", "--json", "--catalogue", trained / "models.yaml")
    assert code == 0
    report = json.loads(out)
    names = [r["policy"] for r in report["results"]]
    assert any(n.startswith("mixllm high") for n in names)
    assert "always big" in names and "oracle" in names
    by = {r["policy"]: r for r in report["results"]}
    assert by["always big"]["quality_pct_of_best"] == 100.0
    assert by["oracle"]["quality_pct_of_best"] >= 100.0
    high = next(r for r in report["results"] if r["policy"].startswith("mixllm high"))
    cheapest = next(r for r in report["results"] if r["policy"].endswith("(cheapest)"))
    # Half the queries need `big`: the router buys most of its quality for well under its cost.
    assert high["quality_pct_of_best"] > cheapest["quality_pct_of_best"] + 20
    assert high["cost_pct_of_best"] < 60


# ------------------------------------------------------------------ failures: one line, right exit code


def test_empty_query(trained, cli):
    code, out, err = cli("route", "   ", "--catalogue", trained / "models.yaml")
    assert (code, out, err) == (1, "", "Error: query: is empty\n")


def test_huge_query(trained, cli):
    code, _, err = cli("route", "a" * 1_048_576, "--catalogue", trained / "models.yaml")
    assert code == 1
    assert err == "Error: query: is 1,048,576 characters; the limit is 100,000\n"


def test_non_utf8_query_from_argv(trained, trained_home):
    env = {**__import__("os").environ, "MIXLLM_HOME": str(trained_home),
           "MIXLLM_DEFAULT_ARTIFACTS": str(trained / "shipped")}
    proc = subprocess.run([sys.executable, "-m", "mixllm_cli", "route", b"caf\xe9 \xff", "--catalogue",
                           str(trained / "models.yaml")], capture_output=True, env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == "Error: query: is not valid UTF-8"


def test_unknown_budget_is_a_usage_error(trained, cli):
    code, _, err = cli("route", CODE_Q, "--budget", "cheap", "--catalogue", trained / "models.yaml")
    assert code == 2
    assert err == "Error: --budget: unknown budget 'cheap'; choose one of: very-low, low, medium, high\n"


def test_budget_and_lambda_together(trained, cli):
    code, _, err = cli("route", CODE_Q, "--budget", "low", "--lambda", "2", "--catalogue", trained / "models.yaml")
    assert (code, err) == (2, "Error: --budget and --lambda: give one, not both\n")


def test_query_and_jsonl_together(trained, cli):
    code, _, err = cli("route", CODE_Q, "--jsonl", "-", "--catalogue", trained / "models.yaml")
    assert code == 2 and err.startswith("Error: give either a QUERY or --jsonl FILE")


def test_malformed_catalogue(trained, cli, tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("version: 1\nllms:\n  - id: big\n    name: [unclosed\n")
    code, _, err = cli("route", CODE_Q, "--catalogue", bad)
    assert code == 1
    assert err.startswith(f"Error: {bad}:") and "invalid YAML" in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_training_data_names_file_and_line(tiny, cli, tmp_path, isolated_home):
    data = tmp_path / "bad.jsonl"
    good = (tiny / "train.jsonl").read_text().splitlines()
    data.write_text("\n".join(good[:3] + ['{"id": "x", "query": "hi", "outcomes": {"big": {"quality": 2}}}']) + "\n")
    code, _, err = cli("train-offline", data, "--catalogue", tiny / "models.yaml")
    assert code == 1
    assert err.startswith(f"Error: {data}:4: outcomes.big")
    assert not (isolated_home / "artifacts").exists()


def test_missing_data_file(tiny, cli, tmp_path):
    code, _, err = cli("train-offline", tmp_path / "nope.jsonl", "--catalogue", tiny / "models.yaml")
    assert code == 1 and err.startswith("Error: ") and "nope.jsonl" in err


def test_corrupt_head_is_refused_before_unpickling(trained, tiny_trained, cli, tmp_path):
    import shutil

    home = tmp_path / "h"
    shutil.copytree(tiny_trained, home)
    manifest = json.loads((home / "artifacts" / "manifest.json").read_text())
    head = home / "artifacts" / manifest["heads"]["big"]["quality"]["file"]
    head.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a malicious pickle must never be loaded
    code, _, err = cli("route", CODE_Q, "--home", home, "--catalogue", trained / "models.yaml")
    assert code == 1
    assert err.startswith(f"Error: {head}: sha256 mismatch")


def test_missing_manifest(trained, cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty-shipped"
    empty.mkdir()
    monkeypatch.setenv("MIXLLM_DEFAULT_ARTIFACTS", str(empty))
    code, _, err = cli("route", CODE_Q, "--home", tmp_path / "fresh", "--catalogue", trained / "models.yaml")
    assert code == 1
    assert err.startswith(f"Error: {empty / 'manifest.json'}: no artifact manifest")


def test_unknown_head_family(tiny, cli):
    code, _, err = cli("train-offline", tiny / "train.jsonl", "--quality-head", "xgb")
    assert code == 2 and "unknown family 'xgb'" in err


def test_failed_training_keeps_the_previous_set(tiny, cli, isolated_home, monkeypatch):
    code, _, _ = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml")
    assert code == 0
    before = (isolated_home / "artifacts" / "manifest.json").read_bytes()
    from mixllm_cli import artifacts

    calls = {"n": 0}
    real = artifacts.save_head

    def flaky(head, path):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        real(head, path)

    monkeypatch.setattr(artifacts, "save_head", flaky)
    code, _, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml", "--seed", "3")
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1  # one line, no traceback
    assert (isolated_home / "artifacts" / "manifest.json").read_bytes() == before
    leftovers = [p.name for p in isolated_home.iterdir() if p.name not in ("artifacts", "cache", "models.yaml")]  # no staging dirs
    assert leftovers == []


def test_help_is_instant_and_imports_nothing_heavy():
    code = ("import sys, mixllm_cli.cli as c; "
            "heavy = [m for m in ('sklearn', 'onnxruntime', 'rich', 'joblib', 'tokenizers') if m in sys.modules]; "
            "assert not heavy, heavy")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "mixllm_cli", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for command in ("train-offline", "route", "evaluate"):
        assert command in proc.stdout


def test_routing_never_imports_sklearn(trained, tiny_trained):
    code = ("import sys; from mixllm_cli.routing.router import Router; "
            f"r = Router.load({str(tiny_trained)!r}, {str(trained / 'models.yaml')!r}); "
            f"r.route([{CODE_Q!r}], 'low'); "
            "assert 'sklearn' not in sys.modules")
    env = {**__import__("os").environ, "MIXLLM_DEFAULT_ARTIFACTS": str(trained / "shipped")}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


def test_a_missing_optional_extra_is_one_error_line(tiny, cli, monkeypatch):
    """Without scikit-learn (a plain `pip install -e .`), train-offline names the extra to install."""
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.split(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    code, out, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml")
    assert code == 1 and out == ""
    assert err.startswith("Error: this needs the 'train' extra (sklearn") and len(err.strip().splitlines()) == 1


def test_training_on_too_little_data_is_refused_with_the_numbers(tiny, cli, isolated_home, tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text("".join((tiny / "train.jsonl").read_text().splitlines(keepends=True)[:5]))
    code, out, err = cli("train-offline", small, "--catalogue", tiny / "models.yaml")
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: {small}: too little data to train: 5 queries;") and "big: 5" in err
    assert not (isolated_home / "artifacts").exists()  # nothing written


@pytest.mark.parametrize("args", [["route", "hello"],
                                  ["add-llm", "x/y", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1"]])
def test_a_home_that_is_a_file_is_one_error_line(cli, tmp_path, args):
    home = tmp_path / "afile"
    home.write_text("not a folder")
    code, out, err = cli(*args, "--home", home)
    assert (code, out) == (1, "")
    assert err == f"Error: {home}: a file is in the way where mixllm needs a folder (check --home / $MIXLLM_HOME and the disk)\n"
    assert home.read_text() == "not a folder"


def test_a_full_disk_is_one_error_line_and_nothing_half_written(trained, trained_home, cli, monkeypatch):
    import errno
    import os

    before = (trained_home / "models.yaml").read_bytes()

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", full)
    code, out, err = cli("add-llm", "x/y", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1")
    monkeypatch.undo()
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and "No space left on device" in err and err.count("\n") == 1
    assert (trained_home / "models.yaml").read_bytes() == before
    assert cli("route", "hello", "--json")[0] == 0  # the home still works


def test_long_jobs_show_life_without_a_terminal(tiny, cli, isolated_home, monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("mixllm_cli.cli.app"), "PLAIN_AFTER_S", 0.0)
    monkeypatch.delenv("MIXLLM_PROGRESS")  # as if every stage were long
    code, out, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml")
    assert code == 0
    lines = err.splitlines()
    # the tiny data repeats its texts: each distinct one is encoded once (embcache)
    distinct = len({json.loads(x)["query"] for x in (tiny / "train.jsonl").read_text().splitlines()})
    assert any(x.startswith(f"encode: 0/{distinct} (") for x in lines)
    assert any(x.startswith(f"encode: {distinct}/{distinct} in ") for x in lines)
    assert any(x.startswith("heads: 0/") for x in lines) and any(x.startswith("heads: 3/3 in ") for x in lines)
    assert "encode:" not in out  # progress never on stdout



def _progress_as_if_long(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("mixllm_cli.cli.app"), "PLAIN_AFTER_S", 0.0)
    monkeypatch.delenv("MIXLLM_PROGRESS")


def test_the_sweep_with_baselines_reports_each_phase_on_stderr_only(trained_home, tiny, cli, monkeypatch):
    _progress_as_if_long(monkeypatch)
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--sweep", "--lambdas", "6", "--json",
                         "--baselines-from", tiny / "train.jsonl", "--no-cache")
    assert code == 0
    json.loads(out)  # stdout is the report alone
    lines = err.splitlines()
    assert any(x.startswith("encode: ") and " in " in x for x in lines)
    assert any(x.startswith("λ sweep: 0/") for x in lines)
    assert any(x.startswith("λ sweep: ") and " in " in x for x in lines)
    done = [x for x in lines if x.startswith("baselines: ") and " in " in x]
    assert len(done) == 1 and done[0].split()[1].split("/")[0] == done[0].split()[1].split("/")[1]


def test_quiet_silences_progress_but_not_the_result(trained_home, tiny, cli, monkeypatch):
    _progress_as_if_long(monkeypatch)
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--json", "--quiet", "--no-cache")
    assert code == 0 and json.loads(out)["rows"] == 120
    assert "encode:" not in err
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--json", "--no-cache")
    assert code == 0 and "encode: " in err


def test_feedback_rebuild_reports_its_replay(trained_home, cli, monkeypatch):
    for _ in range(3):
        code, out, _ = cli("route", "what is 2+2", "--json")
        assert cli("feedback", json.loads(out)["decision_id"], "--good")[0] == 0
    _progress_as_if_long(monkeypatch)
    code, out, err = cli("feedback", "--rebuild")
    assert code == 0 and json.loads(out)["applied"] == 3
    assert "feedback events: 3/3 in " in err
    code, out, err = cli("feedback", "--rebuild", "-q")
    assert code == 0 and err == ""


def test_a_step_that_reports_nothing_still_shows_life(monkeypatch, capsys):
    """The plain lines repeat the running stage's status from a background tick."""
    import importlib
    import time

    app = importlib.import_module("mixllm_cli.cli.app")
    monkeypatch.setattr(app, "PLAIN_AFTER_S", 0.0)
    monkeypatch.setattr(app, "PLAIN_EVERY_S", 0.0)
    plain = app._PlainLines()
    try:
        plain.update("fitting", 1, 4)
        deadline = time.monotonic() + 60  # waits for the tick, however slow the machine: no timing asserted
        while capsys.readouterr().err.count("fitting: 1/4") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = 0
        while seen < 2 and time.monotonic() < deadline:
            seen += capsys.readouterr().err.count("fitting: 1/4 (")
            time.sleep(0.05)
        assert seen >= 2  # repeated with nothing reported in between
        plain.update("fitting", 4, 4)
        assert "fitting: 4/4 in " in capsys.readouterr().err
    finally:
        plain.close()


@pytest.mark.parametrize("args", [
    ["train-offline", "{tiny}/train.jsonl", "--catalogue", "{tiny}/models.yaml"],
    ["add-llm", "x/y", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1", "--data", "{tiny}/train.jsonl"],
    ["evaluate", "{tiny}/train.jsonl", "--sweep", "--baselines-from", "{tiny}/train.jsonl"],
])
def test_a_missing_extra_stops_before_any_work(args, tiny, cli, isolated_home, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    code, out, err = cli(*[a.format(tiny=tiny) for a in args])
    assert code == 1 and out == ""
    assert err == "Error: this needs the 'train' extra (sklearn is not installed): python -m pip install -e '.[train]'\n"
    assert not (isolated_home / "artifacts").exists() and not (isolated_home / "cache").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["route", "hi", "--strict"], "Error: --strict: goes with --jsonl FILE"),
    (["route", "hi", "--batch-size", "8"], "Error: --batch-size: goes with --jsonl FILE"),
    (["route", "hi", "--no-queue", "--log-queries"], "Error: --no-queue and --log-queries: a dry run records nothing"),
    (["evaluate", "{tiny}/train.jsonl", "--lambdas", "8"], "Error: --lambdas, --baselines-from and --plot go with --sweep"),
    (["evaluate", "{tiny}/train.jsonl", "--no-penalty"], "Error: --no-penalty: goes with a stream replay"),
    (["evaluate", "{tiny}/train.jsonl", "--max-wait-s", "3"], "Error: --max-wait-s: goes with a stream replay"),
    (["evaluate", "{tiny}/train.jsonl", "--sweep", "--rate", "5/s", "--strict-wait"],
     "Error: --sweep and --strict-wait: the sweep replays no hard waiting rule"),
    (["add-llm", "x/y", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "1", "--data", "{tiny}/train.jsonl",
      "--explore-share", "0.2"], "Error: --data and --explore-share: an LLM added with --data is trained"),
    (["collect", "{tiny}/train.jsonl", "--out", "x.jsonl", "--dry-run", "--update-catalogue"],
     "Error: --dry-run and --update-catalogue: a dry run measures nothing"),
])
def test_conflicting_options_are_usage_errors(args, message, trained_home, tiny, cli):
    before = sorted(p.name for p in trained_home.iterdir())
    code, out, err = cli(*[a.format(tiny=tiny) for a in args])
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1
    assert sorted(p.name for p in trained_home.iterdir()) == before  # nothing recorded or written


def test_stream_options_with_a_stream_still_run(trained_home, tiny, cli):
    code, out, _ = cli("evaluate", tiny / "train.jsonl", "--rate", "50/s", "--max-wait-s", "3", "--no-penalty", "--json")
    assert code == 0 and json.loads(out)["penalty"] is False
