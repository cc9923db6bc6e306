"""The Kafka checks after a recovery, on the cluster now serving this stack: every configured topic present,
MirrorMaker 2 lag per mirrored topic (records behind, and how old the oldest record not yet copied is), the consumer
group's committed offsets valid per partition.

Offsets and lag come from `drtopo.kafka.lag`. The mirror flows from the primary's cluster into the standby's: for a
standby stack it is measured from the peer into this cluster; for a primary stack from this cluster into the peer's,
and skipped (reported as a skip, never a pass) when the peer cluster is down, as it is while the peer region is lost.
Lag is reported only of a flow that runs (`kafka.mirror_flow`, from its Connect status: `drtopo.kafka.flow`): a
standby whose flow stopped fails; a primary whose flow is not rebuilt yet gets a skip.

All Kafka I/O runs in one child process (`drtopo.kafka.isolated`): a crash of the Kafka client library (a SIGSEGV
inside librdkafka) or a hang fails the check it happened in with a one-line reason, a fresh child runs the checks
after it, and the rest of the report still prints.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from confluent_kafka import KafkaException

from drtopo.kafka import admin as kafka_admin
from drtopo.kafka import flow as kafka_flow
from drtopo.kafka import isolated
from drtopo.kafka import lag as kafka_lag
from drtopo.kafka.offsets import OffsetSyncError
from drtopo.mm2_properties import cluster_alias, mirror_flow, render_mm2_properties
from drtopo.outputs import StackOutputs
from drtopo.report import Report
from drtopo.settings import Settings

PROBE_TIMEOUT = 2.0
# The checks in the order they run; each is one item of the isolated child's stream.
TOPICS, GROUP_OFFSETS, MIRROR_FLOW, MIRROR_LAG = (
    "kafka.topics",
    "kafka.group_offsets",
    "kafka.mirror_flow",
    "kafka.mirror_lag",
)
STEPS = (TOPICS, GROUP_OFFSETS, MIRROR_FLOW, MIRROR_LAG)
# Longest a step may go without an answer: a few Kafka calls of admin.TIMEOUT each, plus the child's start-up.
STEP_TIMEOUT = 90.0


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
        report.check(TOPICS, False, f"cluster {bootstrap} unreachable: {down}", limit=len(topics))
        return False
    try:
        present = {p.topic for p in kafka_admin.partitions(bootstrap, topics)}
    except KafkaException as exc:
        report.check(TOPICS, False, f"cluster {bootstrap} unreachable: {_reason(exc)}", limit=len(topics))
        return False
    missing = [t for t in topics if t not in present]
    detail = f"missing: {', '.join(missing)}" if missing else f"all {len(topics)} topics on {bootstrap}"
    report.check(TOPICS, not missing, detail, value=len(topics) - len(missing), limit=len(topics))
    return True


def mirror_offset_syncs(settings: Settings, source: str, target: str) -> kafka_lag.OffsetSyncs:
    """Where the running flow (primary -> standby) keeps its offset syncs, as the rendered mm2.properties say.

    Both directions are rendered by the same function, so the location this stack's text gives its own flow is the
    location of the flow that runs.
    """
    text_source, text_target = mirror_flow(settings)
    location = kafka_lag.offset_syncs_location(render_mm2_properties(settings), f"{text_source}->{text_target}")
    if settings.is_primary:
        aliases = cluster_alias(settings.region), cluster_alias(settings.peer_region)
    else:
        aliases = text_source, text_target
    return kafka_lag.flow_offset_syncs(location, source, target, *aliases)


def _age(seconds: float | None) -> str:
    return "of unknown age" if seconds is None else f"{seconds:.1f} s old"


def _flow(settings: Settings, outputs: StackOutputs) -> tuple[str, str, str, str]:
    """(source bootstrap, target bootstrap, source alias, target alias) of the flow this stack's role concerns:
    into this region while it is the standby, out of it while it is the primary."""
    own, peer = cluster_alias(settings.region), cluster_alias(settings.peer_region)
    if settings.is_primary:
        return outputs.kafka_bootstrap, outputs.peer_kafka_bootstrap, own, peer
    return outputs.peer_kafka_bootstrap, outputs.kafka_bootstrap, peer, own


def flow_check(report: Report, settings: Settings, outputs: StackOutputs) -> bool | None:
    """`kafka.mirror_flow`: the MirrorMaker 2 flow the lag checks measure runs (its Connect status on the target).

    A standby's flow (peer -> here) must run: a fail when it does not. A primary's flow (here -> peer) runs only once
    the peer region is back and mirroring is rebuilt: a skip until then, never a pass. Returns whether it runs
    (None: not known).
    """
    _source, target, source_alias, target_alias = _flow(settings, outputs)
    down = unreachable(target)
    if down is None:
        try:
            state = kafka_flow.flow_state(target, source_alias, target_alias)
        except (KafkaException, TimeoutError) as exc:
            down = _reason(exc)
        else:
            report.measured["mirror_flow"] = {"flow": state.flow, "running": state.running, "states": state.states}
            if state.running or not settings.is_primary:
                report.check(MIRROR_FLOW, state.running, state.describe(), value="running" if state.running else "not")
            else:
                report.skip(MIRROR_FLOW, f"not running: this stack is primary and {state.describe()}")
            return state.running
    flow = f"{source_alias}->{target_alias}"
    if settings.is_primary:
        report.skip(MIRROR_FLOW, f"not known: this stack is primary and the target of {flow} is down ({down})")
    else:
        report.check(MIRROR_FLOW, False, f"flow {flow} unknown: its target {target} does not answer ({down})")
    return None


def mirror_checks(
    report: Report, settings: Settings, outputs: StackOutputs, max_lag: int, running: bool | None = None
) -> None:
    """`kafka.mirror_lag.<topic>`: records the target cluster is behind the source, per mirrored topic.

    The value is records behind (limit `max_lag`); the detail and `measured["mirror_lag_seconds"]` say how old the
    oldest record not yet copied is. A primary's lag is measured only for a flow that runs (`running`): the offsets of
    a flow that stopped say nothing of the mirror, so they are a skip, never a pass.
    """
    topics = settings.kafka.mirrored_topics
    source, target, source_alias, target_alias = _flow(settings, outputs)
    if settings.is_primary and running is False:
        report.skip(
            MIRROR_LAG, f"not measured: this stack is primary and flow {source_alias}->{target_alias} is not running"
        )
        return
    down = unreachable(source) or unreachable(target)
    lag = None
    if not down:
        try:
            syncs = mirror_offset_syncs(settings, source, target)
            lag = kafka_lag.measure_mirror_lag(source, target, topics, syncs, settings.kafka.mirror.offset_lag_max)
        except (KafkaException, OffsetSyncError, TimeoutError) as exc:
            down = _reason(exc)
    if lag is None:
        if settings.is_primary:
            report.skip(MIRROR_LAG, f"not measured: this stack is primary and its mirror to {target} is down ({down})")
        else:
            report.check(MIRROR_LAG, False, f"{source} -> {target} unmeasurable: {down}")
        return
    report.measured["mirror_lag_records"] = lag.records
    report.measured["mirror_lag_seconds"] = lag.seconds
    for topic in topics:
        name, behind = f"{MIRROR_LAG}.{topic}", lag.records.get(topic)
        if behind is None:
            report.check(name, False, f"topic missing on the source {source}", limit=max_lag)
            continue
        state = f"the oldest not copied is {_age(lag.seconds.get(topic))}" if behind else "caught up"
        report.check(name, behind <= max_lag, f"{source} -> {target}: {state}", value=behind, limit=max_lag)


def offsets_check(report: Report, bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
    """`kafka.group_offsets`: every committed offset of the group lies within its partition's log."""
    try:
        parts = kafka_lag.consumer_group_lag(bootstrap, group, topics)
    except KafkaException as exc:
        report.check(GROUP_OFFSETS, False, f"group {group} on {bootstrap}: {_reason(exc)}")
        return
    committed = [p for p in parts if p.committed is not None]
    invalid = [p for p in committed if not p.valid]
    report.measured["group_offsets"] = [p.as_dict() for p in parts]
    detail = (
        "outside the log: " + ", ".join(f"{p.partition} at {p.committed} not in [{p.low}, {p.high}]" for p in invalid)
        if invalid
        else f"{len(committed)} of {len(parts)} partitions committed, all within the log"
    )
    report.check(GROUP_OFFSETS, not invalid, detail, value=len(invalid), limit=0)


def run_steps(settings: Settings, outputs: StackOutputs, max_lag: int, first: int) -> Iterator[Report]:
    """The child's side: STEPS from index `first` on, each step's checks in a Report of their own.

    The group offsets are read only when the topics step found the cluster reachable (or did not run here).
    """
    topics = tuple(t.name for t in settings.kafka.topics)
    reachable = True
    running: bool | None = None
    for step in STEPS[first:]:
        part = Report()
        if step == TOPICS:
            reachable = topics_check(part, outputs.kafka_bootstrap, topics)
        elif step == GROUP_OFFSETS:
            if reachable:
                offsets_check(part, outputs.kafka_bootstrap, settings.kafka.consumer_group, topics)
        elif step == MIRROR_FLOW:
            running = flow_check(part, settings, outputs)
        else:
            mirror_checks(part, settings, outputs, max_lag, running)
        yield part


def kafka_checks(report: Report, settings: Settings, outputs: StackOutputs, max_lag: int) -> None:
    """Every Kafka check, run in an isolated child; a step whose child dies or hangs fails with the reason.

    After a failed step a fresh child runs the steps after it, so at most len(STEPS) children ever start.
    """
    first = 0
    while first < len(STEPS):
        done = 0
        try:
            for part in isolated.stream(
                run_steps, settings, outputs, max_lag, first, timeout=STEP_TIMEOUT, what="the Kafka checks"
            ):
                for c in part.checks:
                    report.record(c.name, c.outcome, c.detail, c.value, c.limit)
                report.measured.update(part.measured)
                done += 1
            return
        except isolated.IsolatedError as exc:
            if first + done == len(STEPS):  # died after its last answer: every check is in
                return
            failed = STEPS[first + done]
            report.check(failed, False, f"{exc.reason} in {failed}")
            first += done + 1
