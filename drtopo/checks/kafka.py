"""The Kafka checks after a recovery, on the cluster now serving this stack: every configured topic present,
MirrorMaker 2 lag per mirrored topic (records behind), the consumer group's committed offsets valid per partition.

Offsets and lag come from `drtopo.kafka.lag`. The mirror flows from the primary's cluster into the standby's: for a
standby stack it is measured from the peer into this cluster; for a primary stack from this cluster into the peer's,
and skipped (reported as a skip, never a pass) when the peer cluster is down, as it is while the peer region is lost.
"""

from __future__ import annotations

import socket

from confluent_kafka import KafkaException

from drtopo.kafka import admin as kafka_admin
from drtopo.kafka import lag as kafka_lag
from drtopo.outputs import StackOutputs
from drtopo.report import Report
from drtopo.settings import Settings

PROBE_TIMEOUT = 2.0


def _reason(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def unreachable(bootstrap: str) -> str | None:
    """Why no broker of `bootstrap` accepts a TCP connection (None when one does).

    Probed first so a cluster that is down fails in milliseconds instead of the Kafka client's retries and timeouts.
    """
    reasons = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT):
                return None
        except (OSError, ValueError) as exc:
            reasons.append(f"{server.strip()}: {exc}")
    return "; ".join(reasons) or f"bootstrap {bootstrap!r} names no server"


def topics_check(report: Report, bootstrap: str, topics: tuple[str, ...]) -> bool:
    """`kafka.topics`: every configured topic exists on `bootstrap`; False when the cluster is unreachable."""
    down = unreachable(bootstrap)
    if down:
        report.check("kafka.topics", False, f"cluster {bootstrap} unreachable: {down}", limit=len(topics))
        return False
    try:
        present = {p.topic for p in kafka_admin.partitions(bootstrap, topics)}
    except KafkaException as exc:
        report.check("kafka.topics", False, f"cluster {bootstrap} unreachable: {_reason(exc)}", limit=len(topics))
        return False
    missing = [t for t in topics if t not in present]
    detail = f"missing: {', '.join(missing)}" if missing else f"all {len(topics)} topics on {bootstrap}"
    report.check("kafka.topics", not missing, detail, value=len(topics) - len(missing), limit=len(topics))
    return True


def mirror_checks(report: Report, settings: Settings, outputs: StackOutputs, max_lag: int) -> None:
    """`kafka.mirror_lag.<topic>`: records the target cluster is behind the source, per mirrored topic."""
    topics = settings.kafka.mirrored_topics
    if settings.is_primary:
        source, target = outputs.kafka_bootstrap, outputs.peer_kafka_bootstrap
    else:
        source, target = outputs.peer_kafka_bootstrap, outputs.kafka_bootstrap
    down = unreachable(source) or unreachable(target)
    try:
        lag = {} if down else kafka_lag.mirrormaker_lag(source, target, topics)
    except KafkaException as exc:
        down = _reason(exc)
    if down:
        if settings.is_primary:
            report.skip(
                "kafka.mirror_lag", f"not measured: this stack is primary and its mirror to {target} is down ({down})"
            )
        else:
            report.check("kafka.mirror_lag", False, f"{source} -> {target} unmeasurable: {down}")
        return
    report.measured["mirror_lag_records"] = lag
    for topic in topics:
        behind = lag.get(topic)
        if behind is None:
            report.check(f"kafka.mirror_lag.{topic}", False, f"topic missing on the source {source}", limit=max_lag)
        else:
            report.check(
                f"kafka.mirror_lag.{topic}", behind <= max_lag, f"{source} -> {target}", value=behind, limit=max_lag
            )


def offsets_check(report: Report, bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
    """`kafka.group_offsets`: every committed offset of the group lies within its partition's log."""
    try:
        parts = kafka_lag.consumer_group_lag(bootstrap, group, topics)
    except KafkaException as exc:
        report.check("kafka.group_offsets", False, f"group {group} on {bootstrap}: {_reason(exc)}")
        return
    committed = [p for p in parts if p.committed is not None]
    invalid = [p for p in committed if not p.valid]
    report.measured["group_offsets"] = [p.as_dict() for p in parts]
    detail = (
        "outside the log: " + ", ".join(f"{p.partition} at {p.committed} not in [{p.low}, {p.high}]" for p in invalid)
        if invalid
        else f"{len(committed)} of {len(parts)} partitions committed, all within the log"
    )
    report.check("kafka.group_offsets", not invalid, detail, value=len(invalid), limit=0)


def kafka_checks(report: Report, settings: Settings, outputs: StackOutputs, max_lag: int) -> None:
    topics = tuple(t.name for t in settings.kafka.topics)
    if topics_check(report, outputs.kafka_bootstrap, topics):
        offsets_check(report, outputs.kafka_bootstrap, settings.kafka.consumer_group, topics)
    mirror_checks(report, settings, outputs, max_lag)
