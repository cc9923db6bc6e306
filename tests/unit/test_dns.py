"""DNS failover as each stack declares it: the endpoint check, the takeover signal in this region, the record's
calculated health (endpoint AND the peer has not taken over) and the role's failover record."""

from __future__ import annotations

from components.dns import ROUTE53_METRICS_REGION
from drtopo import naming
from evaluation.mock_program import Evaluation, Registered

HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def endpoint_check(stack: Evaluation) -> Registered:
    return stack.one(HEALTH_CHECK, "dns-health")


def test_health_check_probes_this_regions_endpoint(stack: Evaluation) -> None:
    dns = stack.settings.dns
    check = endpoint_check(stack).inputs
    assert check["type"] == dns.health_check_type == "HTTPS"
    assert check["fqdn"] == dns.endpoint
    assert stack.settings.region in check["fqdn"]
    assert check["port"] == dns.health_check_port
    assert check["resourcePath"] == dns.health_check_path == "/actuator/health"
    assert check["requestInterval"] == dns.request_interval_seconds
    assert check["failureThreshold"] == dns.failure_threshold
    assert check["enableSni"] is True
    assert check["tags"]["Name"] == naming.health_check_name(stack.settings)
    assert stack.exports["healthCheckId"] == endpoint_check(stack).name + "-id"


def test_takeover_signal_lives_in_this_stacks_region(stack: Evaluation) -> None:
    settings = stack.settings
    alarm = stack.one(ALARM, "dns-takeover").inputs
    assert alarm["name"] == naming.takeover_alarm_name(settings.region) == f"drtopo-{settings.region}-takeover"
    assert (alarm["namespace"], alarm["metricName"]) == (naming.TAKEOVER_NAMESPACE, naming.TAKEOVER_METRIC)
    assert alarm["dimensions"] == {"Region": settings.region}
    assert (alarm["comparisonOperator"], alarm["threshold"], alarm["statistic"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
        "Maximum",
    )
    assert alarm["period"] == 60  # standard resolution: Route53 watches no high-resolution alarm
    assert alarm["treatMissingData"] == "ignore"  # one data point from promote holds until the next promote
    assert "region" not in alarm  # the provider's region: this stack's own
    topic = stack.one("aws:sns/topic:Topic", "dns-alerts")
    assert "region" not in topic.inputs
    assert alarm["alarmActions"] == [topic.outputs["arn"]]


def test_the_route53_metric_alarm_exists_only_where_route53_publishes_metrics(prod: Evaluation, dr: Evaluation) -> None:
    assert prod.settings.region == ROUTE53_METRICS_REGION != dr.settings.region
    alarm = prod.one(ALARM, "dns-health").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Route53", "HealthCheckStatus")
    assert alarm["dimensions"] == {"HealthCheckId": endpoint_check(prod).name + "-id"}
    assert "region" not in alarm
    assert not [r for r in dr.of_type(ALARM) if r.get("namespace") == "AWS/Route53"]


def test_record_is_healthy_only_while_the_endpoint_passes_and_the_peer_has_not_taken_over(stack: Evaluation) -> None:
    settings = stack.settings
    peer = stack.one(HEALTH_CHECK, "dns-peer-takeover").inputs
    assert peer["type"] == "CLOUDWATCH_METRIC"
    assert peer["cloudwatchAlarmName"] == naming.takeover_alarm_name(settings.peer_region)
    assert peer["cloudwatchAlarmRegion"] == settings.peer_region
    assert peer["insufficientDataHealthStatus"] == "Healthy"  # the peer never took over: no data
    calculated = stack.one(HEALTH_CHECK, "dns-record-health").inputs
    assert calculated["type"] == "CALCULATED"
    assert calculated["childHealthchecks"] == [endpoint_check(stack).name + "-id", "dns-peer-takeover-id"]
    assert calculated["childHealthThreshold"] == 2  # both: an AND
    assert stack.one(RECORD).inputs["healthCheckId"] == "dns-record-health-id"


def test_failover_record_follows_the_role(stack: Evaluation) -> None:
    settings = stack.settings
    record = stack.one(RECORD).inputs
    assert record["zoneId"] == "ZMOCK123"  # looked up by name (mocked getZone), shared by both stacks
    assert record["name"] == settings.dns.record_name
    assert (record["type"], record["records"], record["ttl"]) == ("CNAME", [settings.dns.endpoint], 30)
    assert record["setIdentifier"] == naming.set_identifier(settings) == settings.region
    assert record["failoverRoutingPolicies"] == [{"type": settings.role.failover}]
    assert not stack.of_type("aws:route53/zone:Zone")


def test_prod_is_primary_and_dr_secondary_as_configured(prod: Evaluation, dr: Evaluation) -> None:
    assert prod.one(RECORD).inputs["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert dr.one(RECORD).inputs["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
    assert prod.exports["failover"] == "PRIMARY" and dr.exports["failover"] == "SECONDARY"


def test_each_stack_watches_the_alarm_its_peer_declares(prod: Evaluation, dr: Evaluation) -> None:
    for stack, peer in ((prod, dr), (dr, prod)):
        watched = stack.one(HEALTH_CHECK, "dns-peer-takeover").inputs
        declared = peer.one(ALARM, "dns-takeover").inputs
        assert (watched["cloudwatchAlarmName"], watched["cloudwatchAlarmRegion"]) == (
            declared["name"],
            peer.settings.region,
        )
