"""`python -m scripts.backup run|verify|list|config|restore-test`: daily dumps into their tiers, and their proof.

`run` is what the daily CronJob executes: a custom-format `pg_dump` taken in an exported snapshot (so the row counts
stored beside it are exact), uploaded with SSE-KMS under every tier of the date. `verify` downloads a dump, checks
its SHA-256, reads every block with `pg_restore`, and with `--restore-test` restores it into a scratch database and
compares row counts with the dump's manifest. `list` shows the tiers, each dump's storage class and whether it is
readable now, the last restore test, and flags gaps. `config` backs up the configuration objects. `restore-test`
(what its CronJob runs) restores the latest or a random dump into a scratch database, checks row counts against the
manifest and a sample of rows against the source, and records the result in the dump bucket.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime

from drtopo.backup import config as config_backup
from drtopo.backup.dumps import (
    OPERATIONAL_ERRORS,
    Listing,
    Verified,
    age_text,
    list_backups,
    restore_test,
    run,
    verify,
)
from drtopo.context import Context
from drtopo.errors import one_line
from drtopo.outputs import load_outputs
from drtopo.report import Clock
from scripts.cli import OneLineParser, finish, main_guard, new_report, subcommands

DESCRIPTION = "Run, verify and list database dumps in the dump bucket's tiers; back up configuration."


def build_parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="python -m scripts.backup", description=DESCRIPTION)
    command = subcommands(top, "backup")

    run = command("run", "pg_dump (custom format) the service database into every tier of the date", True)
    run.add_argument("--date", type=_day, help="backup date deciding the tiers (YYYY-MM-DD, default today UTC)")
    verify = command("verify", "check a dump: SHA-256, pg_restore --list, every block; optionally restore it", False)
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("key", nargs="?", help="object key in the dump bucket")
    which.add_argument("--latest", action="store_true", help="the newest dump of the service database")
    verify.add_argument("--restore-test", action="store_true", help="restore into a scratch database, compare counts")
    verify.add_argument("--scratch-dsn", help="server for the scratch database (default: the stack's database server)")
    listing = command("list", "backups per tier with age and size; flags missing dailies and empty tiers", False)
    listing.add_argument("--as-of", type=_day, help="judge gaps as of this date (YYYY-MM-DD, default today UTC)")
    command("config", "upload the configuration objects (stack file, MirrorMaker properties, Kubernetes)", True)
    tested = command(
        "restore-test",
        "restore the latest (or a random) dump into a scratch database, check counts and a sample of rows, record it",
        True,
    )
    tested.add_argument("--random", action="store_true", help="a random readable dump within the window")
    tested.add_argument("--within-days", type=_positive, default=30, help="dumps taken in these last days (30)")
    tested.add_argument("--sample", type=_positive, default=100, help="rows per table compared with the source (100)")
    tested.add_argument("--scratch-dsn", help="server for the scratch database (default: the stack's database server)")
    return top


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from None


def print_listing(listing: Listing) -> None:
    for d in listing.dumps:
        print(f"{d.tier:<8} {age_text(d.age_seconds):>8} {d.bytes:>12} B  {d.storage_class:<12} {d.state:<12} {d.key}")
    tested = listing.restore_test
    if tested is not None:
        outcome = "ok" if tested["ok"] else "FAILED"
        print(f"last restore test {tested['at']}: {outcome} in {tested['seconds']} s, {tested['key']}")


def warn_if_corrupt(verified: Verified | None) -> None:
    if verified is not None and verified.corrupt:
        print(f"CORRUPT: dump {verified.key} failed verification; do not restore it", file=sys.stderr)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(_main, argv, "backup", ctx)


def _main(argv: Sequence[str] | None, ctx: Context) -> int:
    args = build_parser().parse_args(argv)
    outputs = load_outputs(args.outputs, args.stack)
    report, clock = new_report(ctx), Clock(ctx.reporter)
    try:
        if args.command == "run":
            keys = run(outputs, report, clock, args.date or datetime.now(UTC).date(), args.dry_run)
            if args.dry_run:
                for key in keys:
                    print(f"would upload s3://{outputs.dump_bucket}/{key}")
        elif args.command == "verify":
            warn_if_corrupt(verify(outputs, report, clock, args.key, args.restore_test, args.scratch_dsn))
        elif args.command == "list":
            print_listing(list_backups(outputs, report, args.as_of or datetime.now(UTC).date()))
        elif args.command == "restore-test":
            verified = restore_test(
                outputs,
                report,
                clock,
                random_pick=args.random,
                within_days=args.within_days,
                sample_rows=args.sample,
                scratch_dsn=args.scratch_dsn,
                dry_run=args.dry_run,
            )
            warn_if_corrupt(verified)
        else:
            for planned in config_backup.backup(args.stack, outputs, report, clock, args.dry_run, ctx.project_dir):
                print(planned)
    except OPERATIONAL_ERRORS as exc:
        report.check(args.command, False, one_line(exc))
    return finish(report, args.json_path, clock, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
