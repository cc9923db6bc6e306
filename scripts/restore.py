"""`python -m scripts.restore dump|pitr|config|kafka-topics|consumer-offsets`: bring data and configuration back.

`dump` restores a verified dump from the dump bucket into a target database (refusing a non-empty one unless
`--clean`) and checks row counts against the dump's manifest; a dump in GLACIER or DEEP_ARCHIVE is first restored
(RestoreObject) and waited for, with progress against the typical time of its class and tier. `pitr` restores the
stack's database to a time T: a new RDS instance, or for a self-managed PostgreSQL (the lab) base backup + WAL archive
in a new data directory; `--window` prints what can be restored, `--cutover` recovers from corruption end to end.
`config` brings the configuration files back byte for byte; `kafka-topics` recreates missing topics;
`consumer-offsets` moves a consumer group to the offsets MirrorMaker 2's checkpoints translate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import KafkaException

from drtopo.backup import config as config_backup
from drtopo.backup.dumps import OPERATIONAL_ERRORS
from drtopo.backup.restore import (
    WAL_SOURCES,
    ArchiveRetrieval,
    recover_with_cutover,
    recover_with_cutover_rds,
    restore_dump,
    restore_pitr,
    show_window,
)
from drtopo.backup.store import RETRIEVAL_TIERS
from drtopo.context import Context
from drtopo.database import pitr
from drtopo.errors import one_line
from drtopo.kafka.recover import restore_offsets, restore_topics
from drtopo.kafka.topics import CLUSTERS
from drtopo.outputs import load_outputs, peer_outputs
from drtopo.report import BadInput, Clock
from scripts.cli import OneLineParser, finish, main_guard, new_report, subcommands

DESCRIPTION = "Restore a dump, a point in time, configuration, Kafka topics or consumer-group offsets."


def build_parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="python -m scripts.restore", description=DESCRIPTION)
    add = subcommands(top, "restore")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return add(name, help_text, True)

    dump = command("dump", "restore a dump from the dump bucket into a database and check its row counts")
    dump.add_argument("key", help="object key in the dump bucket (see `backup list`)")
    dump.add_argument("--target", required=True, metavar="DSN", help="libpq connection string of the target database")
    dump.add_argument("--clean", action="store_true", help="drop the dump's objects in a non-empty target first")
    dump.add_argument(
        "--tier",
        choices=RETRIEVAL_TIERS,
        default="Standard",
        help="archived dumps (GLACIER, DEEP_ARCHIVE): the retrieval tier of the restore request (default Standard)",
    )
    dump.add_argument("--restore-days", type=_positive_int, default=2, help="days S3 keeps the restored copy")
    dump.add_argument(
        "--wait-seconds",
        type=_positive_float,
        help="how long to wait for the restored copy (default: the tier's longest typical time)",
    )
    dump.add_argument("--poll-seconds", type=_positive_float, help="how often to look (default: from the tier)")
    at = command("pitr", "restore the stack's database to a point in time, into a new instance")
    at.add_argument("--time", help="T, ISO 8601 with a zone, e.g. 2026-11-27T14:05:00Z (required unless --window)")
    at.add_argument(
        "--window",
        action="store_true",
        help="print the earliest and latest restorable times (and the base backup --time would use); restore nothing",
    )
    at.add_argument("--rds", action="store_true", help="use RDS restore-to-time even when outputs have selfManaged")
    at.add_argument(
        "--wal-source",
        choices=WAL_SOURCES,
        default="archive",
        help="self-managed: replay the server's archive folder (default) or the stack's WAL bucket alone (base "
        "backup and WAL from S3: what is left when the primary's host is gone); not with --cutover",
    )
    at.add_argument("--target-dir", type=Path, help="self-managed: new data directory (default beside the source's)")
    at.add_argument("--target-port", type=_port, help="self-managed: port of the restored instance (default: free)")
    at.add_argument("--target-instance", help="RDS: identifier of the new instance (default <source>-pitr-<T>)")
    at.add_argument(
        "--cutover",
        action="store_true",
        help="corruption recovery: re-apply the writes after T from the damaged database (never the damage), "
        "validate, then swap the restored instance into the damaged one's place (kept, renamed; RDS: the rename "
        "swap); with --dry-run: self-managed restores into a scratch instance and prints the rows it would "
        "re-apply, RDS prints the plan; nothing else changes",
    )
    at.add_argument(
        "--damage-xid",
        type=_xid,
        action="append",
        default=[],
        metavar="XID",
        help="with --cutover: the damaging transaction's id (pg_current_xact_id() or xmin); repeat for several",
    )
    config = command("config", "restore the configuration files of the latest (or a given) config backup")
    config.add_argument("--prefix", help="backup prefix in the config bucket (default: the newest of the stack)")
    config.add_argument("--dest", type=Path, help="folder to restore into (default: DRTOPO_PROJECT_DIR)")
    config.add_argument("--force", action="store_true", help="overwrite files that exist with other content")
    topics = command("kafka-topics", "recreate the configured topics a cluster lacks (idempotent)")
    topics.add_argument("--cluster", choices=CLUSTERS, required=True)
    offsets = command("consumer-offsets", "set a group's offsets on the backup cluster from MirrorMaker 2 checkpoints")
    offsets.add_argument("--group", help="consumer group (default: the configured service group)")
    return top


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _xid(text: str) -> int:
    if not text.isdigit() or int(text) < 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not a transaction id; expected an integer >= 3")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; expected 1024-65535")
    return int(text)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(_main, argv, "restore", ctx)


def _main(argv: Sequence[str] | None, ctx: Context) -> int:
    top = build_parser()
    args = top.parse_args(argv)
    if args.command == "pitr" and args.time is None and not args.window:
        top.error("pitr needs --time T (or --window to see what can be restored)")
    if args.command == "pitr" and args.damage_xid and not args.cutover:
        top.error("--damage-xid goes with --cutover")
    if args.command == "pitr" and args.cutover and args.wal_source != "archive":
        top.error(f"--wal-source {args.wal_source} is not for --cutover: the cutover replays the server's archive")
    target_time = pitr.parse_target_time(args.time, datetime.now(UTC)) if args.command == "pitr" and args.time else None
    outputs = load_outputs(args.outputs, args.stack)
    report, clock = new_report(ctx), Clock(ctx.reporter)
    try:
        if args.command == "dump":
            retrieval = ArchiveRetrieval(args.tier, args.restore_days, args.wait_seconds, args.poll_seconds)
            restore_dump(outputs, report, clock, args.key, args.target, args.clean, args.dry_run, retrieval)
        elif args.command == "pitr" and args.window:
            show_window(outputs, report, target_time, rds=args.rds, wal_source=args.wal_source)
        elif args.command == "pitr" and args.cutover and (args.rds or outputs.self_managed is None):
            assert target_time is not None
            if args.target_dir or args.target_port:
                raise BadInput("--target-dir/--target-port are for a self-managed restore; RDS takes --target-instance")
            recover_with_cutover_rds(
                outputs,
                report,
                clock,
                target_time,
                args.damage_xid,
                target_instance=args.target_instance,
                dry_run=args.dry_run,
            )
        elif args.command == "pitr" and args.cutover:
            assert target_time is not None
            if args.target_instance:
                raise BadInput("--target-instance is for an RDS restore (add --rds)")
            recover_with_cutover(
                outputs,
                report,
                clock,
                target_time,
                args.damage_xid,
                target_dir=args.target_dir,
                target_port=args.target_port,
                dry_run=args.dry_run,
                peer=peer_outputs(args.outputs, outputs.peer_stack),
            )
        elif args.command == "pitr":
            assert target_time is not None
            restore_pitr(
                outputs,
                report,
                clock,
                target_time,
                rds=args.rds,
                target_dir=args.target_dir,
                target_port=args.target_port,
                target_instance=args.target_instance,
                dry_run=args.dry_run,
                wal_source=args.wal_source,
            )
        elif args.command == "config":
            config_backup.restore(
                args.stack, outputs, report, clock, args.dry_run, args.prefix, args.dest, args.force, ctx.project_dir
            )
        elif args.command == "kafka-topics":
            restore_topics(args.stack, outputs, report, args.cluster, args.dry_run, ctx.project_dir)
        else:
            restore_offsets(args.stack, outputs, report, clock, args.group, args.dry_run, ctx.project_dir)
    except (*OPERATIONAL_ERRORS, KafkaException) as exc:
        report.check(args.command, False, one_line(exc))
    return finish(report, args.json_path, clock, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
