"""The new primary's protection right after a failover, before any `pulumi up`: its region's backup CronJobs
resumed, a base backup of its new timeline, its WAL archiving seen working, and what the pair still lacks.

The program suspends the dump and restore-test CronJobs on a standby (components/backup_jobs.py: they run where the
primary is) and only the next `pulumi up` of the promoted stack would resume them; promote does it at once through
the region's own Kubernetes API, by server-side apply of `spec.suspend: false` under drtopo's field manager. The
same value the next `pulumi up` applies, so the two managers share the field instead of conflicting (Kubernetes
server-side apply: appliers that set a field to the same value share its ownership).
"""

from __future__ import annotations

import json
from typing import Any

from drtopo.application.deployment import PARTIAL_APPLY
from drtopo.backup.kube_export import kubectl, last_line
from drtopo.settings import Settings

# The CronJobs the program suspends on a standby and runs on the primary (components/backup_jobs.py DUMP_JOB and
# RESTORE_TEST_JOB; a unit test holds the two lists together).
PRIMARY_ONLY_JOBS = ("pg-dump", "restore-test")


class JobsNotResumed(RuntimeError):
    """The region's Kubernetes API did not take the change."""


def resume_patch(name: str, namespace: str) -> dict[str, Any]:
    """The server-side-apply body that resumes one CronJob (pure)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"suspend": False},
    }


def resume_backup_jobs(settings: Settings) -> list[str]:
    """Unsuspend the primary-only backup CronJobs of `settings`' stack in its own cluster; returns their names."""
    namespace, context = settings.kubernetes.namespace, settings.kubernetes.context
    body = json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [resume_patch(n, namespace) for n in PRIMARY_ONLY_JOBS]}
    )
    done = kubectl(context, *PARTIAL_APPLY, stdin=body, timeout=30)
    if done is None or done.returncode != 0:
        reason = "no answer" if done is None else last_line(done.stderr)
        raise JobsNotResumed(f"backup CronJobs of {context}/{namespace} not resumed: {reason}")
    return list(PRIMARY_ONLY_JOBS)


def missing_protection(target: str, peer: str, peer_reachable: bool) -> list[str]:
    """What the pair lacks after a failover to `target` until `peer` returns and is rebuilt (pure): said in the
    run's next steps, so nobody takes a lone primary for a protected one."""
    missing = [
        f"no standby: {target} replicates to nothing until `python -m scripts.failback --stack {peer}` (or a "
        f"rebuild of {peer} as its replica) runs; losing {target}'s region now loses what its WAL bucket has not got",
        f"no readiness check: the hourly check runs on the standby side, and {peer} is not one yet",
    ]
    if not peer_reachable:
        missing.append(
            f"backups in {target}'s region only: the buckets' replication to {peer}'s region resumes when it answers"
        )
    return missing
