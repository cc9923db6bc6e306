"""Encrypted SNS topics in the stack's own region, and their subscribers from settings (drtopo:notifications).

The alarm topics (database, DNS failover) are what CloudWatch alarms publish to; the incident topic is where
promote, failback, cutover and drills tell people that an incident started, moved on or ended. CloudWatch cannot
publish to a topic encrypted with the AWS-managed `aws/sns` key, so each topic gets its own customer key, whose
policy lets CloudWatch encrypt where alarms publish. Each subscription is declared beside its topic, in the same
region: a topic with no subscriber tells no one (the policy pack refuses an alarm routed to one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
from pulumi_aws import sns

from components.kms import EncryptionKey, EncryptionKeyArgs
from drtopo.settings import Subscription

CLOUDWATCH = ("cloudwatch.amazonaws.com",)


@dataclass(frozen=True)
class AlertTopicArgs:
    """`alias` names the topic's key (without `alias/`); `region` None means the stack's region; `name` None lets
    Pulumi name the topic; `service_principals` may encrypt with its key (CloudWatch, for alarm topics)."""

    description: str
    alias: str
    region: str | None = None
    subscriptions: tuple[Subscription, ...] = ()
    name: str | None = None
    service_principals: tuple[str, ...] = CLOUDWATCH


def subscription_name(topic: str, subscription: Subscription) -> str:
    """A logical name that follows the subscriber, not its place in the list: removing one replaces no other."""
    digest = hashlib.sha256(f"{subscription.protocol.value}:{subscription.endpoint}".encode()).hexdigest()[:10]
    return f"{topic}-{subscription.protocol.value}-{digest}"


class AlertTopic(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlertTopicArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:alerts:AlertTopic", name, None, opts)
        key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(
                description=args.description,
                alias=args.alias,
                region=args.region,
                service_principals=args.service_principals,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        topic = sns.Topic(
            name,
            name=args.name,
            display_name=args.description,
            kms_master_key_id=key.arn,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        for subscription in args.subscriptions:
            sns.TopicSubscription(
                subscription_name(name, subscription),
                topic=topic.arn,
                protocol=subscription.protocol.value,
                endpoint=subscription.endpoint,
                region=args.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.topic_arn = topic.arn
        self.register_outputs({"topicArn": topic.arn, "keyArn": key.arn})
