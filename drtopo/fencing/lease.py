"""The lease record and the rules that need no store: who may write what over what, when a majority is had, and
when a lease has run out.

A lease is (epoch, holder stack, holder region, lease seconds, renewals). It is kept in an odd number of stores
(three: the holder's region, the peer's, a witness region); every write is conditional on what the writer read, so
in each store the epoch only grows and one writer wins each step. Time is never compared across machines: the holder
counts its lease as a duration on its own monotonic clock from the START of its last renewal that a majority took
(as Patroni's leader key TTL, renewed every loop_wait: `loop_wait + 2 * retry_timeout <= ttl`), and whoever takes
the next epoch waits `lease + renew` seconds on its own monotonic clock from the END of its take. The holder's last
majority renewal and the taker's majority share a store; that store ordered them, so the holder's lease started
before the take ended and has run out, and been acted on, by the end of the wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

LEASE_KEY = "fencing/lease.json"


@dataclass(frozen=True)
class Lease:
    epoch: int
    holder: str
    region: str
    lease_seconds: float
    renewals: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> Lease:
        data: dict[str, Any] = json.loads(body)
        try:
            return cls(
                epoch=int(data["epoch"]),
                holder=str(data["holder"]),
                region=str(data["region"]),
                lease_seconds=float(data["lease_seconds"]),
                renewals=int(data.get("renewals", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"lease record {data!r} is malformed ({exc}); expected epoch, holder, region, lease_seconds"
            ) from None

    def renewed(self) -> Lease:
        return replace(self, renewals=self.renewals + 1)

    def successor(self, holder: str, region: str, lease_seconds: float) -> Lease:
        """The next epoch, held by `holder`."""
        return Lease(self.epoch + 1, holder, region, lease_seconds)

    def describe(self) -> str:
        return f"epoch {self.epoch} held by {self.holder} ({self.region})"


def first_lease(holder: str, region: str, lease_seconds: float) -> Lease:
    return Lease(1, holder, region, lease_seconds)


def majority(stores: int) -> int:
    """How many of `stores` make a majority: 2 of 3."""
    if stores < 1:
        raise ValueError(f"{stores} lease stores; expected at least one (three: own, peer, witness region)")
    return stores // 2 + 1


def newest(records: list[Lease | None]) -> Lease | None:
    """The record with the highest epoch among those read (None when no store holds one)."""
    found = [r for r in records if r is not None]
    return max(found, key=lambda r: r.epoch) if found else None


class Verdict(StrEnum):
    WRITE = "write"  # the store may take the holder's record (over what it read)
    SUPERSEDED = "superseded"  # the store holds a newer epoch: the holder must stop


def renewal_verdict(current: Lease | None, mine: Lease) -> Verdict:
    """What a holder of `mine` does with a store that holds `current`.

    A newer epoch ends the holder's role. The same or an older epoch is overwritten: an older one is a store that
    missed a write; the same epoch with another holder is a contender that lost the race for it (each store took
    the epoch from one writer only, so the holder of a majority is the one winner)."""
    if current is not None and current.epoch > mine.epoch:
        return Verdict.SUPERSEDED
    return Verdict.WRITE


class LeaseTimer:
    """The holder's view of its own lease, on its own monotonic clock."""

    def __init__(self, lease_seconds: float, now: Callable[[], float] = time.monotonic) -> None:
        self.lease_seconds = lease_seconds
        self.now = now
        self.since: float | None = None  # start of the last renewal a majority took

    def renewed(self, started: float) -> None:
        """A renewal that began at `started` (this clock) was taken by a majority."""
        if self.since is None or started > self.since:
            self.since = started

    def remaining(self) -> float:
        """Seconds of lease left; 0 before any majority renewal and once it has run out."""
        if self.since is None:
            return 0.0
        return max(0.0, self.since + self.lease_seconds - self.now())

    def valid(self) -> bool:
        return self.remaining() > 0


def takeover_wait(lease_seconds: float, renew_seconds: float) -> float:
    """How long a new holder waits, from the end of taking the epoch, before the old holder must have fenced: its
    lease, then one renew interval in which its guard notices and fences."""
    return lease_seconds + renew_seconds
