"""Nobody is left in the dark: every alarm tells a topic someone subscribes to, and each stack has its incident topic.

An alarm whose topic has no subscriber pages no one, however well its threshold is chosen. The tools tell an
incident's start, updates and resolution to the incident topic of the region that is alive, so each stack declares
one in its own region (`drtopo.naming.incident_topic_name`), encrypted with a customer key, with a subscriber.

A subscription names its topic by ARN: known in the state of an existing stack and under the mocks (whose ARN ends
in the topic's name), or, for a topic a preview is about to create, through the `topic` input's dependency on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from drtopo import naming
from policies import resource_types as types
from policies.model import UNKNOWN, Resource, Violation, as_list, violation
from policies.registry import stack_rule
from policies.view import StackView

SUBSCRIBED = "an SNS topic this stack declares, with at least one subscription (drtopo:notifications.alerts)"


def is_topic_arn(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("arn:") and value.split(":")[2:3] == ["sns"]


def refers_to(topic: Resource, arn: Any) -> bool:
    """Whether `arn` is `topic`'s: its ARN when the state knows it, else an SNS ARN ending in its name."""
    if not is_topic_arn(arn):
        return False
    known = topic.inputs.get("arn")
    if isinstance(known, str):
        return known == arn
    physical = topic.inputs.get("name")
    return arn.rsplit(":", 1)[-1] == (physical if isinstance(physical, str) and physical else topic.name)


def subscriptions(view: StackView, topic: Resource) -> list[Resource]:
    return [
        s
        for s in view.of_type(types.SNS_TOPIC_SUBSCRIPTION)
        if refers_to(topic, s.inputs.get("topic")) or (topic.urn and topic.urn in s.dependencies.get("topic", ()))
    ]


def _routed(view: StackView, alarm: Resource, prop: str) -> Iterator[tuple[Any, Resource | None]]:
    """(value, topic) for each SNS action of `alarm`'s `prop`; a value unknown before apply is found through the
    property's dependencies on topics instead."""
    values = alarm.inputs.get(prop)
    if values is UNKNOWN:
        values = [UNKNOWN]
    topics = view.of_type(types.SNS_TOPIC)
    for value in as_list(values):
        if value is UNKNOWN:
            for topic in (t for t in topics if t.urn and t.urn in alarm.dependencies.get(prop, ())):
                yield topic.name, topic
        elif is_topic_arn(value):
            yield value, next((t for t in topics if refers_to(t, value)), None)


@stack_rule(
    "alarms-notify-someone",
    "Every alarm sends ALARM (and OK) to an SNS topic of the stack that has at least one subscription.",
)
def alarms_notify_someone(view: StackView) -> Iterator[Violation]:
    for alarm in view.of_type(types.METRIC_ALARM):
        subscribed = False
        for prop in ("alarmActions", "okActions"):
            for value, topic in _routed(view, alarm, prop):
                if topic is None:
                    yield violation(alarm, prop, value, SUBSCRIBED, "a topic outside the stack cannot be checked")
                elif not subscriptions(view, topic):
                    yield violation(alarm, prop, value, SUBSCRIBED, f"topic {topic.name!r} has no subscription")
                elif prop == "alarmActions":
                    subscribed = True
        actions = alarm.inputs.get("alarmActions")
        known = actions is not UNKNOWN and all(a is not UNKNOWN for a in as_list(actions))
        if not subscribed and known and not any(is_topic_arn(a) for a in as_list(actions)):
            yield violation(alarm, "alarmActions", actions or None, SUBSCRIBED, "an alarm that notifies no one")


@stack_rule(
    "incident-topic-in-own-region",
    "The stack declares its incident topic in its own region, encrypted with a customer key, with a subscription.",
)
def incident_topic_in_own_region(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    name = naming.incident_topic_name(settings.region)
    topic = next((t for t in view.of_type(types.SNS_TOPIC) if t.inputs.get("name") == name), None)
    if topic is None:
        yield violation(
            None,
            f"SNS topic {name}",
            None,
            f"the incident topic in {settings.region}",
            "the tools tell an incident to the topic of the region that is alive",
        )
        return
    region = topic.inputs.get("region")
    if region not in (None, "", settings.region):
        yield violation(topic, "region", region, f"{settings.region!r} (the stack's region) or not set")
    if not topic.inputs.get("kmsMasterKeyId"):
        yield violation(topic, "kmsMasterKeyId", None, "a customer-managed KMS key, as the alarm topics have")
    if not subscriptions(view, topic):
        yield violation(topic, "subscriptions", 0, "at least 1 (drtopo:notifications.incidents)", "it tells no one")
