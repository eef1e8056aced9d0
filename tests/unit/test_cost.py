"""The cost model that picks proposal lengths."""

import pytest

from engine.decoding.cost import Acceptance, ForwardCost

CPU = ForwardCost({1: 0.046, 2: 0.077, 4: 0.118, 8: 0.254, 16: 0.403, 32: 0.694, 64: 1.176})


def test_costs_interpolate_extrapolate_and_never_fall():
    cost = ForwardCost({1: 1.0, 4: 4.0, 8: 2.0})  # a noisy measurement: 4 timed slower than 8
    assert cost(4) == cost(8) == 2.0  # noise only adds time: the outlier gives way
    assert cost(2) == pytest.approx(1 + 1 / 3)
    assert cost(16) == 2.0  # flat past the last two points
    assert CPU(128) == pytest.approx(1.176 + (1.176 - 0.694) * 2)


def test_flat_costs_take_the_whole_proposal():
    assert ForwardCost.flat().best_length(0.5, 40) == 40


def test_cpu_costs_propose_only_what_is_likely_accepted():
    assert CPU.best_length(0.3, 40) == 0  # an edit point: decode one token
    copying = CPU.best_length(0.99, 80)
    assert 16 <= copying <= 80
    assert CPU.best_length(0.9, 80) < copying


def test_draft_steps_count_against_the_proposal():
    assert CPU.best_length(0.9, 40, per_token=0.0) > CPU.best_length(0.9, 40, per_token=0.02)


def test_acceptance_follows_recent_verifications():
    estimate = Acceptance(prior=0.9)
    estimate.observe(proposed=10, accepted=0)
    low = estimate.p
    assert low < 0.9
    estimate.observe(proposed=0, accepted=0)  # nothing proposed: nothing learnt
    assert estimate.p == low
    for _ in range(5):
        estimate.observe(proposed=20, accepted=20)
    assert estimate.p > 0.95


def test_a_whole_job_estimate_keeps_the_edits_it_has_seen():
    """Copying: an edit every 200 tokens, then three unbroken passes. Counting the whole
    job keeps p near 0.997, so the next copy stays short enough not to waste a long tail
    at the next edit; a window of recent passes forgets the edits."""
    whole, recent = Acceptance(prior=0.9, decay=1.0), Acceptance(prior=0.9)
    for estimate in (whole, recent):
        for proposed, accepted in [(256, 199)] * 4 + [(200, 200)] * 3:
            estimate.observe(proposed, accepted)
    assert whole.p == pytest.approx((3.6 + 4 * 199 + 600) / (4 + 4 * 200 + 600))
    torch_cpu = ForwardCost({1: 0.2, 4: 0.194, 16: 0.258, 64: 0.526, 256: 1.765})  # 1.5B bf16, 2 cores
    assert torch_cpu.best_length(whole.p, 256) < 128 < torch_cpu.best_length(recent.p, 256)


def test_an_estimate_given_up_on_drifts_back_to_its_prior():
    estimate = Acceptance(prior=0.7)
    for _ in range(3):
        estimate.observe(proposed=4, accepted=0)
    assert estimate.p < 0.3
    for _ in range(10):
        estimate.relax()
    assert estimate.p == pytest.approx(0.7, abs=0.05)


def test_measured_short_passes_keep_their_best_time(monkeypatch):
    clock = [0.0]
    calls = {}

    class Runtime:  # one pass over k tokens takes 0.1 + 0.01 k "seconds"; the first 1-token timing is upset
        def truncate(self, length):
            pass

        def forward(self, tokens, keep):
            calls[len(tokens)] = calls.get(len(tokens), 0) + 1
            clock[0] += 0.1 + 0.01 * len(tokens) + (5.0 if len(tokens) == 1 and calls[1] == 2 else 0.0)

    monkeypatch.setattr("engine.decoding.cost.time.perf_counter", lambda: clock[0])
    cost = ForwardCost.measure(Runtime(), context=8)
    assert cost(1) == pytest.approx(0.11)  # the upset timing (the first after the warm-up) is dropped
    assert cost(128) == pytest.approx(1.38)
