"""What a command hands the library once, instead of environment variables read deep inside it.

The command (`scripts/cli.py`) builds one `Context` from its flags and environment: the project folder holding the
stack files, the state folder (journals, logs), the reporter that shows progress, the command's log file, the AWS
endpoint of each region and, for tests only, a hook run after each failover step. The library reads these fields
and nothing else of its own (the AWS endpoints through `drtopo.aws.use_endpoints`, which `main_guard` calls).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from drtopo.report import SILENT, Reporter
from drtopo.settings import REPO_DIR

DEFAULT_STATE_DIR = Path.home() / ".drtopo" / "journal"


def _no_hook(step: str) -> None:
    """The default after-step hook: nothing."""


def _no_secret(name: str) -> None:
    """The default secret reader: nothing is set (a library call outside a command)."""


@dataclass(frozen=True)
class Context:
    """One command run's surroundings."""

    project_dir: Path = REPO_DIR
    state_dir: Path = DEFAULT_STATE_DIR
    reporter: Reporter = SILENT
    log_path: Path | None = None
    # Called after each failover step is journalled, with the step's name (the crash tests kill the process there).
    after_step: Callable[[str], None] = field(default=_no_hook)
    # The AWS API endpoint of each region (region -> URL; drtopo.aws.use_endpoints); empty: boto3's own choice.
    aws_endpoints: Mapping[str, str] = field(default_factory=dict)
    # A drill runs the commands: their incident notifications and records say DRILL (drtopo/incident).
    drill: bool = False
    # Reads a secret by the name of the environment variable the settings give (the status page's tokenVariable);
    # the command's reader (scripts/cli.py: environment_secret), so the library itself reads no environment.
    secret: Callable[[str], str | None] = field(default=_no_secret)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"
