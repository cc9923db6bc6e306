"""The Kubernetes security settings every drtopo workload runs with (the "restricted" Pod Security Standard).

Pods run as a fixed non-root user, with the default seccomp profile; containers never escalate privileges, drop
every capability and keep their root filesystem read-only (writable paths are explicit emptyDir volumes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PART_OF = "drtopo"


@dataclass(frozen=True)
class Resources:
    """Container requests and limits (Kubernetes quantities); requests are what the scheduler reserves."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def spec(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


def labels(name: str, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels; selectors use these, so they never depend on the role."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "run_as_non_root": True,
        "run_as_user": uid,
        "run_as_group": uid,
        "fs_group": uid,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container_security(uid: int) -> dict[str, Any]:
    return {
        "run_as_non_root": True,
        "run_as_user": uid,
        "allow_privilege_escalation": False,
        "privileged": False,
        "read_only_root_filesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def scratch_volume(name: str, size_limit: str) -> dict[str, Any]:
    """A writable emptyDir (the root filesystem is read-only), bounded so a runaway write evicts only this pod."""
    return {"name": name, "empty_dir": {"size_limit": size_limit}}
