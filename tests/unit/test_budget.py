"""budget: reserve / settle / release, and the cap invariant under any sequence of operations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipeline.run.budget import BudgetLedger, LedgerSnapshot


def state(ledger: BudgetLedger) -> tuple[int | None, int, int]:
    return ledger.cap, ledger.settled, ledger.reserved


def test_reserve_settle_release() -> None:
    ledger = BudgetLedger(10_000)
    assert ledger.reserve(2_800)
    assert ledger.reserve(2_800)
    assert state(ledger) == (10_000, 0, 5_600)
    ledger.settle(2_800, 2_800)  # completed at the reserved price
    assert state(ledger) == (10_000, 2_800, 2_800)
    ledger.release(2_800)  # never ran
    assert state(ledger) == (10_000, 2_800, 0)
    assert ledger.snapshot() == LedgerSnapshot(10_000, 2_800, 0)


def test_reserve_refuses_without_changing_anything() -> None:
    ledger = BudgetLedger(5_000, settled=2_000, reserved=2_000)
    assert ledger.fits(1_000)
    assert not ledger.fits(1_001)
    assert not ledger.reserve(1_001)
    assert state(ledger) == (5_000, 2_000, 2_000)
    assert ledger.reserve(1_000)  # exactly up to the cap
    assert state(ledger) == (5_000, 2_000, 3_000)
    assert not ledger.reserve(1)
    assert ledger.reserve(0)


def test_no_cap_means_no_limit() -> None:
    ledger = BudgetLedger(None)
    assert ledger.reserve(10**15)
    assert ledger.snapshot().available is None
    assert ledger.snapshot().committed == 10**15


def test_negative_reservation_is_refused() -> None:
    ledger = BudgetLedger(100)
    with pytest.raises(ValueError, match=r"^cannot reserve a negative amount$"):
        ledger.reserve(-1)
    assert state(ledger) == (100, 0, 0)


def test_billing_above_the_reservation_is_recorded() -> None:
    ledger = BudgetLedger(5_000)
    assert ledger.reserve(2_800)
    ledger.settle(2_800, 5_600)  # a price change the table did not know: the money is spent
    assert state(ledger) == (5_000, 5_600, 0)
    assert ledger.snapshot().available == 0
    assert not ledger.reserve(0)  # over the cap: not even a free job fits
    assert state(ledger) == (5_000, 5_600, 0)


def test_settling_more_than_is_reserved_never_goes_negative() -> None:
    ledger = BudgetLedger(5_000, reserved=1_000)
    ledger.settle(3_000, 500)
    assert state(ledger) == (5_000, 500, 0)
    ledger.release(7_000)
    assert state(ledger) == (5_000, 500, 0)


def test_a_resume_starts_from_the_manifest_spend() -> None:
    ledger = BudgetLedger(10_000, settled=9_000, reserved=500)
    assert not ledger.reserve(600)
    assert ledger.reserve(500)
    assert ledger.snapshot() == LedgerSnapshot(10_000, 9_000, 1_000)
    assert (ledger.snapshot().committed, ledger.snapshot().available) == (10_000, 0)


def test_snapshot_over_the_cap() -> None:
    snap = LedgerSnapshot(cap=1_000, settled=1_500, reserved=100)
    assert (snap.committed, snap.available) == (1_600, 0)


# one operation: ("reserve", amount) | ("settle", which reservation, billed share in %) | ("release", which)
operations = st.lists(st.one_of(
    st.tuples(st.just("reserve"), st.integers(min_value=0, max_value=5_000)),
    st.tuples(st.just("settle"), st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=100)),
    st.tuples(st.just("release"), st.integers(min_value=0, max_value=50)),
), max_size=60)


@given(cap=st.one_of(st.none(), st.integers(min_value=0, max_value=20_000)), ops=operations)
def test_the_cap_holds_under_any_sequence(cap: int | None, ops: list[tuple[Any, ...]]) -> None:
    ledger = BudgetLedger(cap)
    outstanding: list[int] = []  # reservations not settled or released yet
    billed_total = 0
    for op in ops:
        before = state(ledger)
        if op[0] == "reserve":
            amount = op[1]
            fits = cap is None or before[1] + before[2] + amount <= cap
            assert ledger.reserve(amount) is fits
            if fits:
                outstanding.append(amount)
            else:
                assert state(ledger) == before  # a refusal changes nothing
        elif outstanding:
            reserved = outstanding.pop(op[1] % len(outstanding))
            if op[0] == "settle":
                billed = reserved * op[2] // 100  # billed at most the reservation
                ledger.settle(reserved, billed)
                billed_total += billed
            else:
                ledger.release(reserved)
        assert ledger.reserved == sum(outstanding)
        assert ledger.settled == billed_total
        if cap is not None:
            assert ledger.settled + ledger.reserved <= cap
            assert ledger.snapshot().available == cap - ledger.settled - ledger.reserved
