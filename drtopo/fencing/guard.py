"""The guard: the primary's side of the lease. It renews every `renewSeconds` and, when its lease runs out (no
majority renewal for `leaseSeconds` on its own monotonic clock) or it sees a newer epoch, fences its own database
(drtopo/fencing/fence.py) within seconds, then keeps it fenced (re-fencing a database that comes back writable).
While fenced it also keeps its region's application (the writer: an application that is not running takes no write)
at 0 replicas through its own cluster's API, after the database's fence every step: scaled down once, and again
whenever something scaled it up. A scale that fails is said and tried again the next step; it never stops the guard
and never touches the database's fence, which stays the first line.

It never fences (nor scales anything) while its lease is valid, and never lifts a fence by itself: a fenced guard
has lost the primary role to a newer epoch or cannot prove it still holds it; giving writes back (the database and
the application) is an operator's decision (docs/runbook.md), or promote's and failback's, which restart the guard.
On start it adopts the epoch its stack already holds in a majority (a restarted guard keeps the lease), takes the
first epoch when no store holds any, and fences at once when another stack holds the newest epoch or no majority of
the stores answers (a lease it cannot prove is a lease it does not have).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from drtopo.application import deployment
from drtopo.application.deployment import RegionApp, Unreachable
from drtopo.database.platform import FenceError
from drtopo.fencing.fence import fence_sessions, is_fenced
from drtopo.fencing.lease import Lease, LeaseTimer
from drtopo.fencing.quorum import Quorum, Round
from drtopo.fencing.store import lease_stores
from drtopo.outputs import StackOutputs
from drtopo.report import SILENT, Reporter
from drtopo.settings import PROJECT, FencingMode, Settings

# One kubectl call of a fenced guard: bounded well below a lease, so the next step (the database's fence checked
# again first) is never held up for long by an API that does not answer.
APPLICATION_TIMEOUT_SECONDS = 10.0


class Fencer(Protocol):
    def apply(self) -> dict[str, Any]: ...

    def holds(self) -> bool: ...


class Writers(Protocol):
    """The region's writers a fenced guard keeps stopped: where they are, their replicas now, scaled to none."""

    @property
    def where(self) -> str: ...

    def replicas(self) -> int: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class DatabaseFencer:
    """The fence of a stack's database, as the guard applies and checks it."""

    outputs: StackOutputs

    def apply(self) -> dict[str, Any]:
        return fence_sessions(self.outputs)

    def holds(self) -> bool:
        return is_fenced(self.outputs)


@dataclass(frozen=True)
class ApplicationWriters:
    """The region's application Deployment (drtopo/application/deployment.py) through the guard's own cluster: in its
    pod, kubectl's in-cluster identity, the guard's service account (get and patch on that one Deployment and its
    scale: components/guard.py)."""

    app: RegionApp
    timeout: float = APPLICATION_TIMEOUT_SECONDS

    @property
    def where(self) -> str:
        return self.app.where

    def replicas(self) -> int:
        return deployment.replicas(self.app, self.timeout)

    def stop(self) -> None:
        deployment.scale(self.app, 0, self.timeout)


# What a scale of the application may raise: no answer or a refusal (Unreachable), kubectl missing or killed
# (OSError), an answer that is not a Deployment (ValueError).
WRITERS_ERRORS = (Unreachable, OSError, ValueError)


@dataclass
class GuardState:
    holding: Lease | None = None
    fenced: bool = False
    why: str = ""  # why the guard fences (empty while it holds the lease)
    renewals: int = 0  # majority renewals
    failed_rounds: int = 0
    fences: list[dict[str, Any]] = field(default_factory=list)
    lapsed_at: float | None = None  # monotonic, when the guard decided to fence
    fenced_at: float | None = None  # monotonic, when its fence first held
    # The application while fenced: its replicas as last read or left (None: not read yet), how often the guard
    # scaled it to none, the last scale that failed ("" once one succeeds).
    app_replicas: int | None = None
    app_scaled: int = 0
    app_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "holding": self.holding.describe() if self.holding else None,
            "fenced": self.fenced,
            "why": self.why,
            "renewals": self.renewals,
            "failed_rounds": self.failed_rounds,
            "fences": self.fences,
            "application": {"replicas": self.app_replicas, "scaled_down": self.app_scaled, "error": self.app_error},
        }

    def application_line(self, where: str) -> str:
        """The application as the guard keeps it, in one line (pure)."""
        if self.app_error:
            return f"{where}: not scaled to 0 yet ({self.app_error})"
        shown = "not read yet" if self.app_replicas is None else f"{self.app_replicas} replicas"
        return f"{where}: {shown}, scaled down {self.app_scaled} time(s) while fenced"


class Guard:
    def __init__(
        self,
        quorum: Quorum,
        stack: str,
        region: str,
        lease_seconds: float,
        renew_seconds: float,
        fencer: Fencer,
        reporter: Reporter = SILENT,
        now: Callable[[], float] = time.monotonic,
        writers: Writers | None = None,
    ) -> None:
        self.quorum = quorum
        self.stack, self.region = stack, region
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.fencer = fencer
        self.writers = writers
        self.reporter = reporter
        self.now = now
        self.timer = LeaseTimer(lease_seconds, now)
        self.state = GuardState()

    def start(self) -> GuardState:
        """Adopt, take or refuse the lease (see the module's docstring)."""
        read = self.quorum.read(self.renew_seconds)
        newest = read.newest()
        if not read.majority:
            self._lapse(f"no majority of the lease stores answered at start: {read.describe()}")
        elif newest is None:
            lease, taken = self.quorum.take(self.stack, self.region, self.lease_seconds, self.renew_seconds)
            self._held(lease, taken)
            self.reporter.info(f"guard of {self.stack}: took the first lease, {lease.describe()}")
        elif newest.holder != self.stack:
            self._lapse(f"the newest lease is another stack's: {newest.describe()}")
        else:
            self.state.holding = newest
            return self.step()
        if self.state.why:
            self._keep_fenced()
        return self.state

    def step(self) -> GuardState:
        """One renewal (while holding) and the fence when due."""
        if self.state.holding is not None and not self.state.why:
            self._renew(self.state.holding)
        if not self.state.why and not self.timer.valid():
            self._lapse(f"no majority renewal for {self.lease_seconds:g} s (the lease)")
        if self.state.why:
            self._keep_fenced()
        return self.state

    def run(
        self,
        stop: threading.Event,
        seconds: float | None = None,
        on_step: Callable[[GuardState], None] | None = None,
    ) -> GuardState:
        """`start`, then `step` every renew interval (and at the lease's end) until `stop` is set or `seconds` pass;
        `on_step` after each (the heartbeat)."""
        ends = None if seconds is None else self.now() + seconds
        after = on_step or (lambda state: None)
        self.start()
        after(self.state)
        while not stop.is_set() and (ends is None or self.now() < ends):
            pause = self.renew_seconds
            if not self.state.why:
                pause = min(pause, max(0.0, self.timer.remaining()))
            if ends is not None:
                pause = min(pause, max(0.0, ends - self.now()))
            if stop.wait(pause):
                break
            self.step()
            after(self.state)
        return self.state

    def _renew(self, mine: Lease) -> None:
        started = self.now()
        timeout = max(0.1, min(self.renew_seconds, self.timer.remaining() or self.renew_seconds))
        renewal = mine.renewed()
        got = self.quorum.renew(renewal, timeout)
        newer = got.newest()
        if newer is not None and newer.epoch > mine.epoch:
            self._lapse(f"a newer epoch was taken: {newer.describe()}")
        elif got.majority:
            self._held(renewal, got, started)
        else:
            self.state.failed_rounds += 1
            self.reporter.warning(f"guard of {self.stack}: renewal not taken by a majority: {got.describe()}")

    def _held(self, lease: Lease, got: Round, started: float | None = None) -> None:
        self.timer.renewed(got.started if started is None else started)
        self.state.holding = lease
        self.state.renewals += 1

    def _lapse(self, why: str) -> None:
        self.state.why = why
        self.state.lapsed_at = self.now()
        self.reporter.warning(f"guard of {self.stack}: fencing its database: {why}")

    def _keep_fenced(self) -> None:
        """The database's fence first, then the application kept at none, each tried every step on its own."""
        self._fence_database()
        if self.writers is not None:
            self._keep_writers_stopped(self.writers)

    def _fence_database(self) -> None:
        try:
            if self.state.fenced and self.fencer.holds():
                return
            done = self.fencer.apply()
        except (FenceError, psycopg.Error, OSError) as exc:  # a database still down is fenced when it answers
            self.state.fenced = False
            self.reporter.warning(f"guard of {self.stack}: cannot fence yet, retrying: {exc}")
            return
        self.state.fenced = True
        self.state.fences.append(done)
        if self.state.fenced_at is None:
            self.state.fenced_at = self.now()
        self.reporter.info(f"guard of {self.stack}: fenced ({done['proof']})")

    def _keep_writers_stopped(self, writers: Writers) -> None:
        state = self.state
        seen: int | None = None
        try:
            seen = writers.replicas()
            if seen > 0:
                writers.stop()
        except WRITERS_ERRORS as exc:  # tried again next step; the database's fence stands whatever happens here
            state.app_replicas = seen  # as read, when it could be
            state.app_error = str(exc) or type(exc).__name__
            self.reporter.warning(f"guard of {self.stack}: {state.application_line(writers.where)}; retrying")
            return
        said = state.app_replicas != 0 or state.app_error
        state.app_replicas, state.app_error = 0, ""
        if seen > 0:
            again = " (scaled up again while fenced)" if state.app_scaled else ""
            state.app_scaled += 1
            self.reporter.warning(f"guard of {self.stack}: scaled {writers.where} from {seen} to 0 replicas{again}")
        elif said:
            self.reporter.info(f"guard of {self.stack}: {state.application_line(writers.where)}")


def guard_for(settings: Settings, own: StackOutputs, peer: StackOutputs, reporter: Reporter = SILENT) -> Guard:
    """The guard of `settings`' stack over the pair's three lease stores, fencing the stack's own database and
    keeping its region's application at none while fenced."""
    if settings.fencing.mode is not FencingMode.LEASE:
        raise ValueError(
            f"{PROJECT}:fencing.mode is {settings.fencing.mode.value!r} for {settings.stack}; "
            "expected 'lease' to run a guard"
        )
    fencing = settings.fencing
    return Guard(
        Quorum(lease_stores(settings, own, peer)),
        settings.stack,
        settings.region,
        fencing.lease_seconds,
        fencing.renew_seconds,
        DatabaseFencer(own),
        reporter,
        writers=ApplicationWriters(RegionApp.of(settings, own)),
    )
