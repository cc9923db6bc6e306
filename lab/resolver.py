"""The lab's stand-in for Route53's data plane: what a resolver is answered for the failover record.

Route53's control plane (the API, in us-east-1) holds the record set; its data plane (the name servers and the
health checkers, in every region) keeps answering from the last record set it was given when the control plane is
gone, and reads each health signal where it lives. `Resolver` does the same in the lab: each `answer()` asks
Route53's API through us-east-1's gate for the failover pair and remembers it; when that API does not answer (us-east-1
partitioned) it answers from the last pair it saw. Each region's takeover alarm is read through that region's own gate
(a region it cannot reach counts as not taken over, as a health checker that cannot see a signal). The answer applies
Route53's failover rule (`drtopo.failover.dns.routing`).

Its clients wait at most a few seconds (a resolver must not hang on a partition); the emulator evaluates no health
check, so the endpoint checks count as passing, as in `drtopo.failover.dns.current`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from drtopo import naming
from drtopo.failover import dns
from drtopo.outputs import StackOutputs
from lab import aws

ROUTE53_HOME = "us-east-1"
# One attempt, answered within a few seconds: the resolver's own bound on a partitioned API.
RESOLVER_CONFIG = Config(connect_timeout=2, read_timeout=2, retries={"total_max_attempts": 1})


class NoRecordSeen(LookupError):
    """Route53's API has not answered once yet, so there is no record set to answer from."""


def _client(service: str, region: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        config=RESOLVER_CONFIG,
        aws_access_key_id=aws.DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws.DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


class Resolver:
    """Route53's data plane for one failover record, over the regions' AWS endpoints (region -> URL: the gates)."""

    def __init__(self, outputs: StackOutputs, endpoints: Mapping[str, str]) -> None:
        self.outputs = outputs
        self.endpoints = dict(endpoints)
        self._declared: dict[str, str] | None = None
        self._lock = threading.Lock()
        # Where the last answer's record set came from: "control plane" (just read) or "last seen".
        self.source = ""

    def _records(self) -> dict[str, str]:
        route53 = _client("route53", ROUTE53_HOME, self.endpoints[ROUTE53_HOME])
        pages = route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.outputs.hosted_zone_id)
        records = [r for page in pages for r in page["ResourceRecordSets"]]
        return dns.failover_state(records, self.outputs.record_name)

    def _signal(self, region: str) -> str:
        """`region`'s takeover alarm read in `region`; UNREACHABLE when that region's API does not answer."""
        try:
            watch = _client("cloudwatch", region, self.endpoints[region])
            found = watch.describe_alarms(AlarmNames=[naming.takeover_alarm_name(region)]).get("MetricAlarms") or []
        except (BotoCoreError, ClientError, KeyError):
            return dns.UNREACHABLE
        return str(found[0]["StateValue"]) if found else "INSUFFICIENT_DATA"

    def declared(self) -> dict[str, str]:
        """The failover pair as Route53's API holds it now, else as it was last seen; NoRecordSeen before any."""
        with self._lock:
            try:
                self._declared, self.source = self._records(), "control plane"
            except (BotoCoreError, ClientError):
                if self._declared is None:
                    raise NoRecordSeen(f"Route53's API in {ROUTE53_HOME} has not answered yet") from None
                self.source = "last seen"
            return dict(self._declared)

    def answer(self) -> dict[str, str]:
        """`{SetIdentifier: "PRIMARY"|"SECONDARY"}` as the data plane answers: PRIMARY is the record served."""
        declared = self.declared()
        return dns.routing(declared, {region: self._signal(region) for region in declared})

    def serving(self) -> str | None:
        """The set identifier (the region) a resolver is answered."""
        return next((k for k, v in self.answer().items() if v == "PRIMARY"), None)
