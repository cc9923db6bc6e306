"""What the benchmarks share: a lab to measure on (a running one, or a temporary one stopped afterwards) and the
companion commands run as an operator runs them, in their own process."""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lab.core import Lab

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def a_lab(root: Path | None) -> Iterator[Lab]:
    """The running lab in `root`, or a fresh lab in a temporary folder, brought down (and removed) at the end."""
    if root is not None:
        yield Lab(root)
        return
    with tempfile.TemporaryDirectory(prefix="drtopo-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the lab's PostgreSQL runs as user postgres and must traverse into it
        lab = Lab(Path(tmp) / "lab")
        try:
            lab.up()
            yield lab
        finally:
            lab.down()


def _stream(current: IO[str]) -> IO[str] | int:
    """Where a child process writes what would go to `current`: the same file, or a pipe when `current` is no file
    (a StringIO that captures a benchmark's output)."""
    try:
        current.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return subprocess.PIPE
    current.flush()
    return current


def run_command(module: str, args: list[str]) -> tuple[float, int]:
    """`python -m <module> <args>` from the repository, in the environment of this process; its output goes where
    this process's goes. Returns the seconds it took as an operator sees them (the interpreter's start included)
    and its exit code."""
    out, err = _stream(sys.stdout), _stream(sys.stderr)
    start = time.monotonic()
    done: subprocess.CompletedProcess[Any] = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, stdout=out, stderr=err, text=True, check=False
    )
    seconds = time.monotonic() - start
    if out is subprocess.PIPE:
        sys.stdout.write(done.stdout)
    if err is subprocess.PIPE:
        sys.stderr.write(done.stderr)
    return seconds, done.returncode
