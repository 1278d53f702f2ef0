"""The shipped RouterBench data (data/routerbench/*.jsonl) and the token reconstruction behind it.

Runs on the committed files only: a user's clone has no ../shared source data.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.dataset import Record, llm_ids, read_dataset

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "routerbench"


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Record]]:
    return {split: read_dataset(DATA / f"{split}.jsonl") for split in ("train", "test")}


@pytest.fixture(scope="module")
def converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convert_routerbench", REPO / "tools" / "convert_routerbench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_row_counts(splits: dict[str, list[Record]]) -> None:
    assert len(splits["train"]) == 2225
    assert len(splits["test"]) == 953


def test_every_query_has_all_11_catalogue_llms(splits: dict[str, list[Record]]) -> None:
    catalogue = load_catalogue(REPO / "models.yaml")
    for records in splits.values():
        assert set(llm_ids(records)) == set(catalogue.ids)
        assert len(catalogue.ids) == 11
        assert all(len(r.outcomes) == 11 for r in records)


def test_ids_unique_across_splits(splits: dict[str, list[Record]]) -> None:
    ids = [r.id for records in splits.values() for r in records]
    assert len(ids) == len(set(ids)) == 3178


def test_tasks(splits: dict[str, list[Record]]) -> None:
    for records in splits.values():
        assert {r.task for r in records} == {"arc-challenge", "mbpp", "winogrande"}
        assert all(r.tags == () for r in records)


def test_cost_is_reproduced_by_tokens_and_catalogue_prices(splits: dict[str, list[Record]]) -> None:
    catalogue = load_catalogue(REPO / "models.yaml")
    checked = 0
    for records in splits.values():
        for r in records:
            for llm_id, o in r.outcomes.items():
                llm = catalogue.get(llm_id)
                rebuilt = (o.prompt_tokens * llm.input_usd_per_mtok + o.response_tokens * llm.output_usd_per_mtok) / 1e6
                assert math.isclose(rebuilt, o.cost_usd, rel_tol=1e-9), (r.id, llm_id, o)
                assert o.prompt_tokens >= 0 and o.response_tokens >= 0
                checked += 1
    assert checked == 3178 * 11


def test_null_qualities_are_the_source_missing_cells(splits: dict[str, list[Record]]) -> None:
    nulls = {
        split: [o for r in records for o in r.outcomes.values() if o.quality is None]
        for split, records in splits.items()
    }
    # 154 empty cells in the source CSVs: 14 rows x 10 LLMs plus 14 rows x 1 LLM
    assert (len(nulls["train"]), len(nulls["test"])) == (92, 62)
    # the calls happened: tokens and cost are kept
    assert all(o.cost_usd > 0 and o.prompt_tokens + o.response_tokens > 0 for os_ in nulls.values() for o in os_)
    qualities = {o.quality for records in splits.values() for r in records for o in r.outcomes.values()}
    assert qualities == {0.0, 1.0, None}


def test_readme_records_the_files_sha256() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for name in ("train.jsonl", "test.jsonl"):
        digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
        assert f"| `{name}` |" in readme and digest in readme
    assert "MIT" in readme


# --- the reconstruction rule (pure; no source data needed) -----------------------------------


@pytest.mark.parametrize(
    ("cost", "prices", "p_est", "expected"),
    [
        # equal prices: T = cost*1e6/price = 1000 tokens; prompt gets min(p_est, T)
        (0.0009, (0.9, 0.9), 600, (600, 400, False)),
        (0.0009, (0.9, 0.9), 1500, (1000, 0, True)),
        (0.000776, (0.776, 0.776), 10, (10, 990, False)),
        # gpt-4: 100p + 300r = 94500 -> p = 945 - 3r; nearest p to 600 is 600 (r = 115)
        (0.00945, (10.0, 30.0), 600, (600, 115, False)),
        # 601 is not reachable (945 - 601 is not a multiple of 3); 600 is the nearest that is
        (0.00945, (10.0, 30.0), 601, (600, 115, False)),
        # p_est above what the cost allows: the prompt takes the whole cost, flagged as clamped
        (0.00945, (10.0, 30.0), 2000, (945, 0, True)),
        # gpt-3.5: 10p + 20r = 4760 -> p even; tie between 100 and 102 for 101 goes to the lower
        (0.000476, (1.0, 2.0), 101, (100, 188, False)),
        (0.000476, (1.0, 2.0), 0, (0, 238, False)),
    ],
)
def test_reconstruct_tokens(converter: ModuleType, cost: float, prices: tuple, p_est: int, expected: tuple) -> None:
    rec = converter.reconstruct_tokens(cost, prices[0], prices[1], p_est)
    assert (rec.prompt_tokens, rec.response_tokens, rec.clamped) == expected
    assert math.isclose((rec.prompt_tokens * prices[0] + rec.response_tokens * prices[1]) / 1e6, cost, rel_tol=1e-9)


def test_reconstruct_tokens_fails_loudly(converter: ModuleType) -> None:
    with pytest.raises(converter.ConversionError, match="is not an integer"):
        converter.reconstruct_tokens(0.00090005, 0.9, 0.9, 10)  # 1000.06 tokens
    with pytest.raises(converter.ConversionError, match="no integer token split"):
        converter.reconstruct_tokens(0.0000015, 1.0, 3.0, 1)  # 15 tenths: 10p + 30r = 15 has no solution
