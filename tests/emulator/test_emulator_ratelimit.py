"""The limiter on its own, with a clock the test moves: both shapes, headers, runtime changes."""

from __future__ import annotations

import pytest

from kling_pipeline.emulator import Limit, RateLimits
from kling_pipeline.emulator.problems import Problem
from kling_pipeline.emulator.ratelimit import ClassLimiter, Decision, Limiters

T0 = 1_700_000_080.0
"""A Unix time 20 s before a minute turns (1_700_000_100 is a multiple of 60, and of 30)."""


class Clock:
    """Unix seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def take(limiter: ClassLimiter, key: str = "k") -> Decision:
    decision = limiter.take(key)
    assert decision is not None
    return decision


def verdicts(limiter: ClassLimiter, n: int, key: str = "k") -> list[bool]:
    return [take(limiter, key).allowed for _ in range(n)]


def test_a_bucket_allows_its_burst_then_one_call_per_refill() -> None:
    clock = Clock()
    limiter = ClassLimiter(Limit(60, 60.0, burst=3), clock)  # 1 call a second, 3 at once

    first = take(limiter)
    assert (first.allowed, first.limit, first.remaining, first.reset) == (True, 3, 2, 1)
    assert verdicts(limiter, 3) == [True, True, False]
    clock.now += 0.25
    refused = take(limiter)
    assert (refused.allowed, refused.remaining, refused.reset) == (False, 0, 3)  # 2.75 s until full
    assert refused.wait == pytest.approx(0.75)
    assert refused.retry_after == 1
    clock.now += 0.75
    assert verdicts(limiter, 2) == [True, False]


def test_a_bucket_refills_to_its_size_and_no_further() -> None:
    clock = Clock()
    limiter = ClassLimiter(Limit(10, 1.0, burst=4), clock)
    assert verdicts(limiter, 5) == [True] * 4 + [False]

    clock.now += 3600

    assert verdicts(limiter, 5) == [True] * 4 + [False]


def test_a_slow_bucket_says_how_many_whole_seconds_to_wait() -> None:
    limiter = ClassLimiter(Limit(1, 100.0, burst=1), Clock())  # one call per 100 s
    take(limiter)

    refused = take(limiter)

    assert (refused.allowed, refused.wait, refused.retry_after, refused.reset) == (False, 100.0, 100, 100)


def test_a_window_allows_its_count_until_the_window_turns_on_the_clock() -> None:
    clock = Clock()  # 20 s before the minute turns
    limiter = ClassLimiter(Limit(3, 60.0, "window"), clock)

    answers = [take(limiter) for _ in range(4)]

    assert [(d.allowed, d.limit, d.remaining, d.reset) for d in answers] == [
        (True, 3, 2, 20), (True, 3, 1, 20), (True, 3, 0, 20), (False, 3, 0, 20),
    ]  # fmt: skip
    assert answers[-1].wait == 20.0 and answers[-1].retry_after == 20
    clock.now += 19.5
    assert verdicts(limiter, 1) == [False]
    clock.now += 0.5  # the window turns: a whole new count
    assert [take(limiter).remaining for _ in range(3)] == [2, 1, 0]
    assert take(limiter).reset == 60


def test_reset_can_be_an_epoch_timestamp() -> None:
    clock = Clock(T0 + 0.5)
    window = ClassLimiter(Limit(1, 60.0, "window"), clock, epoch=True)
    bucket = ClassLimiter(Limit(60, 60.0, burst=2), clock, epoch=True)

    assert take(window).reset == 1_700_000_100
    assert take(bucket).reset == 1_700_000_082  # 1 s until full, rounded up
    assert take(bucket).allowed
    assert (take(window).retry_after, take(bucket).retry_after) == (20, 1)  # Retry-After stays in seconds


def test_keys_have_their_own_budgets() -> None:
    limiter = ClassLimiter(Limit(1, 60.0, "window"), Clock())

    assert verdicts(limiter, 2, "a") == [True, False]
    assert verdicts(limiter, 2, "b") == [True, False]


def test_counters_count_allowed_and_refused_calls_and_every_call_when_unlimited() -> None:
    limiters = Limiters(RateLimits(runs=Limit(2, 60.0, "window")), Clock())
    limiters.admit("runs", "k")
    limiters.admit("runs", "k")
    for _ in range(3):
        with pytest.raises(Problem):
            limiters.admit("runs", "k")

    assert limiters.admit("reads", "k") is None  # not limited: no decision, no headers
    assert limiters.stats() == {
        "runs": {"allowed": 2, "refused": 3},
        "reads": {"allowed": 1, "refused": 0},
        "uploads": {"allowed": 0, "refused": 0},
    }


def test_a_refusal_is_a_429_problem_with_retry_after_and_the_three_headers() -> None:
    limiters = Limiters(RateLimits(uploads=Limit(1, 100.0, burst=1)), Clock())
    limiters.admit("uploads", "k")

    with pytest.raises(Problem) as info:
        limiters.admit("uploads", "k")

    problem = info.value
    assert (problem.status, problem.code, problem.extra) == (429, "rate_limited", {"retry_after": 100.0})
    assert problem.detail == "over the upload rate limit for this API key (1 per 100 s, burst 1); retry in 100.000 s"
    assert problem.headers == [
        ("retry-after", "100"),
        ("x-ratelimit-limit", "1"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "100"),
    ]


def test_an_injected_refusal_reports_the_limit_in_force_or_none() -> None:
    clock = Clock()
    limited = Limiters(RateLimits(runs=Limit(100, 60.0)), clock)
    unlimited = Limiters(RateLimits.off(), clock)

    assert limited.injected("runs", 2.5).headers() == [
        ("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "3"),
    ]  # fmt: skip
    assert unlimited.injected("runs", 2.5).headers() == [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "3")]


def test_lowering_a_bucket_keeps_its_tokens_up_to_the_new_size() -> None:
    clock = Clock()
    limiters = Limiters(RateLimits(runs=Limit(100, 1.0, burst=50)), clock)
    limiter = limiters["runs"]
    assert verdicts(limiter, 10) == [True] * 10  # 40 left

    limiters.set(RateLimits(runs=Limit(1, 10.0, burst=5)))

    assert [take(limiter).remaining for _ in range(5)] == [4, 3, 2, 1, 0]
    assert take(limiter).allowed is False
    clock.now += 10.0  # refilled at the new rate: one call
    assert verdicts(limiter, 2) == [True, False]


def test_changing_a_window_keeps_its_count_in_the_new_window() -> None:
    clock = Clock()
    limiters = Limiters(RateLimits(reads=Limit(10, 60.0, "window")), clock)
    limiter = limiters["reads"]
    assert verdicts(limiter, 6) == [True] * 6

    limiters.set(RateLimits(reads=Limit(8, 60.0, "window")))
    assert [take(limiter).remaining for _ in range(3)] == [1, 0, 0]
    limiters.set(RateLimits(reads=Limit(4, 30.0, "window")))  # 8 already spent: overdrawn until it turns
    refused = take(limiter)
    assert (refused.allowed, refused.remaining, refused.reset) == (False, 0, 20)
    clock.now += 20.0
    assert verdicts(limiter, 5) == [True] * 4 + [False]


def test_changing_shape_carries_the_calls_left_now() -> None:
    clock = Clock()
    limiters = Limiters(RateLimits(runs=Limit(100, 60.0, burst=5)), clock)
    limiter = limiters["runs"]
    assert verdicts(limiter, 3) == [True] * 3  # 2 left

    limiters.set(RateLimits(runs=Limit(10, 60.0, "window")))
    assert verdicts(limiter, 3) == [True, True, False]
    limiters.set(RateLimits(runs=Limit(60, 60.0, burst=10)))  # 0 left: a bucket from empty
    assert verdicts(limiter, 1) == [False]
    clock.now += 1.0
    assert verdicts(limiter, 2) == [True, False]


def test_turning_a_limit_off_and_on_again_starts_afresh() -> None:
    limiters = Limiters(RateLimits(runs=Limit(1, 60.0, "window")), Clock())
    limiters.admit("runs", "k")
    limiters.set(RateLimits.off())
    assert [limiters.admit("runs", "k") for _ in range(3)] == [None] * 3

    limiters.set(RateLimits(runs=Limit(1, 60.0, "window")))

    decision = limiters.admit("runs", "k")
    assert decision is not None and decision.allowed
    assert limiters.stats()["runs"] == {"allowed": 5, "refused": 0}


def test_switching_to_epoch_resets_applies_to_the_next_answer() -> None:
    limiters = Limiters(RateLimits(reads=Limit(1, 60.0, "window")), Clock())
    seconds = limiters.admit("reads", "k")

    limiters.set(RateLimits(reads=Limit(1, 60.0, "window"), reset_epoch=True))

    with pytest.raises(Problem) as info:
        limiters.admit("reads", "k")
    assert seconds is not None and seconds.reset == 20
    assert ("x-ratelimit-reset", "1700000100") in info.value.headers
