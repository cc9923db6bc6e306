"""The lease over three stores on moto's S3 model in-process (the lab's emulator, without its server), with the
holder's and the taker's monotonic clocks in the test's hands: the guard holds through one store down, fences when
a majority is gone for a lease or a newer epoch is taken, adopts its own epoch on restart; promote's take waits
exactly the lease and one renew interval from the end of the take, and a handover does not wait."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from drtopo.fencing.guard import Guard, GuardState
from drtopo.fencing.heartbeat import alive, beat
from drtopo.fencing.quorum import LeaseLost, Quorum
from drtopo.fencing.store import S3LeaseStore
from drtopo.fencing.takeover import TAKE_ATTEMPTS, take_over
from drtopo.settings import Fencing

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
LEASE, RENEW = 30.0, 5.0


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class FenceLog:
    """What the guard asked of its database's fence (the fence itself runs on the lab: tests/integration)."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self) -> dict[str, Any]:
        self.applied += 1
        return {"proof": "write refused"}

    def holds(self) -> bool:
        return self.applied > 0


def cut(store: S3LeaseStore) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A region that is down, refusing at once (no retries: the lab's tests cut the real factory's clients).
    store.client = boto3.client(
        "s3",
        region_name=store.region,
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"total_max_attempts": 1}),
    )


def guard(stores: list[S3LeaseStore], clock: Clock, stack: str = "prod") -> tuple[Guard, FenceLog]:
    fence = FenceLog()
    return Guard(Quorum(stores, clock), stack, "us-east-1", LEASE, RENEW, fence, now=clock), fence


def test_the_guard_takes_the_first_lease_and_holds_it_through_one_store_down(stores: list[S3LeaseStore]) -> None:
    clock = Clock()
    g, fence = guard(stores, clock)
    assert g.start().holding is not None and g.state.holding.epoch == 1
    cut(stores[2])
    for _ in range(8):  # 40 s, beyond the 30 s lease, of renewals every 5 s with the witness region down
        clock.sleep(RENEW)
        g.step()
    assert not g.state.why and fence.applied == 0
    assert g.state.holding.renewals == 8


def test_the_guard_fences_when_no_majority_renews_for_a_lease(stores: list[S3LeaseStore]) -> None:
    clock = Clock()
    g, fence = guard(stores, clock)
    g.start()
    renewed_at = clock.t
    cut(stores[1])
    cut(stores[2])
    while clock.t < renewed_at + LEASE - RENEW:
        clock.sleep(RENEW)
        g.step()
        assert fence.applied == 0, clock.t - renewed_at  # never while the lease holds
    clock.sleep(RENEW)
    g.step()
    assert fence.applied == 1 and "no majority renewal" in g.state.why
    g.step()
    assert fence.applied == 1  # kept fenced, not fenced again while the fence holds


def test_the_guard_fences_at_once_on_a_newer_epoch(stores: list[S3LeaseStore]) -> None:
    clock = Clock()
    g, fence = guard(stores, clock)
    g.start()
    take_over(stores, "dr", "us-west-2", Fencing(lease_seconds=LEASE, renew_seconds=RENEW), wait=False)
    g.step()
    assert fence.applied == 1 and "newer epoch" in g.state.why and "epoch 2 held by dr" in g.state.why


def test_a_restarted_guard_adopts_its_epoch_and_another_stacks_guard_fences(stores: list[S3LeaseStore]) -> None:
    clock = Clock()
    first, _ = guard(stores, clock)
    first.start()
    again, fence = guard(stores, clock)
    assert again.start().holding is not None and again.state.holding.epoch == 1 and fence.applied == 0
    other, other_fence = guard(stores, clock, stack="dr")
    assert "another stack's" in other.start().why and other_fence.applied == 1


def test_a_guard_that_cannot_reach_a_majority_at_start_fences(stores: list[S3LeaseStore]) -> None:
    cut(stores[0])
    cut(stores[1])
    g, fence = guard(stores, Clock())
    assert "no majority" in g.start().why and fence.applied == 1


@pytest.mark.parametrize(("wait", "waited"), [(True, LEASE + RENEW), (False, 0.0)])
def test_the_take_waits_the_lease_and_a_renew_interval_unless_handed_over(
    stores: list[S3LeaseStore], wait: bool, waited: float
) -> None:
    clock = Clock()
    guard(stores, clock)[0].start()
    taken = take_over(
        stores, "dr", "us-west-2", Fencing(lease_seconds=LEASE, renew_seconds=RENEW), wait, clock.sleep, clock
    )
    assert taken.lease.epoch == 2 and taken.lease.holder == "dr" and taken.taken.taken == 3
    assert taken.waited_seconds == pytest.approx(waited)
    assert clock.t - taken.taken.ended == pytest.approx(waited)


def test_a_guard_killed_and_restarted_beats_its_heartbeat_and_never_fences(
    stores: list[S3LeaseStore], tmp_path: Path
) -> None:
    """What Kubernetes does to the guard's pod (components/guard.py): a liveness probe on the heartbeat each step
    touches, and a new pod after a kill; on the real clock with a short lease, the new guard adopts the lease. The
    renew interval is each round's timeout: 1 s, as moto in-process answered a store in more than 0.3 s on a loaded
    machine (CI once read that as two stores down and the guard fenced at start)."""
    lease, renew = 3.0, 1.0
    heartbeat = tmp_path / "guard.beat"
    steps: list[tuple[int, int, int]] = []  # (pod, epoch held, the pod's majority renewals)

    for pod in range(2):
        fence = FenceLog()

        def on_step(state: GuardState, pod: int = pod) -> None:
            assert state.holding is not None, state.why
            steps.append((pod, state.holding.epoch, state.renewals))
            beat(heartbeat)

        running = Guard(Quorum(stores), "prod", "us-east-1", lease, renew, fence)
        state = running.run(threading.Event(), seconds=3.5, on_step=on_step)
        assert (state.why, fence.applied) == ("", 0)
        assert alive(heartbeat, lease)
    # Each pod's first heartbeat follows its start: the first takes epoch 1, the restarted one adopts it and renews.
    assert [s for s in steps if s[2] == 1] == [(0, 1, 1), (1, 1, 1)]
    assert {epoch for _, epoch, _ in steps} == {1}
    assert len([s for s in steps if s[0] == 1]) >= 2  # its start, then at least one renewal on its own


def test_a_take_that_a_renewal_slips_into_reads_again_and_wins(
    stores: list[S3LeaseStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old holder's guard renews between the take's read and its conditional write: every write is refused (the
    version read is gone) and the take reads again and wins the next epoch; a renewal after each of TAKE_ATTEMPTS
    reads makes it give up (LeaseLost), never take an epoch on a version it did not read."""
    clock = Clock()
    holder, _ = guard(stores, clock)
    holder.start()
    renewals = {"left": 1}
    renewer = {"guard": holder}
    read = Quorum.read

    def read_then_renewal(self: Quorum, timeout: float) -> Any:
        got = read(self, timeout)
        if renewals["left"] > 0:
            renewals["left"] -= 1
            renewer["guard"].step()  # the renewal lands after the take's read, before its write
        return got

    monkeypatch.setattr(Quorum, "read", read_then_renewal)
    fencing = Fencing(lease_seconds=LEASE, renew_seconds=RENEW)
    taken = take_over(stores, "dr", "us-west-2", fencing, wait=False)
    assert taken.lease.epoch == 2 and renewals["left"] == 0
    assert holder.state.renewals == 2 and not holder.state.why  # it renewed epoch 1 in between
    dr_guard, _ = guard(stores, clock, stack="dr")
    assert dr_guard.start().holding is not None and dr_guard.state.holding.epoch == 2
    renewer["guard"], renewals["left"] = dr_guard, TAKE_ATTEMPTS
    with pytest.raises(LeaseLost, match="not taken by a majority"):
        take_over(stores, "prod", "us-east-1", fencing, wait=False)
    assert renewals["left"] == 0 and dr_guard.state.holding.epoch == 2 and not dr_guard.state.why
