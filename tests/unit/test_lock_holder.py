"""Owner.is_dead_here, the test the failover lock's takeover rests on, against real processes: a reaped child of this
test is dead, a running one and this process are alive, any holder on another host is never judged dead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from drtopo.failover.lock import Owner


@pytest.fixture
def live_child() -> Iterator[int]:
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as proc:
        yield proc.pid
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.fixture
def reaped_child() -> int:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        assert proc.wait(timeout=30) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


def owner(host: str, pid: int) -> Owner:
    return Owner(host, pid, "promote", "dr", "2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("where", "process", "dead"),
    [
        ("here", "reaped child", True),
        ("here", "live child", False),
        ("here", "this process", False),
        ("elsewhere", "reaped child", False),
        ("elsewhere", "live child", False),
    ],
)
def test_only_a_gone_process_on_this_host_is_dead(
    request: pytest.FixtureRequest, where: str, process: str, dead: bool
) -> None:
    pid = os.getpid() if process == "this process" else request.getfixturevalue(process.replace(" ", "_"))
    host = socket.gethostname() if where == "here" else "another-host.invalid"
    assert owner(host, pid).is_dead_here() is dead


def test_pid_1_is_never_judged_dead() -> None:
    """PID 1 always exists: signalling it answers either nothing (root) or EPERM (anyone else); neither is gone."""
    assert owner(socket.gethostname(), 1).is_dead_here() is False
