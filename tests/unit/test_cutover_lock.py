"""A cutover's failover locks (drtopo/failover/lock.py `held`, taken by drtopo/backup/restore.py
`recover_with_cutover` for both stacks of the pair) against a lock another operator holds: refused, naming the
holder and `--break-lock`, unless the run asks to break it, as promote and failback do (moto's S3; the database
itself is a mock, the cutover's steps are not what is tested here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from drtopo.backup import restore
from drtopo.database.pitr.request import BadFlags, PitrRequest
from drtopo.failover import lock
from drtopo.failover.lock import FailoverLock, Owner, lock_key
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report, Unsafe
from tests.unit.test_database_platform import outputs

T = datetime(2026, 12, 2, 3, 23, 59, tzinfo=UTC)
ELSEWHERE = Owner("another-host.invalid", 4242, "promote", "dr", "2026-12-02T03:20:00+00:00")


def _stack(name: str, region: str) -> StackOutputs:
    s3 = boto3.client("s3", region_name=region)
    bucket = f"drtopo-{name}-config"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    key = boto3.client("kms", region_name=region).create_key()["KeyMetadata"]["Arn"]
    base = outputs("arn:aws:rds:eu-west-1:123456789012:db:prod-db", None)
    peer = "dr" if name == "prod" else "prod"
    changed = {"stack": name, "peer_stack": peer, "region": region, "config_bucket": bucket, "kms_key_arn": key}
    return base.model_copy(update=changed)


@pytest.fixture
def pair() -> Iterator[tuple[StackOutputs, StackOutputs]]:
    with mock_aws():
        yield _stack("prod", "eu-west-1"), _stack("dr", "eu-central-1")


def _held_elsewhere(stack: StackOutputs) -> None:
    """Another operator's run on another host holds `stack`'s lock (never judged dead from here)."""
    boto3.client("s3", region_name=stack.region).put_object(
        Bucket=stack.config_bucket, Key=lock_key(stack.stack), Body=json.dumps(ELSEWHERE.__dict__).encode()
    )


def _holder(stack: StackOutputs) -> Owner | None:
    return FailoverLock(stack).holder()


def test_held_refuses_a_lock_held_elsewhere_and_releases_those_it_took(pair: tuple[StackOutputs, ...]) -> None:
    prod, dr = pair
    _held_elsewhere(dr)
    with (
        pytest.raises(Unsafe, match="another failover holds the lock") as refused,
        lock.held([prod, dr], "cutover", "prod"),
    ):
        pytest.fail("the cutover ran beside another operator's promote")
    assert "promote of dr by pid 4242 on another-host.invalid" in str(refused.value)
    assert "rerun with --break-lock" in str(refused.value)
    assert _holder(prod) is None, "prod's lock, taken first, is released on the refusal"
    assert _holder(dr) == ELSEWHERE, "the other operator's lock is left as it was"


def test_held_with_break_lock_takes_the_lock_over_and_releases_it(pair: tuple[StackOutputs, ...]) -> None:
    prod, dr = pair
    _held_elsewhere(dr)
    with lock.held([prod, dr], "cutover", "prod", break_lock=True) as locks:
        taken = [_holder(prod), _holder(dr)]
        assert [held.held for held in locks] == taken
        assert all(o is not None and o.operation == "cutover" and o.stack == "prod" for o in taken)
        assert taken[1] != ELSEWHERE
    assert _holder(prod) is None and _holder(dr) is None


def _cutover(prod: StackOutputs, dr: StackOutputs, break_lock: bool) -> tuple[list[str], list[Owner | None]]:
    """`recover_with_cutover` of prod (RDS: no journal) with dr as its peer; the mocked database's cutover says
    who held each lock while it ran."""
    seen: list[Owner | None] = []

    def cut(*_: Any) -> list[str]:
        seen.extend([_holder(prod), _holder(dr)])
        return ["cut over"]

    database = mock.Mock()
    database.restorer.return_value.cutover.side_effect = cut
    request = PitrRequest(time=T, rds=True, cutover=True, break_lock=break_lock)
    with mock.patch.object(restore, "database_for", return_value=database):
        lines = restore.recover_with_cutover(prod, Report(), Clock(quiet=True), request, lambda: dr)
    return lines, seen


def test_a_cutover_is_refused_by_another_operator_s_lock(pair: tuple[StackOutputs, ...]) -> None:
    prod, dr = pair
    _held_elsewhere(dr)
    with pytest.raises(Unsafe, match="rerun with --break-lock"):
        _cutover(prod, dr, break_lock=False)
    assert _holder(dr) == ELSEWHERE and _holder(prod) is None


def test_a_cutover_with_break_lock_takes_both_locks_and_runs(pair: tuple[StackOutputs, ...]) -> None:
    prod, dr = pair
    _held_elsewhere(dr)
    lines, seen = _cutover(prod, dr, break_lock=True)
    assert lines == ["cut over"]
    assert [o.operation if o else None for o in seen] == ["cutover", "cutover"], "both locks held during the cutover"
    assert _holder(prod) is None and _holder(dr) is None, "released at the end"


def test_break_lock_goes_with_cutover() -> None:
    with pytest.raises(BadFlags, match="--break-lock goes with --cutover"):
        PitrRequest.parse("2026-12-02T03:23:59Z", datetime(2026, 12, 3, tzinfo=UTC), break_lock=True)
    request = PitrRequest.parse(
        None, datetime(2026, 12, 3, tzinfo=UTC), cutover=True, damage_xids=(740,), break_lock=True
    )
    assert request.break_lock
