"""The Route53 flip: one batch, both records, every other field kept; nothing to do when already flipped."""

from __future__ import annotations

import copy

import pytest

from drtopo.failover.dns import RecordError, failover_state, flip_batch

NAME = "api.exceptions.biopro.example"


def record(set_id: str, failover: str, target: str) -> dict:
    return {
        "Name": f"{NAME}.",
        "Type": "CNAME",
        "SetIdentifier": set_id,
        "Failover": failover,
        "TTL": 30,
        "ResourceRecords": [{"Value": target}],
        "HealthCheckId": f"hc-{set_id}",
    }


RECORDS = [
    {"Name": "exceptions.biopro.example.", "Type": "NS", "TTL": 172800, "ResourceRecords": [{"Value": "ns"}]},
    record("us-east-1", "PRIMARY", "api-us-east-1.exceptions.biopro.example"),
    record("us-west-2", "SECONDARY", "api-us-west-2.exceptions.biopro.example"),
]


def test_failover_state_reads_only_the_failover_pair() -> None:
    assert failover_state(RECORDS, NAME) == {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}


def test_flip_is_one_batch_of_two_upserts_keeping_health_checks() -> None:
    original = copy.deepcopy(RECORDS)
    batch = flip_batch(RECORDS, NAME, primary_set_id="us-west-2", secondary_set_id="us-east-1")

    assert batch is not None
    assert [c["Action"] for c in batch["Changes"]] == ["UPSERT", "UPSERT"]
    by_set = {c["ResourceRecordSet"]["SetIdentifier"]: c["ResourceRecordSet"] for c in batch["Changes"]}
    assert by_set["us-west-2"] == {**RECORDS[2], "Failover": "PRIMARY"}
    assert by_set["us-east-1"] == {**RECORDS[1], "Failover": "SECONDARY"}
    assert original == RECORDS  # the input is not mutated
    flipped = [RECORDS[0], by_set["us-east-1"], by_set["us-west-2"]]
    assert sorted(failover_state(flipped, NAME).values()) == ["PRIMARY", "SECONDARY"]


def test_no_batch_when_already_in_place() -> None:
    assert flip_batch(RECORDS, NAME + ".", primary_set_id="us-east-1", secondary_set_id="us-west-2") is None


def test_missing_record_names_what_exists() -> None:
    with pytest.raises(RecordError, match=r"'eu-west-1'.*\['us-east-1', 'us-west-2'\]"):
        flip_batch(RECORDS, NAME, primary_set_id="eu-west-1", secondary_set_id="us-east-1")
