"""The lab's AWS emulator: `moto_server` on loopback, seeded with what the prod and dr stacks would create.

Names come from drtopo/naming.py, so scripts find the emulated KMS keys, buckets, RDS instances, health checks,
takeover alarms and failover records exactly where they would find the real ones. The emulator does not replicate
objects, evaluates no health check (the endpoint, alarm and calculated checks exist, their status is never computed)
and evaluates no alarm from its metric (promote sets the takeover alarm's state itself); the lab's real servers
supply the data-plane half, and `drtopo.failover.dns.current` computes what Route53 would answer from the records
and the takeover alarms.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drtopo import naming
from drtopo.aws import client as aws_client
from drtopo.fencing.store import lease_bucket, witness_bucket, witness_key_alias
from drtopo.readiness import schedule
from drtopo.settings import PROJECT, FencingMode, Settings
from lab import process

PROCESS_NAME = "aws"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "lab", "AWS_SECRET_ACCESS_KEY": "lab"}
# The lab's backup jobs read the emulator's dummy credentials from this Kubernetes Secret (production uses workload
# identity instead); like any Secret of the namespace it comes back from the secret store, as the lab's project copy
# declares in drtopo:secrets, so a rebuilt namespace runs its jobs again.
KUBERNETES_CREDENTIALS_SECRET = "drtopo-lab-aws"
CREDENTIALS_SECRET = "drtopo-lab/aws-credentials"


# The stand-in's API bearer token: a Kubernetes Secret of each namespace (key `token`) that the service reads as
# SERVICE_API_TOKEN, kept in Secrets Manager like every Secret the stacks declare, so `restore namespace` and
# `restore secrets` bring it back after a namespace is lost.
SERVICE_TOKEN_KUBERNETES_SECRET = "interface-exception-collector-api"
SERVICE_TOKEN_SECRET = "drtopo-lab/service-api-token"


def service_token(password: str) -> str:
    """The lab's API token, derived from its random database password so both come and go with the lab (pure)."""
    return hashlib.sha256(f"drtopo-lab-api:{password}".encode()).hexdigest()


def credential_sources() -> list[dict[str, str]]:
    """The lab's drtopo:secrets entries: the dummy credentials and the service's API token (pure)."""
    return [
        *(
            {
                "kubernetesSecret": KUBERNETES_CREDENTIALS_SECRET,
                "key": key,
                "secretsManagerSecret": CREDENTIALS_SECRET,
                "jsonKey": key,
            }
            for key in DUMMY_CREDENTIALS
        ),
        {
            "kubernetesSecret": SERVICE_TOKEN_KUBERNETES_SECRET,
            "key": "token",
            "secretsManagerSecret": SERVICE_TOKEN_SECRET,
            "jsonKey": "token",
        },
    ]


REPLICATION_ROLE = "arn:aws:iam::123456789012:role/drtopo-s3-replication"
# The readiness alarm's topic (the program lets Pulumi name it after its logical name).
READINESS_ALERTS = "readiness-check-alerts"


@dataclass(frozen=True)
class StackResources:
    """The emulator's identifiers of one stack's resources, as they go into its outputs."""

    kms_key_arn: str
    db_instance_id: str
    db_arn: str
    hosted_zone_id: str
    health_check_id: str
    buckets: dict[str, str]
    # The calculated check the failover record carries: the endpoint check AND the peer has not taken over.
    record_health_check_id: str = ""
    incident_topic_arn: str = ""


def spawn(root: Path, port: int) -> int:
    """Start moto_server (recorded PID) without waiting; `process.wait_port` tells when it listens."""
    moto = Path(sys.executable).with_name("moto_server")
    return process.spawn(root, PROCESS_NAME, [str(moto), "-H", process.LOOPBACK, "-p", str(port)])


def endpoint_url(port: int) -> str:
    return f"http://{process.LOOPBACK}:{port}"


def client(service: str, region: str, endpoint: str) -> Any:
    return aws_client(
        service,
        region,
        endpoint_url=endpoint,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def reset(endpoint: str) -> None:
    """Forget every emulated resource (moto's own reset API)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def seed_random(endpoint: str, value: int) -> None:
    """Seed the emulator's random generator (moto's own seed API): the same calls after the same seed make the same
    ids and ARNs, so a lab reseeded to its baseline gets back the outputs it had."""
    request = urllib.request.Request(f"{endpoint}/moto-api/seed?a={int(value)}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def lifecycle_rules(settings: Settings) -> list[dict[str, Any]]:
    """One rule per retention tier prefix: cold-storage transition, then expiry (pure)."""
    rules = []
    for name, tier in settings.retention.tiers().items():
        rule: dict[str, Any] = {
            "ID": f"{name}-tier",
            "Filter": {"Prefix": f"{name}/"},
            "Status": "Enabled",
            "Expiration": {"Days": tier.days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": tier.days},
        }
        if tier.cold_after_days is not None:
            rule["Transitions"] = [{"Days": tier.cold_after_days, "StorageClass": tier.cold_storage_class}]
        rules.append(rule)
    return rules


def _kms_key(settings: Settings, endpoint: str) -> str:
    kms = client("kms", settings.region, endpoint)
    key = kms.create_key(Description=f"drtopo {settings.region} backups and database")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    kms.create_alias(AliasName=f"alias/drtopo-{settings.region}", TargetKeyId=key["KeyId"])
    return key["Arn"]


def _buckets(settings: Settings, endpoint: str, key_arn: str) -> dict[str, str]:
    s3 = client("s3", settings.region, endpoint)
    names = {}
    for purpose in naming.BUCKET_PURPOSES:
        name = naming.bucket_name(settings, purpose)
        kwargs: dict[str, Any] = {"Bucket": name, "ObjectLockEnabledForBucket": purpose == "audit"}
        if settings.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
        s3.create_bucket(**kwargs)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        if purpose == "audit":
            s3.put_object_lock_configuration(
                Bucket=name,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": settings.retention.audit_years}},
                },
            )
        if purpose == "dumps":
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": lifecycle_rules(settings)}
            )
        names[purpose] = name
    return names


def _replication(settings: Settings, peer: Settings, endpoint: str, peer_key_arn: str) -> None:
    """Replication of every bucket to its peer-region twin, with RTC (15 min) and delete-marker replication."""
    s3 = client("s3", settings.region, endpoint)
    for purpose in naming.BUCKET_PURPOSES:
        s3.put_bucket_replication(
            Bucket=naming.bucket_name(settings, purpose),
            ReplicationConfiguration={
                "Role": REPLICATION_ROLE,
                "Rules": [
                    {
                        "ID": f"to-{peer.region}",
                        "Priority": 1,
                        "Status": "Enabled",
                        "Filter": {},
                        "DeleteMarkerReplication": {"Status": "Enabled"},
                        "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
                        "Destination": {
                            "Bucket": f"arn:aws:s3:::{naming.bucket_name(peer, purpose)}",
                            "EncryptionConfiguration": {"ReplicaKmsKeyID": peer_key_arn},
                            "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
                            "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}},
                        },
                    }
                ],
            },
        )


def ensure_lease_bucket(endpoint: str, name: str, region: str, key_arn: str | None = None) -> bool:
    """A store of the primary lease as components/lease_store.py declares it (versioned, private, SSE-KMS with
    `key_arn` by default when given) and, unlike the backup buckets, never replicated; False if it already existed."""
    s3 = client("s3", region, endpoint)
    if name in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        return False
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    if key_arn is not None:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]
            },
        )
    return True


def lease_stores(settings: Settings, endpoint: str, key_arn: str) -> None:
    """With fencing.mode lease: the stack's own lease bucket (its backup key) and, in the witness stack, the witness
    bucket with its own key in the witness region, as the program declares them. What exists already is kept (a
    lab whose lease is switched on while it runs)."""
    fencing = settings.fencing
    if fencing.mode is not FencingMode.LEASE:
        return
    ensure_lease_bucket(endpoint, lease_bucket(PROJECT, settings.region), settings.region, key_arn)
    witness = fencing.witness_region
    if fencing.witness_stack == settings.stack and witness is not None:
        kms = client("kms", witness, endpoint)
        alias = f"alias/{witness_key_alias(witness)}"
        known = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
        if alias in known:
            key = kms.describe_key(KeyId=str(known[alias]))["KeyMetadata"]
        else:
            key = kms.create_key(Description=f"drtopo lease witness in {witness}")["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        ensure_lease_bucket(endpoint, witness_bucket(PROJECT, witness), witness, key["Arn"])


def _master_secret(settings: Settings, peer: Settings, endpoint: str, password: str) -> str:
    """The primary's master secret, replicated to the peer region, as components/database.py declares it."""
    sm = client("secretsmanager", settings.region, endpoint)
    created = sm.create_secret(
        Name=naming.db_secret_name(settings.region),
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "username": settings.database.username,
                "password": password,
                "port": settings.database.port,
            }
        ),
        AddReplicaRegions=[{"Region": peer.region}],
    )
    return str(created["ARN"])


def _database(
    settings: Settings, peer: Settings, endpoint: str, key_arn: str, primary_arn: str | None, password: str | None
) -> dict[str, Any]:
    rds = client("rds", settings.region, endpoint)
    identifier = naming.db_identifier(settings)
    db = settings.database
    if primary_arn is None:
        password = password or secrets.token_urlsafe(18)
        _master_secret(settings, peer, endpoint, password)
        return rds.create_db_instance(
            DBInstanceIdentifier=identifier,
            DBInstanceClass=db.instance_class,
            Engine="postgres",
            EngineVersion=db.engine_version,
            DBName=db.name,
            MasterUsername=db.username,
            # The emulator never serves connections; its secret store holds the lab's password (as a real master
            # secret holds the database's), so `restore secrets` writes the namespace's Secret from it.
            MasterUserPassword=password,
            AllocatedStorage=db.allocated_storage_gb,
            MaxAllocatedStorage=db.max_allocated_storage_gb,
            MultiAZ=db.multi_az,
            StorageEncrypted=True,
            KmsKeyId=key_arn,
            BackupRetentionPeriod=db.backup_retention_days,
            DeletionProtection=True,
            Port=db.port,
        )["DBInstance"]
    return rds.create_db_instance_read_replica(
        DBInstanceIdentifier=identifier,
        SourceDBInstanceIdentifier=primary_arn,
        DBInstanceClass=db.instance_class,
        KmsKeyId=key_arn,
        MultiAZ=db.multi_az,
        DeletionProtection=True,
        Port=db.port,
        SourceRegion=settings.peer_region,
    )["DBInstance"]


def _zone(settings: Settings, endpoint: str) -> str:
    route53 = client("route53", settings.region, endpoint)
    zone_name = settings.dns.zone_name.rstrip(".") + "."
    for zone in route53.list_hosted_zones_by_name(DNSName=zone_name)["HostedZones"]:
        if zone["Name"] == zone_name:
            return zone["Id"].split("/")[-1]
    created = route53.create_hosted_zone(Name=zone_name, CallerReference=f"drtopo-lab-{secrets.token_hex(6)}")
    return created["HostedZone"]["Id"].split("/")[-1]


def _takeover_alarm(settings: Settings, endpoint: str) -> None:
    """This region's takeover signal, as components/dns.py declares it (the emulator never evaluates it)."""
    client("cloudwatch", settings.region, endpoint).put_metric_alarm(
        AlarmName=naming.takeover_alarm_name(settings.region),
        Namespace=naming.TAKEOVER_NAMESPACE,
        MetricName=naming.TAKEOVER_METRIC,
        Dimensions=[{"Name": "Region", "Value": settings.region}],
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="ignore",
    )


def _readiness_alarm(settings: Settings, endpoint: str) -> str:
    """The standby's readiness alarm, as components/readiness_check.py declares it, routed to its alert topic (the
    emulator never evaluates it; the scheduled check's metrics land beside it). Returns the alarm's ARN."""
    topic = client("sns", settings.region, endpoint).create_topic(Name=READINESS_ALERTS)["TopicArn"]
    cloudwatch = client("cloudwatch", settings.region, endpoint)
    spec = schedule.alarm_spec(settings.stack)
    cloudwatch.put_metric_alarm(**spec, AlarmActions=[topic], OKActions=[topic])
    return str(cloudwatch.describe_alarms(AlarmNames=[spec["AlarmName"]])["MetricAlarms"][0]["AlarmArn"])


def _incident_topic(settings: Settings, endpoint: str, inbox_url: str | None) -> str:
    """The region's incident topic (components/alerts.py declares it), with the lab's inbox subscribed over http
    (moto 5 confirms an http subscription at once; the stack settings refuse http, so the lab subscribes here)."""
    sns = client("sns", settings.region, endpoint)
    arn = str(sns.create_topic(Name=naming.incident_topic_name(settings.region))["TopicArn"])
    if inbox_url:
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=inbox_url)
    return arn


def _health_check_and_record(settings: Settings, endpoint: str, zone_id: str) -> tuple[str, str]:
    """The endpoint check, the check on the peer's takeover alarm, the calculated AND of both, and the record."""
    route53 = client("route53", settings.region, endpoint)
    dns = settings.dns
    check = route53.create_health_check(
        CallerReference=f"drtopo-lab-{settings.region}-{secrets.token_hex(6)}",
        HealthCheckConfig={
            "Type": dns.health_check_type,
            "FullyQualifiedDomainName": dns.endpoint,
            "Port": dns.health_check_port,
            "ResourcePath": dns.health_check_path,
            "RequestInterval": dns.request_interval_seconds,
            "FailureThreshold": dns.failure_threshold,
        },
    )["HealthCheck"]
    route53.change_tags_for_resource(
        ResourceType="healthcheck",
        ResourceId=check["Id"],
        AddTags=[{"Key": "Name", "Value": naming.health_check_name(settings)}],
    )
    peer_signal = route53.create_health_check(
        CallerReference=f"drtopo-lab-{settings.region}-peer-{secrets.token_hex(6)}",
        HealthCheckConfig={
            "Type": "CLOUDWATCH_METRIC",
            "AlarmIdentifier": {
                "Region": settings.peer_region,
                "Name": naming.takeover_alarm_name(settings.peer_region),
            },
            "InsufficientDataHealthStatus": "Healthy",
        },
    )["HealthCheck"]
    record_health = route53.create_health_check(
        CallerReference=f"drtopo-lab-{settings.region}-record-{secrets.token_hex(6)}",
        HealthCheckConfig={
            "Type": "CALCULATED",
            "ChildHealthChecks": [check["Id"], peer_signal["Id"]],
            "HealthThreshold": 2,
        },
    )["HealthCheck"]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": dns.record_name,
                        "Type": "CNAME",
                        "SetIdentifier": naming.set_identifier(settings),
                        "Failover": settings.role.failover,
                        "TTL": dns.ttl_seconds,
                        "ResourceRecords": [{"Value": dns.endpoint}],
                        "HealthCheckId": record_health["Id"],
                    },
                }
            ]
        },
    )
    return check["Id"], record_health["Id"]


def seed(
    endpoint: str, stacks: dict[str, Settings], inbox_url: str | None = None, password: str | None = None
) -> dict[str, StackResources]:
    """Create both stacks' resources in the emulator; the primary's database first (the replica refers to it).
    `inbox_url`: the lab's inbox (lab/inbox.py), subscribed to each region's incident topic. `password`: the lab's
    PostgreSQL password, held by the primary's master secret (and its replica); none: a random one."""
    ordered = sorted(stacks.values(), key=lambda s: not s.is_primary)
    keys = {s.stack: _kms_key(s, endpoint) for s in ordered}
    buckets = {s.stack: _buckets(s, endpoint, keys[s.stack]) for s in ordered}
    for s in ordered:
        _replication(s, stacks[s.peer_stack], endpoint, keys[s.peer_stack])
    for s in ordered:
        lease_stores(s, endpoint, keys[s.stack])
        manager = client("secretsmanager", s.region, endpoint)
        manager.create_secret(Name=CREDENTIALS_SECRET, SecretString=json.dumps(DUMMY_CREDENTIALS))
        if password is not None:
            token = {"token": service_token(password)}
            manager.create_secret(Name=SERVICE_TOKEN_SECRET, SecretString=json.dumps(token))
    databases: dict[str, dict[str, Any]] = {}
    for s in ordered:
        primary_arn = None if s.is_primary else databases[s.peer_stack]["DBInstanceArn"]
        databases[s.stack] = _database(s, stacks[s.peer_stack], endpoint, keys[s.stack], primary_arn, password)
    zone_id = _zone(ordered[0], endpoint)
    for s in ordered:
        _takeover_alarm(s, endpoint)
    checks = {s.stack: _health_check_and_record(s, endpoint, zone_id) for s in ordered}
    topics = {s.stack: _incident_topic(s, endpoint, inbox_url) for s in ordered}
    for s in ordered:
        if not s.is_primary:
            _readiness_alarm(s, endpoint)
    return {
        s.stack: StackResources(
            kms_key_arn=keys[s.stack],
            db_instance_id=databases[s.stack]["DBInstanceIdentifier"],
            db_arn=databases[s.stack]["DBInstanceArn"],
            hosted_zone_id=zone_id,
            health_check_id=checks[s.stack][0],
            buckets=buckets[s.stack],
            record_health_check_id=checks[s.stack][1],
            incident_topic_arn=topics[s.stack],
        )
        for s in ordered
    }
