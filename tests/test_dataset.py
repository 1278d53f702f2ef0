"""The routing-dataset format: round trip, every error message, per-line iteration."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from mixllm_cli.dataset import Outcome, Record, iter_jsonl, llm_ids, read_dataset, record_from_dict, write_dataset
from mixllm_cli.errors import DataError


def outcome(**changes: object) -> dict:
    out = {"quality": 1.0, "prompt_tokens": 10, "response_tokens": 5, "cost_usd": 0.001}
    out.update(changes)
    return out


def line(rid: str = "q1", **changes: object) -> dict:
    out = {
        "id": rid,
        "query": "What is 2+2?",
        "task": "math",
        "tags": ["easy"],
        "outcomes": {"gpt-4": outcome(), "mistral": outcome(quality=0.0)},
    }
    out.update(changes)
    return out


def write_lines(path: Path, *lines: object) -> Path:
    with path.open("wb") as fh:
        for item in lines:
            if isinstance(item, bytes):
                fh.write(item + b"\n")
            elif isinstance(item, str):
                fh.write(item.encode("utf-8") + b"\n")
            else:
                fh.write(json.dumps(item).encode("utf-8") + b"\n")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(DataError) as info:
        read_dataset(path)
    return str(info.value).split("\n")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


RECORDS = [
    Record(
        id="q1",
        query="Write a function\nthat adds — two numbers",
        task="mbpp",
        tags=("code", "python"),
        outcomes={
            "zeta": Outcome(quality=1.0, prompt_tokens=12, response_tokens=80, cost_usd=0.00123),
            "alpha": Outcome(quality=None, prompt_tokens=12, response_tokens=3, cost_usd=1.2e-05),
        },
    ),
    Record(id="q2", query="Which is heavier?", task=None, tags=(), outcomes={}),
    Record(id="q3", query="x", task="t", outcomes={"alpha": Outcome(0.5, 0, 0, 0.0)}),
]


# --- round trip ------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_dataset(RECORDS, path)
    again = read_dataset(path)
    assert again == RECORDS
    # deterministic bytes: writing what was read gives the same file
    first = path.read_bytes()
    write_dataset(again, path)
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


def test_written_lines_are_compact_with_sorted_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_dataset(RECORDS[:1], path)
    text = path.read_text(encoding="utf-8")
    # fixed key order, outcomes sorted by LLM id, no spaces, UTF-8 rather than \u escapes
    assert text == (
        '{"id":"q1","query":"Write a function\\nthat adds — two numbers","task":"mbpp",'
        '"tags":["code","python"],"outcomes":{'
        '"alpha":{"quality":null,"prompt_tokens":12,"response_tokens":3,"cost_usd":1.2e-05},'
        '"zeta":{"quality":1.0,"prompt_tokens":12,"response_tokens":80,"cost_usd":0.00123}}}\n'
    )


def test_null_quality_stays_none(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", line(outcomes={"gpt-4": outcome(quality=None)}))
    (record,) = read_dataset(path)
    o = record.outcomes["gpt-4"]
    assert o.quality is None
    assert (o.prompt_tokens, o.response_tokens, o.cost_usd) == (10, 5, 0.001)
    write_dataset([record], path)
    assert json.loads(path.read_text())["outcomes"]["gpt-4"]["quality"] is None


def test_absent_or_null_outcome_means_no_outcome(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", line(outcomes={"gpt-4": outcome(), "mistral": None}))
    (record,) = read_dataset(path)
    assert list(record.outcomes) == ["gpt-4"]


def test_optional_fields_and_blank_lines(tmp_path: Path) -> None:
    minimal = {"id": "q2", "query": "hi", "outcomes": {}}
    path = write_lines(tmp_path / "d.jsonl", "", line(), "   ", minimal, "")
    records = read_dataset(path)
    assert [r.id for r in records] == ["q1", "q2"]
    assert records[1].task is None and records[1].tags == ()
    assert records[0].tags == ("easy",)


def test_integer_quality_and_cost_become_floats(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", line(outcomes={"m": outcome(quality=1, cost_usd=0)}))
    o = read_dataset(path)[0].outcomes["m"]
    assert o.quality == 1.0 and isinstance(o.quality, float)
    assert isinstance(o.cost_usd, float)


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(line()).encode() + b"\r\n")
    assert read_dataset(path)[0].id == "q1"


def test_llm_ids() -> None:
    assert llm_ids(RECORDS) == ("alpha", "zeta")


def test_records_are_immutable() -> None:
    with pytest.raises(TypeError):
        RECORDS[0].outcomes["new"] = Outcome(1.0, 1, 1, 0.0)  # type: ignore[index]


# --- extra keys: ignored, with one warning line per file -----------------------------------


def read_warned(path: Path) -> tuple[list[Record], list[str]]:
    warnings: list[str] = []
    return read_dataset(path, warn=warnings.append), warnings


def test_unknown_keys_are_ignored_with_one_warning(in_tmp: Path) -> None:
    rows = [line(f"q{i}", annotator="bob") for i in range(5)]
    rows[1]["ts"] = 17
    rows[3]["outcomes"]["gpt-4"]["ts"] = 1.5
    rows[3]["outcomes"]["mistral"]["ts"] = 2  # two outcomes of one line: counted once
    rows[4]["outcomes"]["gpt-4"]["judge_note"] = "fine"
    write_lines(Path("data.jsonl"), *rows)
    records, warnings = read_warned(Path("data.jsonl"))
    assert warnings == [
        "data.jsonl: ignored unknown keys 'annotator' (5 lines), 'ts' (1 line), 'ts' in outcomes (1 line), "
        + "'judge_note' in outcomes (1 line)"
    ]
    plain = read_dataset(write_lines(Path("plain.jsonl"), *(line(f"q{i}") for i in range(5))))
    assert records == plain  # nothing of the extra keys is kept
    write_dataset(records, Path("out.jsonl"))
    assert "annotator" not in Path("out.jsonl").read_text()


def test_no_warning_for_a_clean_file_or_without_a_callback(in_tmp: Path) -> None:
    write_lines(Path("clean.jsonl"), line("q1"), line("q2"))
    assert read_warned(Path("clean.jsonl"))[1] == []
    write_lines(Path("extra.jsonl"), line("q1", note="x"))
    assert [r.id for r in read_dataset(Path("extra.jsonl"))] == ["q1"]


def test_errors_still_win_over_unknown_keys(in_tmp: Path) -> None:
    o = outcome(grade_ts=3)
    del o["prompt_tokens"]
    write_lines(Path("data.jsonl"), line("q1", note="x"), line("q2", outcomes={"gpt-4": o}))
    warnings: list[str] = []
    with pytest.raises(DataError) as info:
        read_dataset(Path("data.jsonl"), warn=warnings.append)
    assert str(info.value) == "data.jsonl:2: outcomes.gpt-4.prompt_tokens: missing (required)"
    assert warnings == []


def test_many_unknown_keys_are_summarised(in_tmp: Path) -> None:
    long_key = "k" * 300
    write_lines(Path("data.jsonl"), line("q0", **{long_key: 1}), *(line(f"q{i}", **{f"x{i}": 1}) for i in range(1, 12)))
    (warning,) = read_warned(Path("data.jsonl"))[1]
    assert warning.startswith(f"data.jsonl: ignored unknown keys '{'k' * 40}…' (1 line), 'x1' (1 line), ")
    assert warning.endswith(", 'x7' (1 line), and 4 more keys")


def test_unknown_keys_order_is_deterministic(in_tmp: Path) -> None:
    # equal counts: first seen first; keys first seen on the same line: the line's, then the outcomes', by name
    write_lines(Path("data.jsonl"), line("q1", zz=1, aa=1, outcomes={"m": outcome(b=1, a=1)}), line("q2", c=1))
    assert read_warned(Path("data.jsonl"))[1] == [
        "data.jsonl: ignored unknown keys 'aa' (1 line), 'zz' (1 line), 'a' in outcomes (1 line), "
        + "'b' in outcomes (1 line), 'c' (1 line)"
    ]


def test_unknown_key_names_tracked_are_bounded(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mixllm_cli.dataset as ds

    monkeypatch.setattr(ds, "MAX_UNKNOWN_TRACKED", 3)
    write_lines(Path("data.jsonl"), *(line(f"q{i}", **{f"x{i}": 1, "y": 2}) for i in range(6)))
    (warning,) = read_warned(Path("data.jsonl"))[1]
    assert warning == "data.jsonl: ignored unknown keys 'y' (6 lines), 'x0' (1 line), 'x1' (1 line), and more keys"


def test_record_from_dict_warns_about_unknown_keys() -> None:
    warnings: list[str] = []
    assert record_from_dict(line(note=1, outcomes={"m": outcome(ts=2)}), "stdin", 4, warn=warnings.append).id == "q1"
    assert warnings == ["stdin:4: ignored unknown keys 'note' (1 line), 'ts' in outcomes (1 line)"]


# --- optional outcome fields (what `mixllm collect` measures) -------------------------------


def test_optional_outcome_fields_round_trip(tmp_path: Path) -> None:
    full = outcome(latency_ms=812, ttft_ms=140.5, answer="4", grader="number")
    path = write_lines(tmp_path / "d.jsonl", line(outcomes={"gpt-4": full, "mistral": outcome(answer="", ttft_ms=None)}))
    (record,) = read_dataset(path)
    o = record.outcomes["gpt-4"]
    assert (o.latency_ms, o.ttft_ms, o.answer, o.grader) == (812.0, 140.5, "4", "number")
    assert isinstance(o.latency_ms, float)
    m = record.outcomes["mistral"]
    assert (m.latency_ms, m.ttft_ms, m.answer, m.grader) == (None, None, "", None)
    write_dataset([record], path)
    written = json.loads(path.read_text())["outcomes"]
    assert written["gpt-4"] == {**outcome(), "latency_ms": 812.0, "ttft_ms": 140.5, "answer": "4", "grader": "number"}
    assert written["mistral"] == {**outcome(), "answer": ""}  # unset fields are left out
    assert read_dataset(path) == [record]


def test_outcome_without_optional_fields_writes_the_four_keys() -> None:
    assert Outcome(1.0, 1, 2, 0.5).to_dict() == {"quality": 1.0, "prompt_tokens": 1, "response_tokens": 2,
                                                 "cost_usd": 0.5}
    assert Outcome(None, 1, 2, 0.5, grader="judge").to_dict()["grader"] == "judge"


def test_write_refuses_a_bad_optional_field(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        write_dataset([Record(id="q", query="x", outcomes={"m": Outcome(1.0, 1, 1, 0.1, ttft_ms=-1.0)})],
                      tmp_path / "d.jsonl")
    assert str(info.value) == (f"{tmp_path / 'd.jsonl'}: record 0: outcomes.m.ttft_ms: must be a number of "
                               "milliseconds >= 0 or null (got -1.0)")


# --- errors: exact `file:line: field: message` ------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            line(outcomes={"gpt-4": outcome(quality=1.5)}),
            "train.jsonl:2: outcomes.gpt-4.quality: must be in [0, 1] (got 1.5)",
        ),
        (
            line(outcomes={"gpt-4": outcome(quality=-0.1)}),
            "train.jsonl:2: outcomes.gpt-4.quality: must be in [0, 1] (got -0.1)",
        ),
        (
            line(outcomes={"gpt-4": outcome(quality="good")}),
            "train.jsonl:2: outcomes.gpt-4.quality: must be a number or null (got 'good')",
        ),
        (
            line(outcomes={"gpt-4": outcome(quality=True)}),
            "train.jsonl:2: outcomes.gpt-4.quality: must be a number or null (got True)",
        ),
        (
            line(outcomes={"gpt-4": outcome(prompt_tokens=-3)}),
            "train.jsonl:2: outcomes.gpt-4.prompt_tokens: must be >= 0 (got -3)",
        ),
        (
            line(outcomes={"gpt-4": outcome(response_tokens=-1)}),
            "train.jsonl:2: outcomes.gpt-4.response_tokens: must be >= 0 (got -1)",
        ),
        (
            line(outcomes={"gpt-4": outcome(response_tokens=2.5)}),
            "train.jsonl:2: outcomes.gpt-4.response_tokens: must be an integer (got 2.5)",
        ),
        (
            line(outcomes={"gpt-4": outcome(prompt_tokens="10")}),
            "train.jsonl:2: outcomes.gpt-4.prompt_tokens: must be an integer (got '10')",
        ),
        (
            line(outcomes={"gpt-4": outcome(cost_usd=-0.01)}),
            "train.jsonl:2: outcomes.gpt-4.cost_usd: must be >= 0 (got -0.01)",
        ),
        (
            line(outcomes={"gpt-4": outcome(cost_usd="1")}),
            "train.jsonl:2: outcomes.gpt-4.cost_usd: must be a number (got '1')",
        ),
        (
            line(outcomes={"gpt-4": outcome(latency_ms=-3)}),
            "train.jsonl:2: outcomes.gpt-4.latency_ms: must be a number of milliseconds >= 0 or null (got -3)",
        ),
        (
            line(outcomes={"gpt-4": outcome(ttft_ms="12")}),
            "train.jsonl:2: outcomes.gpt-4.ttft_ms: must be a number of milliseconds >= 0 or null (got '12')",
        ),
        (
            line(outcomes={"gpt-4": outcome(ttft_ms=True)}),
            "train.jsonl:2: outcomes.gpt-4.ttft_ms: must be a number of milliseconds >= 0 or null (got True)",
        ),
        (
            line(outcomes={"gpt-4": outcome(answer=["a"])}),
            "train.jsonl:2: outcomes.gpt-4.answer: must be a string or null (got array)",
        ),
        (
            line(outcomes={"gpt-4": outcome(grader=" ")}),
            "train.jsonl:2: outcomes.gpt-4.grader: must be a non-empty string or null (got ' ')",
        ),
        (
            line(outcomes={"gpt-4": outcome(grader=["x" * 100])}),
            f"train.jsonl:2: outcomes.gpt-4.grader: must be a non-empty string or null (got {repr(['x' * 100])[:60]}…)",
        ),
        (
            line(outcomes={"gpt-4": outcome(quality=None, annotator="bob", cost_usd=-1)}),
            "train.jsonl:2: outcomes.gpt-4.cost_usd: must be >= 0 (got -1)",
        ),
        (line(outcomes={"gpt-4": 1.0}), "train.jsonl:2: outcomes.gpt-4: must be an object or null (got number)"),
        (line(outcomes=[]), "train.jsonl:2: outcomes: must be an object of LLM id to outcome (got array)"),
        (line(query=""), "train.jsonl:2: query: must not be empty"),
        (line(query="  \n "), "train.jsonl:2: query: must not be empty"),
        (line(query=42), "train.jsonl:2: query: must be a string (got number)"),
        (line(id=9), "train.jsonl:2: id: must be a string (got 9)"),
        (line(id=""), "train.jsonl:2: id: must not be empty"),
        (line(task=3), "train.jsonl:2: task: must be a string or null (got 3)"),
        (line(tags="code"), "train.jsonl:2: tags: must be an array of strings (got string)"),
        (line(tags=["ok", 1]), "train.jsonl:2: tags[1]: must be a non-empty string (got 1)"),
        (line(extra=1, id=""), "train.jsonl:2: id: must not be empty"),
        ({"id": "q", "outcomes": {}}, "train.jsonl:2: query: missing (required)"),
        ({"id": "q", "query": "hi"}, "train.jsonl:2: outcomes: missing (required)"),
        ("[1, 2]", "train.jsonl:2: must be a JSON object (got array)"),
        ('{"id": "q" "query": "x"}', "train.jsonl:2: invalid JSON: Expecting ',' delimiter (col 12)"),
        ('{"id": "q", "id": "r"}', "train.jsonl:2: invalid JSON: duplicate key 'id'"),
        (b'{"id": "q\xff"}', "train.jsonl:2: not valid UTF-8"),
    ],
)
def test_bad_line_gives_one_exact_message(in_tmp: Path, bad: object, expected: str) -> None:
    write_lines(Path("train.jsonl"), line("q0"), bad, line("q9"))
    assert errors_of(Path("train.jsonl")) == [expected]


def test_missing_outcome_field(in_tmp: Path) -> None:
    o = outcome()
    del o["cost_usd"]
    write_lines(Path("train.jsonl"), line(outcomes={"gpt-4": o}))
    assert errors_of(Path("train.jsonl")) == ["train.jsonl:1: outcomes.gpt-4.cost_usd: missing (required)"]


def test_nan_is_rejected(in_tmp: Path) -> None:
    Path("train.jsonl").write_text(
        '{"id": "q", "query": "x", "outcomes": {"m": {"quality": NaN, "prompt_tokens": 1, '
        '"response_tokens": 1, "cost_usd": 0.1}}}\n'
    )
    assert errors_of(Path("train.jsonl")) == ["train.jsonl:1: outcomes.m.quality: must be in [0, 1] (got nan)"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_cost_is_rejected(in_tmp: Path, literal: str) -> None:
    Path("train.jsonl").write_text(
        '{"id": "q", "query": "x", "outcomes": {"m": {"quality": 1, "prompt_tokens": 1, '
        f'"response_tokens": 1, "cost_usd": {literal}}}}}}}\n'
    )
    (error,) = errors_of(Path("train.jsonl"))
    assert error.startswith("train.jsonl:1: outcomes.m.cost_usd: must be >= 0 (got ")


def test_duplicate_id_points_at_the_first_line(in_tmp: Path) -> None:
    write_lines(Path("train.jsonl"), line("q1"), line("q9"), "", line("q3"), line("q9"))
    assert errors_of(Path("train.jsonl")) == ["train.jsonl:5: id: duplicate id 'q9' (first on line 2)"]


def test_all_problems_across_lines(in_tmp: Path) -> None:
    write_lines(
        Path("train.jsonl"),
        line("q1", query=""),
        "{oops",
        line("q3", outcomes={"gpt-4": outcome(quality=2, cost_usd=-1)}),
    )
    assert errors_of(Path("train.jsonl")) == [
        "train.jsonl:1: query: must not be empty",
        "train.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (col 2)",
        "train.jsonl:3: outcomes.gpt-4.quality: must be in [0, 1] (got 2)",
        "train.jsonl:3: outcomes.gpt-4.cost_usd: must be >= 0 (got -1)",
    ]


def test_stops_listing_after_20_problems(in_tmp: Path) -> None:
    write_lines(Path("train.jsonl"), *(["not json"] * 25))
    errors = errors_of(Path("train.jsonl"))
    assert len(errors) == 21
    assert errors[19].startswith("train.jsonl:20: invalid JSON")
    assert errors[20] == "train.jsonl: ... and 5 more problems"


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(DataError) as info:
        read_dataset("nope.jsonl")
    assert str(info.value) == "nope.jsonl: no such file"


def test_write_refuses_what_read_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    bad = [RECORDS[0], Record(id="q1", query=" ", outcomes={"m": Outcome(1.5, 1, 1, 0.1)})]
    with pytest.raises(DataError) as info:
        write_dataset(bad, path)
    assert str(info.value).split("\n") == [
        f"{path}: record 1: query: must not be empty",
        f"{path}: record 1: outcomes.m.quality: must be in [0, 1] (got 1.5)",
        f"{path}: record 1: id: duplicate id 'q1' (first at record 0)",
    ]
    assert not path.exists()


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.jsonl"
    write_dataset(RECORDS[:1], path)
    before = path.read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DataError) as info:
        write_dataset(RECORDS, path)
    assert str(info.value) == f"{path}: cannot write: No space left on device"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


def test_record_from_dict() -> None:
    assert record_from_dict(line()).id == "q1"
    with pytest.raises(DataError) as info:
        record_from_dict(line(query=""), "stdin", 4)
    assert str(info.value) == "stdin:4: query: must not be empty"


# --- iter_jsonl: per-line errors, keeps going ------------------------------------------------

MIXED = b'{"a": 1}\n\n[1, 2]\n{"b": \xff}\n{broken\n{"c": 3}\n'


def _summary(items: list) -> list:
    return [(n, x if isinstance(x, dict) else str(x)) for n, x in items]


def test_iter_jsonl_binary_stream_keeps_going() -> None:
    items = list(iter_jsonl(io.BytesIO(MIXED), "in.jsonl"))
    assert _summary(items) == [
        (1, {"a": 1}),
        (3, "in.jsonl:3: must be a JSON object (got array)"),
        (4, "in.jsonl:4: not valid UTF-8"),
        (5, "in.jsonl:5: invalid JSON: Expecting property name enclosed in double quotes (col 2)"),
        (6, {"c": 3}),
    ]
    assert all(isinstance(x, (dict, DataError)) for _, x in items)


def test_iter_jsonl_text_stream() -> None:
    text = io.StringIO('{"a": 1}\n"str"\n\n{"c": 3}\n')
    assert _summary(list(iter_jsonl(text, "stdin"))) == [
        (1, {"a": 1}),
        (2, "stdin:2: must be a JSON object (got string)"),
        (4, {"c": 3}),
    ]


def test_iter_jsonl_text_stream_with_surrogateescape() -> None:
    stream = io.TextIOWrapper(io.BytesIO(MIXED), encoding="utf-8", errors="surrogateescape")
    assert _summary(list(iter_jsonl(stream, "in")))[2] == (4, "in:4: not valid UTF-8")


def test_iter_jsonl_strict_text_stream_reports_then_stops() -> None:
    stream = io.TextIOWrapper(io.BytesIO(b'{"a": 1}\n' + b"\xff\n" * 3), encoding="utf-8")
    items = _summary(list(iter_jsonl(stream, "in")))
    # the decoder reads ahead in chunks, so the failing line number is only a lower bound
    assert items[-1][1].startswith("in:") and "not valid UTF-8 (reading stopped here" in items[-1][1]


# --- the CLI says what it ignored, on stderr ------------------------------------------------


def test_evaluate_prints_one_warning_for_ignored_keys(tiny: Path, trained_home: Path, cli, tmp_path: Path) -> None:
    rows = [json.loads(text) for text in (tiny / "train.jsonl").read_text().splitlines()[:20]]
    for i, row in enumerate(rows):
        row["annotator"] = "bob"
        if i < 3:
            row["outcomes"]["big"]["ts"] = 1700000000
    data = write_lines(tmp_path / "eval.jsonl", *rows)
    code, out, err = cli("evaluate", data, "--json", "--catalogue", tiny / "models.yaml")
    assert code == 0, err
    assert json.loads(out)["rows"] == 20
    warnings = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert warnings == [f"Warning: {data}: ignored unknown keys 'annotator' (20 lines), 'ts' in outcomes (3 lines)"]
