"""The emulator holds what the stacks would create, under the names and identifiers the outputs carry."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from bench.switchover import DB_ONLY, FAILED_OVER_DNS, end_state, run_cli
from drtopo import naming
from drtopo.incident.facts import duration_text
from drtopo.outputs import StackOutputs, load_outputs
from lab.core import Lab

pytestmark = pytest.mark.lab


def outputs(lab: Lab, stack: str) -> StackOutputs:
    return load_outputs(lab.region(stack).outputs_path, stack)


def test_outputs_files_load_and_point_at_the_lab(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    assert (prod.role, prod.failover, dr.role, dr.failover) == ("primary", "PRIMARY", "standby", "SECONDARY")
    assert prod.db_port != dr.db_port and prod.db_address == dr.db_address == "127.0.0.1"
    assert prod.kafka_bootstrap == dr.peer_kafka_bootstrap == lab.prod.kafka.bootstrap
    assert prod.service_url == lab.prod.service.url
    assert lab.env()["AWS_ENDPOINT_URL"] == lab.aws_endpoint


def test_rds_primary_and_cross_region_replica(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    primary = boto3.client("rds", region_name=prod.region).describe_db_instances(
        DBInstanceIdentifier=prod.db_instance_id
    )["DBInstances"][0]
    replica = boto3.client("rds", region_name=dr.region).describe_db_instances(DBInstanceIdentifier=dr.db_instance_id)[
        "DBInstances"
    ][0]
    assert primary["DBInstanceArn"] == prod.db_arn and replica["DBInstanceArn"] == dr.db_arn
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == prod.db_arn
    assert primary["StorageEncrypted"] and primary["KmsKeyId"] == prod.kms_key_arn
    assert replica["KmsKeyId"] == dr.kms_key_arn
    assert boto3.client("kms", region_name=dr.region).describe_key(KeyId=dr.kms_key_arn)["KeyMetadata"]["Enabled"]


def test_buckets_are_private_encrypted_versioned_and_replicated(lab: Lab) -> None:
    for stack in ("prod", "dr"):
        out = outputs(lab, stack)
        peer = lab.region(out.peer_stack).settings
        s3 = boto3.client("s3", region_name=out.region)
        for purpose, bucket in zip(
            naming.BUCKET_PURPOSES, (out.dump_bucket, out.wal_bucket, out.config_bucket, out.audit_bucket), strict=True
        ):
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
            assert sse["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == out.kms_key_arn
            assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
            rule = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"][0]
            assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{naming.bucket_name(peer, purpose)}"
        lock = s3.get_object_lock_configuration(Bucket=out.audit_bucket)["ObjectLockConfiguration"]
        assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"


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
