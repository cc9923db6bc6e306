"""DNS failover as each stack declares it: health check, its alarm and the role's failover record."""

from __future__ import annotations

from components.dns import ROUTE53_METRICS_REGION
from drtopo import naming
from policies.mock_program import Evaluation

HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"


def test_health_check_probes_this_regions_endpoint(stack: Evaluation) -> None:
    dns = stack.settings.dns
    check = stack.one(HEALTH_CHECK).inputs
    assert check["type"] == dns.health_check_type == "HTTPS"
    assert check["fqdn"] == dns.endpoint
    assert stack.settings.region in check["fqdn"]
    assert check["port"] == dns.health_check_port
    assert check["resourcePath"] == dns.health_check_path == "/actuator/health"
    assert check["requestInterval"] == dns.request_interval_seconds
    assert check["failureThreshold"] == dns.failure_threshold
    assert check["enableSni"] is True
    assert check["tags"]["Name"] == naming.health_check_name(stack.settings)


def test_alarm_on_the_health_check_lives_where_route53_publishes_metrics(stack: Evaluation) -> None:
    alarm = stack.one("aws:cloudwatch/metricAlarm:MetricAlarm", "dns-health").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Route53", "HealthCheckStatus")
    assert alarm["dimensions"] == {"HealthCheckId": stack.one(HEALTH_CHECK).name + "-id"}
    assert (alarm["comparisonOperator"], alarm["threshold"]) == ("LessThanThreshold", 1)
    assert alarm["region"] == ROUTE53_METRICS_REGION == "us-east-1"
    topic = stack.one("aws:sns/topic:Topic", "dns-alerts")
    assert topic.inputs["region"] == ROUTE53_METRICS_REGION
    assert alarm["alarmActions"] == [topic.outputs["arn"]]


def test_failover_record_follows_the_role(stack: Evaluation) -> None:
    settings = stack.settings
    record = stack.one(RECORD).inputs
    assert record["zoneId"] == "ZMOCK123"  # looked up by name (mocked getZone), shared by both stacks
    assert record["name"] == settings.dns.record_name
    assert (record["type"], record["records"], record["ttl"]) == ("CNAME", [settings.dns.endpoint], 30)
    assert record["setIdentifier"] == naming.set_identifier(settings) == settings.region
    assert record["failoverRoutingPolicies"] == [{"type": settings.role.failover}]
    assert record["healthCheckId"] == stack.one(HEALTH_CHECK).name + "-id" == stack.exports["healthCheckId"]
    assert not stack.of_type("aws:route53/zone:Zone")


def test_prod_is_primary_and_dr_secondary_as_configured(prod: Evaluation, dr: Evaluation) -> None:
    assert prod.one(RECORD).inputs["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert dr.one(RECORD).inputs["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
    assert prod.exports["failover"] == "PRIMARY" and dr.exports["failover"] == "SECONDARY"
