"""`python -m scripts.restore dump|pitr|cleanup|config|namespace|secrets|kafka-topics|consumer-offsets|kafka-failover`:
bring data, configuration and Secrets back.

`dump` restores a verified dump from the dump bucket into a target database (refusing a non-empty one unless
`--clean`) and checks row counts against the dump's manifest; a dump in GLACIER or DEEP_ARCHIVE is first restored
(RestoreObject) and waited for, with progress against the typical time of its class and tier. `pitr` restores the
stack's database to a time T: a new RDS instance, or for a self-managed PostgreSQL (the lab) base backup + WAL archive
in a new data directory; `--window` prints what can be restored, `--find-damage` lists the transactions committed
around a time (read from the WAL, changing nothing), `--cutover` recovers from corruption end to end (journalled:
a rerun after a crash resumes it). `cleanup` removes the damaged copy and scratch WAL a cutover left.
`config` brings the configuration files back byte for byte and applies the namespace's objects in dependency order;
`namespace` rebuilds a lost namespace from the newest config backup and waits for its rollouts (stack files untouched);
`secrets` writes the Secrets the program declares (drtopo:secrets) from Secrets Manager in the stack's region (never
from a backup; `config` does it too, before the workloads); `kafka-topics` recreates missing topics;
`consumer-offsets` moves a consumer group to the offsets MirrorMaker 2's checkpoints translate; `kafka-failover` moves
the stack's application to the backup cluster (those offsets first, then its endpoints ConfigMap and a restart).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import KafkaException

from drtopo.backup import config as config_backup
from drtopo.backup import namespace
from drtopo.backup import secrets as secret_store
from drtopo.backup.dumps import OPERATIONAL_ERRORS
from drtopo.backup.restore import (
    ArchiveRetrieval,
    cleanup,
    find_damage,
    recover_with_cutover,
    restore_dump,
    restore_pitr,
    show_window,
)
from drtopo.backup.store import RETRIEVAL_TIERS
from drtopo.context import Context
from drtopo.database.pitr.damage import DEFAULT_WIDTH
from drtopo.database.pitr.request import WAL_SOURCES, BadFlags, PitrRequest
from drtopo.errors import one_line
from drtopo.incident.facts import MessageKind
from drtopo.incident.notify import cutover_ended, cutover_notifier
from drtopo.kafka.app_switch import ROLLOUT_TIMEOUT_S, KubeError, move_application
from drtopo.kafka.recover import restore_offsets, restore_topics
from drtopo.kafka.topics import CLUSTERS
from drtopo.outputs import StackOutputs, load_outputs, peer_outputs
from drtopo.report import Clock, Report
from drtopo.settings import load_settings
from scripts.cli import OneLineParser, command_line, finish, main_guard, new_report, operator, subcommands

# The configuration-loss objective (30 min) bounds a namespace rebuild; the default waits a third of it.
NAMESPACE_WAIT_SECONDS = 600.0
DESCRIPTION = "Restore a dump, a point in time, configuration, a namespace, Kafka topics or consumer-group offsets."


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
    at = command(
        "pitr",
        "restore the stack's database to a point in time, into a new instance (or, with --cutover, in its place). On a "
        "self-managed primary a restore, --window and a --cutover (its --dry-run too) first write a marker commit and "
        "force a WAL switch (pg_switch_wal) so that the archive reaches T; --find-damage and a plain --dry-run write "
        "nothing",
    )
    at.add_argument(
        "--time",
        help="T, ISO 8601 with a zone, e.g. 2026-11-27T14:05:00Z (required unless --window, --find-damage, or "
        "--cutover with --damage-xid, which takes T from that transaction's commit)",
    )
    at.add_argument(
        "--window",
        action="store_true",
        help="print the earliest and latest restorable times (and the base backup --time would use); restores "
        "nothing, but on a self-managed primary it writes a marker commit and forces a WAL switch (pg_switch_wal) so "
        "that the archive reaches now",
    )
    at.add_argument(
        "--find-damage",
        action="store_true",
        help="self-managed: list the transactions committed around --around, biggest first, with rows inserted, "
        "updated and deleted per table (pg_waldump over the archive, or --wal-source bucket, and the server's "
        "pg_wal); read-only: no marker commit, no WAL switch. Pick the damaging xid for --cutover --damage-xid",
    )
    at.add_argument(
        "--around", metavar="TIME", help="with --find-damage: the time to look around (ISO 8601 with a zone; now)"
    )
    at.add_argument(
        "--width",
        type=_positive_float,
        default=DEFAULT_WIDTH.total_seconds(),
        metavar="SECONDS",
        help=f"with --find-damage: the window's width, centred on --around (default {DEFAULT_WIDTH.seconds})",
    )
    at.add_argument(
        "--table",
        action="append",
        default=[],
        help="with --find-damage: only transactions writing this table (repeat for several)",
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
        "swap); holds the failover lock of both stacks (no promote or failback meanwhile). With --dry-run: "
        "self-managed restores into a scratch instance and prints the rows it would re-apply, RDS prints the plan; "
        "the service is left alone, but the primary gets a marker commit and a forced WAL switch (so the archive "
        "reaches T)",
    )
    at.add_argument(
        "--damage-xid",
        type=_xid,
        action="append",
        default=[],
        metavar="XID",
        help="with --cutover: the damaging transaction's id (from --find-damage, pg_current_xact_id() or xmin); "
        "repeat for several. Without --time, T is just before the earliest one's commit, read from the WAL",
    )
    at.add_argument(
        "--restart",
        action="store_true",
        help="with --cutover: drop an interrupted cutover's journal instead of resuming it (needed once it is older "
        "than failover.journalMaxAgeHours). Before its swap, the restored instance it left (never served) is stopped "
        "and removed and a new cutover runs; after its swap nothing is cut over again: the run says what it left "
        "undone",
    )
    at.add_argument(
        "--break-lock",
        action="store_true",
        help="with --cutover: take the failover lock from a run that is gone for good (as promote and failback do). "
        "Safe only once you have checked that the run the refusal names (its operation, pid and host) is no longer "
        "running; a lock left by a run that died on this machine is taken over without it",
    )
    for action in at._actions:  # the shared --dry-run says "change nothing"; a pitr dry run writes to the primary
        if action.dest == "dry_run":
            action.help = (
                "print the plan, changing nothing; with --cutover it restores into a scratch instance (removed "
                "after) and, on a self-managed primary, writes a marker commit and forces a WAL switch (pg_switch_wal) "
                "so that the archive reaches T"
            )
    clean = command(
        "cleanup",
        "remove what a cutover left beside the data directory: the damaged copy <data dir>-damaged-<T> and the "
        "scratch WAL pitr-<T>.wal (never the live data directory); try --dry-run first",
    )
    clean.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="the folders the cutover named (default: every damaged copy and scratch WAL folder found there)",
    )
    config = command("config", "restore the configuration files of the latest (or a given) config backup")
    config.add_argument("--prefix", help="backup prefix in the config bucket (default: the newest of the stack)")
    config.add_argument(
        "--dest", type=Path, help="folder to restore into (default: the project folder, DRTOPO_PROJECT_DIR when set)"
    )
    config.add_argument("--force", action="store_true", help="overwrite files that exist with other content")
    rebuild = command(
        "namespace",
        "rebuild the stack's lost namespace from the newest (or a given) config backup: wait until a namespace being "
        "deleted is gone, apply its objects in dependency order (the Secrets from Secrets Manager before the "
        "workloads), then wait for every rollout; the stack files are left alone",
    )
    rebuild.add_argument("--prefix", help="backup prefix in the config bucket (default: the newest of the stack)")
    rebuild.add_argument(
        "--wait-seconds",
        type=_positive_float,
        default=NAMESPACE_WAIT_SECONDS,
        help=f"deadline for the whole rebuild: termination, apply and rollouts (default {NAMESPACE_WAIT_SECONDS:g})",
    )
    rebuild.add_argument(
        "--force", action="store_true", help="re-apply the backup over a namespace that exists and is Active"
    )
    command(
        "secrets",
        "write the namespace's declared Secrets (drtopo:secrets) from Secrets Manager in the stack's region",
    )
    topics = command("kafka-topics", "recreate the configured topics a cluster lacks (idempotent)")
    topics.add_argument("--cluster", choices=CLUSTERS, required=True)
    offsets = command("consumer-offsets", "set a group's offsets on the backup cluster from MirrorMaker 2 checkpoints")
    offsets.add_argument("--group", help="consumer group (default: the configured service group)")
    move = command(
        "kafka-failover",
        "move the stack's application to the backup Kafka cluster: translate the group's offsets, switch the "
        "endpoints ConfigMap, restart the Deployment and wait for its rollout",
    )
    move.add_argument(
        "--rollout-timeout", type=_positive_float, default=ROLLOUT_TIMEOUT_S, help="seconds to wait for the rollout"
    )
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


@dataclass(frozen=True)
class Run:
    """What a subcommand's handler gets: its flags, the stack's outputs, the report and clock, the context."""

    args: argparse.Namespace
    outputs: StackOutputs
    report: Report
    clock: Clock
    ctx: Context
    pitr: PitrRequest | None = None


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(_main, argv, "restore", ctx)


def _main(argv: Sequence[str] | None, ctx: Context) -> int:
    top = build_parser()
    args = top.parse_args(argv)
    request = _pitr_request(top, args) if args.command == "pitr" else None
    outputs = load_outputs(args.outputs, args.stack)
    run = Run(args, outputs, new_report(ctx), Clock(ctx.reporter), ctx, request)
    # A real cutover is an incident: its start and end go to the stack's incident topic, its record beside the JSON.
    notifier = None
    if request is not None and request.cutover and not request.dry_run:
        command = command_line("restore", argv)
        notifier = cutover_notifier(outputs, ctx, run.report, command=command, operator=operator())
        notifier.send(MessageKind.START)
    try:
        HANDLERS[args.command](run)
    except (*OPERATIONAL_ERRORS, KafkaException, KubeError) as exc:
        run.report.check(args.command, False, one_line(exc))
    if notifier is not None:
        cutover_ended(notifier, run.clock)
    code = finish(run.report, args.json_path, run.clock, strict=args.strict)
    if notifier is not None:
        notifier.write_record(args.json_path)
    return code


def _pitr_request(top: argparse.ArgumentParser, args: argparse.Namespace) -> PitrRequest:
    """The validated request; flags that do not go together are a usage error, a bad --time bad input."""
    try:
        return PitrRequest.parse(
            args.time,
            datetime.now(UTC),
            window=args.window,
            rds=args.rds,
            wal_source=args.wal_source,
            target_dir=args.target_dir,
            target_port=args.target_port,
            target_instance=args.target_instance,
            cutover=args.cutover,
            damage_xids=tuple(args.damage_xid),
            dry_run=args.dry_run,
            find_damage=args.find_damage,
            around=args.around,
            width=timedelta(seconds=args.width),
            tables=tuple(args.table),
            restart=args.restart,
            break_lock=args.break_lock,
        )
    except BadFlags as exc:
        top.error(str(exc))


def _dump(run: Run) -> None:
    a = run.args
    retrieval = ArchiveRetrieval(a.tier, a.restore_days, a.wait_seconds, a.poll_seconds)
    for line in restore_dump(run.outputs, run.report, run.clock, a.key, a.target, a.clean, a.dry_run, retrieval):
        print(line, file=sys.stderr)


def _pitr(run: Run) -> None:
    request = run.pitr
    assert request is not None  # made by _main for this subcommand
    if request.find_damage:
        _show(find_damage(run.outputs, run.report, request))
    elif request.window:
        shown = show_window(run.outputs, run.report, request)
        _show(shown.lines)
        if request.time is not None:
            print(shown.at(request.time, run.report))
    elif request.cutover:
        peer = run.outputs.peer_stack
        _show(
            recover_with_cutover(
                run.outputs,
                run.report,
                run.clock,
                request,
                lambda: peer_outputs(run.args.outputs, peer),
                state_dir=run.ctx.state_dir,
                after_step=run.ctx.after_step,
                max_age_hours=load_settings(run.args.stack, run.ctx.project_dir).failover.journal_max_age_hours,
            )
        )
    else:
        restore_pitr(run.outputs, run.report, run.clock, request)


def _cleanup(run: Run) -> None:
    _show(cleanup(run.outputs, run.report, list(run.args.paths), run.args.dry_run))


def _config(run: Run) -> None:
    a = run.args
    planned = config_backup.restore(
        a.stack, run.outputs, run.report, run.clock, a.dry_run, a.prefix, a.dest, a.force, run.ctx.project_dir
    )
    _show([str(p) for p in planned])


def _namespace(run: Run) -> None:
    a = run.args
    settings = load_settings(a.stack, run.ctx.project_dir)
    _show(namespace.restore(settings, run.outputs, run.report, run.clock, a.dry_run, a.prefix, a.wait_seconds, a.force))


def _secrets(run: Run) -> None:
    settings = load_settings(run.args.stack, run.ctx.project_dir)
    _show(secret_store.restore(settings, run.outputs, run.report, run.args.dry_run))


def _kafka_topics(run: Run) -> None:
    a = run.args
    restore_topics(a.stack, run.outputs, run.report, a.cluster, a.dry_run, run.ctx.project_dir)


def _consumer_offsets(run: Run) -> None:
    a = run.args
    restore_offsets(a.stack, run.outputs, run.report, run.clock, a.group, a.dry_run, run.ctx.project_dir)


def _kafka_failover(run: Run) -> None:
    a = run.args
    move_application(
        a.stack, run.outputs, run.report, run.clock, a.dry_run, run.ctx.project_dir, timeout=a.rollout_timeout
    )


def _show(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


HANDLERS: dict[str, Callable[[Run], None]] = {
    "dump": _dump,
    "pitr": _pitr,
    "cleanup": _cleanup,
    "config": _config,
    "namespace": _namespace,
    "secrets": _secrets,
    "kafka-topics": _kafka_topics,
    "consumer-offsets": _consumer_offsets,
    "kafka-failover": _kafka_failover,
}


if __name__ == "__main__":
    sys.exit(main())
