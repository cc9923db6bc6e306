"""kubectl's rollout rule (drtopo/application/rollout.py) over Deployment objects as the API returns them."""

from __future__ import annotations

from typing import Any

import pytest

from drtopo.application.deployment import RegionApp, replica_patch
from drtopo.application.rollout import RolloutFailed, rollout_status
from drtopo.settings import load_settings


def deployment(generation: int = 2, wanted: int | None = 3, **status: Any) -> dict[str, Any]:
    spec = {} if wanted is None else {"replicas": wanted}
    return {"metadata": {"name": "app", "generation": generation}, "spec": spec, "status": status}


DONE = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}


@pytest.mark.parametrize(
    ("status", "done", "said"),
    [
        ({}, False, "waiting for the spec update to be observed"),
        ({**DONE, "observedGeneration": 1}, False, "waiting for the spec update to be observed"),
        ({**DONE, "updatedReplicas": 1}, False, "1 out of 3 new replicas have been updated"),
        ({**DONE, "replicas": 4}, False, "1 old replicas are pending termination"),
        ({**DONE, "availableReplicas": 2}, False, "2 of 3 updated replicas are available"),
        (DONE, True, "successfully rolled out (3/3 available)"),
        # The controller may have observed a newer generation than the one read: still judged on the counts.
        ({**DONE, "observedGeneration": 3}, True, "successfully rolled out"),
    ],
)
def test_a_deployment_is_rolled_out_only_as_kubectl_says(status: dict[str, Any], done: bool, said: str) -> None:
    verdict = rollout_status(deployment(**status))
    assert verdict.done is done and said in verdict.message


def test_a_scale_to_zero_is_done_when_no_replica_is_left() -> None:
    assert rollout_status(deployment(wanted=0, observedGeneration=2)).done
    # A pod still terminating counts as an old replica (status.replicas > updatedReplicas).
    terminating = rollout_status(deployment(wanted=0, observedGeneration=2, replicas=1))
    assert not terminating.done and "1 old replicas are pending termination" in terminating.message


def test_spec_replicas_unset_means_one() -> None:
    assert not rollout_status(deployment(wanted=None, observedGeneration=2)).done
    one = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    verdict = rollout_status(deployment(wanted=None, **one))
    assert verdict.done and verdict.replicas == 1


def test_a_passed_progress_deadline_is_a_failure_not_a_wait() -> None:
    stuck = {
        **DONE,
        "updatedReplicas": 1,
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "too slow"}],
    }
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline: too slow"):
        rollout_status(deployment(**stuck))
    progressing = {**stuck, "conditions": [{"type": "Progressing", "reason": "ReplicaSetUpdated"}]}
    assert not rollout_status(deployment(**progressing)).done


def test_the_region_is_reached_through_its_own_context_and_its_own_endpoint() -> None:
    settings = load_settings("dr")
    app = RegionApp.of(settings)
    assert app.context == settings.kubernetes.context == "biopro-us-west-2"
    assert app.health_url == f"https://{settings.dns.endpoint}{settings.service.health_path}"
    assert settings.dns.record_name not in app.health_url
    assert replica_patch(app, 3) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": settings.application.deployment, "namespace": settings.kubernetes.namespace},
        "spec": {"replicas": 3},
    }
