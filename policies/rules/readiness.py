"""The scheduled readiness check (components/readiness_check.py): declared on the standby, alarmed, least privilege.

- readiness-check-scheduled: a standby declares the hourly readiness CronJob (`scripts.status --publish`) and an
  alarm on its `ItemsFailing` metric that treats missing data as breaching, so a check that stopped running alarms
  too (where it notifies is alarms-notify-someone's concern).
- readiness-role-least-privilege: the check's IAM role (IRSA) reads only what the status command reads and writes
  only its own readiness objects and metrics: named actions from a fixed read list, S3 only in this stack's or its
  peer's buckets, PutObject only under `readiness/<stack>/` of the configuration bucket, PutMetricData only in the
  readiness namespace, KMS only through a service of the pair's regions, `*` only where CloudWatch allows nothing
  narrower.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from drtopo import naming
from drtopo.readiness import publish, schedule
from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import UNKNOWN, Resource, Violation, as_list, violation
from policies.registry import stack_rule
from policies.rules.identity import is_readiness_role, is_workload_role
from policies.view import StackView

# Everything the status command calls, and the two writes of --publish.
READS = {
    "s3:ListBucket",
    "s3:GetObject",
    "kms:Decrypt",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
    "rds:DescribeDBInstances",
    "cloudwatch:GetMetricStatistics",
}
WRITES = {"s3:PutObject", "kms:GenerateDataKey", "cloudwatch:PutMetricData"}
# CloudWatch's metric actions support no resource-level permission.
ANY_RESOURCE = {"cloudwatch:GetMetricStatistics", "cloudwatch:PutMetricData"}


def _policy(resource: Resource) -> dict[str, Any] | None:
    raw = resource.get("policy")
    if raw is None or raw is UNKNOWN:
        return None
    try:
        document = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _pair_buckets(settings: Settings) -> set[str]:
    peer = settings.model_copy(update={"region": settings.peer_region})
    return {naming.bucket_name(s, p) for s in (settings, peer) for p in naming.BUCKET_PURPOSES}


def _resource_problem(settings: Settings, action: str, arn: str) -> str | None:
    """Why `arn` is too wide for `action` in the readiness role; None when it is fine."""
    if arn == "*":
        return None if action in ANY_RESOURCE else "a named resource"
    service = action.split(":", 1)[0]
    if service == "s3":
        bucket, _, key = arn.removeprefix("arn:aws:s3:::").partition("/")
        if bucket not in _pair_buckets(settings):
            return "a bucket of this stack or its peer"
        if action == "s3:PutObject":
            own_config = naming.bucket_name(settings, "config")
            if bucket != own_config or key != f"{schedule.readiness_prefix(settings.stack)}*":
                return f"arn:aws:s3:::{own_config}/{schedule.readiness_prefix(settings.stack)}* only"
        elif action != "s3:ListBucket" and (key in ("", "*") or "*" in key.removesuffix("*")):
            return "objects under a literal prefix of the bucket"
        return None
    regions = (settings.region, settings.peer_region)
    if not any(arn.startswith(f"arn:aws:{service}:{region}:") for region in regions):
        return f"a resource in {' or '.join(regions)}"
    return None


def _statement_problems(settings: Settings, policy: Resource, statement: dict[str, Any]) -> Iterator[Violation]:
    sid = statement.get("Sid", "")
    actions = [str(a) for a in as_list(statement.get("Action"))]
    if statement.get("NotAction") or statement.get("NotResource"):
        yield violation(policy, f"Statement[{sid}].NotAction/NotResource", True, "Action and Resource lists")
    for action in actions:
        if action not in READS | WRITES:
            yield violation(
                policy,
                f"Statement[{sid}].Action",
                action,
                f"one of {', '.join(sorted(READS | WRITES))}",
                "the check reads what scripts.status reads and writes only its readiness objects and metrics",
            )
    for arn in (str(r) for r in as_list(statement.get("Resource"))):
        for action in actions:
            why = _resource_problem(settings, action, arn)
            if why is not None:
                yield violation(policy, f"Statement[{sid}].Resource", arn, why)
                break
    equals = (statement.get("Condition") or {}).get("StringEquals") or {}
    if "cloudwatch:PutMetricData" in actions and equals.get("cloudwatch:namespace") != publish.NAMESPACE:
        yield violation(
            policy,
            f"Statement[{sid}].Condition.cloudwatch:namespace",
            equals.get("cloudwatch:namespace"),
            publish.NAMESPACE,
        )
    if any(a.startswith("kms:") for a in actions):
        via = str(equals.get("kms:ViaService") or "")
        if not any(via.endswith(f".{region}.amazonaws.com") for region in (settings.region, settings.peer_region)):
            yield violation(
                policy, f"Statement[{sid}].Condition.kms:ViaService", via or None, "a service of the pair's regions"
            )


@stack_rule(
    "readiness-role-least-privilege",
    "The readiness check's IAM role reads only what scripts.status reads, writes only readiness/<stack>/ of its "
    "configuration bucket and puts metrics only in the readiness namespace: named actions and resources.",
)
def readiness_role_least_privilege(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    for role in (r for r in view.of_type(types.IAM_ROLE) if is_workload_role(r) and is_readiness_role(r)):
        policies = view.companions(role, types.IAM_ROLE_POLICY, "role")
        if not policies:
            yield violation(role, "RolePolicy", None, "one inline policy naming what the check does")
        for policy in policies:
            document = _policy(policy)
            for statement in as_list((document or {}).get("Statement")):
                if isinstance(statement, dict) and statement.get("Effect") == "Allow":
                    yield from _statement_problems(settings, policy, statement)


@stack_rule(
    "readiness-check-scheduled",
    "A standby declares the hourly readiness CronJob (scripts.status --publish) and an alarm on its ItemsFailing "
    "metric that treats missing data as breaching, so a check that stopped running alarms too.",
)
def readiness_check_scheduled(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    if settings.is_primary:
        return
    jobs = [j for j in view.of_type(types.K8S_CRONJOB) if j.get("metadata.name") == schedule.JOB]
    if not jobs:
        yield violation(
            None, f"CronJob {schedule.JOB}", None, f"the readiness check in {settings.kubernetes.namespace}"
        )
    for job in jobs:
        if job.get("spec.schedule") != schedule.SCHEDULE:
            yield violation(job, "spec.schedule", job.get("spec.schedule"), repr(schedule.SCHEDULE), "hourly")
        if job.get("spec.suspend"):
            yield violation(job, "spec.suspend", True, "False")
        containers = job.get(f"{types.POD_SPEC_PATHS[types.K8S_CRONJOB]}.containers") or []
        commands = [c.get("command") for c in containers if isinstance(c, dict)]
        if schedule.command(settings.stack) not in commands:
            yield violation(job, "containers[*].command", commands or None, " ".join(schedule.command(settings.stack)))
    alarms = [
        a
        for a in view.of_type(types.METRIC_ALARM)
        if a.inputs.get("namespace") == publish.NAMESPACE and a.inputs.get("metricName") == publish.FAILING_METRIC
    ]
    if not alarms:
        yield violation(
            None, f"alarm on {publish.NAMESPACE} {publish.FAILING_METRIC}", None, "one alarm on the readiness metric"
        )
    for alarm in alarms:
        if alarm.inputs.get("treatMissingData") != "breaching":
            yield violation(alarm, "treatMissingData", alarm.inputs.get("treatMissingData"), "'breaching'")
        dimensions = alarm.inputs.get("dimensions") or {}
        if dimensions.get("Stack") != settings.stack:
            yield violation(alarm, "dimensions.Stack", dimensions.get("Stack"), repr(settings.stack))
        period = alarm.inputs.get("period")
        if isinstance(period, int | float) and period < schedule.SCHEDULE_INTERVAL_SECONDS:
            yield violation(
                alarm, "period", period, f">= {schedule.SCHEDULE_INTERVAL_SECONDS} (the schedule's interval)"
            )
