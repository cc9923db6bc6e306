"""Starting and stopping the lab's server processes by PID, so `down` leaves nothing behind even after a failed `up`.

Every process the lab starts is recorded in `<root>/pids/<name>.pid` (with its process group); `stop` ends the
whole group, escalating from SIGTERM to SIGKILL. Free loopback ports are picked below the kernel's ephemeral range
(see `free_port`), never twice in one process.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


# Below Linux's default ephemeral range (net.ipv4.ip_local_port_range 32768-60999), where the source port of any
# outgoing connection made while the lab starts could take a server's port before the server binds it (seen once:
# Kafka never served on a port handed out by bind(0)), and below Kubernetes' NodePort range (30000-32767).
PORT_RANGE = (20000, 29999)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody is bound to now, from PORT_RANGE, never the same one twice in this process."""
    for _ in range(500):
        port = random.randint(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {PORT_RANGE[0]}-{PORT_RANGE[1]} after 500 tries")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, timeout: float, what: str, pid: int | None = None) -> float:
    """Wait until something listens on `port`; returns seconds waited. Fails early if `pid` dies."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if port_open(port):
            return time.monotonic() - start
        if pid is not None and not alive(pid):
            raise RuntimeError(f"{what} exited before listening on port {port}")
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def pid_file(root: Path, name: str) -> Path:
    return root / "pids" / f"{name}.pid"


def read_pid(root: Path, name: str) -> int | None:
    path = pid_file(root, name)
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(root: Path, name: str) -> bool:
    pid = read_pid(root, name)
    return pid is not None and alive(pid)


def demote_to(user: str | None) -> dict[str, object]:
    """subprocess kwargs that run a child as `user` when we are root (PostgreSQL refuses to run as root)."""
    if user is None or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def spawn(
    root: Path,
    name: str,
    argv: Sequence[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start `argv` in its own process group, detached from ours, logging to `log`; record its PID."""
    log = log or root / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(root, name).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            **demote_to(user),  # type: ignore[arg-type]
        )
    pid_file(root, name).write_text(f"{proc.pid}\n")
    return proc.pid


def record(root: Path, name: str, pid: int) -> None:
    """Record a PID started by other means (e.g. `pg_ctl start` daemonizes the postmaster)."""
    pid_file(root, name).parent.mkdir(parents=True, exist_ok=True)
    pid_file(root, name).write_text(f"{pid}\n")


def kill(root: Path, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send `sig` to the recorded process (not its group): a crash of that one server."""
    pid = read_pid(root, name)
    if pid is not None and alive(pid):
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            _wait_gone([pid], 5)


def stop(root: Path, name: str, timeout: float = 10.0) -> None:
    """End the recorded process and its group: SIGTERM, then SIGKILL after `timeout`; forget the PID."""
    pid = read_pid(root, name)
    if pid is not None:
        _terminate(pid, timeout)
    with contextlib.suppress(FileNotFoundError):
        pid_file(root, name).unlink()


def stop_all(root: Path, timeout: float = 10.0) -> list[str]:
    """Stop every recorded process; returns the names stopped."""
    names = sorted(p.stem for p in (root / "pids").glob("*.pid")) if (root / "pids").is_dir() else []
    for name in names:
        stop(root, name, timeout)
    return names


def _terminate(pid: int, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                os.kill(pid, sig)
        if _wait_gone([pid], timeout if sig == signal.SIGTERM else 5):
            return


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(alive(p) for p in pids)
