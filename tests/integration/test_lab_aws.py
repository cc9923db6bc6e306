"""The emulator holds what the stacks would create, under the names and identifiers the outputs carry.

"What the stacks would create" is the program's declaration, evaluated under Pulumi's mocks for the lab's stack
files: the lab seeds the emulator with code of its own (lab/aws.py), so its database and buckets are checked against
what the program declares, never taken as evidence of themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.switchover import DB_ONLY, FAILED_OVER_DNS, end_state, run_cli
from drtopo import naming
from drtopo.incident.facts import duration_text
from drtopo.outputs import StackOutputs, load_outputs
from evaluation.mock_program import Evaluation, evaluate
from lab.core import Lab

pytestmark = pytest.mark.lab


def outputs(lab: Lab, stack: str) -> StackOutputs:
    return load_outputs(lab.region(stack).outputs_path, stack)


def test_outputs_files_load_and_point_at_the_lab(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    assert (prod.role, prod.failover, dr.role, dr.failover) == ("primary", "PRIMARY", "standby", "SECONDARY")
    assert prod.db_port != dr.db_port and prod.db_address == dr.db_address == "127.0.0.1"
    # Clients outside a region reach it through its gate (lab/gates.py).
    assert prod.db_port == lab.prod.gate_port("postgres")
    assert prod.kafka_bootstrap == dr.peer_kafka_bootstrap == lab.prod.kafka.gated_bootstrap
    assert prod.service_url == lab.prod.service.gated_url
    assert lab.env()["AWS_ENDPOINT_URL"] == lab.aws_endpoint


@pytest.fixture(scope="module")
def declared(lab: Lab) -> dict[str, Evaluation]:
    """Each stack's program under Pulumi's mocks, for the lab's stack files."""
    return {stack: evaluate(lab.region(stack).settings) for stack in ("prod", "dr")}


def declared_inputs(evaluation: Evaluation, type_token: str, name: str) -> dict[str, Any]:
    (found,) = [r.inputs for r in evaluation.of_type(type_token) if r.name == name]
    return found


def test_rds_primary_and_cross_region_replica_are_as_the_program_declares(
    lab: Lab, declared: dict[str, Evaluation]
) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    live = {
        out.stack: boto3.client("rds", region_name=out.region).describe_db_instances(
            DBInstanceIdentifier=out.db_instance_id
        )["DBInstances"][0]
        for out in (prod, dr)
    }
    for out in (prod, dr):
        want = declared_inputs(declared[out.stack], "aws:rds/instance:Instance", "database")
        got = live[out.stack]
        # DescribeDBInstances' fields (RDS API reference, "DBInstance") against the declared rds.Instance inputs.
        assert (got["DBInstanceIdentifier"], got["DBInstanceClass"], got["MultiAZ"]) == (
            want["identifier"],
            want["instanceClass"],
            want["multiAz"],
        ), out.stack
        assert (got["DeletionProtection"], got["Endpoint"]["Port"]) == (want["deletionProtection"], want["port"])
        assert got["DBInstanceArn"] == out.db_arn and got["KmsKeyId"] == out.kms_key_arn
    primary, replica = live["prod"], live["dr"]
    want_primary = declared_inputs(declared["prod"], "aws:rds/instance:Instance", "database")
    want_replica = declared_inputs(declared["dr"], "aws:rds/instance:Instance", "database")
    assert "replicateSourceDb" not in want_primary and primary.get("ReadReplicaSourceDBInstanceIdentifier") is None
    assert (primary["StorageEncrypted"], primary["BackupRetentionPeriod"]) == (
        want_primary["storageEncrypted"],
        want_primary["backupRetentionPeriod"],
    )
    # The program names the source by ARN (cross-region: pulumi-aws `replicate_source_db`), of prod's instance.
    source = want_replica["replicateSourceDb"]
    assert source.split(":")[3] == prod.region and source.endswith(f":db:{prod.db_instance_id}")
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == prod.db_arn
    assert boto3.client("kms", region_name=dr.region).describe_key(KeyId=dr.kms_key_arn)["KeyMetadata"]["Enabled"]


def test_buckets_are_as_the_program_declares_them(lab: Lab, declared: dict[str, Evaluation]) -> None:
    for stack in ("prod", "dr"):
        out, program = outputs(lab, stack), declared[stack]
        s3 = boto3.client("s3", region_name=out.region)
        for purpose, bucket in zip(
            naming.BUCKET_PURPOSES, (out.dump_bucket, out.wal_bucket, out.config_bucket, out.audit_bucket), strict=True
        ):
            name = f"backups-{purpose}"
            assert declared_inputs(program, "aws:s3/bucket:Bucket", name)["bucket"] == bucket
            versioning = declared_inputs(program, "aws:s3/bucketVersioning:BucketVersioning", name)
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == versioning["versioningConfiguration"]["status"]
            (sse_rule,) = declared_inputs(
                program, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name
            )["rules"]
            sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
            by_default = sse["ApplyServerSideEncryptionByDefault"]
            assert by_default["SSEAlgorithm"] == sse_rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
            assert by_default["KMSMasterKeyID"] == out.kms_key_arn  # the lab's key, in place of the mocked ARN
            block = declared_inputs(program, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)
            live_block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert live_block == {
                "BlockPublicAcls": block["blockPublicAcls"],
                "IgnorePublicAcls": block["ignorePublicAcls"],
                "BlockPublicPolicy": block["blockPublicPolicy"],
                "RestrictPublicBuckets": block["restrictPublicBuckets"],
            }
            (replication,) = declared_inputs(program, "aws:s3/bucketReplicationConfig:BucketReplicationConfig", name)[
                "rules"
            ]
            rule = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"][0]
            assert (rule["ID"], rule["Destination"]["Bucket"]) == (
                replication["id"],
                replication["destination"]["bucket"],
            )
        lock_config = declared_inputs(
            program, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "backups-audit"
        )["rule"]["defaultRetention"]
        lock = s3.get_object_lock_configuration(Bucket=out.audit_bucket)["ObjectLockConfiguration"]
        assert lock["Rule"]["DefaultRetention"]["Mode"] == lock_config["mode"] == "COMPLIANCE"
        assert lock["Rule"]["DefaultRetention"]["Years"] == lock_config["years"]


def test_route53_failover_records_and_health_checks(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    assert prod.hosted_zone_id == dr.hosted_zone_id
    route53 = boto3.client("route53")
    records = route53.list_resource_record_sets(HostedZoneId=prod.hosted_zone_id)["ResourceRecordSets"]
    failover = {r["SetIdentifier"]: r for r in records if r["Name"].rstrip(".") == prod.record_name and "Failover" in r}
    assert failover[prod.set_identifier]["Failover"] == "PRIMARY"
    assert failover[dr.set_identifier]["Failover"] == "SECONDARY"
    for out in (prod, dr):
        # The record carries the calculated AND of the endpoint check and the check on the peer's takeover alarm.
        record_check = route53.get_health_check(HealthCheckId=failover[out.set_identifier]["HealthCheckId"])
        calculated = record_check["HealthCheck"]["HealthCheckConfig"]
        assert calculated["Type"] == "CALCULATED" and calculated["HealthThreshold"] == 2
        children = calculated["ChildHealthChecks"]
        assert out.health_check_id in children and len(children) == 2
        (signal,) = [c for c in children if c != out.health_check_id]
        assert route53.get_health_check(HealthCheckId=signal)["HealthCheck"]["HealthCheckConfig"]["Type"] == (
            "CLOUDWATCH_METRIC"
        )
        # Each region holds its own takeover alarm, never evaluated by the emulator (moto starts it OK where AWS
        # starts INSUFFICIENT_DATA; either counts healthy for the peer's check).
        (alarm,) = boto3.client("cloudwatch", region_name=out.region).describe_alarms(
            AlarmNames=[naming.takeover_alarm_name(out.region)]
        )["MetricAlarms"]
        assert alarm["StateValue"] != "ALARM" and alarm["TreatMissingData"] == "ignore"
        config = route53.get_health_check(HealthCheckId=out.health_check_id)["HealthCheck"]["HealthCheckConfig"]
        assert config["Port"] == int(out.service_url.rsplit(":", 1)[1])
        assert config["ResourcePath"] == "/actuator/health"


# ---- incident notifications (issue 22): promote tells us-west-2's incident topic; the lab's inbox receives it ----


def promote_to_dr(lab: Lab, tmp_path: Path, *extra: str, outputs_dir: Path | None = None):
    outputs_file = (outputs_dir or lab.dr.outputs_path.parent) / "dr.json"
    env = {"DRTOPO_STATE_DIR": str(tmp_path / "journal")}
    return run_cli("promote", "--stack", "dr", "--outputs", outputs_file, *DB_ONLY, *extra, env=env)


def test_each_region_has_an_incident_topic_the_inbox_is_subscribed_to(lab: Lab) -> None:
    for stack in ("prod", "dr"):
        out = outputs(lab, stack)
        assert out.incident_topic_arn == (
            f"arn:aws:sns:{out.region}:123456789012:{naming.incident_topic_name(out.region)}"
        )
        subs = boto3.client("sns", region_name=out.region).list_subscriptions_by_topic(TopicArn=out.incident_topic_arn)[
            "Subscriptions"
        ]
        assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("http", lab.inbox_url)]


def test_promote_tells_the_incident_topic_of_us_west_2_start_to_resolution(fresh_pg: Lab, tmp_path: Path) -> None:
    seen = len(fresh_pg.inbox())
    report_path = tmp_path / "promote.json"

    proc = promote_to_dr(fresh_pg, tmp_path, "--json", report_path)

    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    received = fresh_pg.inbox()[seen:]
    subjects = [m["Subject"] for m in received]
    assert subjects[0] == "CRITICAL: Interface Exception Collector Service Outage", subjects
    assert subjects[-1] == "RESOLVED: Interface Exception Collector Service Restored", subjects
    assert {m["Region"] for m in received} == {"us-west-2"}
    assert {m["TopicArn"] for m in received} == {outputs(fresh_pg, "dr").incident_topic_arn}
    rto = report["measured"]["rto_seconds"]
    assert rto == report["measured"]["seconds_to_dns_flipped"]
    assert f"Recovery Time (RTO): {duration_text(rto)}" in received[-1]["Message"]
    sent = {c["name"]: c["outcome"] for c in report["checks"] if c["name"].startswith("notify ")}
    assert sent == {"notify start": "pass", "notify update": "pass", "notify resolution": "pass"}
    # The incident record beside the JSON report.
    record = report_path.with_suffix(".md").read_text()
    assert "scripts.promote --stack dr" in record and duration_text(rto) in record


def test_promote_dry_run_sends_nothing(fresh_pg: Lab, tmp_path: Path) -> None:
    seen = len(fresh_pg.inbox())
    report_path = tmp_path / "dry.json"

    proc = promote_to_dr(fresh_pg, tmp_path, "--dry-run", "--json", report_path)

    assert proc.returncode == 0, proc.stderr
    assert fresh_pg.inbox()[seen:] == []
    report = json.loads(report_path.read_text())
    assert not [c for c in report["checks"] if c["name"].startswith("notify ")]


def test_promote_completes_when_sns_refuses_and_says_the_notifications_were_not_sent(
    fresh_pg: Lab, tmp_path: Path
) -> None:
    # Outputs naming an incident topic the emulator does not have: every publish is refused (NotFound).
    copied = tmp_path / "outputs"
    copied.mkdir()
    for stack in ("prod", "dr"):
        document = json.loads(fresh_pg.region(stack).outputs_path.read_text())
        document["incidentTopicArn"] = f"arn:aws:sns:{document['region']}:123456789012:drtopo-gone-incidents"
        (copied / f"{stack}.json").write_text(json.dumps(document))
    seen = len(fresh_pg.inbox())
    report_path = tmp_path / "promote.json"

    proc = promote_to_dr(fresh_pg, tmp_path, "--json", report_path, outputs_dir=copied)

    assert proc.returncode == 0, proc.stderr
    assert fresh_pg.inbox()[seen:] == []
    report = json.loads(report_path.read_text())
    assert report["ok"]
    notices = [c for c in report["checks"] if c["name"].startswith("notify ")]
    assert {c["name"] for c in notices} == {"notify start", "notify update", "notify resolution"}
    assert {c["outcome"] for c in notices} == {"skip"}
    assert all(c["detail"].startswith("not sent: ") for c in notices), notices
    # The start was tried again at each step after it (refused each time, the others queued behind it).
    starts = [c for c in notices if c["name"] == "notify start"]
    assert len(starts) > 3 and all("NotFound" in c["detail"] for c in starts), starts
    assert end_state(fresh_pg)["dns"] == FAILED_OVER_DNS
    assert "not sent" in report_path.with_suffix(".md").read_text()
