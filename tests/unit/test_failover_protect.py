"""What promote does for the new primary's protection (drtopo/failover/protect.py), in its pure parts: which
CronJobs it resumes (the very ones the program suspends on a standby), the body it applies, what it says is missing."""

from __future__ import annotations

from typing import Any

from drtopo.failover.protect import PRIMARY_ONLY_JOBS, missing_protection, resume_patch
from drtopo.settings import load_settings
from tests.evaluations import evaluation_of

CRON_JOB = "kubernetes:batch/v1:CronJob"


def cron_jobs(stack: str) -> dict[str, dict[str, Any]]:
    evaluation = evaluation_of(load_settings(stack))
    return {r.inputs["metadata"]["name"]: r.inputs for r in evaluation.resources if r.type == CRON_JOB}


def test_promote_resumes_exactly_the_backup_jobs_the_program_suspends_on_the_standby() -> None:
    standby, primary = cron_jobs("dr"), cron_jobs("prod")
    suspended_on_standby = {n for n, job in standby.items() if job["spec"].get("suspend")}
    running_on_primary = {n for n, job in primary.items() if not job["spec"].get("suspend")}
    # The readiness check runs on the standby side (suspended on the primary): promote does not resume it.
    backup_jobs = {n for n in suspended_on_standby if n in running_on_primary}
    assert set(PRIMARY_ONLY_JOBS) == backup_jobs, (suspended_on_standby, running_on_primary)


def test_the_resume_body_sets_only_suspend() -> None:
    assert resume_patch("pg-dump", "biopro-prod") == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "pg-dump", "namespace": "biopro-prod"},
        "spec": {"suspend": False},
    }


def test_what_is_missing_names_the_standby_and_the_way_back() -> None:
    planned = missing_protection("dr", "prod", peer_reachable=True)
    assert any("no standby" in m and "python -m scripts.failback --stack prod" in m for m in planned)
    assert not any("backups in dr's region only" in m for m in planned)
    unplanned = missing_protection("dr", "prod", peer_reachable=False)
    assert len(unplanned) == len(planned) + 1 and "backups in dr's region only" in unplanned[-1]
