"""DNS failover: a Route53 health check on this region's endpoint and this region's failover record.

The record is PRIMARY or SECONDARY as the stack's role says, so across the two stacks exactly one record is PRIMARY.
The hosted zone is shared by both stacks and looked up by name, never declared here, so neither stack owns (or could
delete) the other's records. Route53 publishes health-check metrics only in us-east-1, so the alarm lives there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import cloudwatch, route53

from components.alerts import AlertTopic, AlertTopicArgs
from drtopo import naming
from drtopo.settings import Settings

ROUTE53_METRICS_REGION = "us-east-1"


@dataclass(frozen=True)
class DnsFailoverArgs:
    settings: Settings


class DnsFailover(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]
    health_check_id: pulumi.Output[str]
    record_name: pulumi.Output[str]

    def __init__(self, name: str, args: DnsFailoverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:dns:DnsFailover", name, None, opts)
        settings = args.settings
        dns = settings.dns
        child = pulumi.ResourceOptions(parent=self)
        zone = route53.get_zone_output(name=dns.zone_name, private_zone=False, opts=pulumi.InvokeOptions(parent=self))
        health = route53.HealthCheck(
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
                description=f"drtopo health of {dns.endpoint}",
                alias=f"drtopo-{settings.region}-dns-alerts",
                region=ROUTE53_METRICS_REGION,
            ),
            child,
        )
        cloudwatch.MetricAlarm(
            f"{name}-health",
            alarm_description=f"{dns.endpoint}{dns.health_check_path} fails its Route53 health check",
            namespace="AWS/Route53",
            metric_name="HealthCheckStatus",
            dimensions={"HealthCheckId": health.id},
            statistic="Minimum",
            period=60,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="LessThanThreshold",
            treat_missing_data="breaching",
            alarm_actions=[alerts.topic_arn],
            ok_actions=[alerts.topic_arn],
            region=ROUTE53_METRICS_REGION,
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
            health_check_id=health.id,
            opts=child,
        )
        self.zone_id = zone.zone_id
        self.health_check_id = health.id
        self.record_name = record.name
        self.register_outputs(
            {
                "zoneId": zone.zone_id,
                "healthCheckId": health.id,
                "recordName": record.name,
                "failover": settings.role.failover,
            }
        )
