"""DNS failover: the takeover signal first (data plane, in the region that takes over), the record flip as fallback.

The signal: each stack keeps in its own region the metric `drtopo/Failover Takeover` and the alarm
`drtopo-<region>-takeover` (components/dns.py). A failover record is healthy only while its region's endpoint check
passes and the *peer's* takeover alarm is not ALARM, so `take_over(target, peer)` publishes 1 in the target's region
(CloudWatch PutMetricData, then SetAlarmState so the alarm needs no evaluation period) and 0 in the peer's region
when it answers. Nothing of Route53's control plane (us-east-1) or of the failed region is needed.

The fallback: `make_primary` flips the pair of failover records in one change batch: one stack's record PRIMARY, its
peer's SECONDARY. Both records (same name, `SetIdentifier` per region) are rewritten by UPSERT in a single
`ChangeResourceRecordSets` call, so resolvers never see two PRIMARY records or none; every other field (health check,
TTL, target, alias) is kept. It is a control-plane call, used only when the signal cannot be written.

`answered` is Route53's failover rule as a pure function (PRIMARY if healthy, else SECONDARY if healthy, else
PRIMARY); `current` applies it to the records and the signals the account holds, which is what the lab's clients
follow (the emulator evaluates no health check: the endpoint checks count as passing there).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from drtopo import naming
from drtopo.aws import client, stack_client
from drtopo.outputs import StackOutputs

# What a region's takeover alarm state is reported as when CloudWatch there does not answer.
UNREACHABLE = "UNREACHABLE"


class RecordError(LookupError):
    """A failover record this stack expects is missing from the hosted zone."""


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def failover_state(records: list[dict[str, Any]], record_name: str) -> dict[str, str]:
    """`{SetIdentifier: "PRIMARY"|"SECONDARY"}` for the failover records named `record_name`."""
    name = _fqdn(record_name).lower()
    return {
        r["SetIdentifier"]: r["Failover"]
        for r in records
        if _fqdn(r["Name"]).lower() == name and "Failover" in r and "SetIdentifier" in r
    }


def flip_batch(
    records: list[dict[str, Any]], record_name: str, primary_set_id: str, secondary_set_id: str, comment: str = ""
) -> dict[str, Any] | None:
    """The one change batch that makes `primary_set_id` PRIMARY and `secondary_set_id` SECONDARY (None: already so)."""
    name = _fqdn(record_name).lower()
    by_set = {r.get("SetIdentifier"): r for r in records if _fqdn(r["Name"]).lower() == name and "Failover" in r}
    changes = []
    for set_id, failover in ((primary_set_id, "PRIMARY"), (secondary_set_id, "SECONDARY")):
        if set_id not in by_set:
            raise RecordError(
                f"failover record {record_name} with SetIdentifier {set_id!r} is not in the zone; "
                f"found {sorted(k for k in by_set if k)}"
            )
        record = copy.deepcopy(by_set[set_id])
        if record["Failover"] == failover:
            continue
        record["Failover"] = failover
        changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
    if not changes:
        return None
    return {"Comment": comment or f"drtopo failover: {primary_set_id} PRIMARY", "Changes": changes}


def _client(outputs: StackOutputs) -> Any:
    return stack_client("route53", outputs)


def list_records(outputs: StackOutputs) -> list[dict[str, Any]]:
    client = _client(outputs)
    pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=outputs.hosted_zone_id)
    return [r for page in pages for r in page["ResourceRecordSets"]]


def record_state(outputs: StackOutputs) -> dict[str, str]:
    """The records as declared: `{SetIdentifier: "PRIMARY"|"SECONDARY"}`."""
    return failover_state(list_records(outputs), outputs.record_name)


def answered(declared: Mapping[str, str], healthy: Mapping[str, bool]) -> str | None:
    """The set identifier Route53 answers for a failover pair: the PRIMARY record when healthy, else the SECONDARY
    when healthy, else the PRIMARY (Route53 answers the primary when both are unhealthy); None without a PRIMARY."""
    primary = next((k for k, v in declared.items() if v == "PRIMARY"), None)
    secondary = next((k for k, v in declared.items() if v == "SECONDARY"), None)
    if primary is None:
        return secondary
    if healthy.get(primary, True) or secondary is None or not healthy.get(secondary, True):
        return primary
    return secondary


def vetoed(declared: Mapping[str, str], takeover: Mapping[str, str]) -> dict[str, bool]:
    """Which records the peer's takeover makes unhealthy: set identifiers are regions, and a record is vetoed while
    the other region's takeover alarm is ALARM."""
    regions = list(declared)
    return {r: any(takeover.get(o) == "ALARM" for o in regions if o != r) for r in regions}


def routing(declared: Mapping[str, str], takeover: Mapping[str, str]) -> dict[str, str]:
    """`{SetIdentifier: "PRIMARY"|"SECONDARY"}` as Route53 answers: PRIMARY is the record it serves."""
    healthy = {k: not v for k, v in vetoed(declared, takeover).items()}
    serving = answered(declared, healthy)
    return {k: "PRIMARY" if k == serving else "SECONDARY" for k in declared}


def takeover_state(region: str) -> str:
    """The state of `region`'s takeover alarm (OK, ALARM, INSUFFICIENT_DATA), UNREACHABLE when CloudWatch fails."""
    try:
        alarms = client("cloudwatch", region).describe_alarms(AlarmNames=[naming.takeover_alarm_name(region)])
    except (BotoCoreError, ClientError):
        return UNREACHABLE
    found = alarms.get("MetricAlarms") or []
    return str(found[0]["StateValue"]) if found else "INSUFFICIENT_DATA"


def current(outputs: StackOutputs) -> dict[str, str]:
    """The failover pair as Route53 answers it, from the records and both regions' takeover signals."""
    declared = record_state(outputs)
    return routing(declared, {region: takeover_state(region) for region in declared})


class SignalError(RuntimeError):
    """The takeover signal could not be written in a region; `unreachable` when its API gave no answer at all (a
    partition, a dead region) rather than refusing."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def publish_takeover(region: str, taken_over: bool) -> None:
    """Write `region`'s takeover signal (1 or 0) and set its alarm to match; raises SignalError when CloudWatch there
    refuses or does not answer (the alarm must exist: SetAlarmState fails on an unknown alarm)."""
    watch = client("cloudwatch", region)
    value = 1.0 if taken_over else 0.0
    try:
        watch.put_metric_data(
            Namespace=naming.TAKEOVER_NAMESPACE,
            MetricData=[
                {
                    "MetricName": naming.TAKEOVER_METRIC,
                    "Dimensions": [{"Name": "Region", "Value": region}],
                    "Value": value,
                    "Unit": "Count",
                }
            ],
        )
        watch.set_alarm_state(
            AlarmName=naming.takeover_alarm_name(region),
            StateValue="ALARM" if taken_over else "OK",
            StateReason=f"drtopo promote: Takeover={value:g} published in {region}",
        )
    except (BotoCoreError, ClientError) as exc:
        raise SignalError(
            f"takeover signal {naming.takeover_alarm_name(region)} in {region} not written: {exc}",
            unreachable=isinstance(exc, BotoCoreError),
        ) from None


# What the peer's signal is after the takeover: cleared (OK), its region gave no answer, or its API refused.
PEER_CLEARED, PEER_UNREACHABLE, PEER_REFUSED = "cleared", "unreachable", "refused"


def take_over(target: StackOutputs, peer: StackOutputs) -> dict[str, Any]:
    """Make Route53 answer `target`'s record through the data plane: the target region's signal on (must succeed,
    else SignalError), the peer region's off when it answers (a stale signal there would veto the target's record)."""
    publish_takeover(target.region, True)
    try:
        publish_takeover(peer.region, False)
        peer, peer_error = PEER_CLEARED, None
    except SignalError as exc:
        peer, peer_error = (PEER_UNREACHABLE if exc.unreachable else PEER_REFUSED), str(exc)
    return {
        "signal": naming.takeover_alarm_name(target.region),
        "peer_cleared": peer == PEER_CLEARED,
        "peer": peer,
        "peer_error": peer_error,
    }


def data_plane_signals(
    target_region: str, peer_region: str, target_state: str, peer: str, peer_state: str
) -> dict[str, str]:
    """Each takeover alarm as Route53's health checkers see it (pure): the target's as read back in its region; the
    peer's OK once cleared, as read when its API refused the clear, and UNREACHABLE when its region gave no answer,
    which the peer-takeover health check counts healthy (insufficient data: components/dns.py) and so not a veto."""
    seen = {PEER_CLEARED: "OK", PEER_UNREACHABLE: UNREACHABLE}.get(peer, peer_state)
    return {target_region: target_state, peer_region: seen}


def fallback_reason(target_id: str, routed: Mapping[str, str], signals: Mapping[str, str]) -> str | None:
    """Why the data plane would not answer `target_id` (None: it does, no fallback is needed) (pure)."""
    if routed.get(target_id) == "PRIMARY":
        return None
    return f"the data plane would answer {routed} with the takeover alarms at {dict(signals)}"


def declared_pair(target: StackOutputs, peer: StackOutputs) -> dict[str, str]:
    """The failover pair as the stacks declare it (the record set the data plane keeps serving while Route53's
    control plane is away); which of the two is PRIMARY does not change the answer once exactly one region has
    taken over (pure)."""
    return {target.set_identifier: target.failover, peer.set_identifier: peer.failover}


def make_primary(primary: StackOutputs, secondary: StackOutputs) -> dict[str, Any]:
    """Flip the records so `primary`'s region serves; returns the state before and after and the change id."""
    records = list_records(primary)
    before = failover_state(records, primary.record_name)
    batch = flip_batch(records, primary.record_name, primary.set_identifier, secondary.set_identifier)
    if batch is None:
        return {"before": before, "changes": 0, "after": before}
    change = _client(primary).change_resource_record_sets(HostedZoneId=primary.hosted_zone_id, ChangeBatch=batch)
    return {
        "before": before,
        "changes": len(batch["Changes"]),
        "change_id": change["ChangeInfo"]["Id"],
        "after": record_state(primary),
    }


class DnsFailoverError(RuntimeError):
    """Neither the takeover signal nor the record flip made Route53 answer the target."""


DATA_PLANE, FALLBACK = "data plane", "fallback"


def fail_over(target: StackOutputs, peer: StackOutputs) -> dict[str, Any]:
    """DNS to `target` through the data plane, without Route53's control plane (us-east-1) when it can.

    1. The target region's takeover signal on, the peer's off when its region answers (`take_over`).
    2. Verified as Route53's health checkers see it: the target's alarm read back in its own region, the peer's as
       the clear left it (a peer region that gave no answer counts as not taken over, as its health check does).
    3. Only when the signal could not be written or the data plane would still not answer the target: the record
       UPSERT (Route53's control plane), verified from the records and the signals (`current`).

    Returns `dns_path` (`data plane` or `fallback`; `mode` says the same as `signal`/`fallback`), why a fallback was
    needed, the signals seen and the routing after; raises DnsFailoverError when Route53 would still not answer the
    target."""
    result: dict[str, Any] = {"dns_path": DATA_PLANE, "mode": "signal"}
    reason = None
    try:
        result["signal"] = take_over(target, peer)
    except SignalError as exc:
        reason = str(exc)
    if reason is None:
        signal = result["signal"]
        peer_state = takeover_state(peer.region) if signal["peer"] == PEER_REFUSED else ""
        signals = data_plane_signals(
            target.region, peer.region, takeover_state(target.region), signal["peer"], peer_state
        )
        result["signals"] = signals
        result["after"] = routing(declared_pair(target, peer), signals)
        reason = fallback_reason(target.set_identifier, result["after"], signals)
        if reason is None:
            return result
    result.update(dns_path=FALLBACK, mode="fallback", fallback_reason=reason)
    try:
        result["records"] = make_primary(target, peer)
    except (BotoCoreError, ClientError, RecordError) as exc:
        result["records_error"] = f"record flip failed: {exc}"
    problems = "; ".join(str(result[k]) for k in ("fallback_reason", "records_error") if k in result)
    try:
        result["after"] = current(target)
    except (BotoCoreError, ClientError) as exc:
        raise DnsFailoverError(
            f"routing of {target.record_name} unreadable after the fallback: {exc} ({problems})"
        ) from None
    if result["after"].get(target.set_identifier) != "PRIMARY":
        raise DnsFailoverError(
            f"{target.record_name}: Route53 would answer {result['after']}; "
            f"expected {target.set_identifier} ({problems})"
        )
    return result
