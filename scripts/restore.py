"""`python -m scripts.restore dump|pitr|config|kafka-topics|consumer-offsets`: bring data and configuration back.

`dump` restores a verified dump from the dump bucket into a target database (refusing a non-empty one unless
`--clean`) and checks row counts against those stored with the dump. `pitr` restores the stack's database to a time
T: a new RDS instance, or for a self-managed PostgreSQL (the lab) base backup + WAL archive in a new data directory.
`config` brings the configuration files back byte for byte; `kafka-topics` recreates missing topics;
`consumer-offsets` moves a consumer group to the offsets MirrorMaker 2's checkpoints translate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import KafkaException

from drtopo.backup import config as config_backup
from drtopo.backup import store as dump_store
from drtopo.database import pg_tools, pitr
from drtopo.kafka.offsets import (
    CheckpointError,
    apply_group_offsets,
    checkpoints_topic,
    read_checkpoints,
    translated_offsets,
)
from drtopo.kafka.topics import CLUSTERS, clusters, recreate_topics
from drtopo.outputs import StackOutputs, load_outputs
from drtopo.report import BadInput, Clock, Report, Unsafe, main_guard, settings_for
from scripts.backup import OPERATIONAL_ERRORS, compare_counts
from scripts.cli import OneLineParser, parser

DESCRIPTION = "Restore a dump, a point in time, configuration, Kafka topics or consumer-group offsets."


def build_parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="python -m scripts.restore", description=DESCRIPTION)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        shared = parser("restore", help_text, changes_state=True)
        return sub.add_parser(name, help=help_text, description=help_text, parents=[shared], add_help=False)

    dump = command("dump", "restore a dump from the dump bucket into a database and check its row counts")
    dump.add_argument("key", help="object key in the dump bucket (see `backup list`)")
    dump.add_argument("--target", required=True, metavar="DSN", help="libpq connection string of the target database")
    dump.add_argument("--clean", action="store_true", help="drop the dump's objects in a non-empty target first")
    at = command("pitr", "restore the stack's database to a point in time, into a new instance")
    at.add_argument("--time", required=True, help="T, ISO 8601 with a zone, e.g. 2026-11-27T14:05:00Z")
    at.add_argument("--rds", action="store_true", help="use RDS restore-to-time even when outputs have selfManaged")
    at.add_argument("--target-dir", type=Path, help="self-managed: new data directory (default beside the source's)")
    at.add_argument("--target-port", type=_port, help="self-managed: port of the restored instance (default: free)")
    at.add_argument("--target-instance", help="RDS: identifier of the new instance (default <source>-pitr-<T>)")
    config = command("config", "restore the configuration files of the latest (or a given) config backup")
    config.add_argument("--prefix", help="backup prefix in the config bucket (default: the newest of the stack)")
    config.add_argument("--dest", type=Path, help="folder to restore into (default: DRTOPO_PROJECT_DIR)")
    config.add_argument("--force", action="store_true", help="overwrite files that exist with other content")
    topics = command("kafka-topics", "recreate the configured topics a cluster lacks (idempotent)")
    topics.add_argument("--cluster", choices=CLUSTERS, required=True)
    offsets = command("consumer-offsets", "set a group's offsets on the backup cluster from MirrorMaker 2 checkpoints")
    offsets.add_argument("--group", help="consumer group (default: the configured service group)")
    return top


def _port(text: str) -> int:
    if not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; expected 1024-65535")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    return main_guard(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    target_time = pitr.parse_target_time(args.time, datetime.now(UTC)) if args.command == "pitr" else None
    outputs = load_outputs(args.outputs, args.stack)
    report, clock = Report(), Clock()
    try:
        if args.command == "dump":
            restore_dump(outputs, report, clock, args.key, args.target, args.clean, args.dry_run)
        elif args.command == "pitr":
            assert target_time is not None
            restore_pitr(outputs, report, clock, target_time, args)
        elif args.command == "config":
            config_backup.restore(args.stack, outputs, report, clock, args.dry_run, args.prefix, args.dest, args.force)
        elif args.command == "kafka-topics":
            restore_topics(args.stack, outputs, report, args.cluster, args.dry_run)
        else:
            restore_offsets(args.stack, outputs, report, clock, args.group, args.dry_run)
    except (*OPERATIONAL_ERRORS, KafkaException) as exc:
        report.check(args.command, False, pg_tools.one_line(exc))
    report.measured["steps"] = clock.steps
    report.print_table()
    report.write(args.json_path)
    return report.exit_code()


def restore_dump(
    outputs: StackOutputs, report: Report, clock: Clock, key: str, target: str, clean: bool, dry_run: bool
) -> None:
    try:
        target_plain, secret = pg_tools.split_password(target)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"--target {target!r} is not a libpq connection string ({pg_tools.one_line(exc)})") from None
    try:
        conn = psycopg.connect(target_plain, password=secret, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise Unsafe(f"target {target_plain} is not reachable ({pg_tools.one_line(exc)})") from None
    with conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise Unsafe(f"target {target_plain} is a read-only standby; expected a writable database")
        existing = pg_tools.table_counts(conn)
    if existing and not clean:
        raise Unsafe(
            f"target {target_plain} is not empty ({len(existing)} tables, e.g. {next(iter(existing))}); "
            "pass --clean to drop the dump's objects there first"
        )
    s3 = dump_store.s3_client(outputs)
    stored = dump_store.head(s3, outputs.dump_bucket, key)
    if dry_run:
        report.check("plan", True, f"restore {key} into {target_plain}{' after --clean' if existing else ''}")
        return
    with tempfile.TemporaryDirectory(prefix="drtopo-restore-") as tmp:
        path = Path(tmp) / "dump"
        with clock.step("download"):
            digest = dump_store.download(s3, outputs.dump_bucket, key, path)
        intact = digest == stored.sha256
        report.check("sha256", intact, "matches metadata" if intact else f"got {digest}, metadata {stored.sha256}")
        if not intact:
            print(f"CORRUPT: dump {key} does not match its SHA-256; the target was not touched", file=sys.stderr)
            return
        with clock.step("pg_restore"):
            pg_tools.restore(path, target_plain, secret, clean=bool(existing))
    with psycopg.connect(target_plain, password=secret, autocommit=True) as conn:
        counts = pg_tools.table_counts(conn)
    compare_counts(report, {t: counts.get(t, 0) for t in stored.row_counts or counts}, stored.row_counts)
    report.measured.update(key=key, bytes=stored.size, restore_seconds=clock.steps[-1]["seconds"])


def restore_pitr(
    outputs: StackOutputs, report: Report, clock: Clock, target: datetime, args: argparse.Namespace
) -> None:
    use_rds = args.rds or outputs.self_managed is None
    if use_rds and (args.target_dir or args.target_port):
        raise BadInput("--target-dir/--target-port are for a self-managed restore; RDS takes --target-instance")
    if not use_rds and args.target_instance:
        raise BadInput(
            "--target-instance is for an RDS restore (add --rds); self-managed takes --target-dir/--target-port"
        )
    with clock.step(f"point-in-time restore to {target.isoformat()} ({'RDS' if use_rds else 'self-managed'})"):
        if use_rds:
            result = pitr.restore_rds(outputs, target, report, clock, args.target_instance, args.dry_run)
        else:
            assert outputs.self_managed is not None
            result = pitr.restore_self_managed(
                outputs, outputs.self_managed, target, report, clock, args.target_dir, args.target_port, args.dry_run
            )
    report.measured.update(result, restore_seconds=clock.steps[-1]["seconds"])


def restore_topics(stack: str, outputs: StackOutputs, report: Report, cluster: str, dry_run: bool) -> None:
    settings = settings_for(stack)
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
    stack: str, outputs: StackOutputs, report: Report, clock: Clock, group: str | None, dry_run: bool
) -> None:
    """Move the group on the backup cluster, where MirrorMaker 2 writes the checkpoints of the source's offsets."""
    settings = settings_for(stack)
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


if __name__ == "__main__":
    sys.exit(main())
