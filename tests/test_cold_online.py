"""A cold LLM learns online: once it has enough logged outcomes, heads fitted on them alone make it
warm (every query, its own predictions), without touching any other LLM's heads; the log rebuilds
it; removed and added again, it starts cold."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import CHAT, CODE

from mixllm_cli.learning.updates import COLD_MIN_OUTCOMES, cold_thresholds

N = COLD_MIN_OUTCOMES
ADD = ["add-llm", "newbie", "--input-usd-per-mtok", "0.5", "--output-usd-per-mtok", "1.5"]
# The newbie's truth: good and brief on chat, bad and long-winded on code.
CHAT_TOKENS, CODE_TOKENS = 20, 300


def route_many(cli, tmp_path, queries, lam="1000"):
    src = tmp_path / "queries.jsonl"
    src.write_text("".join(json.dumps({"query": q}) + "\n" for q in queries))
    code, out, err = cli("route", "--jsonl", src, "--lambda", lam, "--max-wait-s", "1e9")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def truth(decision, *, tokens=True, binary=False):
    chat = any(decision["query"].startswith(q) for q in CHAT)
    out = {"id": decision["decision_id"]}
    if binary:
        out["good"] = chat
    else:
        out["quality"] = 1.0 if chat else 0.0
    if tokens:
        out["response_tokens"] = CHAT_TOKENS if chat else CODE_TOKENS
    return out


def feed(cli, tmp_path, events):
    src = tmp_path / "feedback.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in events))
    code, out, err = cli("feedback", "--jsonl", src)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def candidates(cli, query):
    code, out, err = cli("route", query, "--json", "--no-queue", "--lambda", "1000")
    assert code == 0, err
    return {c["llm"]: c for c in json.loads(out)["candidates"]}


def digests(home):
    """sha256 of every file of the artifact set and of the catalogue."""
    files = sorted(p for p in (home / "artifacts").rglob("*") if p.is_file()) + [home / "models.yaml"]
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def online_state(home):
    from mixllm_cli.routing.router import Router

    router = Router.load(home)
    return router, (router.online.cold.get("newbie") if router.online is not None else None)


@pytest.fixture
def cold_home(trained_home, cli):
    code, out, err = cli(*ADD, "--explore-share", "1")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "cold"
    return trained_home, report


def decisions_with_queries(cli, tmp_path, n):
    """`n` decisions that chose newbie, chat and code alternating (distinct texts), each with its query."""
    queries = [f"{(CHAT if i % 2 else CODE)[i % 5]} {i}" for i in range(4 * n)]
    routed = route_many(cli, tmp_path, queries)
    chosen = [dict(d, query=q) for d, q in zip(routed, queries) if d["choice"] == "newbie"]
    assert len(chosen) >= n, len(chosen)
    return chosen[:n]


def test_a_cold_llm_becomes_warm_at_n_outcomes_and_nothing_else_changes(cold_home, cli, tmp_path):
    home, report = cold_home
    before = digests(home)
    others_before = {k: v for k, v in candidates(cli, CODE[0]).items() if k != "newbie"}
    ds = decisions_with_queries(cli, tmp_path, N + N // 2 + 7)
    feed(cli, tmp_path, [truth(d) for d in ds[:N - 1]])
    # N − 1 outcomes: exactly as before, the optimistic prior under exploration
    for q in (CHAT[0], CODE[0]):
        c = candidates(cli, q)["newbie"]
        assert c["cold"] is True and c["uncertainty"] == pytest.approx(0.01)
        assert c["predicted_quality"] == pytest.approx(report["prior_quality"], abs=1e-6)
        assert c["predicted_response_tokens"] == pytest.approx(report["prior_response_tokens"], abs=0.1)
    _, st = online_state(home)
    assert st.signals == N - 1 and st.fitted == 0

    (result,) = feed(cli, tmp_path, [truth(ds[N - 1])])
    assert result["status"] == "recorded"
    chat, code = candidates(cli, CHAT[1])["newbie"], candidates(cli, CODE[1])["newbie"]
    assert chat["cold"] is False and code["cold"] is False
    assert chat["predicted_quality"] > 0.6 and code["predicted_quality"] < 0.4  # what it was seen to do
    assert chat["predicted_response_tokens"] < 60 and code["predicted_response_tokens"] > 150
    assert chat["uncertainty"] < 0.01  # its own A⁻¹ now, from its N events

    router, st = online_state(home)
    assert st.fitted == N and st.fits == 1 and st.length_rows == N
    assert "newbie" not in router.cold_ids
    assert router.artifacts.heads["newbie"].quality.n_train == N
    # Warm: offered on every query, whatever share it explored on.
    many = [f"{w} {i}" for i in range(50) for w in ("sum",)]
    assert router.predict(many).available.all()

    # Nothing else moved: not one byte of the artifact set or catalogue, no other LLM's prediction.
    assert digests(home) == before
    others_after = {k: v for k, v in candidates(cli, CODE[0]).items() if k != "newbie"}
    assert others_after == others_before

    # More outcomes: fitted again at the next threshold (1.5×), once.
    feed(cli, tmp_path, [truth(d) for d in ds[N:]])
    _, st = online_state(home)
    assert st.fitted == cold_thresholds()[1] == N + N // 2 and st.fits == 2


def test_exploration_share_below_one_until_warm(trained_home, cli, tmp_path):
    """With a 50% share, only some queries are offered to it until it is warm, then all are."""
    assert cli(*ADD, "--explore-share", "0.5")[0] == 0
    from mixllm_cli.routing.router import Router

    many = [f"tell me about the cat {i}" for i in range(200)]
    j = Router.load(trained_home).llm_ids.index("newbie")
    share = Router.load(trained_home).predict(many).available[:, j].mean()
    assert 0.3 < share < 0.7
    ds = decisions_with_queries(cli, tmp_path, N)
    feed(cli, tmp_path, [truth(d) for d in ds])
    router = Router.load(trained_home)
    assert "newbie" not in router.cold_ids and router.predict(many).available[:, j].all()


def test_the_log_rebuilds_the_same_heads(cold_home, cli, tmp_path):
    home, _ = cold_home
    ds = decisions_with_queries(cli, tmp_path, N + 3)
    feed(cli, tmp_path, [truth(d) for d in ds[:N - 5]])  # live: several micro-batches
    for d in ds[N - 5:]:
        feed(cli, tmp_path, [truth(d)])
    live = {q: candidates(cli, q)["newbie"] for q in (CHAT[0], CODE[0], CODE[3])}
    assert not live[CHAT[0]]["cold"]

    code, out, err = cli("feedback", "--rebuild")
    assert code == 0, err
    assert json.loads(out)["cold_fitted"] == ["newbie"]
    assert {q: candidates(cli, q)["newbie"] for q in live} == live
    (home / "online" / "snapshot.npz").unlink()
    assert cli("feedback", "--rebuild")[0] == 0
    rebuilt = {q: candidates(cli, q)["newbie"] for q in live}
    for q, c in live.items():
        for key in ("predicted_quality", "predicted_response_tokens", "uncertainty", "score"):
            assert rebuilt[q][key] == pytest.approx(c[key], rel=1e-6, abs=1e-9), (q, key)


def test_removed_and_added_again_it_starts_cold(cold_home, cli, tmp_path):
    home, report = cold_home
    ds = decisions_with_queries(cli, tmp_path, N)
    feed(cli, tmp_path, [truth(d) for d in ds])
    assert candidates(cli, CHAT[0])["newbie"]["cold"] is False
    assert cli("remove-llm", "newbie")[0] == 0
    assert cli(*ADD, "--explore-share", "1")[0] == 0

    def cold_again():
        c = candidates(cli, CHAT[0])["newbie"]
        assert c["cold"] is True and c["predicted_quality"] == pytest.approx(report["prior_quality"], abs=1e-6)

    cold_again()  # the snapshot still holds the old self's heads; they are not served
    # Its first outcome starts a fresh state: one outcome, not N + 1.
    (d,) = decisions_with_queries(cli, tmp_path, 1)
    feed(cli, tmp_path, [truth(d)])
    cold_again()
    _, st = online_state(home)
    assert st.signals == 1 and st.fitted == 0 and st.a_inv is not None
    # A rebuild over the snapshot keeps where this incarnation began.
    assert cli("feedback", "--rebuild")[0] == 0
    cold_again()
    _, st = online_state(home)
    assert st.signals == 1


def test_relabels_count_once_and_binary_feedback_keeps_the_length_prior(cold_home, cli, tmp_path):
    """Thumbs up / down are quality signals; a label sent again for the same decision is one outcome.
    Without reported tokens the length stays the median-length prior."""
    home, report = cold_home
    ds = decisions_with_queries(cli, tmp_path, N)
    events = [truth(d, tokens=False, binary=True) for d in ds[:N - 1]]
    events.append({"id": ds[0]["decision_id"], "good": not events[0]["good"]})  # a correction
    feed(cli, tmp_path, events)
    _, st = online_state(home)
    assert st.signals == N and st.fitted == 0  # N events, N − 1 outcomes: still cold
    assert candidates(cli, CHAT[0])["newbie"]["cold"] is True
    feed(cli, tmp_path, [truth(ds[N - 1], tokens=False, binary=True)])
    chat, code = candidates(cli, CHAT[1])["newbie"], candidates(cli, CODE[1])["newbie"]
    assert not chat["cold"] and chat["predicted_quality"] > code["predicted_quality"] + 0.2
    for c in (chat, code):
        assert c["predicted_response_tokens"] == pytest.approx(report["prior_response_tokens"], abs=0.1)
    _, st = online_state(home)
    assert st.fitted == N and st.length is None and st.length_rows == 0


def test_all_outcomes_alike_give_a_constant_head(cold_home, cli, tmp_path):
    ds = decisions_with_queries(cli, tmp_path, N)
    feed(cli, tmp_path, [{"id": d["decision_id"], "quality": 1.0, "response_tokens": 40} for d in ds])
    for q in (CHAT[0], CODE[0]):
        c = candidates(cli, q)["newbie"]
        assert not c["cold"]
        assert c["predicted_quality"] == pytest.approx(1 - 0.5 / N, abs=1e-4)  # finite: half an outcome pulls it in
        assert c["predicted_response_tokens"] == pytest.approx(40, abs=0.01)


def test_an_old_snapshot_loads_and_is_rebuilt_from_the_log(cold_home, cli, tmp_path):
    """A format-1 snapshot (before cold LLMs learned) serves as it is, and the next catch-up replays
    the log into the new format."""
    import io

    home, _ = cold_home
    ds = decisions_with_queries(cli, tmp_path, N + 1)
    feed(cli, tmp_path, [truth(d) for d in ds[:N]])
    path = home / "online" / "snapshot.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("cold_")}
    meta = json.loads(str(arrays["meta"]))
    for key in ("format", "cold"):
        del meta[key]
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    router, st = online_state(home)
    assert router.online.snapshot_format == 1 and st is None and "newbie" in router.cold_ids
    feed(cli, tmp_path, [truth(ds[N])])
    router, st = online_state(home)
    assert router.online.snapshot_format == 2 and st.fitted == N and "newbie" not in router.cold_ids


def test_the_cold_fit_never_imports_sklearn(cold_home, cli, tmp_path, monkeypatch):
    import builtins

    ds = decisions_with_queries(cli, tmp_path, N)
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.split(".")[0] == "sklearn":
            raise AssertionError("feedback imported scikit-learn")
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, "__import__", no_sklearn)
        feed(cli, tmp_path, [truth(d) for d in ds])
    assert candidates(cli, CHAT[0])["newbie"]["cold"] is False


def test_thresholds_grow_by_half_and_stop():
    import itertools

    steps = cold_thresholds()
    assert steps[:4] == [100, 150, 225, 338] and steps[-1] == 2000 and len(steps) == 9
    assert all(b <= a * 1.5 + 1 for a, b in itertools.pairwise(steps))
    assert sum(steps) < 4 * steps[-1]  # every fit together costs less than four of the last
