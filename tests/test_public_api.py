"""The Python API as a user sees it: only the public names of `import mixllm` are used here.

The tiny world of conftest (a 3-LLM catalogue: `big` is the only one that writes code, everyone
chats) stands in for a trained home; `trained_home` is a private copy of it, `$MIXLLM_HOME` too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import CHAT, CODE, tiny_records

import mixllm

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def router(trained_home):
    with mixllm.load() as r:
        yield r


# ------------------------------------------------------------------ the package itself


def test_import_mixllm_is_light_until_a_router_is_loaded():
    # A fresh interpreter: the test process has numpy loaded already.
    code = ("import json, sys, mixllm\n"
            "seen = lambda: sorted(m for m in ('numpy', 'onnxruntime', 'sklearn', 'mixllm_cli.api',"
            " 'mixllm_cli.routing') if m in sys.modules)\n"
            "after_import = seen()\n"
            "mixllm.MixLLMError, mixllm.UsageError, mixllm.Router, mixllm.load, mixllm.__version__\n"
            "print(json.dumps([after_import, seen()]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    after_import, after_names = json.loads(out)
    assert after_import == []
    assert after_names == ["mixllm_cli.api"]  # the API's module, and still no numpy or onnxruntime


def test_public_names_are_listed_and_documented():
    assert isinstance(mixllm.__version__, str) and mixllm.__version__[0].isdigit()
    expected = {"Router", "load", "evaluate", "Decision", "Candidate", "FeedbackResult", "MixLLMError", "UsageError",
                "DataError", "CatalogueError", "UnknownLLMError", "ArtifactError", "FeedbackError",
                "UnknownDecisionError", "StoreError", "UpstreamError", "Answer", "__version__"}
    assert set(mixllm.__all__) == expected
    assert set(mixllm.__all__) <= set(dir(mixllm))
    for name in mixllm.__all__:
        assert getattr(mixllm, name) is not None
    for fn in (mixllm.load, mixllm.evaluate, mixllm.Router, mixllm.Router.load, mixllm.Router.route,
               mixllm.Router.feedback, mixllm.Router.evaluate, mixllm.Router.close, mixllm.Router.ask):
        assert fn.__doc__ and len(fn.__doc__.strip()) > 20, fn
    assert mixllm.__doc__ and "mixllm.load()" in mixllm.__doc__
    with pytest.raises(AttributeError, match="no attribute 'route'"):
        mixllm.route  # noqa: B018 - the access is the test


def test_errors_are_one_hierarchy():
    for name in ("UsageError", "DataError", "CatalogueError", "UnknownLLMError", "ArtifactError", "FeedbackError",
                 "UnknownDecisionError", "StoreError"):
        assert issubclass(getattr(mixllm, name), mixllm.MixLLMError)
    assert issubclass(mixllm.UnknownDecisionError, mixllm.FeedbackError)
    assert not issubclass(mixllm.MixLLMError, TypeError)


# ------------------------------------------------------------------ loading


def test_load_the_default_home_or_a_path(trained_home, tmp_path, monkeypatch):
    with mixllm.load() as default:
        assert default.home == trained_home
        assert set(default.llms) == {"big", "vendor/small", "mid"}
        budgets = default.budgets
        assert list(budgets) == ["very-low", "low", "medium", "high"]
        assert all(isinstance(lam, float) and lam >= 0 for lam in budgets.values())
    monkeypatch.setenv("MIXLLM_HOME", str(tmp_path / "elsewhere"))
    with mixllm.Router.load(trained_home, trained_home / "models.yaml") as by_path:
        assert by_path.home == trained_home
        assert by_path.budgets == budgets
        assert "big" in repr(by_path)


def test_load_checks_its_arguments(trained_home, tmp_path):
    with pytest.raises(TypeError, match="home must be a str or pathlib.Path"):
        mixllm.load(home=42)
    with pytest.raises(TypeError, match="home must be a str or pathlib.Path"):
        mixllm.load(home=b"/tmp")
    with pytest.raises(TypeError, match="store must be a URL str"):
        mixllm.load(store=Path("x"))
    with pytest.raises(mixllm.CatalogueError):
        mixllm.load(catalogue=tmp_path / "missing.yaml")
    with pytest.raises(mixllm.UsageError, match="unknown store URL"):
        mixllm.load(store="mysql://x")


# ------------------------------------------------------------------ routing


def test_a_string_is_one_query(router):
    query = "write a python function to sum two numbers"
    d = router.route(query, budget="high")
    assert isinstance(d, mixllm.Decision)  # one decision, not one per character
    assert d.choice in router.llms
    assert d.budget == "high" and d.lam == router.budgets["high"]
    assert isinstance(d.decision_id, str) and d.decision_id
    assert d.prompt_tokens > 0
    assert [c.llm for c in d.candidates] == list(router.llms)
    for c in d.candidates:
        assert isinstance(c, mixllm.Candidate)
        assert 0 <= c.quality <= 1.5 and c.cost_usd > 0 and c.wait_ms >= 0 and c.response_tokens > 0
        assert c.available and not c.cold
    chosen = max(d.candidates, key=lambda c: c.score)
    assert chosen.llm == d.choice
    assert d.to_dict()["decision_id"] == d.decision_id


def test_a_list_gives_one_decision_per_query_in_order(router):
    queries = [CODE[0], CHAT[0], CODE[1], CHAT[3]]
    decisions = router.route(queries, budget="low")
    assert isinstance(decisions, list) and len(decisions) == 4
    assert all(isinstance(d, mixllm.Decision) and d.budget == "low" for d in decisions)
    assert len({d.decision_id for d in decisions}) == 4
    one_by_one = [router.route(q, budget="low", record=False).choice for q in queries]
    assert [d.choice for d in decisions] == one_by_one
    as_tuple = router.route(tuple(queries), lam=1e4, record=False)
    assert [d.choice for d in as_tuple] == ["big"] * 4 and all(d.budget is None and d.lam == 1e4 for d in as_tuple)
    assert router.route([]) == []


def test_lambda_trades_quality_for_cost(router):
    # Only `big` writes code: it wins when quality is all that counts, the cheapest when cost is.
    assert router.route(CODE[0], lam=1e4, record=False).choice == "big"
    assert router.route(CODE[0], lam=0, record=False).choice == "vendor/small"


@pytest.mark.parametrize("bad", [b"write a poem", bytearray(b"x"), 42, None, {"a", "b"}, {"q": 1},
                                 (q for q in ["a"]), 3.5])
def test_wrong_query_types_raise_type_error(router, bad):
    with pytest.raises(TypeError, match="route\\(\\) takes"):
        router.route(bad)


def test_type_errors_name_what_is_wrong(router):
    with pytest.raises(TypeError, match="decode it first"):
        router.route(b"bytes")
    with pytest.raises(TypeError, match=r"pass list\(\.\.\.\)"):
        router.route(iter(["a"]))
    with pytest.raises(TypeError, match=r"queries\[1\] must be a str \(got int\)"):
        router.route(["fine", 7])
    with pytest.raises(TypeError, match=r"queries\[0\] must be a str \(got bytes\)"):
        router.route([b"no"])
    with pytest.raises(TypeError, match="budget must be a preset name str"):
        router.route("q", budget=1)
    with pytest.raises(TypeError, match="lam must be a number"):
        router.route("q", lam="0.5")
    with pytest.raises(TypeError, match="lam must be a number"):
        router.route("q", lam=True)
    with pytest.raises(TypeError, match="max_wait_s must be a number"):
        router.route("q", max_wait_s="30")
    with pytest.raises(TypeError, match="record must be True or False"):
        router.route("q", record=0)
    with pytest.raises(TypeError, match="exclude must be a list or set"):
        router.route("q", exclude="big")


def test_bad_values_raise_the_library_errors(router):
    with pytest.raises(mixllm.DataError, match="query: is empty"):
        router.route("   ")
    with pytest.raises(mixllm.DataError, match="is empty"):
        router.route(["ok", ""])
    with pytest.raises(mixllm.UsageError, match="unknown budget 'cheap'; choose one of: very-low, low") as err:
        router.route("q", budget="cheap")
    assert err.value.param == "budget"
    with pytest.raises(mixllm.UsageError, match="unknown budget"):
        router.route([], budget="cheap")  # checked even with nothing to route
    with pytest.raises(mixllm.UsageError, match="give one, not both"):
        router.route("q", budget="low", lam=1.0)
    with pytest.raises(mixllm.UsageError):
        router.route("q", lam=-1)
    with pytest.raises(mixllm.UsageError, match="max_wait_s: must be a finite number"):
        router.route("q", max_wait_s=-1)
    with pytest.raises(mixllm.UsageError, match="exclude: unknown LLM 'gpt'"):
        router.route("q", exclude=["gpt"])
    with pytest.raises(mixllm.UsageError, match="exclude: leaves no trained LLM"):
        router.route("q", exclude=list(router.llms))


def test_exclude_keeps_an_llm_out(router):
    query = CODE[0]
    assert router.route(query, lam=1e4, record=False).choice == "big"
    d = router.route(query, lam=1e4, exclude={"big"}, record=False)
    assert d.choice != "big"
    assert not next(c for c in d.candidates if c.llm == "big").available


def test_routing_sees_the_queue_it_fills(router):
    # `big` has 4 slots and answers code at length: after a burst its expected wait is no longer 0.
    burst = router.route([CODE[0]] * 6, lam=1e4)
    assert [d.choice for d in burst[:4]] == ["big"] * 4
    waits = [next(c for c in d.candidates if c.llm == "big").wait_ms for d in burst]
    assert waits[0] == 0 and waits[-1] > 0
    dry = router.route(CODE[0], lam=1e4, record=False)
    assert dry.decision_id is None
    assert all(c.wait_ms == 0 for c in dry.candidates)


def test_a_router_can_be_shared_by_threads(router):
    out: list[object] = []

    def work() -> None:
        try:
            out.append(router.route(CHAT[1], budget="low").decision_id)
        except mixllm.MixLLMError as exc:  # the assertion below shows it
            out.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and all(isinstance(x, str) for x in out), out


# ------------------------------------------------------------------ feedback


def test_feedback_is_recorded_once_and_seen_by_another_router(router, trained_home):
    d = router.route(CODE[2], budget="medium")
    result = router.feedback(d, quality=0.9, response_tokens=180, latency_ms=2300.0)
    assert isinstance(result, mixllm.FeedbackResult)
    assert (result.status, result.id, result.llm, result.kind) == ("recorded", d.decision_id, d.choice, "refined")
    assert router.feedback(d, quality=0.9, response_tokens=180, latency_ms=2300.0).status == "duplicate"
    # The store holds it: a second router on the same home sees the same event as a duplicate.
    with mixllm.load(trained_home) as other:
        assert other.feedback(d.decision_id, quality=0.9, response_tokens=180, latency_ms=2300.0).status == "duplicate"
        assert other.feedback(d.decision_id, good=False).kind == "binary"


def test_feedback_teaches_the_router(router):
    query = CHAT[2]
    before = router.route(query, budget="low")
    llm = before.choice
    predicted = next(c for c in before.candidates if c.llm == llm)
    for _ in range(5):
        d = router.route(query, budget="low")
        if d.choice == llm:
            router.feedback(d, quality=0.0)
    after = next(c for c in router.route(query, budget="low", record=False).candidates if c.llm == llm)
    assert after.uncertainty < predicted.uncertainty  # the online model saw outcomes of this LLM here


def test_feedback_checks_its_arguments(router):
    d = router.route(CHAT[0])
    with pytest.raises(mixllm.FeedbackError, match="quality: must be in \\[0, 1\\]"):
        router.feedback(d, quality=2)
    with pytest.raises(mixllm.UsageError, match="quality and good: refined .* not both"):
        router.feedback(d, quality=0.5, good=True)
    with pytest.raises(mixllm.FeedbackError, match="nothing to record"):
        router.feedback(d)
    with pytest.raises(mixllm.UnknownDecisionError):
        router.feedback("0123456789abcdef", good=True)
    with pytest.raises(mixllm.FeedbackError, match="not recorded"):
        router.feedback(router.route(CHAT[0], record=False), good=True)
    with pytest.raises(TypeError, match="takes a Decision or its decision_id"):
        router.feedback(42, good=True)
    with pytest.raises(TypeError, match="quality must be a number"):
        router.feedback(d, quality="0.9")
    with pytest.raises(TypeError, match="good must be True or False"):
        router.feedback(d, good=1)
    with pytest.raises(TypeError, match="response_tokens must be an int"):
        router.feedback(d, response_tokens=12.5)
    assert router.feedback(d, good=True).status == "recorded"  # nothing above was half-recorded


# ------------------------------------------------------------------ evaluation


def test_evaluate_a_dataset_file(trained_home, tiny):
    report = mixllm.evaluate(tiny / "train.jsonl")
    assert report["rows"] == 120 and report["best_llm"] == "big"
    by = {r["policy"]: r for r in report["results"]}
    assert "oracle" in by and "always big" in by
    for r in report["results"]:
        assert 0 <= r["mean_quality"] <= 1 and r["total_cost_usd"] > 0
        assert sum(r["picks"].values()) == 120
    assert by["always big"]["quality_pct_of_best"] == 100.0
    high = next(r for name, r in by.items() if name.startswith("mixllm high"))
    cheapest = next(r for name, r in by.items() if name.endswith("(cheapest)"))
    assert high["quality_pct_of_best"] > cheapest["quality_pct_of_best"] + 20
    assert by["oracle"]["mean_quality"] >= max(r["mean_quality"] for r in report["results"])


def test_evaluate_records_in_memory_and_as_a_stream(router, tiny):
    records = tiny_records(40, seed=3)
    report = router.evaluate(records, cache=False)
    path = tiny.parent / "api-eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert router.evaluate(str(path), cache=False) == report
    stream = router.evaluate(records, rate="20/s", max_wait_s=5, cache=False)
    assert stream["rows"] == 40 and stream["rate_per_s"] == 20.0 and stream["tolerance_s"] == 5.0
    assert all("late" in r for r in stream["results"])
    assert router.evaluate(records, rate=20, max_wait_s=5, cache=False) == stream


def test_evaluate_checks_its_data(trained_home, router, tiny):
    records = tiny_records(5)
    with pytest.raises(TypeError, match="dataset path .* or a list of record dicts"):
        mixllm.evaluate(b"train.jsonl")
    with pytest.raises(TypeError, match=r"records\[1\] must be a dict"):
        router.evaluate([records[0], "not a record"])
    bad = [records[0], {**records[1], "query": ""}, {**records[2], "id": records[0]["id"]}]
    with pytest.raises(mixllm.DataError) as err:
        router.evaluate(bad)
    assert str(err.value).splitlines() == ["records[1]: query: must not be empty",
                                           "records[2]: id: duplicate id 'q0' (first at records[0])"]
    with pytest.raises(mixllm.DataError, match="holds no records"):
        router.evaluate([])
    with pytest.raises(mixllm.DataError, match="no such file"):
        router.evaluate(tiny / "missing.jsonl")
    with pytest.raises(mixllm.UsageError, match="rate"):
        router.evaluate(records, rate="fast")
    with pytest.raises(mixllm.UsageError, match="rate"):
        router.evaluate(records, rate=0)
    with pytest.warns(UserWarning, match="ignored unknown keys 'annotator'"):
        router.evaluate([{**r, "annotator": "me"} for r in records], cache=False)
