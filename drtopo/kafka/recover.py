"""Kafka after a cluster failure: recreate the topics a cluster lacks, move a consumer group to translated offsets."""

from __future__ import annotations

from pathlib import Path

from drtopo.kafka.offsets import (
    CheckpointError,
    apply_group_offsets,
    checkpoints_topic,
    read_checkpoints,
    translated_offsets,
)
from drtopo.kafka.topics import clusters, recreate_topics
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report, settings_for


def restore_topics(
    stack: str, outputs: StackOutputs, report: Report, cluster: str, dry_run: bool, project_dir: Path
) -> None:
    settings = settings_for(stack, project_dir)
    target = clusters(settings, outputs)[cluster]
    results = recreate_topics(target.bootstrap, settings.kafka.topics, dry_run)
    for r in results:
        report.check(f"topic {r.name}", r.ok, f"{r.action}{': ' + r.detail if r.detail else ''}", value=r.partitions)
    report.measured.update(
        cluster=cluster,
        bootstrap=target.bootstrap,
        existed=[r.name for r in results if r.action == "existed"],
        created=[r.name for r in results if r.action == "created"],
    )


def restore_offsets(
    stack: str,
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    group: str | None,
    dry_run: bool,
    project_dir: Path,
) -> None:
    """Move the group on the backup cluster, where MirrorMaker 2 writes the checkpoints of the source's offsets."""
    settings = settings_for(stack, project_dir)
    roles = clusters(settings, outputs)
    group = group or settings.kafka.consumer_group
    source_alias, target = roles["source"].alias, roles["backup"]
    try:
        with clock.step(f"read {checkpoints_topic(source_alias)} on {target.bootstrap}"):
            checkpoints = read_checkpoints(target.bootstrap, source_alias, group)
    except CheckpointError as exc:
        report.check("checkpoints", False, str(exc))
        return
    report.check("checkpoints", bool(checkpoints), f"{len(checkpoints)} partitions of group {group!r}")
    if not checkpoints:
        return
    with clock.step(f"apply offsets of {group} on {target.bootstrap}"):
        applied = apply_group_offsets(target.bootstrap, group, translated_offsets(checkpoints), dry_run)
    for tp, offset in applied.offsets.items():
        report.check(f"offset {tp}", True, f"previous {applied.previous.get(tp)}", value=offset)
    report.measured["offsets"] = applied.as_dict()
