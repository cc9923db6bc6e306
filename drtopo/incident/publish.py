"""Sending a message to a region's incident topic: a data-plane call in that region that never raises.

A notification that cannot be sent must never block or fail a recovery, so `publish` returns a `Delivery` (sent
with SNS's message id, or not sent with the reason); an `Outbox` keeps what was not sent and tries it again at the
command's next step, and `record_notices` puts each attempt in the report (a SKIP when not sent).
Pass a client made by `drtopo.aws.client("sns", region)`: its short timeouts and bounded retries keep a dead region
from holding the recovery. A topic in another region than the client's is not sent to: the messages go to the
region that is alive, and a cross-region call would reach for the one that may be gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.errors import one_line
from drtopo.incident.facts import MessageKind
from drtopo.incident.messages import Message
from drtopo.incident.record import Notice
from drtopo.report import Report

log = logging.getLogger(__name__)

# SNS refuses a subject of 100 characters or more, with a line break or a character outside printable ASCII.
SUBJECT_LIMIT = 99
# SNS refuses a message above 256 KiB (UTF-8 bytes).
MESSAGE_LIMIT_BYTES = 256 * 1024
TRUNCATED = "\n[truncated: the message was longer than SNS accepts]\n"
_ASCII = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."}


class SnsClient(Protocol):
    """What `publish` uses of a boto3 SNS client."""

    meta: Any

    def publish(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Delivery:
    """The fate of one message: sent (detail: SNS's message id) or not (detail: why, in one line)."""

    sent: bool
    topic_arn: str
    detail: str


def sns_subject(subject: str) -> str:
    """`subject` as SNS accepts it: one line of printable ASCII, shorter than 100 characters."""
    text = "".join(_ASCII.get(c, c) for c in " ".join(subject.split()))
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= SUBJECT_LIMIT else text[: SUBJECT_LIMIT - 3] + "..."


def sns_message(body: str) -> str:
    """`body` cut to what SNS accepts, saying so when it was cut."""
    data = body.encode()
    if len(data) <= MESSAGE_LIMIT_BYTES:
        return body
    room = MESSAGE_LIMIT_BYTES - len(TRUNCATED.encode())
    return data[:room].decode(errors="ignore") + TRUNCATED


def topic_region(topic_arn: str) -> str | None:
    """The region of an SNS topic ARN (`arn:aws:sns:<region>:<account>:<name>`), None when it is not one."""
    parts = topic_arn.split(":")
    return parts[3] if len(parts) == 6 and parts[0] == "arn" and parts[2] == "sns" and parts[3] else None


def publish(client: SnsClient, topic_arn: str | None, message: Message) -> Delivery:
    """Publish `message` to `topic_arn` with `client`; never raises (a failure is a Delivery not sent)."""
    if not topic_arn:
        return Delivery(False, "", "no incident topic in the stack outputs (incidentTopicArn); run pulumi up")
    region = topic_region(topic_arn)
    if region is None:
        return Delivery(False, topic_arn, f"{topic_arn!r} is not an SNS topic ARN")
    client_region = getattr(getattr(client, "meta", None), "region_name", None)
    if client_region != region:
        return Delivery(
            False, topic_arn, f"the topic is in {region} but the client in {client_region}; expected the same region"
        )
    try:
        answer = client.publish(
            TopicArn=topic_arn, Subject=sns_subject(message.subject), Message=sns_message(message.body)
        )
    except (BotoCoreError, ClientError) as exc:
        log.warning("publish to %s failed: %s", topic_arn, one_line(exc))
        return Delivery(False, topic_arn, one_line(exc))
    except Exception as exc:  # a notification never stops a recovery, whatever the client raised
        log.exception("publish to %s failed unexpectedly", topic_arn)
        return Delivery(False, topic_arn, f"{type(exc).__name__}: {one_line(exc)}")
    return Delivery(True, topic_arn, str(answer.get("MessageId", "")))


@dataclass
class Outbox:
    """The messages of one run to one incident topic, in order: a message not sent stays pending and is tried again,
    before any newer one, at the next `post` (the command posts at each step), so a brief outage of SNS delays the
    start message instead of losing it. Every attempt is returned as a Notice for the report and the record."""

    client: SnsClient
    topic_arn: str | None
    pending: list[tuple[MessageKind, Message]] = field(default_factory=list)

    def post(self, kind: MessageKind, message: Message, at: datetime) -> list[Notice]:
        """Queue `message` and send what is pending in order, stopping at the first not sent."""
        self.pending.append((kind, message))
        return self.flush(at)

    def flush(self, at: datetime) -> list[Notice]:
        """Try the pending messages in order; the first not sent and those after it stay pending."""
        notices = []
        while self.pending:
            kind, message = self.pending[0]
            delivery = publish(self.client, self.topic_arn, message)
            notices.append(Notice(kind, at, delivery.sent, delivery.detail))
            if not delivery.sent:
                break
            self.pending.pop(0)
        return notices


def record_notices(report: Report, notices: list[Notice]) -> None:
    """Each attempt as a check of the report: sent is a pass, not sent a SKIP with the reason (never a failure: a
    notification never fails a recovery)."""
    for notice in notices:
        name = f"notify {notice.kind.value}"
        if notice.sent:
            report.check(name, True, f"sent to the incident topic (message {notice.detail})")
        else:
            report.skip(name, f"not sent: {notice.detail} (tried again at the next step)")
