"""The primary lease on the lab's real S3 emulator and PostgreSQL: conditional writes make one winner per epoch, a
majority survives one store down and not two, and the guard fences prod when its lease lapses or a newer epoch is
taken, and never while its lease holds."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.switchover import DB_ONLY, run_cli, server_state, write_refused
from drtopo import aws
from drtopo.database.connect import connect
from drtopo.fencing.fence import is_fenced, lift_fence
from drtopo.fencing.guard import DatabaseFencer, Guard
from drtopo.fencing.lease import takeover_wait
from drtopo.fencing.quorum import LeaseLost, Quorum
from drtopo.fencing.store import S3LeaseStore, lease_bucket, witness_bucket
from drtopo.fencing.takeover import take_over
from drtopo.outputs import StackOutputs, load_outputs
from drtopo.settings import PROJECT, Fencing
from lab import aws as lab_aws
from lab.core import Lab

WITNESS_REGION = "eu-west-1"
LEASE, RENEW = 3.0, 1.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_client(region: str) -> Any:
    """An S3 client of a region that is down: its endpoint is a loopback port nobody listens on."""
    return aws.client("s3", region, endpoint_url=f"http://127.0.0.1:{closed_port()}")


@pytest.fixture(scope="module")
def pair(lab: Lab) -> tuple[StackOutputs, StackOutputs]:
    prod = load_outputs(lab.prod.outputs_path, "prod")
    dr = load_outputs(lab.dr.outputs_path, "dr")
    # The lab's stacks run with the lease off: the stores are made here as the lab makes them with it on.
    for outputs in (prod, dr):
        lab_aws.ensure_lease_bucket(
            lab.aws_endpoint, lease_bucket(PROJECT, outputs.region), outputs.region, outputs.kms_key_arn
        )
    lab_aws.ensure_lease_bucket(lab.aws_endpoint, witness_bucket(PROJECT, WITNESS_REGION), WITNESS_REGION)
    return prod, dr


def stores(pair: tuple[StackOutputs, StackOutputs], key: str, down: int = 0) -> list[S3LeaseStore]:
    """The three stores of a lease object of its own (`key`), the last `down` of them in regions that are down."""
    prod, dr = pair
    places = [(lease_bucket(PROJECT, prod.region), prod.region), (lease_bucket(PROJECT, dr.region), dr.region)]
    places.append((witness_bucket(PROJECT, WITNESS_REGION), WITNESS_REGION))
    made = []
    for i, (bucket, region) in enumerate(places):
        client = dead_client(region) if i >= len(places) - down else aws.client("s3", region)
        made.append(S3LeaseStore(bucket, region, client, key=key))
    return made


def fresh_key() -> str:
    return f"fencing/test-{uuid.uuid4().hex[:8]}.json"


@pytest.mark.parametrize("contest", range(3))
def test_two_contenders_race_for_the_next_epoch_and_exactly_one_wins(
    pair: tuple[StackOutputs, StackOutputs], contest: int
) -> None:
    key = fresh_key()
    quorums = {name: Quorum(stores(pair, key)) for name in ("prod", "dr")}
    quorums["prod"].take("prod", "us-east-1", LEASE, timeout=10)  # epoch 1, then both race for epoch 2
    start = threading.Barrier(2)
    won: dict[str, int] = {}
    lost: dict[str, str] = {}

    def contend(name: str) -> None:
        start.wait(timeout=10)
        try:
            won[name] = quorums[name].take(name, "us-west-2", LEASE, timeout=10)[0].epoch
        except LeaseLost as exc:
            lost[name] = str(exc)

    threads = [threading.Thread(target=contend, args=(name,)) for name in quorums]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(won) == 1 and len(lost) == 1, (won, lost)
    ((winner, epoch),) = won.items()
    assert epoch == 2
    seen = quorums["prod"].read(timeout=10)
    holders = [o.seen.holder for o in seen.outcomes if o.seen is not None and o.seen.epoch == 2]
    assert holders.count(winner) >= 2, holders


@pytest.mark.parametrize(("down", "majority"), [(0, True), (1, True), (2, False)])
def test_a_majority_survives_one_store_down_and_not_two(
    pair: tuple[StackOutputs, StackOutputs], down: int, majority: bool
) -> None:
    quorum = Quorum(stores(pair, fresh_key(), down=down))
    if not majority:
        with pytest.raises(LeaseLost, match="cannot read the lease in a majority"):
            quorum.take("prod", "us-east-1", LEASE, timeout=10)
        return
    lease, taken = quorum.take("prod", "us-east-1", LEASE, timeout=10)
    assert (lease.epoch, taken.taken) == (1, 3 - down)
    renewed = quorum.renew(lease.renewed(), timeout=10)
    assert renewed.majority and renewed.taken == 3 - down


def writable(outputs: StackOutputs) -> bool:
    with connect(outputs, autocommit=False) as conn:
        try:
            conn.execute("CREATE TABLE drtopo_lease_probe (id int)")
        except psycopg.errors.ReadOnlySqlTransaction:
            return False
        finally:
            conn.rollback()
    return True


@pytest.fixture
def unfenced(prod: StackOutputs) -> Iterator[StackOutputs]:
    yield prod
    lift_fence(prod)
    assert writable(prod)


def run_guard(guard: Guard, seconds: float) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=guard.run, args=(stop, seconds), daemon=True)
    thread.start()
    return thread, stop


def take_racing_the_guard(the_stores: list[S3LeaseStore]) -> None:
    """Promote's take of the next epoch; a renewal landing between its read and its write refuses it: try again."""
    quorum = Quorum(the_stores)
    for _ in range(5):
        try:
            quorum.take("dr", "us-west-2", LEASE, timeout=10)
            return
        except LeaseLost:
            continue
    raise AssertionError("five takes of the next epoch all lost to the guard's renewals")


@pytest.mark.parametrize("cut", ["none", "two stores", "newer epoch"])
def test_the_guard_fences_prod_when_its_lease_lapses_and_never_while_it_holds(
    pair: tuple[StackOutputs, StackOutputs], unfenced: StackOutputs, cut: str
) -> None:
    key = fresh_key()
    the_stores = stores(pair, key)
    guard = Guard(Quorum(the_stores), "prod", "us-east-1", LEASE, RENEW, DatabaseFencer(unfenced))
    thread, stop = run_guard(guard, seconds=60)
    try:
        deadline = time.monotonic() + 10
        while guard.state.renewals < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert guard.state.renewals >= 2 and not guard.state.why, guard.state.to_dict()
        cut_at = time.monotonic()
        if cut == "two stores":
            for store in the_stores[1:]:
                store.client = dead_client(store.region)
        elif cut == "newer epoch":
            take_racing_the_guard(stores(pair, key))
        bound = takeover_wait(LEASE, RENEW)
        while time.monotonic() < cut_at + bound + 5 and not guard.state.fenced:
            time.sleep(0.1)
        if cut == "none":
            assert not guard.state.why and guard.state.holding is not None, guard.state.to_dict()
            assert not is_fenced(unfenced) and writable(unfenced)
            return
        assert guard.state.fenced, guard.state.to_dict()
        assert guard.state.lapsed_at is not None and guard.state.lapsed_at - cut_at <= bound
        assert is_fenced(unfenced) and not writable(unfenced)
        assert ("newer epoch" in guard.state.why) == (cut == "newer epoch"), guard.state.why
    finally:
        stop.set()
        thread.join(timeout=30)


def test_when_promotes_wait_ends_a_partitioned_prod_has_fenced_itself(
    pair: tuple[StackOutputs, StackOutputs], unfenced: StackOutputs
) -> None:
    """prod's guard is cut off from every store (prod's region partitioned); promote, which reaches them, takes the
    next epoch and waits the lease out: by then prod refuses writes, so none it acknowledges follows the promotion."""
    key = fresh_key()
    guards_stores = stores(pair, key)
    guard = Guard(Quorum(guards_stores), "prod", "us-east-1", LEASE, RENEW, DatabaseFencer(unfenced))
    thread, stop = run_guard(guard, seconds=60)
    try:
        deadline = time.monotonic() + 10
        while guard.state.renewals < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert guard.state.renewals >= 1, guard.state.to_dict()
        for store in guards_stores:
            store.client = dead_client(store.region)
        assert writable(unfenced)  # cut off, but its lease still holds: prod keeps writing for now
        fencing = Fencing(mode="lease", lease_seconds=LEASE, renew_seconds=RENEW, witness_region=WITNESS_REGION)
        taken = take_over(stores(pair, key), "dr", "us-west-2", fencing, wait=True)
        assert taken.lease.epoch == 2 and taken.waited_seconds >= LEASE + RENEW
        assert is_fenced(unfenced) and not writable(unfenced), guard.state.to_dict()
        assert "no majority renewal" in guard.state.why
    finally:
        stop.set()
        thread.join(timeout=30)


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report.get("checks", [])}


def test_with_the_lease_on_promote_and_failback_hand_the_guard_over(lab: Lab, tmp_path: Path) -> None:
    """The lab with the lease on (each primary's guard on its Kubernetes): a planned promote fences prod, hands the
    lease over without a wait, restarts dr's guard until it renews the next epoch and stops prod's; failback does the
    same the other way. Each stack's guard runs only while it is primary; the primary stays writable."""
    lab.restore_baseline()
    lab.set_fencing(True)
    try:
        first = lab.prod.guard.lease()
        assert first is not None and first.holder == "prod"
        epochs = [first.epoch]
        for command, target, old in (("promote", "dr", "prod"), ("failback", "prod", "dr")):
            report_path = tmp_path / f"{command}.json"
            done = run_cli(
                command,
                "--stack",
                target,
                "--outputs",
                lab.region(target).outputs_path,
                *DB_ONLY,
                "--json",
                report_path,
                env={"DRTOPO_STATE_DIR": str(tmp_path / "journal")},
            )
            report = _report(report_path)
            assert done.returncode == 0, done.stderr[-2000:]
            checks = _checks(report)
            assert checks["lease"]["outcome"] == "pass" and "handed over" in checks["lease"]["detail"]
            assert "lease_wait_seconds" not in report["measured"]
            assert checks["lease.guard"]["outcome"] == "pass", checks["lease.guard"]
            assert checks["lease.old-guard"]["outcome"] == "pass" and "stopped" in checks["lease.old-guard"]["detail"]
            steps = [s["step"] for s in report["measured"]["steps"]]
            assert steps[steps.index("promote") + 1] == "lease-guards"
            renewing = lab.region(target).guard.wait_renewing(30)
            assert renewing.holder == target and renewing.epoch == epochs[-1] + 1
            epochs.append(renewing.epoch)
            assert lab.region(old).guard.pods() == [] and lab.region(target).guard.pod() is not None
            assert server_state(lab, target) == {"in_recovery": False, "default_read_only": "off"}
            assert "read-only" in write_refused(lab, old) or server_state(lab, old)["in_recovery"]
    finally:
        lab.set_fencing(False)
        lab.restore_baseline()
