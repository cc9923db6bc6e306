"""The guard's heartbeat: a file it touches after every step, and the age Kubernetes' liveness probe judges.

A guard stuck in a call (a database that accepts the connection and never answers) takes no step; the probe sees
the heartbeat age past the bound and Kubernetes restarts the pod, whose new guard adopts the lease its stack holds
(drtopo/fencing/guard.py). Both ends run in the same container, so the file's time and the clock are one machine's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def beat(path: Path) -> None:
    """Mark a step taken now (creates the file)."""
    path.touch()
    os.utime(path)


def age(path: Path, now: Callable[[], float] = time.time) -> float | None:
    """Seconds since the last beat; None when the guard never beat."""
    try:
        return max(0.0, now() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def alive(path: Path, max_age: float, now: Callable[[], float] = time.time) -> bool:
    seconds = age(path, now)
    return seconds is not None and seconds <= max_age
