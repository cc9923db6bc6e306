"""The one settings model of a drtopo stack: what `Pulumi.<stack>.yaml` configures, typed and validated.

The Pulumi program, the policy pack, the scripts and the lab all read a stack's configuration through
`load_settings`; invalid configuration fails here, before any resource is declared, with one line naming
the key, the bad value and what is allowed. This module performs no Pulumi calls so scripts can import it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from string import Template as _TextTemplate
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from drtopo.cron import check_schedule, require_daily

PROJECT = "drtopo"
REPO_DIR = Path(__file__).resolve().parent.parent
RUNBOOK_TOPICS = (
    "OrderRejected",
    "OrderCancelled",
    "CollectionRejected",
    "DistributionFailed",
    "ValidationError",
    "ExceptionCaptured",
    "ExceptionResolved",
    "CriticalExceptionAlert",
)
# The PostgreSQL majors RDS runs and the backup image can be built for (Dockerfile: --build-arg PG_MAJOR).
POSTGRES_MAJORS = ("13", "14", "15", "16", "17")
_ENGINE_VERSION = re.compile(r"^(?P<major>[0-9]+)(\.[0-9]+)?$")


class SettingsError(ValueError):
    """Invalid stack configuration; the message is one line naming key, value and what is allowed."""


class Role(StrEnum):
    PRIMARY = "primary"
    STANDBY = "standby"

    @property
    def failover(self) -> str:
        """The Route53 failover routing value this role's record carries."""
        return "PRIMARY" if self is Role.PRIMARY else "SECONDARY"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Objective(_Model):
    """Recovery objectives of one scenario, in minutes."""

    rto_minutes: float = Field(ge=0)
    rpo_minutes: float = Field(ge=0)

    @model_validator(mode="after")
    def _rpo_within_rto(self) -> Objective:
        if self.rpo_minutes > self.rto_minutes:
            raise ValueError(
                f"rpoMinutes {self.rpo_minutes:g} is longer than rtoMinutes {self.rto_minutes:g}; "
                "expected an RPO no longer than the RTO"
            )
        return self

    @property
    def rto_seconds(self) -> float:
        return self.rto_minutes * 60

    @property
    def rpo_seconds(self) -> float:
        return self.rpo_minutes * 60


class Objectives(_Model):
    """The runbook's objectives table; defaults are its values."""

    single_pod_failure: Objective = Objective(rto_minutes=2, rpo_minutes=0)
    database_corruption: Objective = Objective(rto_minutes=120, rpo_minutes=15)
    region_failure: Objective = Objective(rto_minutes=240, rpo_minutes=15)
    kafka_cluster_failure: Objective = Objective(rto_minutes=60, rpo_minutes=5)
    configuration_loss: Objective = Objective(rto_minutes=30, rpo_minutes=0)

    def for_scenario(self, scenario: str) -> Objective:
        if scenario not in SCENARIOS:
            raise SettingsError(f"scenario {scenario!r} is unknown; expected one of {', '.join(SCENARIOS)}")
        return getattr(self, scenario.replace("-", "_"))


# The scenarios, as the objectives table names them (the drill's scenario table is checked against it).
SCENARIOS = tuple(name.replace("_", "-") for name in Objectives.model_fields)


class Tier(_Model):
    """One backup retention tier: objects under `<name>/` expire after `days`, moving to cold storage first."""

    days: int = Field(gt=0)
    cold_after_days: int | None = Field(default=None, gt=0)
    cold_storage_class: str = "GLACIER_IR"

    @model_validator(mode="after")
    def _cold_before_expiry(self) -> Tier:
        if self.cold_after_days is not None and self.cold_after_days >= self.days:
            raise ValueError(
                f"coldAfterDays {self.cold_after_days} is not before days {self.days}; "
                "expected the cold-storage transition before expiry"
            )
        return self


class Retention(_Model):
    """Backup retention: the runbook's tiers plus audit and operational data."""

    daily: Tier = Tier(days=30)
    weekly: Tier = Tier(days=84, cold_after_days=30, cold_storage_class="GLACIER_IR")
    monthly: Tier = Tier(days=365, cold_after_days=30, cold_storage_class="GLACIER")
    yearly: Tier = Tier(days=2555, cold_after_days=90, cold_storage_class="DEEP_ARCHIVE")
    audit_years: int = Field(default=7, gt=0)
    operational_days: int = Field(default=90, gt=0)

    def tiers(self) -> dict[str, Tier]:
        return {"daily": self.daily, "weekly": self.weekly, "monthly": self.monthly, "yearly": self.yearly}


class Database(_Model):
    engine_version: str = "15"
    instance_class: str = "db.r6g.xlarge"
    allocated_storage_gb: int = Field(default=100, ge=20)
    max_allocated_storage_gb: int = Field(default=500, ge=20)
    multi_az: bool = True
    backup_retention_days: int = Field(default=14, ge=1, le=35)
    name: str = Field(default="exception_collector", pattern=r"^[a-z_][a-z0-9_]*$")
    username: str = Field(default="dbadmin", pattern=r"^[a-z_][a-z0-9_]*$")
    port: int = Field(default=5432, gt=0, lt=65536)
    archive_timeout_seconds: int = Field(default=60, gt=0)
    replica_lag_alarm_seconds: int = Field(default=300, gt=0)
    tables: tuple[str, ...] = ("interface_exceptions", "retry_attempts")
    # RDS cannot demote an instance: a stack that turns standby declares a new replica, the next generation, and
    # keeps the earlier ones it still holds (retained, snapshotted, protected) until an operator releases them.
    generation: int = Field(default=0, ge=0)
    retired_generations: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _retired_before_current(self) -> Database:
        retired = self.retired_generations
        if len(set(retired)) != len(retired) or any(g >= self.generation or g < 0 for g in retired):
            raise ValueError(
                f"retiredGenerations {list(retired)} is not a set of earlier generations; expected distinct "
                f"numbers from 0 to {self.generation - 1} (generation is {self.generation})"
            )
        return self

    @field_validator("engine_version")
    @classmethod
    def _supported_major(cls, value: str) -> str:
        match = _ENGINE_VERSION.match(value)
        if not match or match["major"] not in POSTGRES_MAJORS:
            raise ValueError(f"expected a supported PostgreSQL major ({', '.join(POSTGRES_MAJORS)}), optionally .minor")
        return value

    @property
    def major(self) -> str:
        """The PostgreSQL major of `engine_version`: `15` and `15.7` -> `15`."""
        return self.engine_version.split(".")[0]


class Topic(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=3, gt=0)
    replication_factor: int = Field(default=3, gt=0)
    retention_ms: int = Field(default=604_800_000, gt=0)
    mirrored: bool = True


class Mirror(_Model):
    """MirrorMaker 2 tuning."""

    replication_policy: str = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
    replication_factor: int = Field(default=3, gt=0)
    tasks_max: int = Field(default=4, gt=0)
    emit_checkpoints_interval_seconds: int = Field(default=10, gt=0)
    emit_heartbeats_interval_seconds: int = Field(default=10, gt=0)
    sync_group_offsets_interval_seconds: int = Field(default=10, gt=0)
    refresh_topics_interval_seconds: int = Field(default=30, gt=0)
    refresh_groups_interval_seconds: int = Field(default=30, gt=0)
    # Offset syncs (and so translated consumer offsets) trail by up to this many records per partition: after a
    # failover consumers re-read at most this many messages per partition.
    offset_lag_max: int = Field(default=100, gt=0)


class Kafka(_Model):
    bootstrap_servers: str = Field(min_length=1)
    peer_bootstrap_servers: str = Field(min_length=1)
    consumer_group: str = "interface-exception-collector"
    topics: tuple[Topic, ...] = tuple(Topic(name=n) for n in RUNBOOK_TOPICS)
    mirror: Mirror = Mirror()

    @model_validator(mode="after")
    def _topics(self) -> Kafka:
        if not self.topics:
            raise ValueError("topics is empty; expected at least one topic")
        names = [t.name for t in self.topics]
        if len(set(names)) != len(names):
            raise ValueError(f"topics {names} has duplicates; expected unique topic names")
        return self

    @property
    def mirrored_topics(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics if t.mirrored)


class Dns(_Model):
    zone_name: str = Field(min_length=1)
    record_name: str = Field(min_length=1)
    endpoint: str = Field(min_length=1, description="this region's service endpoint (FQDN) the record points to")
    health_check_path: str = Field(default="/actuator/health", pattern=r"^/")
    health_check_port: int = Field(default=443, gt=0, lt=65536)
    health_check_type: str = Field(default="HTTPS", pattern=r"^(HTTP|HTTPS)$")
    request_interval_seconds: int = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)
    ttl_seconds: int = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _interval(self) -> Dns:
        if self.request_interval_seconds not in (10, 30):
            raise ValueError(
                f"requestIntervalSeconds {self.request_interval_seconds} is not allowed; expected 10 or 30"
            )
        return self


class Kubernetes(_Model):
    namespace: str = Field(default="biopro-prod", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    mirror_maker_image: str = "apache/kafka:3.9.1"
    # Tagged with the PostgreSQL major its client tools serve (Settings checks it against database.engineVersion).
    backup_image: str = "ghcr.io/biopro/drtopo-backup:1.0.0-pg15"
    dump_schedule: str = "15 2 * * *"
    resource_export_schedule: str = "45 2 * * *"
    # The scheduled restore test (`scripts.backup restore-test`): a random recent dump restored and checked weekly.
    restore_test_schedule: str = "30 4 * * 0"
    database_secret: str = "exception-collector-db"
    # Namespaces exported with the service's (monitoring: Prometheus rules, Grafana dashboards, Alertmanager
    # configuration), so they come back with the rest; the export's account gets read access there too.
    export_namespaces: tuple[Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")], ...] = ()
    # The cluster serves the Prometheus Operator's PrometheusRule kind: the program declares drtopo's alerts as one
    # (drtopo/alert_rules.py). A preview cannot ask the cluster, so the stack says so.
    prometheus_rules: bool = False
    workload_role_arn: str | None = None
    # The cluster's OIDC issuer (e.g. oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE): when set, the program declares
    # one IAM role per backup job bound to its ServiceAccount (IRSA), and the jobs read the database secret from
    # Secrets Manager in this region instead of the Kubernetes Secret.
    oidc_issuer: str | None = Field(default=None, pattern=r"^(https://)?[a-z0-9.-]+(/[A-Za-z0-9._-]+)*$")
    # The kubeconfig context of this stack's own cluster: the program's Kubernetes provider uses it, never the
    # ambient one (declared last, so a bad schedule is reported before a missing context).
    context: str = Field(min_length=1)

    # ScheduleError is a ValueError: pydantic reports it as the key's error, in one line.
    @field_validator("dump_schedule")
    @classmethod
    def _daily(cls, value: str) -> str:
        return require_daily(value)

    @field_validator("resource_export_schedule", "restore_test_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        check_schedule(value)
        return value

    @model_validator(mode="after")
    def _extra_namespaces(self) -> Kubernetes:
        if self.namespace in self.export_namespaces or len(set(self.export_namespaces)) != len(self.export_namespaces):
            raise ValueError(
                f"exportNamespaces {list(self.export_namespaces)} repeats a namespace or names the service's "
                f"({self.namespace!r}); expected other namespaces, each once"
            )
        return self

    @property
    def exported_namespaces(self) -> tuple[str, ...]:
        """The service's namespace first, then the others the export covers."""
        return (self.namespace, *self.export_namespaces)


class SecretSource(_Model):
    """One key of a Kubernetes Secret of the namespace and the Secrets Manager secret its value comes from, read in the
    region the restore runs in (`restore secrets`). These declarations are the Secret inventory: the configuration
    export records them, never a value, and no backup holds one."""

    kubernetes_secret: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$")
    # A name or an ARN; a replicated secret has the same name in the peer region.
    secrets_manager_secret: str = Field(min_length=1)
    # The field of the secret's JSON value (RDS master secrets: `password`); none: the whole SecretString.
    json_key: str | None = None


class Failover(_Model):
    """How promote, failback and the corruption cutover guard themselves: a journal older than this is not resumed
    without --restart."""

    journal_max_age_hours: float = Field(default=24, gt=0)


class FencingMode(StrEnum):
    LEASE = "lease"
    OFF = "off"


class Fencing(_Model):
    """The primary lease (drtopo/fencing/): `off` is the behaviour without it (a fence owed and paid later)."""

    mode: FencingMode = FencingMode.OFF
    lease_seconds: float = Field(default=30, gt=0, description="how long a majority renewal keeps the primary role")
    renew_seconds: float = Field(default=5, gt=0, description="how often the guard renews")
    witness_region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    # The one stack of the pair that declares the witness bucket (components/witness.py), whatever its role: a
    # resource that followed the primary role would be deleted and recreated by a failover. Required with `lease`.
    witness_stack: str | None = None
    # The database role the guard fences as (allowed to ALTER DATABASE and end sessions: the database's owner or a
    # member of it) and the Kubernetes Secret (key `password`) holding its password; never a password here.
    database_role: str = Field(default="drtopo_guard", pattern=r"^[a-z_][a-z0-9_]*$")
    database_secret: str = Field(default="drtopo-guard-db", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

    @model_validator(mode="after")
    def _renew_inside_lease(self) -> Fencing:
        if self.renew_seconds > self.lease_seconds / 3:
            raise ValueError(
                f"fencing.renewSeconds {self.renew_seconds:g} is not well inside fencing.leaseSeconds "
                f"{self.lease_seconds:g}; expected at most leaseSeconds / 3 ({self.lease_seconds / 3:g})"
            )
        if self.mode is FencingMode.LEASE and self.witness_region is None:
            raise ValueError("fencing.mode 'lease' has no fencing.witnessRegion; expected a third region")
        return self

    @property
    def worst_seconds(self) -> float:
        """The longest a cut-off primary can keep taking writes: its lease, then one renew interval to notice."""
        return self.lease_seconds + self.renew_seconds


class Service(_Model):
    """The service as validate checks it (the runbook's post-recovery steps 4-6 and its performance validation)."""

    name: str = "interface-exception-collector"
    health_path: str = Field(default="/actuator/health", pattern=r"^/")
    latency_p95_ms: float = Field(default=500, gt=0)
    # The API's bearer token comes from this environment variable of whoever runs validate (never a flag value;
    # the runbook calls it TEST_TOKEN).
    api_auth_env: str = Field(default="SERVICE_API_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    metrics_path: str = Field(default="/actuator/prometheus", pattern=r"^/")
    # A probe event produced to the region's Kafka must show up through the API within this.
    processing_limit_seconds: float = Field(default=30, gt=0)
    # The runbook's query (exceptions of the last hour) and the service's resident memory.
    db_query_limit_ms: float = Field(default=500, gt=0)
    memory_limit_mb: float = Field(default=512, gt=0)
    # kafka.consistency reads the events of this last stretch (up to the group's committed offsets), not the topics'
    # whole retention: a failover's neighbourhood, at a bounded cost.
    consistency_window_seconds: float = Field(default=900, gt=0, le=7 * 86400)
    # The topics the service consumes as kafka.consumerGroup (the runbook's: one per interface reporting exceptions);
    # the probe goes to the last one.
    event_topics: tuple[str, ...] = Field(default=RUNBOOK_TOPICS[:5], min_length=1)


# A Kubernetes object name (DNS-1123 label: what a Deployment's and a ConfigMap's names may be).
_K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Application(_Model):
    """`drtopo:application`: what DR needs of the service's own Deployment (its chart owns the rest).

    drtopo patches only the replica count per role (server-side apply, its own field manager): `standbyReplicas` 0 is
    pilot light (the runbook's choice: nothing runs in the standby region until promote starts it), N is warm standby.
    `startSeconds` is how long the application takes from 0 replicas to serving (image pull, start, readiness): the
    policy rule pilot-light-within-rto checks that the region-failure RTO leaves room for it.
    """

    deployment: str = Field(default="interface-exception-collector", pattern=_K8S_NAME, max_length=63)
    # The application's namespace; default kubernetes.namespace.
    namespace: str | None = Field(default=None, pattern=_K8S_NAME, max_length=63)
    primary_replicas: int = Field(default=3, ge=1, le=100)
    standby_replicas: int = Field(default=0, ge=0, le=100)
    start_seconds: float = Field(default=300, gt=0)
    # The ConfigMap of the endpoints the application must use in its region (database writer, Kafka bootstrap).
    endpoints_config_map: str = Field(default="interface-exception-collector-dr-endpoints", pattern=_K8S_NAME)

    @model_validator(mode="after")
    def _standby_not_above_primary(self) -> Application:
        if self.standby_replicas > self.primary_replicas:
            raise ValueError(
                f"application.standbyReplicas {self.standby_replicas} is above primaryReplicas "
                f"{self.primary_replicas}; expected 0 (pilot light) up to primaryReplicas (warm standby)"
            )
        return self

    @property
    def pilot_light(self) -> bool:
        return self.standby_replicas == 0

    def replicas(self, role: Role) -> int:
        """The application's replicas while its stack is `role` (the program's patch; promote's step, later)."""
        return self.primary_replicas if role is Role.PRIMARY else self.standby_replicas


LOAD_LEVELS = ("light", "default", "heavy")


class LoadLevel(_Model):
    """One drill load: what the service and Kafka carry while a failure is injected, and the data already there."""

    write_rate: float = Field(gt=0, description="acknowledged writes per second asked of the service")
    kafka_rate: float = Field(gt=0, description="messages per second produced to Kafka")
    seed_rows: int = Field(ge=0, description="rows in the database before the fault (seeded on the primary)")
    connections: int = Field(default=8, ge=1, le=64, description="client connections sharing the write rate")


class DrillLoad(_Model):
    """`drtopo:drill.load`: the drill's `--load light|default|heavy` (light keeps the test suite quick)."""

    light: LoadLevel = LoadLevel(write_rate=50, kafka_rate=100, seed_rows=10_000, connections=2)
    default: LoadLevel = LoadLevel(write_rate=500, kafka_rate=2000, seed_rows=1_000_000, connections=8)
    heavy: LoadLevel = LoadLevel(write_rate=1000, kafka_rate=5000, seed_rows=4_000_000, connections=16)

    def level(self, name: str) -> LoadLevel:
        if name not in LOAD_LEVELS:
            raise SettingsError(f"load {name!r} is unknown; expected one of {', '.join(LOAD_LEVELS)}")
        return getattr(self, name)


class Drill(_Model):
    """How a drill loads the lab and models what the lab cannot show of a real failover."""

    load: DrillLoad = DrillLoad()
    # The time from the alarm to an operator starting the runbook's command: no lab measures it, so the client-
    # visible RTO adds it as a modelled phase (0 when the failover is automated on the alarm).
    decision_seconds: float = Field(default=120, ge=0)


class SubscriptionProtocol(StrEnum):
    """Who an SNS topic tells: a mailbox, a pager's or chat's webhook (HTTPS only: the texts name the outage), or a
    queue another system reads."""

    EMAIL = "email"
    HTTPS = "https"
    SQS = "sqs"


_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# A standard queue (SNS FIFO topics alone deliver to FIFO queues): arn:<partition>:sqs:<region>:<account>:<name>.
_SQS_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sqs:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:[A-Za-z0-9_-]{1,80}$")


def _check_endpoint(protocol: SubscriptionProtocol, endpoint: str) -> str:
    if protocol is SubscriptionProtocol.EMAIL and not _EMAIL.match(endpoint):
        raise ValueError("expected an email address (name@domain) for protocol email")
    if protocol is SubscriptionProtocol.HTTPS:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in endpoint):
            raise ValueError("expected an https:// URL with a host (a pager's or chat's webhook) for protocol https")
    if protocol is SubscriptionProtocol.SQS and not _SQS_ARN.match(endpoint):
        raise ValueError(
            "expected a standard SQS queue ARN (arn:aws:sqs:<region>:<12-digit account>:<name>) for protocol sqs"
        )
    return endpoint


class Subscription(_Model):
    """One subscriber of a topic: `protocol` email, https or sqs and its `endpoint`, checked for that protocol."""

    protocol: SubscriptionProtocol
    endpoint: str

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")
        return value if protocol is None else _check_endpoint(protocol, value)

    @property
    def region(self) -> str | None:
        """The region of an SQS queue; None for the other protocols."""
        match = _SQS_ARN.match(self.endpoint)
        return match["region"] if self.protocol is SubscriptionProtocol.SQS and match else None


# What a notification template may name (`$name` or `${name}`): drtopo.incident fills each one from the incident's
# facts; one that is not known yet reads "not measured yet" or "none".
TEMPLATE_FIELDS = (
    "service",
    "scenario",
    "stack",
    "region",
    "impact",
    "start_time",
    "time",
    "estimated_recovery",
    "status_page",
    "event",
    "objective_rto",
    "objective_rpo",
    "measured_rto",
    "measured_rpo",
    "rows_lost",
    "left_to_do",
)


class Template(_Model):
    """A message's `subject` (one line) and `body`, with `$field` placeholders from TEMPLATE_FIELDS."""

    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)

    @field_validator("subject", "body")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        text = _TextTemplate(value)
        if not text.is_valid():
            raise ValueError("has a '$' that starts no placeholder; expected $field, ${field} or $$ for a dollar")
        unknown = [name for name in text.get_identifiers() if name not in TEMPLATE_FIELDS]
        if unknown:
            raise ValueError(f"names ${unknown[0]}; expected placeholders among ${', $'.join(TEMPLATE_FIELDS)}")
        return value

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("spans lines; expected a one-line subject")
        return value


class Templates(_Model):
    """The texts of the incident notifications; defaults are the runbook's two templates and an update between."""

    start: Template = Template(
        subject="CRITICAL: $service Outage",
        body=(
            "We are experiencing a critical outage with the $service.\n"
            "\n"
            "Impact: $impact\n"
            "Start Time: $start_time\n"
            "Estimated Recovery: $estimated_recovery\n"
            "Status Page: $status_page\n"
            "\n"
            "We are actively working on recovery and will provide updates every 30 minutes.\n"
        ),
    )
    update: Template = Template(
        subject="UPDATE: $service Outage",
        body=(
            "An update on the outage of the $service.\n"
            "\n"
            "Update: $event\n"
            "Time: $time\n"
            "Start Time: $start_time\n"
            "Estimated Recovery: $estimated_recovery\n"
            "Status Page: $status_page\n"
        ),
    )
    resolution: Template = Template(
        subject="RESOLVED: $service Restored",
        body=(
            "The $service has been fully restored.\n"
            "\n"
            "Resolution Time: $time\n"
            "Recovery Time (RTO): $measured_rto (objective $objective_rto)\n"
            "Data Loss (RPO): $measured_rpo (objective $objective_rpo), rows lost: $rows_lost\n"
            "Root Cause: [To be determined in post-mortem]\n"
            "Next Steps: post-mortem to be scheduled; left to do: $left_to_do\n"
            "\n"
            "All services are now operational. Thank you for your patience.\n"
        ),
    )


# An environment variable's name (POSIX: letters, digits, underscore, not starting with a digit).
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A Statuspage page id: letters and digits (the API's ids, e.g. gytm4qzbx9t6).
_PAGE_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


class StatusPage(_Model):
    """`drtopo:notifications.statusPage`: the status page the tools open, update and resolve an incident on, through
    the Atlassian Statuspage incidents API (drtopo/incident/statuspage.py). The API key is never in the stack file:
    `tokenVariable` names the environment variable the command reads it from."""

    api_url: str = "https://api.statuspage.io"
    page_id: str
    token_variable: str

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or " " in value:
            raise ValueError(
                "expected an https:// URL of the Statuspage API with a host (e.g. https://api.statuspage.io)"
            )
        return value.rstrip("/")

    @field_validator("page_id")
    @classmethod
    def _page_id(cls, value: str) -> str:
        if not _PAGE_ID.match(value):
            raise ValueError("expected the page's id (letters and digits, as on the Statuspage API page)")
        return value

    @field_validator("token_variable")
    @classmethod
    def _token_variable(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(
                "expected the NAME of the environment variable holding the API key (letters, digits and _, not "
                "starting with a digit), never the key itself"
            )
        return value


class Notifications(_Model):
    """`drtopo:notifications`: who each topic tells (declared by the program in the stack's own region), and the
    texts the tools send to the incident topic."""

    # Every alarm topic of the stack (database, DNS failover) gets these subscribers: the pager, the team.
    alerts: tuple[Subscription, ...] = ()
    # The incident topic: where promote, failback, cutover and drills say an incident started, moved or ended.
    incidents: tuple[Subscription, ...] = ()
    service_title: str = Field(default="Interface Exception Collector Service", min_length=1)
    impact: str = Field(default="Exception processing is currently unavailable", min_length=1)
    status_page_url: str | None = None
    templates: Templates = Templates()
    # Optional: the status page the tools open an incident on (none: no status page is updated).
    status_page: StatusPage | None = None

    @field_validator("alerts", "incidents")
    @classmethod
    def _unique(cls, value: tuple[Subscription, ...]) -> tuple[Subscription, ...]:
        seen = [(s.protocol.value, s.endpoint) for s in value]
        if len(set(seen)) != len(seen):
            raise ValueError("has the same protocol and endpoint twice; expected each subscriber once")
        return value

    @field_validator("status_page_url")
    @classmethod
    def _status_page(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError("expected an https:// URL of the public status page")
        return value


class Settings(_Model):
    """Everything one stack is configured with."""

    stack: str
    role: Role
    # Deploy `role` even where the live state (role marker, replica status) contradicts it: it must name that role.
    role_override: Role | None = None
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    peer_region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    peer_stack: str
    primary_stack_reference: str | None = None
    replication_source_arn: str | None = None
    objectives: Objectives = Objectives()
    retention: Retention = Retention()
    database: Database = Database()
    kafka: Kafka
    dns: Dns
    kubernetes: Kubernetes
    service: Service = Service()
    failover: Failover = Failover()
    fencing: Fencing = Fencing()
    drill: Drill = Drill()
    notifications: Notifications = Notifications()
    application: Application = Application()
    # drtopo:secrets: where each Kubernetes Secret key comes from (SecretSource).
    secrets: tuple[SecretSource, ...] = ()

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.region == self.peer_region:
            raise ValueError(f"peerRegion {self.peer_region!r} equals region; expected a different region")
        for topic in ("alerts", "incidents"):
            for sub in getattr(self.notifications, topic):
                if sub.region not in (None, self.region):
                    raise ValueError(
                        f"{PROJECT}:notifications.{topic} queue {sub.endpoint!r} is in {sub.region}; expected a "
                        f"queue in {self.region} (the stack's region: a queue elsewhere is lost with its region)"
                    )
        if self.role is Role.STANDBY and not (self.primary_stack_reference or self.replication_source_arn):
            raise ValueError(
                "role 'standby' has no primary reference; expected primaryStackReference or replicationSourceArn"
            )
        self._check_fencing()
        unknown = sorted(set(self.service.event_topics) - {t.name for t in self.kafka.topics})
        if unknown:
            raise ValueError(
                f"{PROJECT}:service.eventTopics {unknown} are not in kafka.topics; expected some of "
                f"{[t.name for t in self.kafka.topics]}"
            )
        declared = [(s.kubernetes_secret, s.key) for s in self.secrets]
        if len(set(declared)) != len(declared):
            raise ValueError(f"{PROJECT}:secrets declares a Secret key twice ({declared}); expected each once")
        major, image = self.database.major, self.kubernetes.backup_image
        if not image.endswith(f"-pg{major}"):
            raise ValueError(
                f"{PROJECT}:kubernetes.backupImage {image!r} does not carry the client tools of database.engineVersion "
                f"{self.database.engine_version!r}; expected a tag ending in -pg{major} "
                f"(docker build --build-arg PG_MAJOR={major})"
            )
        return self

    def _check_fencing(self) -> None:
        fencing = self.fencing
        if fencing.witness_region in (self.region, self.peer_region):
            raise ValueError(
                f"{PROJECT}:fencing.witnessRegion {fencing.witness_region!r} is one of the stacks' regions; expected "
                f"a third region (neither {self.region} nor {self.peer_region})"
            )
        rpo = self.objectives.for_scenario("region-failure").rpo_seconds
        if fencing.mode is FencingMode.LEASE and fencing.worst_seconds > rpo:
            raise ValueError(
                f"{PROJECT}:fencing.leaseSeconds + renewSeconds = {fencing.worst_seconds:g} s exceeds the "
                f"region-failure RPO of {rpo:g} s; expected a lease that fits inside the RPO"
            )
        if fencing.mode is not FencingMode.LEASE:
            return
        pair = (self.stack, self.peer_stack)
        if fencing.witness_stack not in pair:
            raise ValueError(
                f"{PROJECT}:fencing.witnessStack {fencing.witness_stack!r} is not a stack of the pair; expected "
                f"{' or '.join(pair)} (the same in both stack files: the one that declares the witness bucket)"
            )
        if not self.primary_stack_reference:
            raise ValueError(
                f"{PROJECT}:fencing.mode 'lease' has no {PROJECT}:primaryStackReference; expected the peer stack's "
                f"full name (the guard reads {self.peer_stack}'s outputs through it)"
            )

    @property
    def is_primary(self) -> bool:
        return self.role is Role.PRIMARY


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    return ".".join(parts)


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        indexable = isinstance(data, (list, tuple)) and isinstance(part, int) and part < len(data)
        if (isinstance(data, dict) and part in data) or indexable:
            data = data[part]
        else:
            return None
    return data


def settings_from_config(stack: str, config: dict[str, Any], source: str = "config") -> Settings:
    """Build settings from a Pulumi stack's `config:` mapping (keys `aws:region` and `drtopo:*`)."""
    data: dict[str, Any] = {"stack": stack}
    for key, value in (config or {}).items():
        namespace, _, name = str(key).partition(":")
        if namespace == "aws" and name == "region":
            data["region"] = value
        elif namespace == PROJECT and name:
            data[name] = value
        elif namespace not in ("aws", "kubernetes", "pulumi"):
            raise SettingsError(f"{source}: key {key!r} is unknown; expected aws:region or {PROJECT}:<setting>")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        where = _location(loc)
        key = f"{PROJECT}:{where}" if where and where != "region" else ("aws:region" if where else PROJECT)
        message = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "missing":
            raise SettingsError(f"{source}: {key} is missing; expected a value") from None
        if where:
            value = _value_at(data, loc)
            raise SettingsError(f"{source}: {key} = {value!r}: {message}") from None
        raise SettingsError(f"{source}: {message}") from None


def stack_file(stack: str, project_dir: Path = REPO_DIR) -> Path:
    """`Pulumi.<stack>.yaml` in the project folder (the command's `Context.project_dir`; the lab's is a copy)."""
    return project_dir / f"Pulumi.{stack}.yaml"


def stacks(project_dir: Path = REPO_DIR) -> tuple[str, ...]:
    """The stacks of the project: every `Pulumi.<name>.yaml` whose `drtopo:peerStack` names its peer, sorted."""
    found = []
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        try:
            config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # not a stack file this project can read; load_settings names the problem when it is asked for
        if isinstance(config, dict) and config.get(f"{PROJECT}:peerStack"):
            found.append(path.name.removeprefix("Pulumi.").removesuffix(".yaml"))
    return tuple(sorted(found))


def require_stack(stack: str, project_dir: Path = REPO_DIR) -> str:
    """`stack` when it has a stack file in the project; SettingsError naming the missing file and the stacks there."""
    path = stack_file(stack, project_dir)
    if not path.is_file():
        known = ", ".join(stacks(project_dir)) or "none"
        raise SettingsError(f"stack {stack!r} has no {path.name} in {project_dir}; the stacks there are: {known}")
    return stack


def load_settings(stack: str, project_dir: Path = REPO_DIR, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate `Pulumi.<stack>.yaml` in `project_dir`; `overrides` replaces `drtopo:` keys (for tests and
    role switches)."""
    path = stack_file(require_stack(stack, project_dir), project_dir)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise SettingsError(f"{path.name}: the document is a {kind}; expected a mapping with config:")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise SettingsError(f"{path.name}: config is a {type(config).__name__}; expected a mapping of keys to values")
    config = dict(config)
    for key, value in (overrides or {}).items():
        config[key if ":" in key else f"{PROJECT}:{key}"] = value
    return settings_from_config(stack, config, source=path.name)
