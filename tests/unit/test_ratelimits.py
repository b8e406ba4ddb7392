"""ratelimits: reading the limit headers, and the pacing model against simulated services.

The simulations (``pacesim``) run sweeps on virtual time against a token bucket and a
fixed window that answer like real services (whole seconds, rounded up), so the
figures below are exact and repeatable — they are what the model does, not timings.
"""

from __future__ import annotations

import math
import random

import pytest

from kling_pipeline.api.ratelimits import PaceState, RateHeaders

from .pacesim import Bucket, Silent, Window, simulate

PER_MIN_100 = 100 / 60


def headers(**values: str) -> RateHeaders:
    return RateHeaders.parse(lambda name: values.get(name.replace("-", "_")), epoch_now=1_800_000_000.0)


def test_headers_are_read_in_seconds_from_now() -> None:
    h = headers(x_ratelimit_limit="100", x_ratelimit_remaining="7", x_ratelimit_reset="12", retry_after="3")
    assert h == RateHeaders(limit=100, remaining=7, reset=12.0, retry_after=3.0)
    assert h.has_quota


def test_a_reset_above_ten_to_the_ninth_is_an_epoch_time() -> None:
    h = headers(x_ratelimit_limit="10", x_ratelimit_remaining="0", x_ratelimit_reset="1800000045")
    assert h.reset == 45.0


def test_an_epoch_reset_in_the_past_means_now() -> None:
    assert headers(x_ratelimit_reset="1799999990").reset == 0.0


@pytest.mark.parametrize("bad", ["soon", "nan", "inf", "-3", "Wed, 21 Oct 2026 07:28:00 GMT", ""])
def test_unreadable_values_are_not_guessed(bad: str) -> None:
    h = headers(x_ratelimit_limit=bad, x_ratelimit_remaining=bad, x_ratelimit_reset=bad, retry_after=bad)
    assert h == RateHeaders()
    assert not h.has_quota


def test_waits_are_capped_at_an_hour() -> None:
    assert headers(retry_after="99999").retry_after == 3600.0


def test_the_first_call_goes_alone_and_its_answer_says_how_to_go_on() -> None:
    state = PaceState()
    assert state.delay(0.0, pending=50) == 0.0
    first = state.released(0.0)
    assert state.delay(0.0, pending=49) == math.inf  # wait for the probe's answer
    state.answered(0.01, first, headers(x_ratelimit_limit="10", x_ratelimit_remaining="9", x_ratelimit_reset="6"))
    # 9 calls left until t = 6.01, 49 waiting: spread evenly, the last one still before the reset
    assert state.delay(0.01, pending=49) == pytest.approx(6.0 / 10 - 0.01)


def test_what_is_left_goes_at_once_when_everything_waiting_fits_in_it() -> None:
    state = PaceState()
    state.answered(0.0, state.released(0.0), headers(x_ratelimit_limit="10", x_ratelimit_remaining="9",
                                                      x_ratelimit_reset="6"))
    assert [state.delay(0.0, pending=n) for n in (9, 5, 1)] == [0.0, 0.0, 0.0]


def test_nothing_left_waits_for_the_reset() -> None:
    state = PaceState()
    state.answered(1.0, state.released(1.0), headers(x_ratelimit_limit="10", x_ratelimit_remaining="0",
                                                      x_ratelimit_reset="5"))
    assert state.delay(1.0, pending=3) == 5.0


def test_a_429_closes_the_gate_for_retry_after_then_one_call_probes() -> None:
    state = PaceState()
    state.answered(0.0, state.released(0.0), headers(x_ratelimit_limit="10", x_ratelimit_remaining="0",
                                                      x_ratelimit_reset="4", retry_after="2"), throttled=True)
    assert (state.throttles, state.delay(0.5, pending=20)) == (1, 1.5)
    state.released(2.0)
    assert state.delay(2.0, pending=19) == math.inf


def test_a_ceiling_spaces_calls_even_when_the_service_allows_more() -> None:
    state = PaceState(ceiling=2.0)
    state.answered(0.0, state.released(0.0), headers(x_ratelimit_limit="100", x_ratelimit_remaining="99",
                                                      x_ratelimit_reset="60"))
    assert state.delay(0.1, pending=1) == pytest.approx(0.4)
    assert not state.paced_by_service(0.1)  # --rate, not the service, held it back


def test_an_overtaken_answer_does_not_bring_back_an_older_count() -> None:
    state = PaceState()
    first, second = state.released(0.0), state.released(0.0)
    state.answered(0.1, second, headers(x_ratelimit_limit="10", x_ratelimit_remaining="3", x_ratelimit_reset="6"))
    state.answered(0.2, first, headers(x_ratelimit_limit="10", x_ratelimit_remaining="4", x_ratelimit_reset="6"))
    assert state.remaining == 3


def test_without_headers_a_429_halves_the_accepted_rate_and_successes_add_back_slowly() -> None:
    state = PaceState(rng=random.Random(0))
    for i in range(20):
        state.answered(i * 0.1, state.released(i * 0.1), RateHeaders())
    state.answered(2.0, state.released(2.0), RateHeaders(retry_after=1.0), throttled=True)
    assert state.rate == pytest.approx(0.5 * 20 / 2.0, rel=0.01)  # 21 releases in 2 s, halved
    before = state.rate
    state.answered(3.5, state.released(3.5), RateHeaders())
    assert before < state.rate < before * 1.05


def test_a_bucket_is_told_from_a_window_by_its_quota_growing_back() -> None:
    bucket, window = PaceState(), PaceState()
    for state, answers in ((bucket, [("9", "1"), ("6", "3"), ("8", "2")]), (window, [("9", "6"), ("6", "5"),
                                                                                    ("5", "5")])):
        for t, (left, reset) in enumerate(answers):
            state.answered(float(t), state.released(float(t)),
                           headers(x_ratelimit_limit="10", x_ratelimit_remaining=left, x_ratelimit_reset=reset))
    assert (bucket.refilling, window.refilling) == (True, False)


# -- whole sweeps against simulated services (N jobs, concurrency C, tasks of L seconds) --

@pytest.mark.parametrize(("service", "bound"), [
    (lambda: Bucket(PER_MIN_100, 10), (300 - 10) / PER_MIN_100 + 1.0),  # bucket: (N - burst) / R + L
    (lambda: Window(10, 6.0), (math.ceil(300 / 10) - 1) * 6.0 + 1.0),  # window: (ceil(N / W) - 1) * window + L
    (lambda: Window(100, 60.0), (math.ceil(300 / 100) - 1) * 60.0 + 1.0),
    (lambda: Bucket(PER_MIN_100, 100), (300 - 100) / PER_MIN_100 + 1.0),
], ids=["bucket-100/min-burst-10", "window-10-per-6s", "window-100-per-min", "bucket-100/min-burst-100"])
def test_a_300_job_sweep_at_100_runs_a_minute_meets_the_bound_without_429s(service, bound) -> None:
    out = simulate(service(), jobs=300, concurrency=64, latency=1.0)
    assert out.refused <= 1
    assert out.wall <= 1.01 * bound


@pytest.mark.parametrize("service", [lambda: Bucket(10, 5), lambda: Window(5, 2.0), lambda: Bucket(5, 5)],
                         ids=["bucket-10/s-burst-5", "window-5-per-2s", "bucket-5/s-burst-5"])
def test_fast_limits_whose_headers_are_coarse_still_see_few_429s(service) -> None:
    out = simulate(service(), jobs=100, concurrency=32, latency=0.05)
    assert out.refused <= 2


def test_network_jitter_reorders_answers_without_a_storm_of_429s() -> None:
    out = simulate(Bucket(1000 / 60, 100), jobs=500, concurrency=128, latency=1.0, jitter=0.1)
    assert out.refused <= 0.02 * out.submits
    assert out.wall <= 1.05 * ((500 - 100) / (1000 / 60) + 1.0)


@pytest.mark.parametrize(("before", "after"), [
    (lambda: Bucket(10, 5), lambda: Bucket(3, 3)),
    (lambda: Window(10, 2.0), lambda: Window(4, 2.0)),
], ids=["bucket", "window"])
def test_a_limit_that_drops_mid_run_is_learned_again(before, after) -> None:
    out = simulate(before(), jobs=100, concurrency=32, latency=0.05, change=(3.0, after))
    assert out.refused <= 3


def test_a_service_that_sends_no_headers_is_learned_from_its_429s() -> None:
    out = simulate(Silent(10, 5), jobs=1000, concurrency=64, latency=1.0)
    assert out.first_refusal is not None
    later = out.refused - 64  # the first burst: every call but the probe went before any 429 was seen
    assert later <= 0.02 * out.submits
    assert out.wall <= 1.6 * (1000 / 10)
