"""DNS failover through the data plane: this region's failover record, its health, and this region's takeover signal.

The record is PRIMARY or SECONDARY as the stack's role says, so across the two stacks exactly one record is PRIMARY.
The hosted zone is shared by both stacks and looked up by name, never declared here, so neither stack owns (or could
delete) the other's records.

Failover must not need the failed region, nor Route53's control plane (which lives in us-east-1): changing records
or health checks during an incident is a control-plane call. So the record's health is what the script flips, and
it is flipped with a data-plane call in the region that takes over:

- this stack keeps, in its own region, a takeover signal: the custom metric `drtopo/Failover Takeover` and the alarm
  `drtopo-<region>-takeover` on it; `scripts.promote` publishes 1 there (CloudWatch PutMetricData in the surviving
  region) and 0 in the peer's when it answers;
- this stack's record is tied to a calculated health check, healthy only while both this region's endpoint check
  passes and the peer's takeover alarm is not in ALARM (a CloudWatch-alarm health check on the peer's alarm, found
  by its name and region: no alarm data, as before the peer ever took over, counts as healthy).

A promotion of the peer therefore makes this record unhealthy and Route53 answers the peer's record, whatever the
records' PRIMARY/SECONDARY still say; `pulumi up --refresh` later rewrites the records to follow the new roles.

Alarms, topics and keys live in this stack's region. Route53 publishes health-check metrics only in us-east-1, so
the alarm on the endpoint check exists only in a stack whose region is us-east-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import cloudwatch, route53

from components.alerts import AlertTopic, AlertTopicArgs
from drtopo import naming
from drtopo.settings import Settings

# Route53 health-check metrics (AWS/Route53 HealthCheckStatus) exist in this region only.
ROUTE53_METRICS_REGION = "us-east-1"
# The takeover alarm: one standard-resolution period (Route53 watches no high-resolution alarm), and missing data
# keeps the state (a single data point from promote holds until the next promote writes the other value).
TAKEOVER_PERIOD_SECONDS = 60


@dataclass(frozen=True)
class DnsFailoverArgs:
    settings: Settings


class DnsFailover(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]
    health_check_id: pulumi.Output[str]
    record_health_check_id: pulumi.Output[str]
    record_name: pulumi.Output[str]

    def __init__(self, name: str, args: DnsFailoverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:dns:DnsFailover", name, None, opts)
        settings = args.settings
        dns = settings.dns
        child = pulumi.ResourceOptions(parent=self)
        zone = route53.get_zone_output(name=dns.zone_name, private_zone=False, opts=pulumi.InvokeOptions(parent=self))
        endpoint = route53.HealthCheck(
            f"{name}-health",
            type=dns.health_check_type,
            fqdn=dns.endpoint,
            port=dns.health_check_port,
            resource_path=dns.health_check_path,
            request_interval=dns.request_interval_seconds,
            failure_threshold=dns.failure_threshold,
            enable_sni=dns.health_check_type == "HTTPS",
            measure_latency=True,
            tags={"Name": naming.health_check_name(settings), "drtopo:stack": settings.stack},
            opts=child,
        )
        alerts = AlertTopic(
            f"{name}-alerts",
            AlertTopicArgs(
                description=f"drtopo DNS failover of {dns.endpoint}",
                alias=f"drtopo-{settings.region}-dns-alerts",
                subscriptions=settings.notifications.alerts,
            ),
            child,
        )
        # This region's takeover signal: what the script flips when this stack takes over.
        takeover = cloudwatch.MetricAlarm(
            f"{name}-takeover",
            name=naming.takeover_alarm_name(settings.region),
            alarm_description=(
                f"{settings.stack} ({settings.region}) has taken the traffic over: the failover record of "
                f"{settings.peer_region} is unhealthy while this alarm is ALARM"
            ),
            namespace=naming.TAKEOVER_NAMESPACE,
            metric_name=naming.TAKEOVER_METRIC,
            dimensions={"Region": settings.region},
            statistic="Maximum",
            period=TAKEOVER_PERIOD_SECONDS,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="ignore",
            alarm_actions=[alerts.topic_arn],
            ok_actions=[alerts.topic_arn],
            opts=child,
        )
        if settings.region == ROUTE53_METRICS_REGION:
            cloudwatch.MetricAlarm(
                f"{name}-health",
                alarm_description=f"{dns.endpoint}{dns.health_check_path} fails its Route53 health check",
                namespace="AWS/Route53",
                metric_name="HealthCheckStatus",
                dimensions={"HealthCheckId": endpoint.id},
                statistic="Minimum",
                period=60,
                evaluation_periods=1,
                threshold=1,
                comparison_operator="LessThanThreshold",
                treat_missing_data="breaching",
                alarm_actions=[alerts.topic_arn],
                ok_actions=[alerts.topic_arn],
                opts=child,
            )
        # The peer's takeover alarm, by name and region (the peer stack declares it in its own region).
        not_taken_over = route53.HealthCheck(
            f"{name}-peer-takeover",
            type="CLOUDWATCH_METRIC",
            cloudwatch_alarm_name=naming.takeover_alarm_name(settings.peer_region),
            cloudwatch_alarm_region=settings.peer_region,
            insufficient_data_health_status="Healthy",
            invert_healthcheck=False,
            tags={"Name": f"{naming.health_check_name(settings)}-peer-takeover", "drtopo:stack": settings.stack},
            opts=child,
        )
        record_health = route53.HealthCheck(
            f"{name}-record-health",
            type="CALCULATED",
            child_healthchecks=[endpoint.id, not_taken_over.id],
            child_health_threshold=2,
            tags={"Name": f"{naming.health_check_name(settings)}-record", "drtopo:stack": settings.stack},
            opts=child,
        )
        record = route53.Record(
            f"{name}-record",
            zone_id=zone.zone_id,
            name=dns.record_name,
            type="CNAME",
            ttl=dns.ttl_seconds,
            records=[dns.endpoint],
            set_identifier=naming.set_identifier(settings),
            failover_routing_policies=[{"type": settings.role.failover}],
            health_check_id=record_health.id,
            opts=child,
        )
        self.zone_id = zone.zone_id
        self.health_check_id = endpoint.id
        self.record_health_check_id = record_health.id
        self.record_name = record.name
        self.register_outputs(
            {
                "zoneId": zone.zone_id,
                "healthCheckId": endpoint.id,
                "recordHealthCheckId": record_health.id,
                "takeoverAlarm": takeover.name,
                "recordName": record.name,
                "failover": settings.role.failover,
            }
        )
