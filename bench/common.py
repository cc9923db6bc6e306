"""What the benchmarks share: a lab to measure on (a running one, or a temporary one stopped afterwards)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.core import Lab


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
