"""The primary lease's rules without a store: the record, the majority, the verdict on what a store holds, the
holder's monotonic timer, the takeover wait, and the settings that keep the lease inside the RPO."""

from __future__ import annotations

import pytest

from drtopo.fencing.lease import (
    Lease,
    LeaseTimer,
    Verdict,
    first_lease,
    majority,
    newest,
    renewal_verdict,
    takeover_wait,
)
from drtopo.fencing.store import lease_bucket, witness_bucket
from drtopo.naming import BUCKET_PURPOSES
from drtopo.settings import SettingsError, load_settings

PROD = Lease(3, "prod", "us-east-1", 30, renewals=7)


def test_record_round_trips_through_its_json() -> None:
    assert Lease.from_json(PROD.to_json()) == PROD


def test_malformed_record_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match=r"malformed.*expected epoch"):
        Lease.from_json(b'{"epoch": 1}')


@pytest.mark.parametrize(("stores", "needed"), [(1, 1), (2, 2), (3, 2), (5, 3)])
def test_majority(stores: int, needed: int) -> None:
    assert majority(stores) == needed


def test_no_store_is_refused() -> None:
    with pytest.raises(ValueError, match="expected at least one"):
        majority(0)


def test_successor_is_the_next_epoch_with_no_renewals() -> None:
    assert PROD.successor("dr", "us-west-2", 20) == Lease(4, "dr", "us-west-2", 20, 0)
    assert first_lease("prod", "us-east-1", 30).epoch == 1
    assert PROD.renewed().renewals == 8


def test_newest_is_the_highest_epoch_read() -> None:
    dr = PROD.successor("dr", "us-west-2", 30)
    assert newest([None, PROD, dr]) == dr
    assert newest([None, None]) is None


@pytest.mark.parametrize(
    ("current", "verdict"),
    [
        (None, Verdict.WRITE),  # a store that missed the first write
        (Lease(2, "prod", "us-east-1", 30), Verdict.WRITE),  # a store that missed a later one
        (PROD, Verdict.WRITE),  # the holder's own record
        (Lease(3, "dr", "us-west-2", 30), Verdict.WRITE),  # a contender that lost epoch 3 in this store
        (Lease(4, "dr", "us-west-2", 30), Verdict.SUPERSEDED),  # the next epoch is taken: stop
    ],
)
def test_renewal_verdict(current: Lease | None, verdict: Verdict) -> None:
    assert renewal_verdict(current, PROD) is verdict


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_timer_counts_from_the_start_of_the_last_majority_renewal() -> None:
    clock = FakeMonotonic()
    timer = LeaseTimer(30, clock)
    assert not timer.valid()  # no renewal yet: no lease
    timer.renewed(started=1000.0)
    clock.t = 1029.9
    assert timer.valid()
    timer.renewed(started=995.0)  # an older round decided late never moves the lease back
    assert timer.since == 1000.0
    clock.t = 1030.0
    assert not timer.valid()
    assert timer.remaining() == 0.0
    timer.renewed(started=1031.0)
    clock.t = 1040.0
    assert timer.remaining() == pytest.approx(21.0)


def test_takeover_waits_the_lease_and_one_renew_interval() -> None:
    assert takeover_wait(30, 5) == 35


def test_witness_bucket_names_its_region() -> None:
    assert witness_bucket("drtopo", "eu-west-1") == "drtopo-lease-witness-eu-west-1"


def test_each_stack_lease_bucket_names_its_region_and_is_no_backup_bucket() -> None:
    names = {lease_bucket("drtopo", region) for region in ("us-east-1", "us-west-2")}
    assert names == {"drtopo-lease-us-east-1", "drtopo-lease-us-west-2"}
    backups = {f"drtopo-{region}-{purpose}" for region in ("us-east-1", "us-west-2") for purpose in BUCKET_PURPOSES}
    assert not names & backups and witness_bucket("drtopo", "us-east-1") not in names


def lease_settings(**fencing: object) -> dict[str, object]:
    return {"fencing": {"mode": "lease", "witnessRegion": "eu-west-1", "witnessStack": "prod", **fencing}}


def test_defaults_are_off_and_valid() -> None:
    settings = load_settings("prod")
    assert settings.fencing.mode == "off"
    fencing = load_settings("prod", overrides=lease_settings(leaseSeconds=30, renewSeconds=5)).fencing
    assert (fencing.worst_seconds, fencing.witness_region) == (35, "eu-west-1")


@pytest.mark.parametrize(
    ("fencing", "message"),
    [
        ({"leaseSeconds": 30, "renewSeconds": 15}, "renewSeconds 15 is not well inside.*at most leaseSeconds / 3"),
        ({"leaseSeconds": 900, "renewSeconds": 60}, "960 s exceeds the region-failure RPO of 900 s"),
        ({"witnessRegion": "us-east-1"}, "witnessRegion 'us-east-1' is one of the stacks' regions"),
        ({"witnessRegion": "us-west-2"}, "witnessRegion 'us-west-2' is one of the stacks' regions"),
        ({"witnessRegion": None}, "has no fencing.witnessRegion"),
        ({"witnessStack": None}, r"witnessStack None is not a stack of the pair; expected prod or dr"),
        ({"witnessStack": "staging"}, r"witnessStack 'staging' is not a stack of the pair; expected prod or dr"),
        (
            {"leaseSeconds": 20, "renewSeconds": 7},
            r"renewSeconds 7 is not well inside.*at most leaseSeconds / 3 \(6.66667\)",
        ),
        ({"leaseSeconds": 0}, "greater than 0"),
        ({"databaseRole": "Guard; DROP"}, "fencing.databaseRole"),
        ({"databaseSecret": "Not_A_Name"}, "fencing.databaseSecret"),
    ],
)
def test_invalid_fencing_is_refused(fencing: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings("prod", overrides=lease_settings(**fencing))


def test_lease_needs_the_peer_stack_reference_for_the_guard() -> None:
    overrides = {**lease_settings(), "primaryStackReference": None}
    with pytest.raises(SettingsError, match=r"^Pulumi\.prod\.yaml: drtopo:fencing\.mode 'lease' has no drtopo:primary"):
        load_settings("prod", overrides=overrides)


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_both_stacks_name_the_same_witness_stack(stack: str) -> None:
    fencing = load_settings(stack, overrides=lease_settings()).fencing
    assert (fencing.witness_stack, fencing.database_role, fencing.database_secret) == (
        "prod",
        "drtopo_guard",
        "drtopo-guard-db",
    )


def test_a_refusal_is_one_line_naming_the_value() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings("prod", overrides=lease_settings(leaseSeconds=20, renewSeconds=7))
    assert "\n" not in str(caught.value)
    assert "7" in str(caught.value) and "20" in str(caught.value)
