"""The budget ledger: a hard cap by reservation.

Before a submit the job's price is *reserved*; when the task ends the
reservation is *settled* at the billed amount, or *released* when the task
provably never ran. Invariant, at every instant: ``settled + reserved <= cap``.
Spend recorded by earlier runs (in the manifest) is loaded first, so resuming
never resets the budget.

Single-threaded by design: it lives on the event loop and never awaits, so a
check-and-reserve cannot interleave with another.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BudgetLedger", "LedgerSnapshot"]


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    cap: int | None
    settled: int
    reserved: int

    @property
    def committed(self) -> int:
        return self.settled + self.reserved

    @property
    def available(self) -> int | None:
        return None if self.cap is None else max(0, self.cap - self.committed)


class BudgetLedger:
    """Reserve / settle / release, in integer microcents."""

    def __init__(self, cap: int | None, *, settled: int = 0, reserved: int = 0) -> None:
        self.cap = cap
        self.settled = settled
        self.reserved = reserved

    def fits(self, amount: int) -> bool:
        return self.cap is None or self.settled + self.reserved + amount <= self.cap

    def reserve(self, amount: int) -> bool:
        """Reserve ``amount`` if it fits under the cap; False (and nothing changes) if not."""
        if amount < 0:
            raise ValueError("cannot reserve a negative amount")
        if not self.fits(amount):
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: int, billed: int) -> None:
        """A task ended: its reservation becomes the billed amount.

        Billing above the reservation (a price change the table did not know)
        is recorded as it is — the money is spent — and shows as over the cap.
        """
        self.reserved -= min(reserved, self.reserved)
        self.settled += billed

    def release(self, reserved: int) -> None:
        """The task provably never ran: give the reservation back."""
        self.reserved -= min(reserved, self.reserved)

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(self.cap, self.settled, self.reserved)
