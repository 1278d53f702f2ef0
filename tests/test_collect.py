"""`mixllm collect` against the fake OpenAI-compatible provider (tests/fake_openai.py, loopback only).

The fake answers arithmetic; whether each fake LLM is right is a hash of (model, prompt), which
`fake_openai.is_right` tells the tests, so every outcome can be checked exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai import (
    PRICES,
    FakeOpenAI,
    answer_text,
    catalogue_yaml,
    is_right,
    serve_fake,
    write_prompts,
)

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.collect.journal import Journal, JournalBusy, journal_path_for
from mixllm_cli.collect.prompts import read_prompts
from mixllm_cli.collect.runner import CollectOptions, collect
from mixllm_cli.dataset import read_dataset
from mixllm_cli.errors import DataError, UsageError

ROOT = Path(__file__).resolve().parent.parent
FAST = {"backoff_s": 0.01}  # retries without the real backoff's seconds


@pytest.fixture
def fake():
    with serve_fake() as (url, app):
        yield url, app


def world(tmp_path: Path, url: str, n: int = 12, hard: float = 0.5, models: dict[str, str] | None = None,
          slots: int = 32, **kw) -> tuple[Path, Path, list[dict]]:
    """A prompt file of n arithmetic items and a catalogue of the fakes; returns (prompts, catalogue, items)."""
    items = write_prompts(tmp_path / "prompts.jsonl", n, hard_fraction=hard, seed=3)
    (tmp_path / "models.yaml").write_text(catalogue_yaml(url, models=models, slots=slots, **kw))
    return tmp_path / "prompts.jsonl", tmp_path / "models.yaml", items


def run_collect(prompts: Path, cat: Path, out: Path, **kw):
    llms = kw.pop("llms", None)
    return collect(prompts, out, load_catalogue(cat), llms=llms, options=CollectOptions(**{**FAST, **kw}))


def journal_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in journal_path_for(out).read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# outcomes


def test_outcomes_tokens_and_costs_are_the_fakes_at_catalogue_prices(fake, tmp_path):
    url, app = fake
    prompts, cat, items = world(tmp_path, url, n=16)
    out = tmp_path / "data.jsonl"
    report = run_collect(prompts, cat, out)
    assert report.complete and report.answered_run == 48 and report.failed_run == 0
    records = read_dataset(out)
    assert [r.id for r in records] == [it["id"] for it in items]
    total = 0.0
    for rec, item in zip(records, items, strict=True):
        assert rec.query == item["query"] and rec.task == item["task"]
        assert set(rec.outcomes) == {"fake-strong", "fake-mid", "fake-cheap"}
        for llm, o in rec.outcomes.items():
            assert o.quality == (1.0 if is_right(llm, item["query"]) else 0.0)
            assert o.grader == "number"
            assert o.prompt_tokens == len(item["query"].split()) + 3
            assert o.response_tokens == len(answer_text(llm, item["query"]).split())
            p_in, p_out = PRICES[llm]
            assert o.cost_usd == pytest.approx((o.prompt_tokens * p_in + o.response_tokens * p_out) / 1e6)
            assert o.latency_ms >= o.ttft_ms >= 0
            assert o.answer is None  # only with keep_answers
            total += o.cost_usd
    assert report.spent_usd_total == pytest.approx(total)
    # Every call streamed with usage asked for, and a max_tokens.
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} and b["max_tokens"] == 1024
               for b in app.bodies)
    # The hard items tell the fakes apart: the cheap one is worse there.
    by = {s.llm: s for s in report.per_llm}
    assert by["fake-strong"].mean_quality > by["fake-cheap"].mean_quality


def test_messages_lines_send_every_message_and_route_on_the_last_user_text(fake, tmp_path):
    url, app = fake
    (tmp_path / "models.yaml").write_text(catalogue_yaml(url, models={"m": "fake-mid"}))
    (tmp_path / "p.jsonl").write_text(json.dumps({
        "id": "chat", "reference": 7, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is 3 plus 4?"}]}]}) + "\n")
    run_collect(tmp_path / "p.jsonl", tmp_path / "models.yaml", tmp_path / "d.jsonl")
    (rec,) = read_dataset(tmp_path / "d.jsonl")
    assert rec.query == "What is 3 plus 4?"
    assert app.bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rec.outcomes["m"].quality == (1.0 if is_right("fake-mid", "What is 3 plus 4?") else 0.0)


def test_no_stream_and_no_usage(fake, tmp_path):
    url, _ = fake
    prompts, cat, _ = world(tmp_path, url, n=6, models={"whole": "fake-cheap", "silent": "fake-mid@nousage"})
    report = run_collect(prompts, cat, tmp_path / "d.jsonl", stream=False, max_tokens=50)
    records = read_dataset(tmp_path / "d.jsonl")
    assert all(r.outcomes["whole"].ttft_ms is None and r.outcomes["whole"].latency_ms > 0 for r in records)
    by = {s.llm: s for s in report.per_llm}
    assert by["silent"].estimated_usage == 6 and by["whole"].estimated_usage == 0
    # Without usage the tokens are estimated and the spend counted at the worst case (50 tokens out).
    silent = [r for r in journal_records(tmp_path / "d.jsonl") if r["t"] == "answer" and r["llm"] == "silent"]
    assert all(r["usage"] == "estimated" and r["spend_usd"] >= 50 * 2.0 / 1e6 for r in silent)


# ---------------------------------------------------------------------------------------------
# failures


def test_429_500_hangs_and_cut_streams_are_retried(tmp_path):
    app = FakeOpenAI(retry_after="0.2")
    with serve_fake(app) as (url, _):
        models = {"a": "fake-cheap@429x2", "b": "fake-mid@500x1", "c": "fake-strong@hangx1", "d": "fake-cheap@cutx1"}
        prompts, cat, items = world(tmp_path, url, n=3, models=models)
        started = time.monotonic()
        report = run_collect(prompts, cat, tmp_path / "d.jsonl", timeout_s=0.5, backoff_s=0.0)
        elapsed = time.monotonic() - started
    assert report.complete, report.problem()
    for item in items:
        q = item["query"]
        assert app.calls[("fake-cheap@429x2", q)] == 3
        assert app.calls[("fake-mid@500x1", q)] == 2
        assert app.calls[("fake-strong@hangx1", q)] == 2
        assert app.calls[("fake-cheap@cutx1", q)] == 2
    assert elapsed >= 0.4  # each 429'd pair waited out Retry-After: 0.2 twice
    # The cut streams and timed-out calls may have been billed: their worst case is journaled.
    spends = [r for r in journal_records(tmp_path / "d.jsonl") if r["t"] == "spend"]
    assert {r["llm"] for r in spends} == {"c", "d"} and len(spends) == 6


def test_a_failing_llm_is_given_up_reported_and_left_absent(fake, tmp_path):
    url, app = fake
    prompts, cat, _ = world(tmp_path, url, n=10, models={"ok": "fake-cheap", "down": "fake-mid@500"}, slots=1)
    report = run_collect(prompts, cat, tmp_path / "d.jsonl", max_retries=2)
    records = read_dataset(tmp_path / "d.jsonl")
    assert len(records) == 10 and all(set(r.outcomes) == {"ok"} for r in records)  # absent, never scored 0
    down = {s.llm: s for s in report.per_llm}["down"]
    assert down.failed_run == 5 and down.skipped_run == 5 and down.missing == 10
    assert "5 prompts in a row failed" in down.given_up and "500" in down.given_up
    assert sum(n for (m, _), n in app.calls.items() if m == "fake-mid@500") == 15  # 5 pairs x 3 attempts
    assert not report.complete and "down 10" in report.problem()


def test_a_wrong_key_stops_the_llm_at_once_and_is_never_printed(tmp_path, cli, monkeypatch):
    secret = "sk-wrong-0123456789abcdef"
    with serve_fake(FakeOpenAI(api_key="sk-right-key")) as (url, app):
        prompts, cat, _ = world(tmp_path, url, n=5, models={"locked": "fake-cheap"}, slots=1, api_key_env="FAKE_KEY")
        monkeypatch.setenv("FAKE_KEY", secret)
        code, out, err = cli("collect", prompts, "--out", tmp_path / "d.jsonl", "--catalogue", cat, "--json")
        assert app.total == 1  # 401: the LLM is given up, not retried
    assert code == 1
    assert "locked: given up: LLM 'locked' answered 401" in err
    assert secret not in err and secret not in out and "sk-wrong" not in err
    assert json.loads(out)["per_llm"][0]["missing"] == 5
    monkeypatch.delenv("FAKE_KEY")
    code, _, err = cli("collect", prompts, "--out", tmp_path / "d.jsonl", "--catalogue", cat)
    assert code == 1 and "the environment variable FAKE_KEY (api_key_env) is not set" in err


# ---------------------------------------------------------------------------------------------
# the spend cap


def test_the_spend_cap_is_never_passed_and_stops_the_run(fake, tmp_path, cli):
    url, app = fake
    prompts, cat, _ = world(tmp_path, url, n=40, hard=0.0, models={"strong": "fake-strong"})
    out = tmp_path / "d.jsonl"
    args = ["collect", prompts, "--out", out, "--catalogue", cat, "--max-tokens", "64", "--max-usd", "0.004"]
    code, _, err = cli(*args)
    assert code == 1 and "Error: the spend cap --max-usd 0.004 stopped the run" in err
    records = read_dataset(out)
    spent = sum(o.cost_usd for r in records for o in r.outcomes.values())
    assert 0 < len(records) < 40 and spent <= 0.004
    calls_before = app.total
    # The cap covers every run of the journal: the same command again spends nothing more past it.
    code, _, err = cli(*args)
    assert code == 1 and app.total - calls_before <= 1
    assert sum(o.cost_usd for r in read_dataset(out) for o in r.outcomes.values()) <= 0.004
    code, _, err = cli(*args[:-1], "1")
    assert code == 0, err
    assert len(read_dataset(out)) == 40


def test_dry_run_calls_nothing_and_writes_nothing(fake, tmp_path, cli):
    url, app = fake
    prompts, cat, _ = world(tmp_path, url, n=5)
    code, out, err = cli("collect", prompts, "--out", tmp_path / "d.jsonl", "--catalogue", cat, "--dry-run", "--json")
    assert code == 0 and app.total == 0
    assert not (tmp_path / "d.jsonl").exists() and not journal_path_for(tmp_path / "d.jsonl").exists()
    report = json.loads(out)
    assert report["planned_calls"] == 15 and report["worst_case_usd"] > 0 and "dry run: 15 calls" in err


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_prompt_lines_get_one_line_each_and_nothing_is_called(fake, tmp_path, cli):
    url, app = fake
    (tmp_path / "models.yaml").write_text(catalogue_yaml(url))
    lines = [
        '{"id": "ok", "query": "What is 1 plus 2?", "reference": 3}',
        '{"id": "q2"}',
        '{"id": "q3", "query": "x", "choices": "A"}',
        "not json",
        '{"id": "ok", "query": "again"}',
        '{"id": "q6", "messages": [{"role": "system", "content": "hi"}]}',
        '{"id": "q7", "query": "x", "reference": true}',
        '{"id": "q8", "query": "x", "tests": []}',
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = cli("collect", tmp_path / "p.jsonl", "--out", tmp_path / "d.jsonl", "--catalogue",
                       tmp_path / "models.yaml")
    assert code == 1 and app.total == 0
    p = tmp_path / "p.jsonl"
    assert err.splitlines() == [
        f"Error: {p}:2: query: missing (give query or messages)",
        f"Error: {p}:3: choices: must be an array of 2 to 26 strings (got string)",
        f"Error: {p}:4: invalid JSON: Expecting value (col 1)",
        f"Error: {p}:5: id: duplicate id 'ok' (first on line 1)",
        f"Error: {p}:6: messages: needs a user message with text (the last one is what the router reads)",
        f"Error: {p}:7: reference: must be a string, a number or an array of them (got boolean)",
        f"Error: {p}:8: tests: must be an array of 1 to 1000 test snippets (got 0 items)",
    ]


def test_prompt_limits_and_unknown_keys(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "a", "query": "hi", "note": 1}\n' + b'{"id": "b", "query": "' + b"x" * (5 << 20)
                  + b'"}\n{"id": "c", "query": "fine"}\n')
    with pytest.raises(DataError) as exc:
        read_prompts(p)
    assert str(exc.value) == f"{p}:2: longer than 4194304 bytes"
    p.write_text('{"id": "a", "query": "hi", "note": 1, "extra": 2}\n{"id": "b", "query": "yo", "note": 3}\n')
    pf = read_prompts(p)
    assert [x.id for x in pf.prompts] == ["a", "b"]
    warning = f"{p}: ignored keys this format does not know: 'note' (first on line 1), 'extra' (first on line 1)"
    assert pf.warnings == (warning,)


def test_usage_errors_name_the_option(fake, tmp_path, cli):
    url, app = fake
    prompts, cat, _ = world(tmp_path, url, n=2)
    with open(cat, "a") as f:  # an LLM without an endpoint
        f.write("  - {id: offline, input_usd_per_mtok: 1, output_usd_per_mtok: 1, name: offline, ttft_ms: 1,\n"
                "     output_tokens_per_s: 1, slots: 1,\n"
                "     sources: {prices: t, ttft_ms: t, output_tokens_per_s: t, slots: t}}\n")
    base = ["collect", prompts, "--out", tmp_path / "d.jsonl", "--catalogue", cat]
    code, _, err = cli(*base, "--llms", "fake-cheap,nope")
    assert code == 2 and err.startswith("Error: --llms: unknown LLM 'nope'; known: fake-strong, fake-mid")
    code, _, err = cli(*base, "--llms", "offline")
    assert code == 2 and err == "Error: --llms: LLM 'offline' has no base_url in the catalogue, so it cannot be called\n"
    code, _, err = cli(*base, "--max-tokens", "0")
    assert code == 2 and err == "Error: --max-tokens: must be between 1 and 1e+06 (got 0)\n"
    code, _, err = cli(*base, "--grader", "nonsense")
    assert code == 2 and err.startswith("Error: --grader: unknown grader 'nonsense'")
    code, _, err = cli(*base, "--judge", "offline")
    assert code == 2 and "--judge: LLM 'offline' has no base_url" in err
    assert app.total == 0
    with pytest.raises(UsageError):
        CollectOptions(concurrency=0)


# ---------------------------------------------------------------------------------------------
# resume


def test_resume_calls_no_pair_twice_and_regrades_without_calling(fake, tmp_path):
    url, app = fake
    prompts, cat, _ = world(tmp_path, url, n=8)
    out = tmp_path / "d.jsonl"
    first = run_collect(prompts, cat, out, llms=["fake-cheap"], grader="none")
    assert first.answered_run == 8 and app.total == 8
    assert all(r.outcomes["fake-cheap"].quality is None for r in read_dataset(out))  # graded by nobody
    second = run_collect(prompts, cat, out)  # every LLM, graders by line: only the new pairs are called
    assert second.planned_calls == 16 and second.resumed_answers == 8 and second.graded_run == 24
    assert app.total == 24 and set(app.calls.values()) == {1}
    records = read_dataset(out)
    assert all(r.outcomes["fake-cheap"].quality == (1.0 if is_right("fake-cheap", r.query) else 0.0)
               for r in records)
    third = run_collect(prompts, cat, out)
    assert third.planned_calls == 0 and third.graded_run == 0 and third.complete and app.total == 24
    assert read_dataset(out) == records


def test_a_changed_prompt_under_the_same_journal_is_refused(fake, tmp_path):
    url, _ = fake
    prompts, cat, items = world(tmp_path, url, n=4)
    run_collect(prompts, cat, tmp_path / "d.jsonl", llms=["fake-cheap"])
    items[2]["query"] = "What is 1 plus 1?"
    prompts.write_text("".join(json.dumps(it) + "\n" for it in items))
    with pytest.raises(DataError) as exc:
        run_collect(prompts, cat, tmp_path / "d.jsonl")
    assert str(exc.value).startswith(f"{prompts}:3: id: prompt 'p00002' is not the one {tmp_path / 'd.jsonl.journal'} "
                                     "holds answers for (its text changed")


def test_journal_torn_tail_corruption_and_lock(tmp_path):
    path = tmp_path / "j.journal"
    j = Journal(path)
    j.open()
    j.append({"t": "answer", "id": "a", "llm": "x", "key": "k", "text": "t", "spend_usd": 0.5})
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"t": "answer", "id": "b", "ll')
    j = Journal(path)
    state = j.open()
    assert set(state.answers) == {("a", "x")} and state.spent_usd == 0.5 and state.torn_bytes > 0
    assert path.read_bytes().endswith(b"\n")
    with pytest.raises(JournalBusy):
        Journal(path).open()
    j.close()
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(DataError, match=r"j\.journal:2: not a journal record"):
        Journal(path).open()


# ---------------------------------------------------------------------------------------------
# graders, the judge, answers, figures


def test_the_judge_grades_lines_without_reference_and_its_calls_count(fake, tmp_path, cli):
    url, app = fake
    items = write_prompts(tmp_path / "p.jsonl", 6, hard_fraction=0.5, seed=5)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": it["id"], "query": it["query"]}) + "\n" for it in items))
    (tmp_path / "models.yaml").write_text(catalogue_yaml(url))
    base = ["collect", tmp_path / "p.jsonl", "--out", tmp_path / "d.jsonl", "--catalogue", tmp_path / "models.yaml",
            "--llms", "fake-cheap,fake-mid"]
    code, _, err = cli(*base)
    assert code == 2 and app.total == 0
    assert err == (f"Error: {tmp_path / 'p.jsonl'}:1: it has no reference, choices or tests to grade against, so it "
                   "needs the judge grader: pass --judge LLM_ID (or give the line a reference)\n")
    code, out, err = cli(*base, "--judge", "fake-strong", "--json")
    assert code == 0, err
    for rec in read_dataset(tmp_path / "d.jsonl"):
        for llm, o in rec.outcomes.items():
            assert o.grader == "judge" and o.quality == (1.0 if is_right(llm, rec.query) else 0.0)
    answers_cost = sum(o.cost_usd for r in read_dataset(tmp_path / "d.jsonl") for o in r.outcomes.values())
    assert app.total == 24 and json.loads(out)["spent_usd_total"] > answers_cost  # 12 answers + 12 judge calls


def test_keep_answers_json_summary_and_update_catalogue(fake, tmp_path, cli, isolated_home):
    url, _ = fake
    prompts, cat, _ = world(tmp_path, url, n=6)
    code, out, err = cli("collect", prompts, "--out", tmp_path / "d.jsonl", "--catalogue", cat, "--keep-answers",
                         "--json", "--update-catalogue")
    assert code == 0, err
    report = json.loads(out)
    assert report["complete"] and [s["llm"] for s in report["per_llm"]] == ["fake-strong", "fake-mid", "fake-cheap"]
    for rec in read_dataset(tmp_path / "d.jsonl"):
        for llm, o in rec.outcomes.items():
            assert o.answer == answer_text(llm, rec.query)
    assert "p50 TTFT ms" in err and "records written" in err
    home_cat = load_catalogue(isolated_home / "models.yaml")
    for s in report["per_llm"]:
        llm = home_cat.get(s["llm"])
        assert llm.ttft_ms == pytest.approx(round(s["ttft_ms_p50"], 1))
        assert llm.output_tokens_per_s == pytest.approx(round(s["output_tokens_per_s"], 1))
        assert dict(llm.sources)["ttft_ms"].startswith("measured by mixllm collect on 6 calls")
        assert llm.input_usd_per_mtok == PRICES[s["llm"]][0]  # the rest is kept


def test_rpm_spaces_the_calls(fake, tmp_path):
    url, _ = fake
    prompts, cat, _ = world(tmp_path, url, n=5, models={"one": "fake-cheap"})
    started = time.monotonic()
    run_collect(prompts, cat, tmp_path / "d.jsonl", rpm=600)  # one start every 0.1 s
    assert time.monotonic() - started >= 0.4


# ---------------------------------------------------------------------------------------------
# kill -9 and resume, as a user runs it


def _answers_in(journal: Path) -> int:
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return 0
    return sum(1 for line in data.split(b"\n") if line.startswith(b'{"t":"answer"'))


def test_kill_9_mid_run_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    app = FakeOpenAI()
    app.gate_after(20)  # after 20 answers, every request is held: the run is mid-way, whatever the machine's speed
    with serve_fake(app) as (url, _):
        prompts, cat, items = world(tmp_path, url, n=30)
        out = tmp_path / "d.jsonl"
        journal = journal_path_for(out)
        cmd = [sys.executable, "-m", "mixllm_cli", "collect", str(prompts), "--out", str(out), "--catalogue", str(cat),
               "--concurrency", "6"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
        deadline = time.monotonic() + 120
        # Wait until every answer the fake sent is in the journal and calls are held: then kill.
        while not (app.held >= 1 and _answers_in(journal) == sum(app.answered.values()) >= 20):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached the gate"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        in_flight = {key for key, n in app.calls.items() if n > app.answered[key]}
        assert 1 <= len(in_flight) <= 6
        with open(journal, "ab") as f:  # a write cut by the kill
            f.write(b'{"t":"answer","id":"p00029","llm":"fake-cheap","key":"x","te')
        app.release()
        done = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(),
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert "cut a torn last record" in done.stderr
    records = read_dataset(out)
    assert len(records) == 30 and all(len(r.outcomes) == 3 for r in records)  # nothing lost
    answers = Counter((r["id"], r["llm"]) for r in journal_records(out) if r["t"] == "answer")
    assert len(answers) == 90 and set(answers.values()) == {1}  # nothing written twice
    twice = {key for key, n in app.calls.items() if n > 1}
    assert twice <= in_flight and max(app.calls.values()) <= 2  # only calls in flight at the kill were made again
    assert all(app.calls[(llm, it["query"])] >= 1 for it in items for llm in ("fake-strong", "fake-mid", "fake-cheap"))


def test_an_existing_dataset_without_journal_is_never_overwritten(fake, tmp_path, cli):
    url, app = fake
    prompts, cat, _ = world(tmp_path, url, n=2)
    (tmp_path / "mine.jsonl").write_text('{"id": "x", "query": "q", "outcomes": {}}\n')
    code, _, err = cli("collect", prompts, "--out", tmp_path / "mine.jsonl", "--catalogue", cat)
    assert code == 2 and err.startswith(f"Error: --out: {tmp_path / 'mine.jsonl'} exists and has no journal")
    assert app.total == 0 and (tmp_path / "mine.jsonl").read_text().startswith('{"id": "x"')


def test_a_line_grader_wins_over_the_run_grader_and_is_recorded(fake, tmp_path, cli):
    url, _ = fake
    (tmp_path / "models.yaml").write_text(catalogue_yaml(url, models={"m": "fake-strong"}))
    lines = [{"id": "a", "query": "What is 3 plus 4?", "reference": 7},
             {"id": "b", "query": "What is 3 plus 4?!", "grader": {"name": "regex", "pattern": "answer is \\d+\\."}}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, _, err = cli("collect", tmp_path / "p.jsonl", "--out", tmp_path / "d.jsonl", "--catalogue",
                       tmp_path / "models.yaml", "--grader", '{"name": "regex", "pattern": "^nothing$"}')
    assert code == 0, err
    a, b = read_dataset(tmp_path / "d.jsonl")
    assert a.outcomes["m"].quality == 0.0 and a.outcomes["m"].grader == '{"name":"regex","pattern":"^nothing$"}'
    assert b.outcomes["m"].quality == 1.0 and b.outcomes["m"].grader == '{"name":"regex","pattern":"answer is \\\\d+\\\\."}'
    code, _, err = cli("collect", tmp_path / "p.jsonl", "--out", tmp_path / "d.jsonl", "--catalogue",
                       tmp_path / "models.yaml", "--grader", "{bad json")
    assert code == 2 and err.startswith("Error: --grader: not valid JSON")
