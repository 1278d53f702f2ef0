"""Tables for people: ids whole at 80 columns and when piped; the route → feedback loop without
--json; conflicting feedback options; shell completion."""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
from types import SimpleNamespace

import pytest
from rich.cells import cell_len

from mixllm_cli import output
from mixllm_cli.cli import run
from mixllm_cli.routing.results import Candidate, Decision

LONG = ["mistralai/mixtral-8x7b-instruct-v0.1", "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo"]
IDS = [*LONG, "gpt-4o-mini"]
CODE_Q = "write a python function to sum two numbers"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TABLE = ("│", "┃", "━")


class Terminal(io.StringIO):
    """A stream that says it is a terminal (rich then sizes to $COLUMNS)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def screen(monkeypatch):
    """stdout and stderr as a terminal of `columns` columns; read() gives (stdout, stderr) without colours."""
    def open_(columns: int = 80):
        monkeypatch.setenv("COLUMNS", str(columns))
        out, err = Terminal(), Terminal()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        return lambda: (ANSI.sub("", out.getvalue()), ANSI.sub("", err.getvalue()))
    return open_


@pytest.fixture
def pipe(monkeypatch):
    """stdout and stderr as pipes (not terminals), even with a narrow $COLUMNS in the environment."""
    def open_():
        monkeypatch.setenv("COLUMNS", "40")
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        return lambda: (out.getvalue(), err.getvalue())
    return open_


def table_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if any(ch in line for ch in TABLE)]


def assert_fits(text: str, width: int = 80) -> None:
    lines = table_lines(text)
    assert lines, text
    assert max(cell_len(line) for line in lines) <= width, text


def assert_whole(text: str, ids=IDS) -> None:
    for llm in ids:
        assert any(llm in line for line in text.splitlines()), (llm, text)
    assert "…" not in text


# ---------------------------------------------------------------- each table, synthetic reports


def decision(decision_id: str | None = "d3f9a0c1b2e4d5f") -> Decision:
    cands = tuple(Candidate(llm=llm, quality=0.8123, response_tokens=100, cost_usd=0.001234, wait_ms=1234,
                            uncertainty=0.1, penalty=0.0123, score=0.5 - k / 10, cold=k == 1)
                  for k, llm in enumerate(IDS))
    return Decision(id=None, choice=LONG[1], budget="low", lam=1.0, prompt_tokens=10, candidates=cands,
                    decision_id=decision_id)


def evaluation_report(stream: bool = False) -> dict:
    results = [{"policy": f"mixllm {b} (λ=0.123)", "mean_quality": 0.81234, "total_cost_usd": 1.23456,
                "quality_pct_of_best": 95.92, "cost_pct_of_best": 22.9} for b in ("low", "high")]
    results += [{"policy": f"always {LONG[1]}", "mean_quality": 0.8, "total_cost_usd": 10.1, "quality_pct_of_best": 100.0,
                 "cost_pct_of_best": 100.0},
                {"policy": f"always {LONG[0]} (cheapest)", "mean_quality": 0.6, "total_cost_usd": 0.1,
                 "quality_pct_of_best": 67.35, "cost_pct_of_best": 1.63}]
    report = {"rows": 953, "best_llm": LONG[1], "results": results, "rows_with_missing_quality": 0}
    if stream:
        report["tolerance_s"] = 30.0
        for r in results:
            r.update(late=3, wait_p95_s=12.25)
    return report


def sweep_report() -> dict:
    def cv(name, aiq, pts):
        return {"name": name, "aiq": aiq, "aiq_cost_range": [0.0, 1.0], "points": pts, "hull": pts,
                "quality_share_at_cost_share": {s: (None if aiq is None else 0.9) for s in ("0.1", "0.15", "0.2", "0.25", "0.5")},
                "cost_share_to_reach_quality_share": {t: (None if aiq is None else 0.2) for t in ("0.9", "0.95", "1")}}
    curves = [cv("mixllm", 0.959335, [[0.05, 0.86], [0.2, 0.95], [1.0, 1.0]]),
              cv("single LLMs (hull; RouterBench zero router)", 0.92, [[0.05, 0.85], [1.0, 1.0]]),
              cv(f"always {LONG[1]}", None, [[1.0, 1.0]]), cv(f"always {LONG[0]}", 0.808, [[0.05, 0.85]])]
    return {"best_llm": LONG[1], "dataset": "data/routerbench/test.jsonl", "rows": 953, "curves": curves,
            "presets": {"low": {"lambda": 5.0, "cost_share": 0.0969, "quality_share": 0.9316}}}


def training_report() -> dict:
    return {"artifacts": "/home/someone/a/rather/long/path/to/my-router/artifacts", "rows": 2225, "llms": IDS,
            "seconds": 61.2, "presets": {b: {"lambda": 1.5, "target_cost_share": 0.1, "train_cost_share": 0.1012}
                                          for b in ("very-low", "low", "medium", "high")}}


def collect_report() -> SimpleNamespace:
    per = [SimpleNamespace(llm=llm, outcomes=300, failed_run=0, mean_quality=0.8, spent_usd=0.0123, latency_ms_p50=2300.0,
                           ttft_ms_p50=350.0, output_tokens_per_s=80.0, given_up=None, errors=(), truncated=0,
                           estimated_usage=0) for llm in IDS]
    return SimpleNamespace(warnings=(), dry_run=False, per_llm=per, llms=tuple(IDS), prompts=300, grade_error_messages=(),
                           answered_run=900, failed_run=0, graded_run=900, resumed_answers=0, spent_usd_run=0.04,
                           spent_usd_total=0.04, records=300, out="data.jsonl", journal="data.jsonl.journal",
                           elapsed_s=12.0)


def llms_rows() -> list[dict]:
    def row(llm, status, k):
        return {"id": llm, "status": status, "explore_share": 0.1, "quality_head": "mlp" if status == "trained" else None,
                "length_head": "ridge", "learned_ttft_ms": 420.0, "learned_output_tokens_per_s": 61.5,
                "latency_observations": 12 * k, "latency_p50_p95_ms": [2300.0, 5100.0] if k else None,
                "defaults": ["ttft_ms", "slots"] if k == 1 else [], "input_usd_per_mtok": 0.6, "output_usd_per_mtok": 0.6,
                "ttft_ms": 500, "output_tokens_per_s": 50, "slots": 8, "outcomes": 2225, "calls_in_flight": 3,
                "base_url": "https://api.together.xyz/v1" if k == 1 else None, "api_key_env": "TOGETHER_API_KEY",
                "api_key_set": False, "upstream_model": LONG[1]}
    return [row(LONG[0], "trained", 0), row(LONG[1], "cold", 1), row(IDS[2], "no heads", 2)]


def render_collect() -> None:
    from mixllm_cli.cli.collect import _summary

    _summary(collect_report())  # type: ignore[arg-type]


ARTIFACTS = training_report()["artifacts"]
# name: (render, the stream it writes, the ids it must show whole)
RENDERS = {
    "route": (lambda: output.route_table(decision(), ["--home", "/tmp/my home"]), "out", IDS),
    "evaluate": (lambda: output.evaluation_table(evaluation_report()), "out", LONG),
    "evaluate stream": (lambda: output.evaluation_table(evaluation_report(stream=True)), "out", LONG),
    "llms": (lambda: output.llms_table(llms_rows()), "out", IDS),
    "stats": (lambda: output.stats_table({"decisions": 12, "feedback": 3, "per_llm": {
        llm: {"decisions": 4, "refined_feedback": 1, "binary_feedback": 0} for llm in IDS}}), "out", IDS),
    "sweep": (lambda: output.sweep_table(sweep_report()), "out", LONG),
    "training summary": (lambda: output.training_summary(training_report()), "err", [ARTIFACTS]),
    "collect summary": (render_collect, "err", IDS),
}


@pytest.mark.parametrize("name", RENDERS)
def test_every_table_keeps_ids_whole_at_80_columns(name, screen):
    render, stream, ids = RENDERS[name]
    read = screen(80)
    render()
    out, err = read()
    text = out if stream == "out" else err
    assert_fits(text)
    assert_whole(text, ids)


@pytest.mark.parametrize("name", RENDERS)
def test_piped_tables_are_never_cut(name, pipe):
    render, stream, ids = RENDERS[name]
    read = pipe()
    render()
    out, err = read()
    text = out if stream == "out" else err
    assert_whole(text, ids)
    assert "left out at" not in text  # no column dropped
    header = next(line for line in text.splitlines() if "┃" in line)
    assert max(cell_len(line.rstrip()) for line in table_lines(text)) > 40  # $COLUMNS is for terminals only
    for line in table_lines(text):
        assert cell_len(line.rstrip()) <= cell_len(header.rstrip())  # one line per row: nothing wrapped


def test_a_narrow_terminal_drops_the_least_useful_columns_first_and_says_so(screen):
    read = screen(80)
    output.route_table(decision())
    out, _ = read()
    assert "pred. quality" in out.replace("\n", " ") or "quality" in out
    assert "(left out at 80 columns: exp. wait (ms), wait penalty;" in out.replace("\n", " ")
    assert "score" in out and "+0.5000" in out and "0.1234" in out  # the figures that stay are whole


def test_a_terminal_too_narrow_for_any_table_gets_records(screen):
    read = screen(40)
    output.route_table(decision())
    out, _ = read()
    assert not table_lines(out)
    lines = out.splitlines()
    assert f"→ {LONG[1]} (cold)" in lines  # the id line is never broken by us (the terminal wraps it)
    assert any(line.startswith("    pred. quality: 0.812") for line in lines)
    assert all(cell_len(line) <= 40 for line in lines if line.startswith("    "))


def test_widths_drop_by_rank_then_shrink_to_the_longest_word():
    cols = [output.Column("LLM", "left", key=True), output.Column("a long header", drop=1),
            output.Column("another one", drop=2), output.Column("kept")]
    rows = [["x" * 30, "1.5", "2.5", "0.25"]]
    assert output._widths(cols, rows, None) == [30, 13, 11, 4]  # unlimited: natural widths
    # 30 + 13 + 11 + 4 + 3 × " │ " = 67 fits at 67; at 60 the headers wrap, the widest shrinking first
    assert output._widths(cols, rows, 67) == [30, 13, 11, 4]
    assert output._widths(cols, rows, 60) == [30, 8, 9, 4]
    assert output._widths(cols, rows, 50) == [30, 10, None, 4]  # "another one" (rank 2) leaves first
    assert output._widths(cols, rows, 45) == [30, None, None, 4]  # "header" (6) no longer fits
    assert output._widths(cols, rows, 30) is None  # no table fits: records
    # a narrow column dropped first comes back when a later, wider drop left room for it
    cols = [output.Column("id", key=True), output.Column("aaaa", drop=3), output.Column("b" * 12, drop=2)]
    assert output._widths(cols, [["x" * 30, "1", "2"]], 40) == [30, 4, None]
    # nowrap keeps a cell on one line; min_width keeps words together
    assert output._widths([output.Column("a", nowrap=True)], [["500 (default)"]], 5) is None
    assert output._widths([output.Column("a", min_width=9)], [["→ x"]], 9) == [9]


def test_cells_are_text_not_markup(pipe):
    read = pipe()
    output.stats_table({"decisions": 1, "feedback": 0, "per_llm": {"org/model[bold]x[/bold]": {"decisions": 1}}})
    assert "org/model[bold]x[/bold]" in read()[0]


def test_an_undefined_aiq_is_a_dash_in_the_table_and_the_markdown(pipe):
    read = pipe()
    output.sweep_table(sweep_report())
    (row,) = [line for line in read()[0].splitlines() if line.startswith(f"always {LONG[1]}")]
    assert row.split("│")[1].strip() == "—"
    md = output.sweep_markdown(sweep_report())
    assert any(line.startswith(f"| always {LONG[1]} | — |") for line in md)
    assert any(line.startswith("| mixllm | 95.9 |") for line in md)


# ---------------------------------------------------------------- the route → feedback loop


@pytest.fixture
def trained(tiny, trained_home):
    return tiny


def test_route_shows_the_decision_id_and_a_feedback_command_that_works(trained, trained_home, cli, tmp_path):
    import shutil

    home = tmp_path / "my home"  # a non-default home with a space: the command quotes it
    shutil.copytree(trained_home, home)
    code, out, err = cli("route", CODE_Q, "--home", home)
    assert code == 0, err
    (did,) = re.findall(r"^decision: (d[0-9a-f]{15})$", out, flags=re.MULTILINE)
    (line,) = [x for x in err.splitlines() if x.startswith("feedback: ")]
    command = line.removeprefix("feedback: ")
    assert command == f"mixllm feedback {did} --home '{home}' --quality 0.8  # or --good / --bad"
    args = shlex.split(command, comments=True)
    assert args[0] == "mixllm"
    code, out, err = cli(*args[1:])
    assert code == 0, err
    assert json.loads(out) == {"id": did, "llm": json.loads(out)["llm"], "kind": "refined", "status": "recorded"}


def test_route_feedback_command_names_only_what_was_given(trained, cli):
    code, out, err = cli("route", CODE_Q, "--catalogue", trained / "models.yaml")
    assert code == 0, err
    (did,) = re.findall(r"^decision: (\S+)$", out, flags=re.MULTILINE)
    assert f"feedback: mixllm feedback {did} --catalogue {trained / 'models.yaml'} --quality 0.8" in err
    assert "--home" not in err
    code, out, err = cli("route", CODE_Q, "--json")  # JSON mode: stdout is the one object, no hint
    assert code == 0 and len(out.splitlines()) == 1 and json.loads(out)["decision_id"] and "feedback:" not in err
    code, out, err = cli("route", CODE_Q, "--no-queue")
    assert code == 0 and "decision:" not in out and "not recorded (--no-queue)" in err


@pytest.mark.parametrize("args, message", [
    (["--good", "--bad"], "Error: --good and --bad: a call was either good or bad: give one of them"),
    (["--bad", "--good"], "Error: --good and --bad: a call was either good or bad: give one of them"),
    (["--quality", "0.5", "--bad"], ("Error: --quality and --bad: refined (--quality) or binary (--good / --bad) "
                                     "feedback, not both")),
    (["--jsonl", "x.jsonl", "--quality", "0.5"], "Error: --quality: each line of --jsonl carries its own fields"),
    (["--rebuild", "--good"], "Error: --rebuild: give no DECISION_ID, --jsonl or event options"),
])
def test_conflicting_feedback_options_are_usage_errors(trained, cli, args, message):
    """Exit 2 before anything is loaded or recorded: the home here holds no decision at all."""
    ident = [] if "--jsonl" in args or "--rebuild" in args else ["dnothing"]
    code, out, err = cli("feedback", *ident, *args)
    assert (code, out) == (2, "") and err.startswith(message), err
    code, out, _ = cli("stats", "--json")
    assert json.loads(out)["feedback"] == 0


# ---------------------------------------------------------------- shell completion


def test_completion_completes_commands_options_and_budgets(monkeypatch, capsys):
    monkeypatch.setenv("_MIXLLM_COMPLETE", "complete_bash")
    for words, cword, expected in (("mixllm ro", 1, {"route"}), ("mixllm feedback --g", 2, {"--good"}),
                                   ("mixllm route hi --budget l", 4, {"low"}),
                                   ("mixllm route hi --budget ", 4, {"very-low", "low", "medium", "high"})):
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(cword))
        assert run([]) == 0
        assert set(capsys.readouterr().out.split()) == expected, words


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _mixllm_completion mixllm"),
                                           ("zsh", "compdef _mixllm_completion mixllm"),
                                           ("fish", "complete --command mixllm")])
def test_show_and_install_completion(shell, marker, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # name the shell, do not detect it
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run(["--show-completion", shell]) == 0
    script = capsys.readouterr().out
    assert marker in script and "_MIXLLM_COMPLETE" in script
    assert run(["--install-completion", shell]) == 0
    assert f"{shell} completion installed in" in capsys.readouterr().out
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any("_MIXLLM_COMPLETE" in p.read_text() for p in written)
