"""Learning that one caller cannot poison (issue 16): physical bounds on every reported number, a
latency model that outliers cannot move far, and each decision learned from once however many
events are sent for it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHAT, CODE

from mixllm_cli.core.latency import BAND_FACTOR, CLIP_FACTOR, EWM_WEIGHT, LatencyEstimate, update_estimate
from mixllm_cli.errors import FeedbackError
from mixllm_cli.learning.feedback import MAX_COST_USD, MAX_LATENCY_MS, MAX_RESPONSE_TOKENS, Feedback, parse_feedback

pytest.importorskip("fastapi")


@pytest.fixture
def router(trained_home):
    from mixllm_cli.routing.router import Router

    return Router.load(trained_home)


@pytest.fixture
def store(trained_home):
    from mixllm_cli.state.sqlite import StateStore

    s = StateStore.for_home(trained_home)
    yield s
    s.close()


def route(router, store, n=1, query=CODE[0], lam=1000.0):
    """n decisions for `query`, admitted to the queue (at λ 1000 they all go to `big`)."""
    from mixllm_cli.routing.router import WaitPolicy

    preds = router.predict([query] * n)
    return router.decisions(preds, None, lam, queries=[query] * n, state=store, policy=WaitPolicy(1e9))


def record(router, store, home, items, apply=False):
    from mixllm_cli.learning.feedback import record_feedback

    return record_feedback(router, store, [(f"items[{k}]", it) for k, it in enumerate(items)], home, apply=apply)


# ---------------------------------------------------------------- physical bounds


@pytest.mark.parametrize(("field", "ok", "bad", "message"), [
    ("latency_ms", MAX_LATENCY_MS, MAX_LATENCY_MS * 1.001, "latency_ms: must be <= 3,600,000 (one hour)"),
    ("ttft_ms", MAX_LATENCY_MS, 1e308, "ttft_ms: must be <= 3,600,000 (one hour) (got 1e+308)"),
    ("response_tokens", MAX_RESPONSE_TOKENS, MAX_RESPONSE_TOKENS + 1, "response_tokens: must be <= 10,000,000"),
    ("response_tokens", 0, 10**30, "response_tokens: must be <= 10,000,000 (got 1000000000000000000000000000000)"),
    ("response_tokens", 0, 10**400, "response_tokens: must be <= 10,000,000 (got 1000000000000000000000000000000000000..."),
    ("cost_usd", MAX_COST_USD, 1e6, "cost_usd: must be <= 1,000 (one call) (got 1000000.0)"),
    ("quality", 1.0, 1.5, "quality: must be in [0, 1] (got 1.5)"),
    ("latency_ms", 0.0, -1.0, "latency_ms: must be >= 0 (got -1.0)"),
], ids=["latency", "ttft", "tokens", "tokens-1e30", "tokens-1e400", "cost", "quality", "negative"])
def test_every_number_has_a_physical_bound(field, ok, bad, message):
    assert getattr(parse_feedback({"id": "d1", field: ok}, "f"), field) == ok
    with pytest.raises(FeedbackError) as info:
        parse_feedback({"id": "d1", field: bad}, "f")
    assert str(info.value).startswith(f"f: {message}")


def test_the_first_token_cannot_come_after_the_last():
    assert parse_feedback({"id": "d1", "latency_ms": 900, "ttft_ms": 900}, "f").ttft_ms == 900
    with pytest.raises(FeedbackError, match=r"^f: ttft_ms: must be <= latency_ms \(got 901 > 900\)"):
        parse_feedback({"id": "d1", "latency_ms": 900, "ttft_ms": 901}, "f")


def test_feedback_built_in_code_is_checked_too(router, store, trained_home):
    """The server's proxy builds `Feedback` from an upstream's usage report, without parse_feedback:
    record_feedback checks it all the same, and an upstream claiming 10**30 tokens stores nothing."""
    (d,) = route(router, store)
    (r,) = record(router, store, trained_home, [Feedback(d.decision_id, response_tokens=10**30, latency_ms=900.0)])
    assert r.status == "error" and "response_tokens: must be <= 10,000,000" in str(r.error)
    assert store.stats()["feedback"] == 0 and store.stats()["latency_reports"] == 0


def test_an_absurd_ttft_is_a_400_and_teaches_the_latency_model_nothing(trained_home):
    """The issue's attack: `{"id": D, "ttft_ms": 1e308}` was accepted and made big's learned TTFT 2e307 ms."""
    from test_server import make_client

    from mixllm_cli.state.sqlite import StateStore

    with make_client(trained_home) as client:
        d = client.post("/v1/route", json={"query": CODE[0], "lambda": 1000}).json()
        for body in ({"id": d["decision_id"], "ttft_ms": 1e308},
                     {"id": d["decision_id"], "latency_ms": 7_200_000},
                     {"id": d["decision_id"], "latency_ms": 1000, "ttft_ms": 2000},
                     {"id": d["decision_id"], "response_tokens": 10**15},
                     {"id": d["decision_id"], "quality": 1, "cost_usd": 5e3}):
            r = client.post("/v1/feedback", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["type"] == "invalid_request_error"
        assert "ttft_ms: must be <= 3,600,000 (one hour)" in client.post(
            "/v1/feedback", json={"id": d["decision_id"], "ttft_ms": 1e308}).json()["error"]["message"]
        store = StateStore.for_home(trained_home)
        assert store.learned() == {}  # the latency model: untouched
        assert store.stats()["feedback"] == 0 and store.stats()["latency_reports"] == 0
        assert store.open_calls(0.0) == {"big": 1}  # and the call's slot was not freed by a bad report
        ok = client.post("/v1/feedback", json={"id": d["decision_id"], "ttft_ms": 400, "latency_ms": 2000})
        assert ok.status_code == 200 and ok.json()["status"] == "recorded"
        assert 400 <= store.learned()["big"].ttft_ms < 500


def test_the_cli_refuses_an_absurd_report_in_one_line(trained_home, cli):
    code, out, _ = cli("route", CODE[0], "--json")
    import json

    did = json.loads(out)["decision_id"]
    code, out, err = cli("feedback", did, "--ttft-ms", "1e308")
    assert (code, out) == (1, "")
    assert err == "Error: feedback: ttft_ms: must be <= 3,600,000 (one hour) (got 1e+308)\n"


# ---------------------------------------------------------------- the latency model


def test_one_outlier_moves_an_estimate_by_a_bounded_factor():
    est = LatencyEstimate(500.0, 20.0)
    up = update_estimate(est, latency_ms=MAX_LATENCY_MS, ttft_ms=MAX_LATENCY_MS, response_tokens=1)
    assert up.ttft_ms == pytest.approx(500.0 * (1 + EWM_WEIGHT * (CLIP_FACTOR - 1)))  # 1.4x, not 720,000 ms
    down = update_estimate(est, latency_ms=None, ttft_ms=0.0, response_tokens=None)
    assert down.ttft_ms == pytest.approx(500.0 * (1 - EWM_WEIGHT * (1 - 1 / CLIP_FACTOR)))
    fast = update_estimate(est, latency_ms=500.0 + 50, ttft_ms=500.0, response_tokens=MAX_RESPONSE_TOKENS)
    assert fast.output_tokens_per_s == pytest.approx(20.0 * 1.4)  # 10M tokens in 50 ms: clipped too
    slow = update_estimate(est, latency_ms=MAX_LATENCY_MS, ttft_ms=500.0, response_tokens=1)
    assert slow.output_tokens_per_s == pytest.approx(20.0 * (1 - EWM_WEIGHT * (1 - 1 / CLIP_FACTOR)))


def test_a_thousand_absurd_reports_move_ttft_at_most_by_the_band_and_twenty_five_sane_ones_undo_it(
        router, store, trained_home):
    """1,000 reports at the physical bound (an hour to the first token) leave big's learned TTFT at
    most BAND_FACTOR (10x) its catalogue figure (500 ms); the same model learns a genuine 3x slowdown
    within 12 reports (next test), and 25 reports at the catalogue figure bring it back within 10%."""
    catalogue_ttft = router.latency_defaults()["big"].ttft_ms
    ds = route(router, store, 1000)
    assert {d.choice for d in ds} == {"big"}
    rs = record(router, store, trained_home,
                [Feedback(d.decision_id, latency_ms=MAX_LATENCY_MS, ttft_ms=MAX_LATENCY_MS) for d in ds])
    assert {r.status for r in rs} == {"recorded"}
    learned = store.learned()["big"]
    assert learned.n == 1000
    assert catalogue_ttft < learned.ttft_ms <= BAND_FACTOR * catalogue_ttft  # 5,000 ms at most, not 3,600,000
    with store.transaction() as conn:  # what routing reads: the same bound
        assert store.estimates(conn, router.latency_defaults())["big"].ttft_ms <= BAND_FACTOR * catalogue_ttft
    sane = route(router, store, 25)
    record(router, store, trained_home, [Feedback(d.decision_id, ttft_ms=catalogue_ttft) for d in sane])
    assert store.learned()["big"].ttft_ms == pytest.approx(catalogue_ttft, rel=0.10)


def test_a_genuine_slowdown_is_learned_within_twelve_reports(router, store, trained_home):
    catalogue_ttft = router.latency_defaults()["big"].ttft_ms
    ds = route(router, store, 12)
    record(router, store, trained_home, [Feedback(d.decision_id, ttft_ms=3 * catalogue_ttft) for d in ds])
    assert store.learned()["big"].ttft_ms == pytest.approx(3 * catalogue_ttft, rel=0.05)


def test_an_estimate_poisoned_before_the_band_is_read_within_it_and_heals(router, store, trained_home):
    """A store poisoned by the old code (2e307 ms): routing reads it within the band, and the next report
    starts from there instead of from 2e307."""
    (d,) = route(router, store)
    with store.transaction() as conn:
        conn.execute("INSERT INTO latency_estimates VALUES ('big', 2e307, 20.0, 5)")
        assert store.estimates(conn, router.latency_defaults())["big"].ttft_ms == BAND_FACTOR * 500.0
    record(router, store, trained_home, [Feedback(d.decision_id, ttft_ms=500.0)])
    assert store.learned()["big"].ttft_ms < BAND_FACTOR * 500.0


# ---------------------------------------------------------------- one decision, learned once


def _snapshot(home, router, store):
    from mixllm_cli.learning.online import load_snapshot

    return load_snapshot(home, router.offline_artifacts, store)


def test_many_quality_values_for_one_decision_are_learned_once(router, store, trained_home):
    """Sending 30 different qualities for one decision (each a new event in the log) teaches what one
    does: A⁻¹ gets one e·eᵀ, the refit counts one outcome, refits read the latest value, and a rebuild
    from the log agrees with the live catch-up."""
    from mixllm_cli.learning.updates import catch_up

    d, other = route(router, store, 2)
    record(router, store, trained_home, [Feedback(d.decision_id, quality=0.0, response_tokens=10),
                                         Feedback(other.decision_id, quality=1.0)], apply=True)
    once = _snapshot(trained_home, router, store)
    for q in np.linspace(0.01, 1.0, 30):  # each caught up on its own, after the first was folded
        (r,) = record(router, store, trained_home, [Feedback(d.decision_id, quality=float(q))], apply=True)
        assert r.status == "recorded"  # the log keeps every event, for audit
    assert store.stats()["feedback"] == 32
    many = _snapshot(trained_home, router, store)
    assert many.last_seq > once.last_seq
    np.testing.assert_array_equal(many.a_inv["big"], once.a_inv["big"])
    assert many.counts["big"] == {"refined": 2, "binary": 0}
    assert many.refit["big"]["outcomes"] == 2
    (latest,) = [o for o in store.outcomes_for("big", 0) if o["response_tokens"] == 10]
    assert latest["quality"] == 1.0  # the latest value replaces the earlier ones
    catch_up(trained_home, router.offline_artifacts, store, rebuild=True)
    rebuilt = _snapshot(trained_home, router, store)
    np.testing.assert_allclose(rebuilt.a_inv["big"], once.a_inv["big"], rtol=1e-12)
    assert rebuilt.counts == many.counts


def test_only_the_first_thumb_per_decision_trains_the_feedback_network(router, store, trained_home):
    d, other = route(router, store, 2, query=CHAT[0])
    record(router, store, trained_home, [Feedback(d.decision_id, good=True), Feedback(other.decision_id, good=False)],
           apply=True)
    once = _snapshot(trained_home, router, store)
    record(router, store, trained_home, [Feedback(d.decision_id, good=k % 2 == 0) for k in range(1, 20)] +
           [Feedback(d.decision_id, quality=0.3)], apply=True)
    many = _snapshot(trained_home, router, store)
    assert many.rewards == once.rewards == [1.0, 0.0] and many.baseline == once.baseline
    for w_once, w_many in zip(once.df.w, many.df.w):
        np.testing.assert_array_equal(w_once, w_many)
    np.testing.assert_array_equal(many.a_inv[d.choice], once.a_inv[d.choice])
    assert many.counts[d.choice] == {"refined": 1, "binary": 2}  # one refined and one binary per decision
