"""pacing: calls wait their turn in order, wake when an answer says more, and a back-off
holds every caller of a class — on a virtual clock (the decisions are ``ratelimits``')."""

from __future__ import annotations

import random

import pytest

from kling_pipeline.api.pacing import Pacer, PaceReport, Pacing
from kling_pipeline.api.ratelimits import PaceState

from .conftest import VirtualTime

QUOTA = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "4"}


def pacer(vt: VirtualTime, **kw: object) -> Pacer:
    return Pacer("runs", PaceState(rng=random.Random(0)), clock=vt.clock, sleep=vt.sleep, **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_first_call_goes_alone_and_the_rest_follow_its_answer(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    order: list[tuple[str, float]] = []

    async def first() -> None:
        turn = await p.acquire()
        order.append(("first", vtime.now))
        await vtime.sleep(0.5)  # the answer takes half a second
        turn.answered(200, {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "9",
                            "x-ratelimit-reset": "60"}.get)

    async def later(name: str) -> None:
        await vtime.sleep(0.1)
        with await p.acquire():
            order.append((name, vtime.now))

    await vtime.run(first, lambda: later("b"), lambda: later("c"))
    assert order == [("first", 0.0), ("b", 0.5), ("c", 0.5)]  # woken by the answer, not by a timer


@pytest.mark.anyio
async def test_callers_wait_for_the_reset_in_arrival_order(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    p.answered(p.state.released(0.0), 200, QUOTA.get)  # nothing left until t = 4
    order: list[str] = []

    async def caller(name: str, arrives: float) -> None:
        await vtime.sleep(arrives)
        with await p.acquire():
            order.append(name)

    await vtime.run(lambda: caller("a", 0.1), lambda: caller("b", 0.2), lambda: caller("c", 0.3))
    assert order == ["a", "b", "c"]
    assert vtime.now >= 4.0


@pytest.mark.anyio
async def test_a_back_off_holds_every_caller_of_the_class(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    p.answered(p.state.released(0.0), 200, {}.get)
    assert p.backoff(3.0) == 3.0
    assert p.gate_wait() == 3.0
    times: list[float] = []

    async def caller() -> None:
        with await p.acquire() as turn:
            times.append(vtime.now)
            turn.answered(200, {}.get)

    await vtime.run(caller, caller)
    assert times[0] == 3.0  # the first goes when the gate opens; the second after its answer
    assert times[1] == 3.0


@pytest.mark.anyio
async def test_a_turn_given_up_without_an_answer_frees_its_place(vtime: VirtualTime) -> None:
    p = pacer(vtime)
    with pytest.raises(RuntimeError), await p.acquire():
        raise RuntimeError("the connection failed")
    assert p.state.in_flight == 0
    with await p.acquire():
        assert p.state.in_flight == 1


@pytest.mark.anyio
async def test_the_listener_hears_when_the_service_starts_setting_the_pace(vtime: VirtualTime) -> None:
    heard: list[PaceReport] = []
    p = pacer(vtime, on_change=heard.append)
    p.answered(p.state.released(0.0), 200, QUOTA.get)

    async def caller() -> None:
        with await p.acquire() as turn:
            turn.answered(200, QUOTA.get)

    await vtime.run(caller)
    assert [(r.kind, r.paced_by_service, r.limit) for r in heard] == [("runs", True, 10)]


@pytest.mark.anyio
async def test_only_runs_get_the_users_ceiling() -> None:
    pacing = Pacing(runs_ceiling=2.0)
    assert (pacing.runs.state.ceiling, pacing.reads.state.ceiling, pacing.uploads.state.ceiling) == (2.0, None, None)
    assert [r.kind for r in pacing.reports()] == ["runs", "reads", "uploads"]
    assert pacing["reads"] is pacing.reads
