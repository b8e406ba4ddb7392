"""pacing: the shared back-off gate and the requests/second spacing, on a virtual clock."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest

from kling_pipeline.pacing import Pacer

from .conftest import VirtualTime


class FixedRandom(random.Random):
    """``random()`` always returns ``value``: jitter factor ``0.5 + value / 2``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def pacer(vt: VirtualTime, rate: float | None = None, jitter: float = 1.0, **kw: float) -> Pacer:
    return Pacer(rate, clock=vt.clock, sleep=vt.sleep, rng=FixedRandom(jitter), **kw)


@pytest.mark.anyio
async def test_retry_after_closes_the_gate_for_every_waiter(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    assert p.throttled(5.0) == 5.0
    assert (p.strikes, p.throttles, p.gate_open_in) == (1, 1, 5.0)
    passed: list[tuple[str, float]] = []

    def waiter(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await p.wait_turn()
            passed.append((name, vtime.now))
        return run

    await vtime.run(waiter("a"), waiter("b"), waiter("c"))
    assert sorted(passed) == [("a", 5.0), ("b", 5.0), ("c", 5.0)]
    assert p.gate_open_in == 0.0


@pytest.mark.anyio
async def test_a_gate_closed_while_waiting_holds_the_waiters_back(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    p.throttled(2.0)
    passed: list[float] = []

    async def waiter() -> None:
        await p.wait_turn()
        passed.append(vtime.now)

    async def second_429() -> None:
        await vtime.sleep(1.0)
        p.throttled(4.0)  # at t=1: closed until t=5

    await vtime.run(waiter, waiter, second_429)
    assert passed == [5.0, 5.0]


def test_the_gate_only_ever_extends(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    p.throttled(10.0)
    vtime.now = 2.0
    assert p.throttled(1.0) == 1.0
    assert p.gate_open_in == 8.0
    assert (p.strikes, p.throttles) == (1, 2)  # it came while the gate was closed: the same burst


def test_retry_after_is_capped(vtime: VirtualTime) -> None:
    p = pacer(vtime, max_delay=2.0)
    assert p.throttled(3600.0) == 10.0
    assert p.gate_open_in == 10.0


@pytest.mark.parametrize(("jitter", "delays"), [
    (0.999_999, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
    (0.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
])
def test_exponential_back_off_without_retry_after(vtime: VirtualTime, jitter: float, delays: list[float]) -> None:
    p = pacer(vtime, jitter=jitter, base_delay=1.0, max_delay=60.0)
    seen = []
    for _ in delays:
        vtime.now += p.gate_open_in  # each throttle comes after the previous wait: a new strike
        seen.append(round(p.throttled(), 3))
    assert seen == delays
    assert p.gate_open_in == pytest.approx(delays[-1])


def test_a_burst_of_throttles_counts_as_one_strike(vtime: VirtualTime) -> None:
    p = pacer(vtime, jitter=0.999_999, base_delay=1.0, max_delay=60.0)
    delays = [round(p.throttled(), 3) for _ in range(256)]  # 256 workers hit by the same 429 burst
    assert set(delays) == {1.0}
    assert (p.strikes, p.throttles) == (1, 256)


def test_success_resets_the_back_off(vtime: VirtualTime) -> None:
    p = pacer(vtime, jitter=0.999_999, base_delay=1.0)
    for _ in range(4):
        vtime.now += p.gate_open_in
        p.throttled()
    assert p.strikes == 4
    p.succeeded()
    assert p.strikes == 0
    assert round(p.throttled(), 3) == 1.0
    assert p.throttles == 5


def test_a_long_storm_stays_at_the_maximum(vtime: VirtualTime) -> None:
    # a 429 storm: thousands of strikes, each after the previous wait, no success in between
    p = pacer(vtime, jitter=0.999_999, max_delay=60.0)
    delays = []
    for _ in range(3000):
        vtime.now += p.gate_open_in
        delays.append(p.throttled())
    assert round(max(delays), 3) == round(delays[-1], 3) == 60.0
    assert p.strikes == 3000


@pytest.mark.anyio
async def test_rate_spaces_requests(vtime: VirtualTime) -> None:
    p = pacer(vtime, rate=2.0)
    passed: list[float] = []

    async def waiter() -> None:
        await p.wait_turn()
        passed.append(vtime.now)

    await vtime.run(*[waiter] * 5)
    assert sorted(passed) == [0.0, 0.5, 1.0, 1.5, 2.0]
    vtime.now = 10.0  # idle for a while: no burst credit, the next one simply goes
    await vtime.run(waiter, waiter)
    assert sorted(passed[5:]) == [10.0, 10.5]


@pytest.mark.anyio
async def test_rate_slot_taken_then_gate_closed(vtime: VirtualTime) -> None:
    p = pacer(vtime, rate=1.0)
    passed: list[float] = []

    async def waiter() -> None:
        await p.wait_turn()
        passed.append(vtime.now)

    async def throttle_at_half() -> None:
        await vtime.sleep(0.5)
        p.throttled(2.0)  # closed until 2.5, while the second waiter sleeps towards its slot at 1.0

    await vtime.run(waiter, waiter, throttle_at_half)
    assert sorted(passed) == [0.0, 2.5]


@pytest.mark.anyio
async def test_no_rate_and_open_gate_means_no_wait(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    await p.wait_turn()
    assert vtime.sleeps == []


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match=r"^rate must be positive$"):
        Pacer(rate)
