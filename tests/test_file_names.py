"""Injective file names for LLM ids (issue 16, item 3): `a/b` and `a::b` once shared
`heads/a__b.*`, so training or adding one overwrote the other's heads and the home stopped
routing (sha256 mismatch). Sets written with the earlier names still load."""

from __future__ import annotations

import json
import random
import re
import shutil
from datetime import datetime, timezone

import numpy as np
import pytest
from conftest import CHAT, CODE, TINY_CATALOGUE, tiny_records

from mixllm_cli.artifacts import STAMP_FORMAT, llm_file_stem
from mixllm_cli.catalogue import ID_PATTERN

TWIN_ENTRY = """\
  - id: vendor::small
    name: Small model's twin
    input_usd_per_mtok: 0.2
    output_usd_per_mtok: 0.2
    ttft_ms: 200
    output_tokens_per_s: 100
    slots: 8
    sources: {prices: test, ttft_ms: test, output_tokens_per_s: test, slots: test}
"""
TWINS = ["vendor/small", "vendor::small", "vendor:small", "Vendor/Small", "VENDOR/small"]


def test_stems_are_one_to_one_on_file_systems_that_fold_case():
    rng = random.Random(0)
    alphabet = "abcAB01._/:-"
    ids = set(TWINS) | {"a/b", "a::b", "a:b", "a.b", "a-b", "A/b", "a/B", "con", "CON", "con.x", "nul.quality",
                        "claude-v1", "gpt-3.5-turbo", "x" * 128, "X" * 128}
    while len(ids) < 5000:
        ids.add(rng.choice("abAB01") + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))))
    assert all(re.fullmatch(ID_PATTERN, i) for i in ids)
    stems = {i: llm_file_stem(i) for i in ids}
    assert len({s.casefold() for s in stems.values()}) == len(ids)  # distinct even where case folds
    for i, s in stems.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9._~-]*", s) and len(s) <= 128, (i, s)
        assert s.split(".", 1)[0] not in {"con", "nul", "prn", "aux"}  # Windows' device names
    # readable: a lower-case id without separators is its own stem (the shipped set's plain names)
    assert stems["claude-v1"] == "claude-v1" and stems["gpt-3.5-turbo"] == "gpt-3.5-turbo"
    # no stem is another's time-stamped name (pool changes write `<stem>.<time>.<kind>` when the usual is taken)
    stamp = datetime(2026, 12, 1, 3, 48, 18, 478958, tzinfo=timezone.utc).strftime(STAMP_FORMAT)
    for base in ("mid", "vendor/small"):
        stamped = f"{llm_file_stem(base)}.{stamp}"
        for other in (stamped, stamped.lower(), f"mid.{stamp.lower()}"):
            if re.fullmatch(ID_PATTERN, other):
                assert llm_file_stem(other).casefold() != stamped.casefold()


def twin_world(root):
    """The tiny world with a second LLM whose id only the separator tells apart from vendor/small,
    good at what vendor/small is bad at (code)."""
    root.mkdir()
    (root / "models.yaml").write_text(TINY_CATALOGUE + TWIN_ENTRY)
    with open(root / "train.jsonl", "w") as f:
        for rec in tiny_records():
            twin = dict(rec["outcomes"]["vendor/small"])
            twin["quality"] = 1.0 if rec["task"] == "code" else 0.0
            rec["outcomes"]["vendor::small"] = twin
            f.write(json.dumps(rec) + "\n")
    return root


def candidates(cli, query, *args):
    code, out, err = cli("route", query, "--json", *args)
    assert code == 0, err
    return {c["llm"]: c for c in json.loads(out)["candidates"]}


def test_train_offline_with_ids_that_shared_a_file_name_routes_both(tiny, cli, tmp_path):
    world = twin_world(tmp_path / "world")
    home = tmp_path / "home"
    code, _, err = cli("train-offline", world / "train.jsonl", "--catalogue", world / "models.yaml", "--home", home)
    assert code == 0, err
    manifest = json.loads((home / "artifacts" / "manifest.json").read_text())
    files = {llm: {e["file"] for k, e in entry.items() if isinstance(e, dict) and "file" in e}
             for llm, entry in manifest["heads"].items()}
    assert not files["vendor/small"] & files["vendor::small"]
    code_q = candidates(cli, CODE[0], "--home", home)
    assert set(code_q) == {"big", "vendor/small", "vendor::small", "mid"}  # both load: no sha256 mismatch
    # each kept its own heads: the twin is the one good at code
    assert code_q["vendor::small"]["predicted_quality"] > code_q["vendor/small"]["predicted_quality"] + 0.3


@pytest.fixture
def twin_data(tmp_path):
    path = tmp_path / "twin.jsonl"
    rng = np.random.default_rng(2)
    with open(path, "w") as f:
        for i in range(60):
            code = i % 2 == 0
            out = {"quality": 1.0 if code else 0.0, "prompt_tokens": 8, "response_tokens": 40, "cost_usd": 1e-6}
            query = (CODE if code else CHAT)[int(rng.integers(5))]
            f.write(json.dumps({"id": f"t{i}", "query": query, "outcomes": {"vendor::small": out}}) + "\n")
    return path


def head_files(home, llm):
    entry = json.loads((home / "artifacts" / "manifest.json").read_text())["heads"][llm]
    return {k: entry[k]["file"] for k in ("quality", "length", "ainv", "rows") if k in entry}


def test_add_fit_and_remove_an_id_that_once_shared_a_file_name(trained_home, twin_data, cli):
    before = {k: (trained_home / "artifacts" / f).read_bytes() for k, f in head_files(trained_home, "vendor/small").items()}
    code, _, err = cli("add-llm", "vendor::small", "--input-usd-per-mtok", "0.2", "--output-usd-per-mtok", "0.2",
                       "--data", twin_data)
    assert code == 0, err
    new = head_files(trained_home, "vendor::small")
    assert all(f.startswith(f"heads/{llm_file_stem('vendor::small')}.") for f in new.values())  # its own names
    assert set(new.values()).isdisjoint(head_files(trained_home, "vendor/small").values())
    assert {"vendor/small", "vendor::small"} <= set(candidates(cli, CODE[0]))
    assert cli("fit-llm", "vendor::small", "--data", twin_data)[0] == 0
    assert cli("remove-llm", "vendor::small")[0] == 0
    after = {k: (trained_home / "artifacts" / f).read_bytes() for k, f in head_files(trained_home, "vendor/small").items()}
    assert after == before  # vendor/small's files were never touched
    assert "vendor/small" in candidates(cli, CHAT[0])


def test_a_home_written_with_the_earlier_names_loads_and_takes_new_llms(trained_home, twin_data, cli):
    """A home trained before: vendor/small's files are `heads/vendor__small.*` (the old stem, which
    vendor::small also had). It routes as it is, and adding vendor::small writes beside them."""
    set_dir = trained_home / "artifacts"
    manifest = json.loads((set_dir / "manifest.json").read_text())
    entry = manifest["heads"]["vendor/small"]
    for kind in ("quality", "length", "ainv"):
        old = entry[kind]["file"]
        legacy = old.replace(llm_file_stem("vendor/small"), "vendor__small")
        if not (set_dir / legacy).exists():  # A⁻¹ may be shared with the other LLMs of the set
            shutil.copy2(set_dir / old, set_dir / legacy)
        entry[kind]["file"] = legacy
    (set_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    legacy_bytes = {f: (set_dir / f).read_bytes() for f in head_files(trained_home, "vendor/small").values()}
    assert "vendor/small" in candidates(cli, CHAT[0])
    code, _, err = cli("add-llm", "vendor::small", "--input-usd-per-mtok", "0.2", "--output-usd-per-mtok", "0.2",
                       "--data", twin_data)
    assert code == 0, err
    assert {f: (set_dir / f).read_bytes() for f in legacy_bytes} == legacy_bytes
    assert {"vendor/small", "vendor::small"} <= set(candidates(cli, CODE[0]))
