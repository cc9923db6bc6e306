"""With the primary lease on, the old primary's guard fences its database with ALTER DATABASE ... SET
default_transaction_read_only, which reaches the standby through replication (streamed, or replayed from the WAL
archive while the regions are cut off). promote holds the lease for the standby by then, so its writability wait
lifts that fence instead of waiting on it until it gives up; a read-only default from anywhere else (the server's
configuration, its command line, a role), or any with the lease off, is waited on and named, never lifted. The
sessions are scripted (the queries a new session answers); the lab's lease rows run the same on real servers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import psycopg
import pytest
from psycopg import sql

from drtopo.context import Context
from drtopo.database import self_managed
from drtopo.database.platform import LEASE_FENCE_SOURCE, READ_ONLY_DEFAULT, StandbyError, lease_fence_to_lift
from drtopo.failover import steps
from drtopo.failover.steps import Kind, Switchover
from drtopo.settings import load_settings

OUTPUTS = SimpleNamespace(db_address="10.0.0.2", db_port=5432, db_name="orders", stack="dr")
LIFT = sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(sql.Identifier("orders"))


def test_only_the_lease_guards_own_read_only_default_is_lifted_and_only_when_asked() -> None:
    assert lease_fence_to_lift(False, True, LEASE_FENCE_SOURCE, lift_lease_fence=True)
    assert not lease_fence_to_lift(False, True, LEASE_FENCE_SOURCE, lift_lease_fence=False)  # the lease off
    assert not lease_fence_to_lift(True, True, LEASE_FENCE_SOURCE, lift_lease_fence=True)  # still in recovery
    assert not lease_fence_to_lift(False, False, LEASE_FENCE_SOURCE, lift_lease_fence=True)  # writable already
    for elsewhere in ("configuration file", "command line", "user", "database user"):
        assert not lease_fence_to_lift(False, True, elsewhere, lift_lease_fence=True), elsewhere


class Server:
    """The new primary as its sessions see it: a read-only default and where it comes from, until the database's
    own is reset; every statement any session sent is kept."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.statements: list[Any] = []

    def session(self, outputs: Any) -> Session:
        return Session(self)


class Session:
    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def execute(self, statement: Any) -> mock.Mock:
        self.server.statements.append(statement)
        if statement == LIFT and self.server.source == LEASE_FENCE_SOURCE:
            self.server.source = "default"
        read_only = self.server.source != "default"
        answer = (False, read_only, self.server.source) if statement == READ_ONLY_DEFAULT else (1,)
        return mock.Mock(fetchone=mock.Mock(return_value=answer))


def wait(server: Server, lift: bool) -> tuple[float, bool]:
    with (
        mock.patch.object(self_managed, "connect", side_effect=server.session),
        mock.patch.object(self_managed.time, "sleep"),
        mock.patch.object(self_managed.time, "monotonic", side_effect=[float(t) for t in range(100)]),
    ):
        return self_managed.wait_writable(OUTPUTS, timeout=5, lift_lease_fence=lift)  # type: ignore[arg-type]


def test_the_wait_lifts_the_replayed_lease_fence_and_returns_once_a_new_session_is_writable() -> None:
    server = Server(LEASE_FENCE_SOURCE)
    waited, lifted = wait(server, lift=True)
    assert lifted and waited < 5
    # The lifting session turned its own read-only default off first: it started read-only under the fence.
    at = server.statements.index(LIFT)
    assert server.statements[at - 1] == "SET default_transaction_read_only = off"
    assert server.statements[-2:] == [READ_ONLY_DEFAULT, "SELECT txid_current()"]  # a new session, writable
    assert server.statements.count(LIFT) == 1


def test_with_the_lease_off_the_same_read_only_default_is_waited_on_and_named_never_lifted() -> None:
    server = Server(LEASE_FENCE_SOURCE)
    with pytest.raises(StandbyError, match=r"not writable after 5 s: default_transaction_read_only is on \(set by: "):
        wait(server, lift=False)
    assert LIFT not in server.statements


def test_a_read_only_default_from_the_command_line_is_someone_elses_fence_and_stays() -> None:
    server = Server("command line")
    with pytest.raises(StandbyError, match=r"set by: command line"):
        wait(server, lift=True)
    assert LIFT not in server.statements


class Target:
    """The standby's database as the promote step drives it; `lifts`: whether its promotion's wait lifted the fence
    (self-managed) or leaves it to the step (RDS, whose promotion waits for no write)."""

    def __init__(self, lifts: bool) -> None:
        self.lifts = lifts
        self.asked: list[bool] = []

    def promote(self, lift_lease_fence: bool = False) -> dict[str, Any]:
        self.asked.append(lift_lease_fence)
        return {"postgres": "pg_promote()", **({"lease_fence": "lifted in the wait"} if self.lifts else {})}


def promote_with(mode: str, target: Target, lift_error: Exception | None = None) -> tuple[Switchover, list[Any]]:
    fencing = {"mode": mode, "witnessRegion": "eu-west-1", "witnessStack": "prod"}
    settings = load_settings("dr", overrides={"fencing": fencing})
    dr, prod = SimpleNamespace(stack="dr"), SimpleNamespace(stack="prod")
    sw = Switchover(Kind.PROMOTE, dr, prod, settings, Context())  # type: ignore[arg-type]
    sw.db = lambda outputs: target  # type: ignore[method-assign,assignment,return-value]
    with (
        mock.patch.object(steps, "_fork", return_value=None),
        mock.patch.object(steps, "lift_fence", side_effect=lift_error) as lifted_after,
    ):
        steps.promote(sw)
    return sw, lifted_after.call_args_list


def test_promote_asks_the_platform_to_lift_the_lease_fence_only_with_the_lease_on() -> None:
    target = Target(lifts=True)
    sw, after = promote_with("lease", target)
    assert target.asked == [True] and after == []  # lifted inside the wait: not again
    assert "lease_fence=lifted in the wait" in sw.report.checks[-1].detail
    off = Target(lifts=False)
    sw, after = promote_with("off", off)
    assert off.asked == [False] and after == [] and "lease_fence" not in sw.report.checks[-1].detail


def test_a_promotion_that_waits_for_no_write_leaves_the_lift_to_the_step() -> None:
    target = Target(lifts=False)
    sw, after = promote_with("lease", target)
    assert target.asked == [True] and [c.args for c in after] == [(sw.target,)]
    assert "lease_fence=reset on the new primary" in sw.report.checks[-1].detail


def test_a_lift_ended_by_the_stacks_old_guard_is_left_to_the_lease_guards_step() -> None:
    # The lapsed guard of the promoted stack fences it again once writable, terminating the lifting session; the
    # lease-guards step stops that guard and lifts: the promotion is not a failure for it.
    ended = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    sw, after = promote_with("lease", Target(lifts=False), lift_error=ended)
    assert [c.args for c in after] == [(sw.target,)]
    checks = {c.name: c for c in sw.report.checks}
    assert checks["lease.lift"].outcome == "skip" and "lease-guards step stops" in checks["lease.lift"].detail
    assert checks["promote"].outcome == "pass" and "left to the lease-guards step" in checks["promote"].detail
