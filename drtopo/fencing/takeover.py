"""Promote's side of the lease: take the next epoch in a majority of the stores and, when the old primary did not
answer (an unplanned promotion), wait until its lease must have run out and its guard fenced it, on this machine's
monotonic clock from the end of the take (drtopo/fencing/lease.py says why that suffices). A planned switchover
fences the old primary itself and hands the lease over without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drtopo.fencing.lease import Lease, takeover_wait
from drtopo.fencing.quorum import LeaseContended, LeaseStore, Quorum, Round
from drtopo.settings import Fencing

TAKE_TIMEOUT_SECONDS = 15.0
# A take is read-then-write, conditional on what was read: a renewal by the old holder's guard landing in between
# (it renews every few seconds while its region answers) refuses the write. Each attempt reads afresh.
TAKE_ATTEMPTS = 3


@dataclass(frozen=True)
class Takeover:
    lease: Lease
    taken: Round
    waited_seconds: float  # 0 for a handover

    def describe(self) -> str:
        return f"took {self.lease.describe()} in {self.taken.describe()}"


def take_over(
    stores: Sequence[LeaseStore],
    holder: str,
    region: str,
    fencing: Fencing,
    wait: bool,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> Takeover:
    """The next epoch for `holder` (LeaseLost when no majority takes it); with `wait`, returns only once the
    previous holder's lease and one renew interval have passed since the take ended."""
    quorum = Quorum(stores, now)
    try:
        for attempt in range(1, TAKE_ATTEMPTS + 1):
            try:
                lease, taken = quorum.take(holder, region, fencing.lease_seconds, TAKE_TIMEOUT_SECONDS)
                break
            except LeaseContended:
                if attempt == TAKE_ATTEMPTS:
                    raise
    finally:
        quorum.close()
    if not wait:
        return Takeover(lease, taken, 0.0)
    until = taken.ended + takeover_wait(fencing.lease_seconds, fencing.renew_seconds)
    while (left := until - now()) > 0:
        sleep(left)
    return Takeover(lease, taken, now() - taken.ended)
