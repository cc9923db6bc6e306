"""What the companion commands share: their flags (--stack, --outputs, --json, --dry-run where state changes, the
failover flags of promote and failback), the context they hand the library, their log file, and the terminal.

`main_guard` runs a command: it builds the `Context` once (the only place DRTOPO_* variables are read), opens the
command's log file (DEBUG, timestamps, every traceback), and turns BadInput / Unsafe into one line and exit 2 / 3
and any other exception into one line naming the log file (exit 1), never a traceback on the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import re
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, Protocol

from drtopo import aws
from drtopo.context import DEFAULT_STATE_DIR, Context
from drtopo.errors import one_line
from drtopo.report import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNSAFE, BadInput, Clock, Report, Unsafe
from drtopo.settings import REPO_DIR, SettingsError

log = logging.getLogger("scripts")

# The environment a command reads (and nothing below it does): where the stack files are, where journals and logs
# go, and the crash hook of the resume tests.
PROJECT_DIR_ENV = "DRTOPO_PROJECT_DIR"
STATE_DIR_ENV = "DRTOPO_STATE_DIR"
LAB_DIR_ENV = "DRTOPO_LAB_DIR"
CRASH_AFTER_ENV = "DRTOPO_CRASH_AFTER"
# The AWS API endpoint per region, `us-east-1=URL,us-west-2=URL` (VPC interface endpoints, the lab's gates); a region
# not named falls back to AWS_ENDPOINT_URL or real AWS.
AWS_ENDPOINTS_ENV = "DRTOPO_AWS_ENDPOINTS"
# Loggers that would write request or response bodies (secrets among them) at DEBUG: drtopo logs their calls itself.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "psycopg", "asyncio")


class TerminalReporter:
    """The terminal: progress and warnings on stderr, the command's own output on stdout; each also logged."""

    def progress(self, text: str) -> None:
        log.info("%s", text)
        print(text, file=sys.stderr, flush=True)

    def info(self, text: str) -> None:
        log.info("%s", text)
        print(text, flush=True)

    def warning(self, text: str) -> None:
        log.warning("%s", text)
        print(text, file=sys.stderr, flush=True)


TERMINAL = TerminalReporter()


def usage_error(prog: str, message: str) -> NoReturn:
    """A usage error as one line naming the bad value and what is allowed (argparse's own wording), exit 2."""
    print(f"error: {prog}: {message} (see --help)", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def state_dir(environ: Mapping[str, str]) -> Path:
    """Journals and logs: DRTOPO_STATE_DIR, else the lab's (DRTOPO_LAB_DIR/journal), else ~/.drtopo/journal."""
    if environ.get(STATE_DIR_ENV):
        return Path(environ[STATE_DIR_ENV])
    if environ.get(LAB_DIR_ENV):
        return Path(environ[LAB_DIR_ENV]) / "journal"
    return DEFAULT_STATE_DIR


def _crash_after(step_name: str) -> Callable[[str], None]:
    def hook(step: str) -> None:
        if step == step_name:
            TERMINAL.progress(f"{CRASH_AFTER_ENV}={step}: crashing now (SIGKILL)")
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def environment_secret(environ: Mapping[str, str] = os.environ) -> Callable[[str], str | None]:
    """The reader of a secret the settings name by its variable (`drtopo:notifications.statusPage.tokenVariable`):
    that variable's value, None when it is not set or empty (the status page is then reported not sent, a SKIP)."""

    def read(name: str) -> str | None:
        return environ.get(name) or None

    return read


def context_from_environment(environ: Mapping[str, str] = os.environ) -> Context:
    """The context of a command started from a shell: the project folder, the state folder, the terminal."""
    crash = environ.get(CRASH_AFTER_ENV)
    try:
        endpoints = aws.parse_endpoints(environ.get(AWS_ENDPOINTS_ENV, ""))
    except ValueError as exc:
        usage_error("drtopo", f"{AWS_ENDPOINTS_ENV}: {exc}")
    return Context(
        project_dir=Path(environ.get(PROJECT_DIR_ENV) or REPO_DIR),
        state_dir=state_dir(environ),
        reporter=TERMINAL,
        aws_endpoints=endpoints,
        secret=environment_secret(environ),
        **({"after_step": _crash_after(crash)} if crash else {}),
    )


def open_log(ctx: Context, prog: str, daily: bool = False) -> tuple[Context, Callable[[], None]]:
    """Start the command's log file in the state folder; returns the context naming it and what closes it (which
    also puts the logging levels back, for a command run in-process by the drill or a test). `daily`: append to one
    file a day instead (a command PostgreSQL runs once per WAL file would otherwise leave a file per segment)."""
    now = datetime.now(UTC)
    name = prog.replace(" ", "-")
    stamp = f"{now:%Y%m%d}" if daily else f"{now:%Y%m%dT%H%M%S.%fZ}-{os.getpid()}"
    path = ctx.log_dir / f"{name}-{stamp}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        print(f"warning: no log file in {path.parent} ({one_line(exc)}); details go nowhere", file=sys.stderr)
        return ctx, lambda: None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    log.info("%s started: argv %s, project %s, state %s", prog, sys.argv[1:], ctx.project_dir, ctx.state_dir)

    def close() -> None:
        root.removeHandler(handler)
        handler.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    return replace(ctx, log_path=path), close


def main_guard(
    run: Callable[[Sequence[str] | None, Context], int],
    argv: Sequence[str] | None = None,
    prog: str = "drtopo",
    ctx: Context | None = None,
    daily_log: bool = False,
) -> int:
    """Run a command's body with its context and log file; errors become one line and an exit code."""
    ctx, close_log = open_log(ctx or context_from_environment(), prog, daily_log)
    where = f" (log: {ctx.log_path})" if ctx.log_path else ""
    endpoints = aws.use_endpoints(ctx.aws_endpoints)
    try:
        code = run(argv, ctx)
        log.info("%s ended with exit code %s", prog, code)
        return code
    except (BadInput, SettingsError) as exc:
        log.info("bad input: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Unsafe as exc:
        log.info("refused: %s", exc)
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_UNSAFE
    except KeyboardInterrupt:
        log.warning("interrupted")
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A bug or an unforeseen library error: one line here, the traceback in the log for whoever debugs it.
        log.exception("unexpected error in %s", prog)
        print(f"error: unexpected {type(exc).__name__}: {one_line(exc)}{where}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        aws.use_endpoints(endpoints)
        close_log()


def new_report(ctx: Context, strict: bool = False) -> Report:
    """A report naming the command's log file."""
    return Report(strict=strict, log=str(ctx.log_path) if ctx.log_path else None)


def finish(report: Report, json_path: Path | None, clock: Clock | None = None, strict: bool = False) -> int:
    """The end of every command: the steps' timings, the table, the JSON file; returns the exit code."""
    report.strict = report.strict or strict
    if clock is not None:
        report.measured["steps"] = clock.steps
    print(report.table())
    report.write(json_path)
    return report.exit_code()


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the bad value and what is allowed (argparse's own wording), exit 2."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)


# Pulumi's own rule for a stack name; whether the stack has a stack file is settled when its settings are read, so
# that `restore config` can bring back the very files a configuration loss deleted.
STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def stack_name(text: str) -> str:
    """argparse type for --stack: a well-formed stack name."""
    if not STACK_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a stack name; expected letters, digits, '-', '_' or '.'")
    return text


def parser(
    prog: str, description: str, changes_state: bool, default_stack: str | None = None
) -> argparse.ArgumentParser:
    """The shared flags: --stack, --outputs, --json and, for scripts that change state, --dry-run."""
    p = OneLineParser(prog=f"python -m scripts.{prog}", description=description)
    p.add_argument(
        "--stack",
        type=stack_name,
        default=default_stack,
        required=default_stack is None,
        help="a stack of the project: any Pulumi.<name>.yaml naming its drtopo:peerStack",
    )
    p.add_argument(
        "--outputs",
        type=Path,
        help="stack outputs JSON (`pulumi stack output --json --show-secrets`); default: ask the pulumi CLI",
    )
    p.add_argument("--json", dest="json_path", type=Path, metavar="FILE", help="write the JSON report here")
    p.add_argument("--strict", action="store_true", help="a skipped check fails the run (exit 1)")
    if changes_state:
        p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return p


def subcommands(top: argparse.ArgumentParser, prog: str) -> Callable[[str, str, bool], argparse.ArgumentParser]:
    """`command(name, help, changes_state)`: a subcommand of `top` with the shared flags (`parser`)."""
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, changes_state: bool) -> argparse.ArgumentParser:
        shared = parser(prog, help_text, changes_state)
        # argparse %-formats help strings, not descriptions (a `%p` in a help text would break `--help`).
        escaped = help_text.replace("%", "%%")
        return sub.add_parser(name, help=escaped, description=help_text, parents=[shared], add_help=False)

    return command


def failover_flags(p: argparse.ArgumentParser) -> None:
    """The flags promote and failback share beyond the common ones."""
    p.add_argument(
        "--accept-data-loss",
        action="store_true",
        help="promote even when the measured replica lag is beyond the region-failure RPO",
    )
    p.add_argument(
        "--skip-consumer-group", action="store_true", help="leave the Kafka consumer group's offsets as they are"
    )
    p.add_argument(
        "--skip-app-check",
        action="store_true",
        help="move DNS even when the target region's application was not seen healthy (reported)",
    )
    p.add_argument("--restart", action="store_true", help="drop an interrupted run's journal instead of resuming it")
    p.add_argument("--break-lock", action="store_true", help="take the failover lock from a run that is gone for good")


class Ending(Protocol):
    """How a promote or failback ended (`drtopo.failover.run.Outcome`; named by shape, so that the commands that
    need no failover, the backup image's among them, start without importing it)."""

    code: int
    lines: list[str]
    error: str | None
    would_refuse: str | None


def show_switchover(outcome: Ending) -> int:
    """A promote's or failback's end on the terminal: its lines on stdout, its error line on stderr; a dry run that
    would refuse ends as a refusal (exit 3) after its plan."""
    for text in outcome.lines:
        print(text)
    if outcome.would_refuse is not None:
        raise Unsafe(f"would refuse: {outcome.would_refuse}")
    if outcome.error:
        print(outcome.error, file=sys.stderr)
    return outcome.code


def operator() -> str:
    """Who runs the command from where, for the incident record: `user@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command as typed, for the incident record: `python -m scripts.promote --stack dr ...`."""
    return shlex.join(["python", "-m", f"scripts.{prog}", *(sys.argv[1:] if argv is None else argv)])


def failover_options(args: argparse.Namespace) -> dict[str, Any]:
    """What promote and failback hand to `drtopo.failover.run.switchover`, from their parsed flags."""
    return {
        "stack": args.stack,
        "outputs_path": args.outputs,
        "dry_run": args.dry_run,
        "restart": args.restart,
        "accept_data_loss": args.accept_data_loss,
        "skip_consumer_group": args.skip_consumer_group,
        "skip_app_check": args.skip_app_check,
        "strict": args.strict,
        "break_lock": args.break_lock,
        "json_path": args.json_path,
    }
