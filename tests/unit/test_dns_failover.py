"""The Route53 flip: one batch, both records, every other field kept; nothing to do when already flipped."""

from __future__ import annotations

import copy

import pytest

from drtopo.failover.dns import (
    PEER_CLEARED,
    PEER_REFUSED,
    PEER_UNREACHABLE,
    RecordError,
    answered,
    data_plane_signals,
    failover_state,
    fallback_reason,
    flip_batch,
    routing,
    vetoed,
)

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


# Route53's failover rule and the takeover veto, as drtopo.failover.dns models them.
DECLARED = {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}


def test_route53_answers_the_primary_while_healthy_else_a_healthy_secondary_else_the_primary() -> None:
    assert answered(DECLARED, {"us-east-1": True, "us-west-2": True}) == "us-east-1"
    assert answered(DECLARED, {"us-east-1": False, "us-west-2": True}) == "us-west-2"
    assert answered(DECLARED, {"us-east-1": False, "us-west-2": False}) == "us-east-1"
    assert answered(DECLARED, {"us-east-1": True, "us-west-2": False}) == "us-east-1"


def test_a_takeover_vetoes_the_other_regions_record_only() -> None:
    assert vetoed(DECLARED, {"us-west-2": "ALARM", "us-east-1": "INSUFFICIENT_DATA"}) == {
        "us-east-1": True,
        "us-west-2": False,
    }
    assert vetoed(DECLARED, {"us-west-2": "OK", "us-east-1": "UNREACHABLE"}) == {"us-east-1": False, "us-west-2": False}


def test_routing_follows_the_takeover_signal_without_touching_the_records() -> None:
    assert routing(DECLARED, {}) == DECLARED
    assert routing(DECLARED, {"us-west-2": "ALARM"}) == {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}
    # After `pulumi up --refresh` the records follow the roles; the standing signal agrees with them.
    flipped = {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}
    assert routing(flipped, {"us-west-2": "ALARM"}) == flipped
    # Failback: prod takes over and clears dr's signal.
    assert routing(flipped, {"us-east-1": "ALARM", "us-west-2": "OK"}) == DECLARED
    # A stale signal in a region that could not be cleared vetoes both: Route53 answers the PRIMARY record, which
    # is why fail_over falls back to the record flip when the peer's signal reads ALARM after a refused clear.
    assert routing(flipped, {"us-east-1": "ALARM", "us-west-2": "ALARM"}) == flipped


def test_exactly_one_record_is_answered_in_every_signal_state() -> None:
    states = ("OK", "ALARM", "INSUFFICIENT_DATA", "UNREACHABLE")
    for declared in (DECLARED, {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}):
        for east in states:
            for west in states:
                result = routing(declared, {"us-east-1": east, "us-west-2": west})
                assert sorted(result.values()) == ["PRIMARY", "SECONDARY"], (declared, east, west)


# The DNS step's decision, dr (us-west-2) taking over from prod (us-east-1): the signals the data plane sees after
# the takeover (target's alarm read back, the peer's clear: its outcome and, when refused, what was read), and
# whether the record UPSERT (Route53's control plane) is needed.
DECISIONS = [
    # (target read back, peer's clear, peer read when refused, declared pair, fallback needed)
    ("ALARM", PEER_CLEARED, "", DECLARED, False),
    # us-east-1 cut off: the peer's alarm gives no answer, which its health check counts healthy (no veto).
    ("ALARM", PEER_UNREACHABLE, "", DECLARED, False),
    ("ALARM", PEER_UNREACHABLE, "", {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}, False),
    # The peer's API refused the clear and its alarm still reads ALARM (a stale takeover): both records vetoed.
    ("ALARM", PEER_REFUSED, "ALARM", DECLARED, True),
    ("ALARM", PEER_REFUSED, "OK", DECLARED, False),
    # The target's signal did not read back as ALARM: nothing vetoes prod's record.
    ("OK", PEER_CLEARED, "", DECLARED, True),
    ("UNREACHABLE", PEER_UNREACHABLE, "", DECLARED, True),
]


@pytest.mark.parametrize(("target", "peer", "peer_read", "declared", "fallback"), DECISIONS)
def test_the_dns_step_uses_the_record_upsert_only_when_the_data_plane_would_not_answer_the_target(
    target: str, peer: str, peer_read: str, declared: dict[str, str], fallback: bool
) -> None:
    signals = data_plane_signals("us-west-2", "us-east-1", target, peer, peer_read)
    routed = routing(declared, signals)
    reason = fallback_reason("us-west-2", routed, signals)
    assert (reason is not None) == fallback, (signals, routed)
    if fallback:
        assert f"{signals}" in reason and f"{routed}" in reason
    else:
        assert routed == {"us-west-2": "PRIMARY", "us-east-1": "SECONDARY"}


def test_the_data_plane_sees_a_cleared_peer_ok_an_unreachable_one_unreachable_a_refused_one_as_read() -> None:
    assert data_plane_signals("us-west-2", "us-east-1", "ALARM", PEER_CLEARED, "") == {
        "us-west-2": "ALARM",
        "us-east-1": "OK",
    }
    assert data_plane_signals("us-west-2", "us-east-1", "ALARM", PEER_UNREACHABLE, "")["us-east-1"] == "UNREACHABLE"
    assert data_plane_signals("us-west-2", "us-east-1", "ALARM", PEER_REFUSED, "ALARM")["us-east-1"] == "ALARM"
