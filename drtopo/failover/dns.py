"""Flip the pair of Route53 failover records in one change batch: one stack's record PRIMARY, its peer's SECONDARY.

Both records (same name, `SetIdentifier` per region) are rewritten by UPSERT in a single `ChangeResourceRecordSets`
call, so resolvers never see two PRIMARY records or none; every other field (health check, TTL, target, alias) is kept.
"""

from __future__ import annotations

import copy
from typing import Any

from drtopo.aws import stack_client
from drtopo.outputs import StackOutputs


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


def current(outputs: StackOutputs) -> dict[str, str]:
    return failover_state(list_records(outputs), outputs.record_name)


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
        "after": current(primary),
    }
