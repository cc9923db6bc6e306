"""An encrypted SNS topic that CloudWatch alarms publish to, in the region where the alarms live.

CloudWatch cannot publish to a topic encrypted with the AWS-managed `aws/sns` key, so the topic gets its own
customer key whose policy lets CloudWatch encrypt. Subscriptions (pager, chat) are added by the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import sns

from components.kms import EncryptionKey, EncryptionKeyArgs


@dataclass(frozen=True)
class AlertTopicArgs:
    """`alias` names the topic's key (without `alias/`); `region` None means the stack's region."""

    description: str
    alias: str
    region: str | None = None


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
                service_principals=("cloudwatch.amazonaws.com",),
            ),
            pulumi.ResourceOptions(parent=self),
        )
        topic = sns.Topic(
            name,
            display_name=args.description,
            kms_master_key_id=key.arn,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.topic_arn = topic.arn
        self.register_outputs({"topicArn": topic.arn, "keyArn": key.arn})
