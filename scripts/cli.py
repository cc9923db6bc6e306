"""The flags the companion commands share: --stack, --outputs, --json, --dry-run where state changes, and the
failover flags of promote and failback."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from drtopo.report import usage_error


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
    p.add_argument("--restart", action="store_true", help="drop an interrupted run's journal instead of resuming it")
    p.add_argument("--break-lock", action="store_true", help="take the failover lock from a run that is gone for good")


def failover_options(args: argparse.Namespace) -> dict[str, Any]:
    """What promote and failback hand to `drtopo.failover.run.switchover`, from their parsed flags."""
    return {
        "stack": args.stack,
        "outputs_path": args.outputs,
        "dry_run": args.dry_run,
        "restart": args.restart,
        "accept_data_loss": args.accept_data_loss,
        "skip_consumer_group": args.skip_consumer_group,
        "strict": args.strict,
        "break_lock": args.break_lock,
        "json_path": args.json_path,
    }
