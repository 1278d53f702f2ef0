"""Online learning from feedback: the log is the truth, the snapshot follows it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CHAT, CODE


def route_ids(cli, query, n=1, *extra):
    out = []
    for _ in range(n):
        code, text, err = cli("route", query, "--json", "--max-wait-s", "1e9", *extra)
        assert code == 0, err
        out.append(json.loads(text))
    return out


def predicted(cli, query, llm):
    _, text, _ = cli("route", query, "--json", "--no-queue", "--lambda", "1000")
    return next(c for c in json.loads(text)["candidates"] if c["llm"] == llm)


def stats(cli):
    code, out, err = cli("stats", "--json")
    assert code == 0, err
    return json.loads(out)


def test_heads_are_not_refitted_unless_switched_on(trained_home, cli):
    before = predicted(cli, CODE[0], "vendor/small")
    for d in route_ids(cli, CODE[0], 40, "--lambda", "0"):
        assert cli("feedback", d["decision_id"], "--quality", "1", "--response-tokens", "5")[0] == 0
    after = predicted(cli, CODE[0], "vendor/small")
    assert after["predicted_quality"] == before["predicted_quality"]
    assert after["uncertainty"] < before["uncertainty"]  # A⁻¹ still learns
    assert stats(cli)["online"]["refits_per_llm"] == {}


def test_refined_feedback_moves_the_chosen_llms_quality_head(trained_home, cli, monkeypatch):
    monkeypatch.setenv("MIXLLM_ONLINE_REFIT", "1")
    before = predicted(cli, CODE[0], "vendor/small")
    mid_before = predicted(cli, CODE[0], "mid")["predicted_quality"]
    ds = route_ids(cli, CODE[0], 40, "--lambda", "0")
    assert {d["choice"] for d in ds} == {"vendor/small"}
    for d in ds[:31]:  # offline it failed code; now it turns out to succeed
        code, _, err = cli("feedback", d["decision_id"], "--quality", "1", "--response-tokens", "5")
        assert code == 0, err
    # 31 new outcomes: below REFIT_MIN (32), the heads have not moved yet
    assert predicted(cli, CODE[0], "vendor/small")["predicted_quality"] == before["predicted_quality"]
    for d in ds[31:]:
        assert cli("feedback", d["decision_id"], "--quality", "1", "--response-tokens", "5")[0] == 0
    after = predicted(cli, CODE[0], "vendor/small")
    # refitted on 120 offline rows (60 code failures) + 40 successes on this very query
    assert after["predicted_quality"] > before["predicted_quality"] + 0.1
    assert after["predicted_response_tokens"] < before["predicted_response_tokens"]
    # other LLMs' heads are untouched
    assert predicted(cli, CODE[0], "mid")["predicted_quality"] == mid_before
    s = stats(cli)
    assert s["feedback"] == 40 and s["per_llm"]["vendor/small"]["refined_feedback"] == 40
    assert s["online"]["updates_per_llm"]["vendor/small"]["refined"] == 40
    assert s["online"]["refits_per_llm"] == {"vendor/small": 1}


def test_uncertainty_shrinks_with_feedback(trained_home, cli):
    u0 = predicted(cli, CODE[1], "vendor/small")["uncertainty"]
    ds = route_ids(cli, CODE[1], 10, "--lambda", "0")
    assert {d["choice"] for d in ds} == {"vendor/small"}
    for d in ds:
        assert cli("feedback", d["decision_id"], "--good")[0] == 0
    assert predicted(cli, CODE[1], "vendor/small")["uncertainty"] < u0


def test_binary_feedback_trains_the_dynamic_feedback_network(trained_home, cli):
    from mixllm_cli.routing.router import Router

    ds = route_ids(cli, CHAT[0], 40, "--lambda", "0")
    for k, d in enumerate(ds):  # mostly bad, some good: rewards vary, so κ > 0
        assert cli("feedback", d["decision_id"], "--bad" if k % 4 else "--good")[0] == 0
    router = Router.load(trained_home)
    assert router.online is not None and router.online.kappa > 0
    preds = router.predict([CHAT[0]])
    j = router.llm_ids.index("vendor/small")
    assert preds.bonus[0, j] < 0  # the LLM users disliked is pushed down


def test_same_feedback_twice_counts_once(trained_home, cli):
    (d,) = route_ids(cli, CODE[0])
    args = ("feedback", d["decision_id"], "--quality", "0.5")
    assert json.loads(cli(*args)[1])["status"] == "recorded"
    assert json.loads(cli(*args)[1])["status"] == "duplicate"
    assert stats(cli)["feedback"] == 1
    assert json.loads(cli("feedback", d["decision_id"], "--quality", "0.6")[1])["status"] == "recorded"


@pytest.mark.parametrize("args, message", [
    (["--quality", "1.5"], "Error: feedback: quality: must be in [0, 1] (got 1.5)"),
    (["--response-tokens", "-3"], "Error: feedback: response_tokens: must be >= 0 (got -3)"),
])
def test_bad_feedback_writes_nothing(trained_home, cli, args, message):
    (d,) = route_ids(cli, CODE[0])
    code, out, err = cli("feedback", d["decision_id"], *args)
    assert (code, out) == (1, "") and err.strip() == message
    assert stats(cli)["feedback"] == 0


def test_refined_and_binary_together_is_a_usage_error(trained_home, cli):
    (d,) = route_ids(cli, CODE[0])
    code, out, err = cli("feedback", d["decision_id"], "--quality", "0.5", "--good")
    assert (code, out) == (2, "")
    assert err.strip() == "Error: --quality and --good: refined (--quality) or binary (--good / --bad) feedback, not both"
    assert stats(cli)["feedback"] == 0


def test_feedback_for_a_removed_llm(trained_home, cli):
    (d,) = route_ids(cli, CODE[0], 1, "--lambda", "1000")
    assert d["choice"] == "big"
    assert cli("remove-llm", "big")[0] == 0
    code, _, err = cli("feedback", d["decision_id"], "--quality", "1")
    assert code == 1
    assert err.strip() == (f"Error: decision '{d['decision_id']}' went to 'big', which is no longer in the pool; "
                           "feedback for it is not recorded")
    assert stats(cli)["feedback"] == 0


def test_batch_feedback_one_result_per_line(trained_home, cli, tmp_path):
    ds = route_ids(cli, CODE[0], 3)
    src = tmp_path / "fb.jsonl"
    src.write_text(json.dumps({"id": ds[0]["decision_id"], "quality": 1}) + "\n"
                   + json.dumps({"id": "dnope", "good": True}) + "\n"
                   + "{broken\n"
                   + json.dumps({"id": ds[1]["decision_id"], "good": False, "latency_ms": 900}) + "\n"
                   + json.dumps({"id": ds[0]["decision_id"], "quality": 1}) + "\n")
    code, out, err = cli("feedback", "--jsonl", src)
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["status"] for r in rows] == ["recorded", "error", "error", "recorded", "duplicate"]
    assert rows[1]["error"] == f"{src}:2: unknown decision id 'dnope'"
    assert code == 1 and err.strip() == f"Error: {src}: 2 line(s) not recorded; see the error objects in the output"
    assert stats(cli)["feedback"] == 2


def test_rebuild_reproduces_the_snapshot_and_a_crash_loses_nothing(trained_home, cli, monkeypatch):
    from mixllm_cli.learning import updates

    ds = route_ids(cli, CODE[0], 6, "--lambda", "1000")
    for d in ds[:3]:
        assert cli("feedback", d["decision_id"], "--quality", "0", "--response-tokens", "5")[0] == 0
    # the process dies after the log write, before the snapshot is saved
    with monkeypatch.context() as m:
        m.setattr(updates, "save_snapshot", lambda *a: (_ for _ in ()).throw(OSError("killed")))
        code, _, err = cli("feedback", ds[3]["decision_id"], "--quality", "0", "--response-tokens", "5")
        assert code == 1 and err == "Error: killed\n"  # one line, no traceback
    assert stats(cli)["feedback"] == 4  # acknowledged by the log
    assert stats(cli)["online"]["applied_through_seq"] == 3
    assert cli("feedback", ds[4]["decision_id"], "--quality", "0", "--response-tokens", "5")[0] == 0
    assert stats(cli)["online"]["updates_per_llm"]["big"]["refined"] == 5  # caught up
    live = predicted(cli, CODE[0], "big")
    (trained_home / "online" / "snapshot.npz").unlink()
    code, out, _ = cli("feedback", "--rebuild")
    assert code == 0 and json.loads(out)["applied"] == 5
    rebuilt = predicted(cli, CODE[0], "big")
    assert rebuilt["predicted_quality"] == pytest.approx(live["predicted_quality"], abs=1e-6)
    assert rebuilt["uncertainty"] == pytest.approx(live["uncertainty"], rel=1e-5)


def test_sherman_morrison_keeps_the_exact_inverse():
    from types import SimpleNamespace

    from mixllm_cli.learning.online import OnlineModel
    from mixllm_cli.learning.updates import apply_event

    rng = np.random.default_rng(0)
    d = 6
    e0 = rng.normal(size=(20, d))
    a = np.eye(d) + e0.T @ e0
    heads = {"x": SimpleNamespace(a_inv=np.linalg.inv(a).astype(np.float32), quality=None, length=None)}
    arts = SimpleNamespace(heads=heads, features=None, manifest=SimpleNamespace(heads={}),
                           embed=lambda e: np.asarray(e, np.float32))
    model = OnlineModel(base="t")
    for _ in range(15):
        e = rng.normal(size=d).astype(np.float32)
        apply_event(model, {"llm": "x", "kind": "binary", "good": 1, "embedding": e.tobytes(),
                            "token_ids": np.zeros(0, np.int32).tobytes()}, arts)
        a += np.outer(e, e)
    np.testing.assert_allclose(model.a_inv["x"], np.linalg.inv(a), rtol=1e-3, atol=1e-5)


def test_policy_gradient_step_matches_finite_differences():
    from mixllm_cli.learning.online import DFNet

    rng = np.random.default_rng(1)
    net = DFNet.fresh(["a", "b", "c"], 5, seed=2)
    net.w[-1] = rng.normal(size=net.w[-1].shape)  # a non-trivial last layer
    e = rng.normal(size=5)

    def logp(n):
        z, _ = n.forward(e[None, :])
        return float(z[0, 1] - np.log(np.exp(z[0]).sum()))

    import copy

    stepped = copy.deepcopy(net)
    stepped.reinforce(e, action=1, advantage=1.0, lr=1.0)  # w' = w + ∇ log π(b|e)
    for k in range(3):
        grad = stepped.w[k] - net.w[k]
        idx = tuple(rng.integers(s) for s in grad.shape)
        probe = copy.deepcopy(net)
        h = 1e-6
        probe.w[k][idx] += h
        numeric = (logp(probe) - logp(net)) / h
        assert grad[idx] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_updates_never_land_on_a_re_added_llms_new_heads(trained_home, cli, tmp_path, monkeypatch):
    """Feedback for `newbie`, then newbie is removed and added again from other data: its new heads
    serve as trained, untouched by the old updates."""
    monkeypatch.setenv("MIXLLM_ONLINE_REFIT", "1")
    rng = np.random.default_rng(3)
    data = tmp_path / "newbie.jsonl"
    data.write_text("".join(json.dumps({"id": f"n{i}", "query": (CODE + CHAT)[i % 10], "outcomes": {"newbie": {
        "quality": float(rng.random() < 0.5), "prompt_tokens": 8, "response_tokens": 40, "cost_usd": 1e-5}}}) + "\n"
        for i in range(60)))
    add = ["add-llm", "newbie", "--input-usd-per-mtok", "0.01", "--output-usd-per-mtok", "0.01", "--data", data]
    assert cli(*add)[0] == 0
    ds = route_ids(cli, CODE[0], 40, "--lambda", "0")  # enough outcomes (>= REFIT_MIN) for a refit
    assert {d["choice"] for d in ds} == {"newbie"}
    for d in ds:
        assert cli("feedback", d["decision_id"], "--quality", "0")[0] == 0
    assert cli("remove-llm", "newbie")[0] == 0
    flipped = data.read_text().replace('"quality": 0.0', "Q").replace('"quality": 1.0', '"quality": 0.0')
    data.write_text(flipped.replace("Q", '"quality": 1.0'))  # different, still mixed: a linear head again
    assert cli(*add)[0] == 0
    from mixllm_cli.artifacts import load_artifact_set
    from mixllm_cli.core.heads import LinearHead
    from mixllm_cli.routing.router import Router

    router = Router.load(trained_home)
    assert router.online is not None and isinstance(router.artifacts.heads["newbie"].quality, LinearHead)
    plain = Router(load_artifact_set(trained_home / "artifacts", list(router.catalogue.ids)), router.catalogue)
    j = router.llm_ids.index("newbie")
    assert router.predict([CODE[0]]).quality[0, j] == plain.predict([CODE[0]]).quality[0, j]
    # while an LLM that did get feedback keeps its updates
    ds = route_ids(cli, CODE[0], 40, "--lambda", "0")
    for d in ds:
        assert cli("feedback", d["decision_id"], "--quality", "0")[0] == 0
    router = Router.load(trained_home)
    k = router.llm_ids.index(ds[0]["choice"])
    assert router.online.refit[ds[0]["choice"]]["refits"] >= 1
    assert router.predict([CODE[0]]).quality[0, k] != plain.predict([CODE[0]]).quality[0, k]


def test_rebuild_over_an_existing_snapshot_does_not_count_events_twice(trained_home, cli):
    ds = route_ids(cli, CODE[0], 4, "--lambda", "1000")
    for d in ds:
        assert cli("feedback", d["decision_id"], "--good")[0] == 0
    live = predicted(cli, CODE[0], "big")["uncertainty"]
    assert cli("feedback", "--rebuild")[0] == 0  # the snapshot stays while the log is replayed
    assert predicted(cli, CODE[0], "big")["uncertainty"] == pytest.approx(live, rel=1e-5)


def test_refits_read_one_outcome_per_decision_the_latest_label(trained_home, cli):
    from mixllm_cli.state.sqlite import StateStore

    (d,) = route_ids(cli, CODE[0], 1, "--lambda", "1000")
    assert cli("feedback", d["decision_id"], "--quality", "0.2", "--response-tokens", "50")[0] == 0
    assert cli("feedback", d["decision_id"], "--good")[0] == 0  # a later label replaces the first
    assert cli("feedback", d["decision_id"], "--latency-ms", "900")[0] == 0  # latency alone: no outcome
    store = StateStore.for_home(trained_home)
    (o,) = store.outcomes_for(d["choice"], 0)
    assert (o["quality"], o["good"], o["response_tokens"]) == (None, 1, 50)
    assert store.outcomes_for(d["choice"], 10**9) == []
