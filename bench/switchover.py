"""What the fault matrix and the promote and failback tests share: running the commands, a writer that follows DNS,
and the lab's end state.

The writer is a client of the database that asks which region Route53 answers before each write, the way the service
follows the failover record; a commit that returned is an acknowledged write. Which region Route53 answers is judged
by `RawDns`, this module's own reading of the emulator's raw state and of Route53's documented rules, never by the
product's model of it (drtopo.failover.dns).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from drtopo import naming
from drtopo.outputs import StackOutputs, load_outputs
from lab import kube_workloads
from lab.core import Lab
from lab.project import LAB_STACKS as STACKS

REPO = Path(__file__).resolve().parents[1]
# The consumer-group step has its own test; these tests are about the database, DNS and roles.
DB_ONLY = ["--skip-consumer-group"]
# Failover routing per region (set identifier) as end_state() judges it: PRIMARY is the record Route53 answers.
BASELINE_DNS = {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}
FAILED_OVER_DNS = {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}


def run_cli(
    module: str, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"scripts.{module}", *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outputs(lab: Lab, stack: str) -> StackOutputs:
    return load_outputs(lab.region(stack).outputs_path, stack)


def connect(lab: Lab, stack: str) -> psycopg.Connection:
    return psycopg.connect(lab.region(stack).postgres.conninfo(), autocommit=True)


def server_state(lab: Lab, stack: str) -> dict[str, Any]:
    try:
        with connect(lab, stack) as conn:
            in_recovery, read_only = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
            ).fetchone()
            return {"in_recovery": in_recovery, "default_read_only": read_only}
    except psycopg.OperationalError:
        return {"down": True}


def _fqdn(name: str) -> str:
    return (name if name.endswith(".") else f"{name}.").lower()


class RawDns:
    """Which region Route53 answers, judged from the emulator's raw state by this module's own reading of Route53's
    documented rules (not drtopo.failover.dns, the code under test).

    Raw state read with boto3: the failover record sets of the record name (Failover PRIMARY/SECONDARY, their
    HealthCheckId), each health check's configuration (GetHealthCheck), and, in each region, the takeover alarm's
    state (DescribeAlarms) and the latest datapoint of its metric (GetMetricStatistics).

    The rules, as AWS documents them:
    - Failover records (Route 53 API reference, ResourceRecordSet `Failover`; Developer Guide "Failover routing",
      docs.aws.amazon.com/Route53/latest/DeveloperGuide/routing-policy-failover.html): "When the primary resource
      record set is healthy, Route 53 responds to DNS queries with the applicable value from the primary resource
      record set regardless of the health of the secondary"; "When the primary resource record set is unhealthy and
      the secondary resource record set is healthy, Route 53 responds ... from the secondary"; "When the secondary
      resource record set is unhealthy, Route 53 responds ... from the primary ... regardless of the health of the
      primary".
    - Health checks (Developer Guide "How Amazon Route 53 determines whether a health check is healthy",
      dns-failover-determining-health-of-endpoints.html): a check on a CloudWatch alarm is unhealthy while the alarm
      is ALARM, healthy while OK, and with INSUFFICIENT_DATA takes its `InsufficientDataHealthStatus` (Healthy,
      Unhealthy, or LastKnownStatus, which for a check with no last known status is healthy); a calculated check is
      healthy while at least `HealthThreshold` of its child checks are healthy; `Inverted` inverts a check.
    - An endpoint check (HTTP, HTTPS, TCP) has its status computed by Route53's checkers, which the emulator does not
      run (lab/aws.py): it is taken as healthy, and listed as such in the raw state.

    Alarms: the emulator does not evaluate an alarm from its metric (promote sets the state with SetAlarmState, which
    real CloudWatch keeps only until its next evaluation of the metric), so the raw state also carries the metric's
    latest one-minute Maximum in each region, and `signals_agree` says whether every ALARM is backed by it.
    The emulator keeps neither `AlarmIdentifier` nor `InsufficientDataHealthStatus` of a CLOUDWATCH_METRIC check;
    where it does not return them, the alarm is the one components/dns.py declares (`_declared_alarm`).
    """

    def __init__(self, outputs_by_stack: dict[str, StackOutputs]) -> None:
        anchor = next(iter(outputs_by_stack.values()))
        self.zone_id = anchor.hosted_zone_id
        self.record_name = anchor.record_name
        self.route53 = boto3.client("route53", region_name=anchor.region)
        self.regions = sorted({o.region for o in outputs_by_stack.values()})
        self.watch = {r: boto3.client("cloudwatch", region_name=r) for r in self.regions}
        self._configs: dict[str, dict[str, Any]] = {}

    def records(self) -> dict[str, dict[str, Any]]:
        """`{SetIdentifier: {"failover": PRIMARY|SECONDARY, "health_check": id}}` for the failover record pair."""
        pages = self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.zone_id)
        return {
            r["SetIdentifier"]: {"failover": r["Failover"], "health_check": r.get("HealthCheckId")}
            for page in pages
            for r in page["ResourceRecordSets"]
            if _fqdn(r["Name"]) == _fqdn(self.record_name) and "Failover" in r and "SetIdentifier" in r
        }

    def _config(self, check_id: str) -> dict[str, Any]:
        if check_id not in self._configs:  # a check's configuration never changes in a run
            check = self.route53.get_health_check(HealthCheckId=check_id)["HealthCheck"]
            self._configs[check_id] = check["HealthCheckConfig"]
        return self._configs[check_id]

    def alarms(self) -> dict[str, dict[str, str]]:
        """`{region: {alarm name: state}}` of every alarm in each region."""
        return {
            r: {a["AlarmName"]: a["StateValue"] for a in self.watch[r].describe_alarms().get("MetricAlarms", [])}
            for r in self.regions
        }

    def metrics(self) -> dict[str, float | None]:
        """`{region: latest Maximum of drtopo/Failover Takeover (Region=region)}` over the last hour, None: no data."""
        now = datetime.now(UTC)
        latest: dict[str, float | None] = {}
        for r in self.regions:
            points = self.watch[r].get_metric_statistics(
                Namespace=naming.TAKEOVER_NAMESPACE,
                MetricName=naming.TAKEOVER_METRIC,
                Dimensions=[{"Name": "Region", "Value": r}],
                StartTime=now - timedelta(hours=1),
                EndTime=now + timedelta(minutes=5),
                Period=60,
                Statistics=["Maximum"],
            )["Datapoints"]
            latest[r] = max(points, key=lambda p: p["Timestamp"])["Maximum"] if points else None
        return latest

    def healthy(self, check_id: str | None, alarms: dict[str, dict[str, str]], record: str) -> bool:
        """Whether `check_id` (the health check of the record of set identifier `record`) is healthy."""
        if check_id is None:  # a record without a health check is always healthy
            return True
        config = self._config(check_id)
        kind = config["Type"]
        if kind == "CALCULATED":
            children = [self.healthy(c, alarms, record) for c in config.get("ChildHealthChecks") or []]
            result = sum(children) >= (config.get("HealthThreshold") or len(children))
        elif kind == "CLOUDWATCH_METRIC":
            alarm = config.get("AlarmIdentifier") or self._declared_alarm(record)
            state = alarms.get(alarm["Region"], {}).get(alarm["Name"], "INSUFFICIENT_DATA")
            if state == "INSUFFICIENT_DATA":
                result = config.get("InsufficientDataHealthStatus", "Healthy") != "Unhealthy"
            else:
                result = state == "OK"
        else:  # an endpoint check: the emulator runs no checker (see the class docstring)
            result = True
        return result != bool(config.get("Inverted"))

    def _declared_alarm(self, record: str) -> dict[str, str]:
        """The alarm a record's CLOUDWATCH_METRIC check watches when the emulator does not return it (moto keeps
        neither `AlarmIdentifier` nor `InsufficientDataHealthStatus` of a check): as components/dns.py and
        lab/aws.py declare it, the other region's takeover alarm, with no data counting as healthy. Set identifiers
        are regions."""
        others = [r for r in self.regions if r != record]
        if len(others) != 1:
            raise LookupError(f"record {record!r} is not one of the regions {self.regions}")
        return {"Region": others[0], "Name": naming.takeover_alarm_name(others[0])}

    def read(self) -> dict[str, Any]:
        """The raw pieces and what follows from them: `routing` is `{SetIdentifier: PRIMARY|SECONDARY}` where
        PRIMARY is the record Route53 answers (the shape of BASELINE_DNS and FAILED_OVER_DNS)."""
        records = self.records()
        alarms = self.alarms()
        health = {k: self.healthy(v["health_check"], alarms, k) for k, v in records.items()}
        answered = _failover_answer(records, health)
        takeover = {r: alarms[r].get(naming.takeover_alarm_name(r), "MISSING") for r in self.regions}
        return {
            "routing": {k: "PRIMARY" if k == answered else "SECONDARY" for k in records},
            "records": records,
            "healthy": health,
            "takeover_alarms": takeover,
            "takeover_metric": self.metrics(),
        }

    def answered(self) -> str | None:
        """The set identifier Route53 answers now (cheaper than `read`: no metric)."""
        records = self.records()
        alarms = self.alarms()
        health = {k: self.healthy(v["health_check"], alarms, k) for k, v in records.items()}
        return _failover_answer(records, health)


def _failover_answer(records: dict[str, dict[str, Any]], health: dict[str, bool]) -> str | None:
    """The record Route53 answers (the class docstring's three rules): the primary while healthy; the secondary when
    the primary is unhealthy and the secondary healthy; the primary when the secondary is unhealthy."""
    primary = next((k for k, v in records.items() if v["failover"] == "PRIMARY"), None)
    secondary = next((k for k, v in records.items() if v["failover"] == "SECONDARY"), None)
    if primary is None:
        return secondary
    if health[primary] or secondary is None or not health[secondary]:
        return primary
    return secondary


def signals_agree(raw: dict[str, Any]) -> bool:
    """Every takeover alarm in ALARM is backed by its metric: a datapoint >= 1 (the alarm's threshold) in the last
    hour in its region, so the signal was published and not only the alarm's state forced. (An OK alarm is not
    judged by the metric: the emulator aggregates datapoints by the minute, so a 1 and a later 0 published in the
    same minute read as a Maximum of 1.)"""
    return all(
        (raw["takeover_metric"][region] or 0) >= 1
        for region, state in raw["takeover_alarms"].items()
        if state == "ALARM"
    )


def raw_dns(lab: Lab) -> dict[str, Any]:
    return RawDns({s: outputs(lab, s) for s in STACKS}).read()


def end_state(lab: Lab) -> dict[str, Any]:
    """Both halves: the servers, DNS as judged from the raw record, health-check, alarm and metric state (`dns` the
    routing map, `dns_raw` the pieces), the emulator's RDS instances, and the project copy's stack files."""
    raw = raw_dns(lab)
    return {
        "servers": {s: server_state(lab, s) for s in STACKS},
        "dns": raw["routing"],
        "dns_raw": raw,
        "rds": {
            s: sorted(
                i["DBInstanceIdentifier"]
                for i in boto3.client("rds", region_name=outputs(lab, s).region).describe_db_instances()["DBInstances"]
            )
            for s in STACKS
        },
        "stack_files": {s: (lab.project_dir / f"Pulumi.{s}.yaml").read_text() for s in STACKS},
        "application": {s: application_state(lab, s) for s in STACKS},
    }


def application_state(lab: Lab, stack: str) -> dict[str, int]:
    """The stack's application Deployment as its cluster says: spec.replicas and status.availableReplicas."""
    namespace = lab.region(stack).namespace
    found = kube_workloads.get(lab.root, "deployment", kube_workloads.SERVICE_APP, namespace) or {}
    return {
        "replicas": int(found.get("spec", {}).get("replicas", 0)),
        "available": int(found.get("status", {}).get("availableReplicas", 0)),
    }


def application_settled(lab: Lab, primary: str) -> bool:
    """The primary's application at the primary's count, all available; the other's at the standby's count (by
    each stack's settings in the project copy, roles switched)."""
    state = {s: application_state(lab, s) for s in STACKS}
    for stack in STACKS:
        settings = lab.region(stack).settings
        wanted = settings.application.replicas(settings.role)
        if state[stack]["replicas"] != wanted or (stack == primary and state[stack]["available"] != wanted):
            return False
    return True


def write_refused(lab: Lab, stack: str) -> str:
    """The error of a write attempted on `stack` from a new session ('' when it went through)."""
    with connect(lab, stack) as conn:
        try:
            with conn.transaction():
                conn.execute("CREATE TABLE fence_check (id int)")
                raise psycopg.Rollback()
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            return str(exc)
    return ""


@dataclass
class Ack:
    key: str
    at: float
    stack: str
    seq: int = 0  # the writer's own sequence number: rows are written in this order


class DnsFollowingWriter(threading.Thread):
    """Inserts rows at `rate` per second into whichever stack's database DNS names PRIMARY."""

    def __init__(self, lab: Lab, rate: float = 100.0, prefix: str = "writer") -> None:
        super().__init__(name="dns-following-writer", daemon=True)
        self.lab = lab
        self.rate = rate
        self.prefix = prefix  # of its transaction ids: two writers at once must not write the same ones
        self.acks: list[Ack] = []
        self.errors = 0
        self._halt = threading.Event()
        self._outputs = {s: outputs(lab, s) for s in STACKS}
        self._by_set = {o.set_identifier: s for s, o in self._outputs.items()}
        self._dns = RawDns(self._outputs)
        LIVE_WRITERS.add(self)

    def primary(self) -> str:
        """The stack whose record Route53 answers (RawDns: the raw state, not the product's model)."""
        answered = self._dns.answered()
        if answered is None:
            raise LookupError(f"no failover record of {self._dns.record_name} in zone {self._dns.zone_id}")
        return self._by_set[answered]

    def run(self) -> None:
        conns: dict[str, psycopg.Connection] = {}
        n = 0
        while not self._halt.is_set():
            n += 1
            key = f"{self.prefix}-{n}"
            try:
                stack = self.primary()
                if stack not in conns:
                    conns[stack] = connect(self.lab, stack)
                conns[stack].execute(
                    "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
                    " VALUES (%s, 'ORDER', 'switchover test', 'CREATE_ORDER')",
                    (key,),
                )
                self.acks.append(Ack(key, time.time(), stack, n))
            except (psycopg.Error, BotoCoreError, ClientError, LookupError):
                self.errors += 1
                for conn in conns.values():
                    conn.close()
                conns.clear()
            self._halt.wait(1 / self.rate)
        for conn in conns.values():
            conn.close()

    def stop(self) -> list[Ack]:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=15)
        LIVE_WRITERS.discard(self)
        return self.acks


# Writers a failed test did not stop: the integration conftest stops them after every test, so no writer keeps
# inserting into the databases the next test starts from.
LIVE_WRITERS: weakref.WeakSet[DnsFollowingWriter] = weakref.WeakSet()


def present(lab: Lab, stack: str, keys: list[str]) -> set[str]:
    with connect(lab, stack) as conn:
        rows = conn.execute(
            "SELECT transaction_id FROM interface_exceptions WHERE transaction_id = ANY(%s)", (keys,)
        ).fetchall()
    return {r[0] for r in rows}


def wait_acks(writer: DnsFollowingWriter, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(writer.acks) < count:
        assert time.monotonic() < deadline, f"writer got {len(writer.acks)} acks, not {count}, in {timeout:.0f} s"
        time.sleep(0.05)
