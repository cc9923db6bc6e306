"""The lease across its stores: renew it, take the next epoch, each a round over every store at once.

A round asks all stores in parallel and waits at most until its deadline: a store in a region that is down (or
slow: boto3's own retries last tens of seconds) is counted as failed, not waited for, and is not asked again while
its previous call is still running, so a dead region holds one thread, never the holder's lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.errors import one_line
from drtopo.fencing.lease import Lease, Verdict, first_lease, majority, newest, renewal_verdict
from drtopo.fencing.store import Conflict


class LeaseStore(Protocol):
    @property
    def where(self) -> str: ...

    def read(self) -> tuple[Lease | None, str | None]: ...

    def write(self, lease: Lease, etag: str | None) -> str: ...


class LeaseLost(RuntimeError):
    """No majority of the stores took the epoch (another contender won it, or too few stores answered)."""


class LeaseContended(LeaseLost):
    """A majority answered the read, but not a majority took the write: another writer got in between."""


@dataclass(frozen=True)
class Outcome:
    """One store's answer in a round: `ok` when it took the write (or, for a read round, answered)."""

    where: str
    ok: bool
    seen: Lease | None = None
    etag: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Round:
    outcomes: tuple[Outcome, ...]
    started: float  # monotonic, when the round began
    ended: float  # monotonic, when it was decided

    @property
    def taken(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def majority(self) -> bool:
        return self.taken >= majority(len(self.outcomes))

    def newest(self) -> Lease | None:
        return newest([o.seen for o in self.outcomes])

    def describe(self) -> str:
        parts = [f"{o.where}: {'ok' if o.ok else o.error}" for o in self.outcomes]
        return f"{self.taken} of {len(self.outcomes)} stores ({'; '.join(parts)})"


STORE_ERRORS = (ClientError, BotoCoreError, Conflict, ValueError, OSError)


class Quorum:
    """The stores of one lease, asked together with a deadline per round."""

    def __init__(self, stores: Sequence[LeaseStore], now: Callable[[], float] = time.monotonic) -> None:
        self.stores = list(stores)
        majority(len(self.stores))
        self.now = now
        self._pool = ThreadPoolExecutor(max_workers=2 * len(self.stores), thread_name_prefix="lease-store")
        self._busy: dict[int, Future[Outcome]] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def round(self, call: Callable[[LeaseStore], Outcome], timeout: float) -> Round:
        """`call` on every store at once; a store that has not answered within `timeout` counts as failed."""
        started = self.now()
        futures: dict[int, Future[Outcome]] = {}
        outcomes: dict[int, Outcome] = {}
        for i, store in enumerate(self.stores):
            previous = self._busy.get(i)
            if previous is not None and not previous.done():
                outcomes[i] = Outcome(store.where, False, error="its previous call has not returned")
                continue
            futures[i] = self._busy[i] = self._pool.submit(_guarded, call, store)
        wait(list(futures.values()), timeout=timeout)
        for i, future in futures.items():
            if future.done():
                outcomes[i] = future.result()
            else:
                outcomes[i] = Outcome(self.stores[i].where, False, error=f"no answer within {timeout:g} s")
        return Round(tuple(outcomes[i] for i in range(len(self.stores))), started, self.now())

    def read(self, timeout: float) -> Round:
        return self.round(_read, timeout)

    def renew(self, mine: Lease, timeout: float) -> Round:
        """Write `mine` over every store that holds its epoch or an older one; a newer epoch is reported as seen."""
        return self.round(lambda store: _renew(store, mine), timeout)

    def take(self, holder: str, region: str, lease_seconds: float, timeout: float) -> tuple[Lease, Round]:
        """Take the next epoch for `holder` in a majority of the stores, or raise LeaseLost.

        Every store is read, the next epoch is one above the newest read, and each store is written conditionally
        on the version read from it: of two contenders for the same epoch, each store takes one, and only one can
        have a majority."""
        read = self.read(timeout)
        if not read.majority:
            raise LeaseLost(f"cannot read the lease in a majority of its stores: {read.describe()}")
        current = read.newest()
        lease = (
            current.successor(holder, region, lease_seconds) if current else first_lease(holder, region, lease_seconds)
        )
        versions = {o.where: o for o in read.outcomes}
        written = self.round(lambda store: _claim(store, lease, versions[store.where]), timeout)
        if not written.majority:
            raise LeaseContended(f"epoch {lease.epoch} was not taken by a majority: {written.describe()}")
        return lease, written


def _guarded(call: Callable[[LeaseStore], Outcome], store: LeaseStore) -> Outcome:
    try:
        return call(store)
    except STORE_ERRORS as exc:
        return Outcome(store.where, False, error=one_line(exc))


def _read(store: LeaseStore) -> Outcome:
    seen, etag = store.read()
    return Outcome(store.where, True, seen, etag)


def _renew(store: LeaseStore, mine: Lease) -> Outcome:
    seen, etag = store.read()
    if renewal_verdict(seen, mine) is Verdict.SUPERSEDED:
        assert seen is not None
        return Outcome(store.where, False, seen, etag, error=f"holds a newer lease: {seen.describe()}")
    return Outcome(store.where, True, seen, store.write(mine, etag))


def _claim(store: LeaseStore, lease: Lease, read: Outcome) -> Outcome:
    if read.ok:
        seen, etag = read.seen, read.etag
    else:
        seen, etag = store.read()
        if seen is not None and seen.epoch >= lease.epoch:
            return Outcome(store.where, False, seen, etag, error=f"already holds {seen.describe()}")
    return Outcome(store.where, True, seen, store.write(lease, etag))
