"""The flags every companion command shares: --stack, --outputs, --json and, where state changes, --dry-run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from drtopo.report import usage_error
from drtopo.settings import STACKS


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the bad value and what is allowed (argparse's own wording), exit 2."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)


def parser(
    prog: str, description: str, changes_state: bool, default_stack: str | None = None
) -> argparse.ArgumentParser:
    """The shared flags: --stack, --outputs, --json and, for scripts that change state, --dry-run."""
    p = OneLineParser(prog=f"python -m scripts.{prog}", description=description)
    p.add_argument("--stack", choices=STACKS, default=default_stack, required=default_stack is None)
    p.add_argument(
        "--outputs",
        type=Path,
        help="stack outputs JSON (`pulumi stack output --json --show-secrets`); default: ask the pulumi CLI",
    )
    p.add_argument("--json", dest="json_path", type=Path, metavar="FILE", help="write the JSON report here")
    if changes_state:
        p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return p
