"""`python -m scripts.wal push|fetch|check|base`: the WAL bucket as PostgreSQL's archive.

`push %p %f` is the `archive_command` of a self-managed primary (silent on success; an error line on stderr, which
lands in the server's log, and a non-zero exit, after which PostgreSQL retries); with `--parallel N --spool DIR` it
uploads the next files PostgreSQL marked ready beside the one asked for, N at once (drtopo/backup/wal_ahead.py).
`fetch %f %p` is the matching `restore_command` (exit 1 when the file is not in the bucket: the end of the archive).
`check` verifies the archived chain has no gap from the oldest base backup in the bucket to the newest segment.
`base` uploads a tar base backup (`pg_basebackup -F t`) so the bucket alone can restore.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.backup import store, wal, wal_ahead
from drtopo.context import Context
from drtopo.errors import one_line
from drtopo.outputs import load_outputs
from drtopo.report import EXIT_FAILED, EXIT_OK, BadInput, Clock
from scripts.cli import OneLineParser, finish, main_guard, new_report, subcommands

DESCRIPTION = "Archive WAL to the stack's WAL bucket, fetch it back, check its chain, upload a base backup."


def build_parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="python -m scripts.wal", description=DESCRIPTION)
    command = subcommands(top, "wal")

    push = command("push", "archive_command: upload one WAL file (%p %f); same bytes again is success", True)
    push.add_argument("path", type=Path, help="the file to archive (%%p)")
    push.add_argument("name", type=wal.archive_name, help="its name in the archive (%%f)")
    push.add_argument(
        "--parallel",
        type=wal_ahead.parallel_count,
        default=1,
        help="upload the next files PostgreSQL marked ready beside this one, this many at once (default 1: serial); "
        "needs --spool",
    )
    push.add_argument(
        "--spool",
        type=Path,
        help="where the acknowledgements of files uploaded ahead wait for PostgreSQL's request (outside the data "
        "directory, writable by the server's user)",
    )
    fetch = command("fetch", "restore_command: download one WAL file (%f %p); exit 1 when it is not archived", False)
    fetch.add_argument("name", type=wal.archive_name, help="the file wanted (%%f)")
    fetch.add_argument("dest", type=Path, help="where PostgreSQL wants it (%%p)")
    command("check", "the archived chain from the oldest base backup to the newest segment has no gap", False)
    base = command(
        "base", "upload a tar base backup (pg_basebackup -F t: base.tar, pg_wal.tar) to the WAL bucket", True
    )
    base.add_argument("folder", type=Path, help="the folder pg_basebackup wrote")
    return top


# Run by PostgreSQL once per WAL file (archive_command, restore_command): their runs share one log file a day.
PER_FILE = ("push", "fetch")


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    per_file = bool(words) and words[0] in PER_FILE
    return main_guard(_main, argv, f"wal-{words[0]}" if per_file else "wal", ctx, daily_log=per_file)


def _main(argv: Sequence[str] | None, ctx: Context) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "push" and args.parallel > 1 and args.spool is None:
        raise BadInput(f"--parallel {args.parallel} needs --spool DIR (where uploads ahead are acknowledged)")
    outputs = load_outputs(args.outputs, args.stack)
    s3 = store.s3_client(outputs)
    if args.command in ("push", "fetch"):
        # Run by PostgreSQL once per file: no report, one line on failure.
        try:
            if args.command == "push":
                if not args.path.is_file():
                    print(
                        f"error: {args.path} is not a file; expected the WAL file PostgreSQL passes as %p",
                        file=sys.stderr,
                    )
                    return EXIT_FAILED
                if args.dry_run:
                    return EXIT_OK
                if args.parallel > 1:
                    spool = wal_ahead.Spool(args.spool)
                    wal_ahead.push(s3, outputs, args.path.parent, args.name, args.path, spool, args.parallel)
                else:
                    wal.push(s3, outputs, args.path, args.name)
                return EXIT_OK
            return EXIT_OK if wal.fetch(s3, outputs.wal_bucket, args.name, args.dest) else EXIT_FAILED
        except (ClientError, BotoCoreError, OSError, wal.WalConflict) as exc:
            print(f"drtopo wal {args.command} {args.name}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    report, clock = new_report(ctx), Clock(ctx.reporter)
    try:
        if args.command == "check":
            wal.check_chain(s3, outputs.wal_bucket, report)
        elif args.dry_run:
            report.check("plan", True, f"would upload the base backup in {args.folder} to s3://{outputs.wal_bucket}")
        else:
            with clock.step(f"upload base backup {args.folder}"):
                start = wal.push_base_backup(s3, outputs, args.folder)
            report.check("base backup", True, f"s3://{outputs.wal_bucket}/{wal.base_key(start, '')}")
    except (ClientError, BotoCoreError, OSError, wal.WalConflict) as exc:
        report.check(args.command, False, one_line(exc))
    return finish(report, args.json_path, clock, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
