"""drtopo:notifications: subscriptions checked per protocol in one line, templates checked for their placeholders,
and the program declaring every topic's subscribers and the incident topic in the stack's own region."""

from __future__ import annotations

from typing import Any

import pytest

from components.alerts import subscription_name
from drtopo.naming import incident_topic_name
from drtopo.settings import Notifications, SettingsError, Subscription, SubscriptionProtocol, load_settings
from evaluation.mock_program import ACCOUNT_ID, Evaluation, evaluate

TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:incident-feed"


def with_notifications(stack: str, **changes: Any) -> dict[str, Any]:
    current = load_settings(stack).notifications.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"notifications": {**current, **changes}}


def test_the_shipped_stacks_tell_the_runbook_channels() -> None:
    for stack in ("prod", "dr"):
        notifications = load_settings(stack).notifications
        assert [(s.protocol, s.endpoint) for s in notifications.alerts] == [
            (SubscriptionProtocol.EMAIL, "dr-team@biopro.com")
        ]
        assert [(s.protocol, s.endpoint) for s in notifications.incidents] == [
            (SubscriptionProtocol.EMAIL, "incident-response@biopro.com")
        ]
        assert notifications.status_page_url == "https://status.biopro.com"


@pytest.mark.parametrize(
    ("protocol", "endpoint"),
    [
        ("email", "oncall@biopro.com"),
        ("https", "https://events.pagerduty.com/integration/abc123/enqueue"),
        ("https", "https://hooks.slack.com/services/T000/B000/XXXX"),
        ("sqs", QUEUE),
    ],
)
def test_good_endpoints_are_accepted(protocol: str, endpoint: str) -> None:
    settings = load_settings(
        "prod", overrides=with_notifications("prod", alerts=[{"protocol": protocol, "endpoint": endpoint}])
    )
    assert settings.notifications.alerts == (Subscription(protocol=SubscriptionProtocol(protocol), endpoint=endpoint),)


@pytest.mark.parametrize(
    ("subscriber", "message"),
    [
        (
            {"protocol": "email", "endpoint": "dr-team"},
            "Pulumi.prod.yaml: drtopo:notifications.alerts.0.endpoint = 'dr-team': expected an email address "
            "(name@domain) for protocol email",
        ),
        (
            {"protocol": "https", "endpoint": "http://hooks.example.com/x"},
            "drtopo:notifications.alerts.0.endpoint = 'http://hooks.example.com/x': expected an https:// URL with a "
            "host (a pager's or chat's webhook) for protocol https",
        ),
        (
            {"protocol": "https", "endpoint": "https:///no-host"},
            "endpoint = 'https:///no-host': expected an https:// URL with a host",
        ),
        (
            {"protocol": "sqs", "endpoint": "https://sqs.us-east-1.amazonaws.com/123456789012/q"},
            "expected a standard SQS queue ARN (arn:aws:sqs:<region>:<12-digit account>:<name>) for protocol sqs",
        ),
        (
            {"protocol": "sqs", "endpoint": "arn:aws:sqs:us-east-1:123456789012:q.fifo"},
            "endpoint = 'arn:aws:sqs:us-east-1:123456789012:q.fifo': expected a standard SQS queue ARN",
        ),
        (
            {"protocol": "sms", "endpoint": "+15550129"},
            "drtopo:notifications.alerts.0.protocol = 'sms': Input should be 'email', 'https' or 'sqs'",
        ),
        (
            {"protocol": "email"},
            "Pulumi.prod.yaml: drtopo:notifications.alerts.0.endpoint is missing; expected a value",
        ),
    ],
    ids=["email-without-domain", "plain-http", "https-without-host", "sqs-url", "sqs-fifo", "sms", "no-endpoint"],
)
def test_bad_subscribers_are_one_line_naming_the_value_and_what_is_allowed(subscriber: dict, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings("prod", overrides=with_notifications("prod", alerts=[subscriber]))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_subscriber_twice_is_refused() -> None:
    twice = [{"protocol": "email", "endpoint": "a@biopro.com"}] * 2
    with pytest.raises(SettingsError, match=r"notifications.incidents = .*: has the same protocol and endpoint twice"):
        load_settings("prod", overrides=with_notifications("prod", incidents=twice))


def test_a_queue_in_the_peer_region_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings("dr", overrides=with_notifications("dr", incidents=[{"protocol": "sqs", "endpoint": QUEUE}]))
    assert str(caught.value) == (
        f"Pulumi.dr.yaml: drtopo:notifications.incidents queue '{QUEUE}' is in us-east-1; expected a queue in "
        "us-west-2 (the stack's region: a queue elsewhere is lost with its region)"
    )


def test_a_status_page_must_be_https() -> None:
    with pytest.raises(SettingsError, match=r"statusPageUrl = 'http://status.biopro.com': expected an https:// URL"):
        load_settings("prod", overrides=with_notifications("prod", statusPageUrl="http://status.biopro.com"))


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            {"subject": "DOWN: $servic", "body": "x"},
            "drtopo:notifications.templates.start.subject = 'DOWN: $servic': names $servic; expected placeholders "
            "among $service, $scenario,",
        ),
        ({"subject": "DOWN", "body": "costs $5"}, "body = 'costs $5': has a '$' that starts no placeholder"),
        ({"subject": "DOWN\nnow", "body": "x"}, "subject = 'DOWN\\nnow': spans lines; expected a one-line subject"),
    ],
    ids=["unknown-placeholder", "stray-dollar", "two-line-subject"],
)
def test_bad_templates_are_refused(template: dict, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings("prod", overrides=with_notifications("prod", templates={"start": template}))
    assert message in str(caught.value)


def test_a_template_may_be_overridden_alone() -> None:
    start = {"subject": "SEV1 $service", "body": "Impact: $impact, since $start_time"}
    templates = load_settings("prod", overrides=with_notifications("prod", templates={"start": start})).notifications
    assert templates.templates.start.subject == "SEV1 $service"
    assert templates.templates.resolution == Notifications().templates.resolution


def test_subscription_names_follow_the_subscriber_not_its_place() -> None:
    a = Subscription(protocol=SubscriptionProtocol.EMAIL, endpoint="a@biopro.com")
    b = Subscription(protocol=SubscriptionProtocol.EMAIL, endpoint="b@biopro.com")
    assert subscription_name("incidents", a) != subscription_name("incidents", b)
    assert subscription_name("incidents", a) == subscription_name("incidents", a.model_copy())
    assert subscription_name("incidents", a).startswith("incidents-email-")


def subscribers_of(stack: Evaluation, topic: Any) -> list[tuple[str, str, Any]]:
    return [
        (s.inputs["protocol"], s.inputs["endpoint"], s.inputs.get("region"))
        for s in stack.of_type(SUBSCRIPTION)
        if s.inputs["topic"] == topic.outputs["arn"]
    ]


def test_every_topic_has_the_settings_subscribers_in_the_stack_region(stack: Evaluation) -> None:
    settings = stack.settings
    alerts = [(s.protocol.value, s.endpoint, None) for s in settings.notifications.alerts]
    incidents = [(s.protocol.value, s.endpoint, None) for s in settings.notifications.incidents]
    # The readiness check has an alert topic of its own (components/readiness_check.py).
    names = ("database-alerts", "dns-alerts", "readiness-check-alerts")
    for name in names:
        assert subscribers_of(stack, stack.one(TOPIC, name)) == alerts
    assert subscribers_of(stack, stack.one(TOPIC, "incidents")) == incidents
    assert len(stack.of_type(SUBSCRIPTION)) == len(names) * len(alerts) + len(incidents)


def test_the_incident_topic_is_named_encrypted_and_exported(stack: Evaluation) -> None:
    region = stack.settings.region
    topic = stack.one(TOPIC, "incidents")
    assert topic.inputs["name"] == incident_topic_name(region) and topic.inputs.get("region") is None
    key = stack.one("aws:kms/key:Key", "incidents-key")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    # Only the tools publish to it: no service may encrypt with its key.
    assert "policy" not in key.inputs
    assert stack.exports["incidentTopicArn"] == f"arn:aws:sns:{region}:{ACCOUNT_ID}:{incident_topic_name(region)}"


def test_more_subscribers_more_subscriptions() -> None:
    pager = {"protocol": "https", "endpoint": "https://events.pagerduty.com/integration/abc/enqueue"}
    mail = {"protocol": "email", "endpoint": "dr-team@biopro.com"}
    settings = load_settings("dr", overrides=with_notifications("dr", alerts=[mail, pager]))
    evaluation = evaluate(settings)
    topic = evaluation.one(TOPIC, "dns-alerts")
    assert subscribers_of(evaluation, topic) == [
        ("email", "dr-team@biopro.com", None),
        ("https", pager["endpoint"], None),
    ]
