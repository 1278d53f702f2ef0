"""The catalogue: the shipped file, every validation message, atomic save, fingerprint."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from mixllm_cli.catalogue import LLM, Catalogue, load_catalogue, parse_catalogue, save_catalogue, with_llm, without_llm
from mixllm_cli.errors import CatalogueError, UnknownLLMError

SHIPPED = Path(__file__).resolve().parent.parent / "models.yaml"

SOURCES = {
    "prices": "a price table",
    "ttft_ms": "estimate: a guess",
    "output_tokens_per_s": "a benchmark",
    "slots": "estimate: a guess",
}


def entry(llm_id: str = "a", **changes: object) -> dict:
    out = {
        "id": llm_id,
        "name": f"Model {llm_id}",
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 2.0,
        "ttft_ms": 300,
        "output_tokens_per_s": 50,
        "slots": 4,
        "sources": dict(SOURCES),
    }
    out.update(changes)
    return out


def doc(*entries: dict) -> dict:
    return {"version": 1, "llms": list(entries) or [entry("a"), entry("b")]}


def errors_of(data: object) -> list[str]:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(data, "models.yaml")
    return str(info.value).split("\n")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- the shipped catalogue -------------------------------------------------------------------


def test_shipped_catalogue_loads_with_the_11_routerbench_llms() -> None:
    cat = load_catalogue(SHIPPED)
    assert len(cat) == 11
    assert set(cat.ids) == {
        "gpt-4-1106-preview",
        "gpt-3.5-turbo-1106",
        "claude-v1",
        "claude-v2",
        "claude-instant-v1",
        "meta/llama-2-70b-chat",
        "mistralai/mixtral-8x7b-chat",
        "zero-one-ai/Yi-34B-Chat",
        "meta/code-llama-instruct-34b-chat",
        "WizardLM/WizardLM-13B-V1.2",
        "mistralai/mistral-7b-chat",
    }
    gpt4 = cat.get("gpt-4-1106-preview")
    assert (gpt4.input_usd_per_mtok, gpt4.output_usd_per_mtok) == (10.0, 30.0)
    assert gpt4.output_tokens_per_s == 20.0
    assert cat.get("meta/code-llama-instruct-34b-chat").input_usd_per_mtok == 0.776


def test_shipped_estimates_say_so() -> None:
    # The README gives no speed for these; their figures must be marked as ours.
    cat = load_catalogue(SHIPPED)
    for llm_id in (
        "claude-v1",
        "claude-instant-v1",
        "zero-one-ai/Yi-34B-Chat",
        "meta/code-llama-instruct-34b-chat",
        "WizardLM/WizardLM-13B-V1.2",
        "mistralai/mistral-7b-chat",
    ):
        assert cat.get(llm_id).source("output_tokens_per_s").startswith("estimate:")
    for llm in cat:
        assert llm.source("slots").startswith("estimate:")


# --- the Catalogue object --------------------------------------------------------------------


def test_get_contains_len_and_unknown_id() -> None:
    cat = parse_catalogue(doc(), "models.yaml")
    assert cat.ids == ("a", "b")
    assert "a" in cat and "zz" not in cat
    assert len(cat) == 2
    assert cat.get("b").slots == 4
    with pytest.raises(UnknownLLMError) as info:
        cat.get("zz")
    assert str(info.value) == "unknown LLM 'zz'; known: a, b"


def test_numbers_are_floats_and_sources_a_tuple() -> None:
    llm = parse_catalogue(doc(), "models.yaml").get("a")
    assert isinstance(llm.ttft_ms, float) and llm.ttft_ms == 300.0
    assert isinstance(llm.sources, tuple)
    assert llm.source("prices") == "a price table"
    hash(llm)  # frozen and hashable


def test_with_and_without_llm_return_new_catalogues() -> None:
    cat = parse_catalogue(doc(), "models.yaml")
    c = LLM(**entry("c"))
    bigger = with_llm(cat, c)
    assert bigger.ids == ("a", "b", "c") and cat.ids == ("a", "b")
    assert without_llm(bigger, "a").ids == ("b", "c")
    with pytest.raises(CatalogueError, match="LLM 'a' is already in the catalogue"):
        with_llm(cat, LLM(**entry("a")))
    with pytest.raises(UnknownLLMError):
        without_llm(cat, "zz")


def test_llm_constructed_in_code_is_validated() -> None:
    with pytest.raises(CatalogueError) as info:
        LLM(**entry("c", ttft_ms=0, slots=0))
    assert str(info.value).split("\n") == [
        "LLM 'c': ttft_ms: must be > 0 (got 0)",
        "LLM 'c': slots: must be >= 1 (got 0)",
    ]


def test_fingerprint_changes_with_a_price_not_with_order_or_docs() -> None:
    base = parse_catalogue(doc(), "models.yaml").fingerprint()
    assert len(base) == 64
    assert parse_catalogue(doc(entry("a", input_usd_per_mtok=1.5), entry("b")), "m").fingerprint() != base
    assert parse_catalogue(doc(entry("a", slots=5), entry("b")), "m").fingerprint() != base
    assert parse_catalogue(doc(entry("b"), entry("a")), "m").fingerprint() == base
    assert parse_catalogue(doc(entry("a", name="Renamed"), entry("b")), "m").fingerprint() == base
    # an integer in YAML and the same float are the same catalogue
    assert parse_catalogue(doc(entry("a", input_usd_per_mtok=1), entry("b")), "m").fingerprint() == base


# --- validation: one exact line per problem --------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"input_usd_per_mtok": -1.0}, "models.yaml: llms[1].input_usd_per_mtok: must be >= 0 (got -1.0)"),
        ({"output_usd_per_mtok": -0.5}, "models.yaml: llms[1].output_usd_per_mtok: must be >= 0 (got -0.5)"),
        ({"ttft_ms": -5}, "models.yaml: llms[1].ttft_ms: must be > 0 (got -5)"),
        ({"output_tokens_per_s": 0}, "models.yaml: llms[1].output_tokens_per_s: must be > 0 (got 0)"),
        ({"slots": 0}, "models.yaml: llms[1].slots: must be >= 1 (got 0)"),
        ({"slots": "many"}, "models.yaml: llms[1].slots: must be an integer (got 'many')"),
        ({"slots": 2.5}, "models.yaml: llms[1].slots: must be an integer (got 2.5)"),
        ({"slots": True}, "models.yaml: llms[1].slots: must be an integer (got True)"),
        ({"ttft_ms": True}, "models.yaml: llms[1].ttft_ms: must be a number (got True)"),
        ({"input_usd_per_mtok": "cheap"}, "models.yaml: llms[1].input_usd_per_mtok: must be a number (got 'cheap')"),
        (
            {"input_usd_per_mtok": float("nan")},
            "models.yaml: llms[1].input_usd_per_mtok: must be a finite number (got nan)",
        ),
        ({"price": 3}, "models.yaml: llms[1]: unknown key 'price'"),
        ({"id": "bad id"}, "models.yaml: llms[1].id: must match ^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$ (got 'bad id')"),
        ({"id": "-x"}, "models.yaml: llms[1].id: must match ^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$ (got '-x')"),
        (
            {"id": "x" * 129},
            f"models.yaml: llms[1].id: must match ^[A-Za-z0-9][A-Za-z0-9._/:-]{{0,127}}$ (got '{'x' * 129}')",
        ),
        ({"id": 7}, "models.yaml: llms[1].id: must be a string (got 7)"),
        ({"name": ""}, "models.yaml: llms[1].name: must be a non-empty string (got '')"),
        (
            {"sources": "somewhere"},
            (
                "models.yaml: llms[1].sources: must be a mapping of prices, ttft_ms, output_tokens_per_s, slots"
                " (got string)"
            ),
        ),
        ({"sources": {**SOURCES, "vibes": "x"}}, "models.yaml: llms[1].sources: unknown key 'vibes'"),
        (
            {"sources": {**SOURCES, "slots": ""}},
            "models.yaml: llms[1].sources.slots: must be a non-empty string (got '')",
        ),
    ],
)
def test_bad_field_gives_one_exact_line(changes: dict, expected: str) -> None:
    assert errors_of(doc(entry("a"), entry("b", **changes))) == [expected]


def test_valid_edge_values_pass() -> None:
    cat = parse_catalogue(
        doc(entry("a", input_usd_per_mtok=0, output_usd_per_mtok=0, slots=1), entry("b:1.0/x_y-z")), "m"
    )
    assert cat.get("a").input_usd_per_mtok == 0.0


def test_missing_required_fields_each_reported() -> None:
    bad = entry("b")
    del bad["input_usd_per_mtok"]
    del bad["output_usd_per_mtok"]
    nameless = entry("c")
    del nameless["id"]
    assert errors_of(doc(entry("a"), bad, nameless)) == [
        "models.yaml: llms[1].input_usd_per_mtok: missing (required)",
        "models.yaml: llms[1].output_usd_per_mtok: missing (required)",
        "models.yaml: llms[2].id: missing (required)",
    ]


def test_duplicate_id_points_at_the_first() -> None:
    assert errors_of(doc(entry("x"), entry("b"), entry("c"), entry("x"))) == [
        "models.yaml: llms[3].id: duplicate id 'x' (first at llms[0])"
    ]


def test_all_problems_are_collected() -> None:
    assert errors_of(doc(entry("a", ttft_ms=-5, price=1), entry("b", slots="many"))) == [
        "models.yaml: llms[0]: unknown key 'price'",
        "models.yaml: llms[0].ttft_ms: must be > 0 (got -5)",
        "models.yaml: llms[1].slots: must be an integer (got 'many')",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"version": 2, "llms": [entry()]}, "models.yaml: version: must be 1 (got 2)"),
        ({"version": True, "llms": [entry()]}, "models.yaml: version: must be 1 (got True)"),
        ({"llms": [entry()]}, "models.yaml: version: missing (required; use 1)"),
        ({"version": 1}, "models.yaml: llms: missing (required)"),
        ({"version": 1, "llms": []}, "models.yaml: llms: must list at least one LLM"),
        ({"version": 1, "llms": {"a": 1}}, "models.yaml: llms: must be a list of LLM entries (got mapping)"),
        ({"version": 1, "llms": ["gpt"]}, "models.yaml: llms[0]: must be a mapping (got string)"),
        ({"version": 1, "llms": [entry()], "extra": 1}, "models.yaml: unknown key 'extra'"),
        ([1, 2], "models.yaml: must be a mapping with 'version' and 'llms' (got list)"),
        (None, "models.yaml: must be a mapping with 'version' and 'llms' (got an empty file)"),
    ],
)
def test_bad_top_level(data: object, expected: str) -> None:
    assert errors_of(data) == [expected]


# --- files -----------------------------------------------------------------------------------


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    assert str(info.value) == "models.yaml: no such file"


def test_invalid_yaml_reports_the_line(in_tmp: Path) -> None:
    Path("models.yaml").write_text("version: 1\nllms:\n  - id: a\n    name: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    # libyaml (CSafeLoader) and pure-Python PyYAML word the problem differently
    assert str(info.value) in {
        "models.yaml:5: invalid YAML: did not find expected ',' or ']'",
        "models.yaml:5: invalid YAML: expected ',' or ']', but got '<stream end>'",
    }


def test_invalid_yaml_tab_indent(in_tmp: Path) -> None:
    Path("models.yaml").write_text("version: 1\nllms:\n\t- id: a\n", encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    assert str(info.value) in {
        "models.yaml:3: invalid YAML: found character that cannot start any token",
        "models.yaml:3: invalid YAML: found character '\\t' that cannot start any token",
    }


def test_duplicate_yaml_key_is_an_error(in_tmp: Path) -> None:
    text = yaml.safe_dump(doc(entry("a")), sort_keys=False).replace("slots: 4", "slots: 4\n  slots: 5")
    Path("models.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("  slots: 5") + 1
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    assert str(info.value) == f"models.yaml:{line}: invalid YAML: duplicate key 'slots'"


def test_errors_name_the_file_as_given_and_the_line(in_tmp: Path) -> None:
    text = yaml.safe_dump(doc(entry("a", ttft_ms=-5)))
    Path("models.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("  ttft_ms: -5") + 1
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    assert str(info.value) == f"models.yaml:{line}: llms[0].ttft_ms: must be > 0 (got -5)"


UPSTREAM = {"base_url": "https://api.example.com/v1", "api_key_env": "EXAMPLE_KEY", "upstream_model": "ex-large"}


def test_upstream_fields_are_optional_validated_and_round_trip(in_tmp: Path) -> None:
    cat = parse_catalogue(doc(entry("a", **UPSTREAM), entry("b")), "models.yaml")
    a, b = cat.get("a"), cat.get("b")
    assert (a.base_url, a.api_key_env, a.upstream_model) == tuple(UPSTREAM.values())
    assert (b.base_url, b.api_key_env, b.upstream_model) == (None, None, None)
    assert "base_url" not in b.to_dict()  # an entry without them saves exactly as before
    save_catalogue(cat, "out.yaml")
    assert load_catalogue("out.yaml") == cat
    # moving an endpoint does not invalidate trained artifacts
    assert cat.fingerprint() == parse_catalogue(doc(entry("a"), entry("b")), "m").fingerprint()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("base_url", "api.example.com", "must be an http(s) URL like https://api.example.com/v1 (got 'api.example.com')"),
        ("base_url", 5, "must be an http(s) URL like https://api.example.com/v1 (got 5)"),
        ("api_key_env", "sk-live-123", ("must be the NAME of an environment variable holding the key, like "
                                       "OPENAI_API_KEY (got 'sk-live-123')")),
        ("upstream_model", "", "must be a non-empty string (got '')"),
    ],
)
def test_bad_upstream_field_is_one_line_with_file_line_and_field(in_tmp: Path, field, value, message) -> None:
    text = yaml.safe_dump(doc(entry("a"), entry("b", **{field: value})), sort_keys=False)
    Path("models.yaml").write_text(text, encoding="utf-8")
    line = next(i for i, x in enumerate(text.splitlines(), 1) if x.strip().startswith(f"{field}:"))
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    assert str(info.value) == f"models.yaml:{line}: llms[1].{field}: {message}"


def test_non_utf8_file(in_tmp: Path) -> None:
    Path("models.yaml").write_bytes(b"version: 1\nllms:\n  - id: \xff\n")
    with pytest.raises(CatalogueError) as info:
        load_catalogue("models.yaml")
    assert str(info.value) == "models.yaml:3: not valid UTF-8"


def test_save_load_round_trip(tmp_path: Path) -> None:
    cat = load_catalogue(SHIPPED)
    out = tmp_path / "models.yaml"
    save_catalogue(cat, out)
    again = load_catalogue(out)
    assert again == cat
    assert again.fingerprint() == cat.fingerprint()
    assert [llm.sources for llm in again] == [llm.sources for llm in cat]
    # saving what was loaded gives the same bytes
    first = out.read_bytes()
    save_catalogue(again, out)
    assert out.read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name != "models.yaml"]  # no temp file left


def test_save_is_atomic_when_the_rename_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "models.yaml"
    save_catalogue(parse_catalogue(doc(), "m"), out)
    before = out.read_bytes()
    changed = with_llm(parse_catalogue(doc(), "m"), LLM(**entry("c")))

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CatalogueError) as info:
        save_catalogue(changed, out)
    assert str(info.value) == f"{out}: cannot write: No space left on device"
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["models.yaml"]


def test_catalogue_rejects_duplicates_built_in_code() -> None:
    a = LLM(**entry("a"))
    with pytest.raises(CatalogueError, match="duplicate LLM id 'a'"):
        Catalogue((a, copy.copy(a)))


# --- only id and prices required; defaults remembered and marked ------------------------------

MINIMAL = {"id": "m", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5}


def test_an_entry_needs_only_id_and_prices() -> None:
    llm = parse_catalogue(doc(MINIMAL), "m").get("m")
    assert (llm.name, llm.ttft_ms, llm.output_tokens_per_s, llm.slots) == ("m", 500.0, 50.0, 4)
    assert llm.defaults == ("name", "ttft_ms", "output_tokens_per_s", "slots")
    assert dict(llm.sources) == {"prices": "not given", "ttft_ms": "default", "output_tokens_per_s": "default",
                                 "slots": "default"}
    # built in code the same way
    assert LLM(id="m", input_usd_per_mtok=0.5, output_usd_per_mtok=1.5) == llm


def test_partial_figures_and_sources() -> None:
    llm = parse_catalogue(doc({**MINIMAL, "ttft_ms": 250, "sources": {"ttft_ms": "measured"}}), "m").get("m")
    assert llm.ttft_ms == 250.0 and llm.defaults == ("name", "output_tokens_per_s", "slots")
    assert llm.source("ttft_ms") == "measured" and llm.source("prices") == "not given"
    assert llm.source("slots") == "default"


def test_saving_writes_back_only_what_the_entry_states(tmp_path: Path) -> None:
    stated = {**MINIMAL, "slots": 4, "sources": {"slots": "the default, on purpose"}}  # a default written out
    cat = parse_catalogue(doc(MINIMAL, {**stated, "id": "n"}), "m")
    out = tmp_path / "models.yaml"
    save_catalogue(cat, out)
    saved = yaml.safe_load(out.read_text())
    assert saved["llms"] == [{"id": "m", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5},
                             {"id": "n", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5, "slots": 4,
                              "sources": {"slots": "the default, on purpose"}}]
    again = load_catalogue(out)
    assert again == cat and [x.given for x in again] == [x.given for x in cat]
    assert again.get("n").defaults == ("name", "ttft_ms", "output_tokens_per_s")


def test_fingerprint_is_on_effective_values() -> None:
    explicit = {**MINIMAL, "name": "m", "ttft_ms": 500, "output_tokens_per_s": 50, "slots": 4,
                "sources": {"prices": "x", "ttft_ms": "y", "output_tokens_per_s": "z", "slots": "w"}}
    short = parse_catalogue(doc(MINIMAL), "m").fingerprint()
    assert parse_catalogue(doc(explicit), "m").fingerprint() == short
    assert parse_catalogue(doc({**MINIMAL, "slots": 5}), "m").fingerprint() != short
    assert parse_catalogue(doc({**MINIMAL, "ttft_ms": 501}), "m").fingerprint() != short


def test_shipped_catalogue_keeps_its_fingerprint_and_bytes(tmp_path: Path) -> None:
    # The shipped artifact set records this fingerprint (tests/test_shipped_default.py checks it loads).
    cat = load_catalogue(SHIPPED)
    assert cat.fingerprint() == "6647cb6566e87af1d01452c4249f9877c897a3fe63cac6ea185d7352bf18eee5"
    assert all(llm.defaults == () for llm in cat)
    out = tmp_path / "models.yaml"
    save_catalogue(cat, out)
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(SHIPPED.read_text())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sources": {"slots": "estimate"}},
         ("models.yaml: llms[0].sources.slots: gives a source but slots is not given (the default 4 needs none): "
         "give slots or drop this source")),
        ({"ttft": 300}, "models.yaml: llms[0]: unknown key 'ttft'"),  # a typo is never a silent default
        ({"sources": {"ttft": "x"}}, "models.yaml: llms[0].sources: unknown key 'ttft'"),
        ({"ttft_ms": 1e9}, "models.yaml: llms[0].ttft_ms: must be <= 3.6e+06 (got 1000000000.0)"),
        ({"input_usd_per_mtok": 1e7}, "models.yaml: llms[0].input_usd_per_mtok: must be <= 1e+06 (got 10000000.0)"),
        ({"slots": 10**7}, "models.yaml: llms[0].slots: must be <= 1000000 (got 10000000)"),
        ({"name": "x" * 1001}, "models.yaml: llms[0].name: must be at most 1000 characters (got 1001)"),
    ],
)
def test_optional_field_problems(changes: dict, expected: str) -> None:
    assert errors_of(doc({**MINIMAL, **changes})) == [expected]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("base_url", "https://me:sk-secret@api.example.com/v1",
         "must not hold credentials (user:key@); name the key's environment variable in api_key_env"),
        ("base_url", "https://api.example.com/v1?key=sk-secret",
         "must not have a query string or fragment (got https://api.example.com/v1?...)"),
        ("base_url", "https://api.example.com:port/v1",
         "must be an http(s) URL like https://api.example.com/v1 (got 'https://api.example.com:port/v1')"),
        ("api_key_env", "sk-proj-" + "a" * 40,
         ("must be the NAME of an environment variable holding the key, like OPENAI_API_KEY "
         "(got a 48-character value, not shown)")),
    ],
)
def test_endpoint_fields_never_echo_a_secret(field: str, value: str, message: str) -> None:
    (line,) = errors_of(doc({**MINIMAL, field: value}))
    assert line == f"models.yaml: llms[0].{field}: {message}"
    assert "sk-secret" not in line and "aaaa" not in line


def test_updated_marks_its_changes_as_given() -> None:
    llm = LLM(id="m", input_usd_per_mtok=0.5, output_usd_per_mtok=1.5)
    changed = llm.updated(ttft_ms=500.0, base_url="http://127.0.0.1:8000/v1", sources={"ttft_ms": "measured"})
    assert changed.written() == {"id": "m", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5,
                                 "ttft_ms": 500.0, "sources": {"ttft_ms": "measured"},
                                 "base_url": "http://127.0.0.1:8000/v1"}
    assert changed.defaults == ("name", "output_tokens_per_s", "slots")
    assert changed.updated(base_url=None).endpoint == {}
    with pytest.raises(CatalogueError, match="cannot change id"):
        llm.updated(id="other")
    with pytest.raises(CatalogueError, match="ttft_ms: must be > 0"):
        llm.updated(ttft_ms=0)
    # a default's value in the wrong type, or an emptied name, is an error, not a silent default
    with pytest.raises(CatalogueError, match=r"slots: must be an integer \(got 4.0\)"):
        llm.updated(slots=4.0)
    with pytest.raises(CatalogueError, match="name: must be a non-empty string"):
        llm.updated(name="")
