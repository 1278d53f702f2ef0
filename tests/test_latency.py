"""The queue model is pure arithmetic: pin it."""

import numpy as np
import pytest

from mixllm_cli.core.latency import LatencyEstimate, QueueState, service_time_s, update_estimate, within_tolerance


def test_service_time():
    assert service_time_s(LatencyEstimate(500, 20), 100) == pytest.approx(0.5 + 5.0)


def test_slots_serve_in_parallel_then_queue():
    q = QueueState.empty(("a", "b"), [2, 1], now=0.0)
    assert list(q.waits(0.0)) == [0.0, 0.0]
    assert q.admit(0, 0.0, 10.0) == (0, 0.0, 10.0)
    assert q.admit(0, 0.0, 4.0) == (1, 0.0, 4.0)
    # both slots busy: the next call waits for the one that frees first (t = 4)
    assert q.waits(1.0)[0] == pytest.approx(3.0)
    slot, start, end = q.admit(0, 1.0, 2.0)
    assert (slot, start, end) == (1, 4.0, 6.0)
    assert q.waits(1.0)[0] == pytest.approx(5.0)  # now slots free at 10 and 6
    assert q.waits(20.0)[0] == 0.0  # the queue drains with the clock
    assert q.waits(1.0)[1] == 0.0  # LLM b untouched
    assert list(q.depth(5.0)) == [2, 0]


def test_estimates_move_towards_observations():
    est = LatencyEstimate(ttft_ms=500, output_tokens_per_s=20)
    # 100 tokens in 2.5 s after a 500 ms first token: 50 tokens/s observed
    new = update_estimate(est, latency_ms=2500, ttft_ms=500, response_tokens=100)
    assert new.ttft_ms == pytest.approx(500)
    assert new.output_tokens_per_s == pytest.approx(0.8 * 20 + 0.2 * 50)
    assert new.n == 1
    for _ in range(60):
        new = update_estimate(new, latency_ms=2500, ttft_ms=500, response_tokens=100)
    assert new.output_tokens_per_s == pytest.approx(50, rel=1e-3)
    only_ttft = update_estimate(est, latency_ms=None, ttft_ms=300, response_tokens=None)
    assert only_ttft.ttft_ms == pytest.approx(460) and only_ttft.output_tokens_per_s == 20


def test_a_latency_without_tokens_changes_no_speed():
    est = LatencyEstimate(500, 20)
    assert update_estimate(est, 9000, None, None).output_tokens_per_s == 20


def test_hard_rule_mask():
    np.testing.assert_array_equal(within_tolerance(np.array([40.0, 10.0, 31.0]), 30.0), [False, True, False])
    # nobody meets it: everyone stays a candidate, the penalty decides
    np.testing.assert_array_equal(within_tolerance(np.array([40.0, 35.0]), 30.0), [True, True])
