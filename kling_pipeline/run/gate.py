"""The budget gate: jobs reserve their price here before they are staged, and wait when
only other jobs' reservations stand in the way (one may settle for less, a failed task
may give its money back). Beside the ``BudgetLedger``, which only counts."""

from __future__ import annotations

import anyio

from .budget import BudgetLedger, LedgerSnapshot
from .stop import Stop

__all__ = ["BudgetGate"]


class BudgetGate:
    def __init__(self, ledger: BudgetLedger, stop: Stop) -> None:
        self.ledger = ledger
        self._stop = stop
        self.working: set[str] = set()  # keys of the jobs being worked on (staged or running)
        self.waiting = 0  # of those, jobs waiting in ``reserve``
        self._changed = anyio.Event()
        stop.listen(lambda _reason, _exc: self._wake())

    def snapshot(self) -> LedgerSnapshot:
        return self.ledger.snapshot()

    async def reserve(self, amount: int) -> bool:
        """Reserve ``amount`` under the cap. When it does not fit only because of reservations
        and other jobs are still working, wait for them instead of stopping early; False
        when it cannot fit."""
        while not self.ledger.reserve(amount):
            cap = self.ledger.cap
            others_working = len(self.working) - self.waiting - 1
            if cap is None or self.ledger.settled + amount > cap or self._stop.is_set() or others_working <= 0:
                return False
            self.waiting += 1
            try:
                await self._changed.wait()
            finally:
                self.waiting -= 1
        return True

    def job_started(self, key: str) -> None:
        self.working.add(key)

    def job_ended(self, key: str) -> None:
        """A job is over: jobs waiting for money look again (it may have been the last that could free some)."""
        if key in self.working:
            self.working.discard(key)
            self._wake()

    def settle(self, reserved: int, billed: int) -> None:
        self.ledger.settle(reserved, billed)
        self._wake()

    def release(self, reserved: int) -> None:
        self.ledger.release(reserved)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
