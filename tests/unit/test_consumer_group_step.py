"""promote's consumer-group step and a group already consuming on the target: a warm standby's application (it starts
consuming once its database is writable, before the step) or the application a previous run scaled up after the step
had failed; the step must not race its commits, and must still refuse anyone else's (nothing of ours running there)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from drtopo.failover import steps
from drtopo.kafka.admin import Partition
from drtopo.kafka.offsets import AppliedOffsets
from drtopo.report import Report, Unsafe
from drtopo.settings import load_settings

BOOTSTRAP = "127.0.0.1:9092"


def switchover(standby_replicas: int) -> Any:
    settings = load_settings("dr", overrides={"application": {"standbyReplicas": standby_replicas}})
    return SimpleNamespace(
        settings=settings,
        skip_consumer_group=False,
        peer=SimpleNamespace(region="us-east-1"),
        target=SimpleNamespace(kafka_bootstrap=BOOTSTRAP, region_service_url="http://127.0.0.1:8080"),
        report=Report(),
    )


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The step's Kafka calls, recorded: members of the group on the target, and the offsets applied."""
    seen: dict[str, Any] = {"members": ["rdkafka@/10.0.0.7"], "applied": None, "replicas": 0}
    translated = {Partition("OrderRejected", 0): 40}

    def apply(bootstrap: str, group: str, offsets: dict[Partition, int]) -> AppliedOffsets:
        if seen["members"]:
            raise Unsafe(f"consumer group {group!r} has {len(seen['members'])} active member(s) on {bootstrap}")
        seen["applied"] = dict(offsets)
        return AppliedOffsets(bootstrap, group, dict(offsets), {}, False)

    monkeypatch.setattr(steps, "_now", lambda app: seen["replicas"])
    monkeypatch.setattr(steps, "group_members", lambda bootstrap, group: list(seen["members"]))
    monkeypatch.setattr(steps, "read_checkpoints", lambda bootstrap, alias, group: {"checkpoints": alias})
    monkeypatch.setattr(steps, "translated_offsets", lambda checkpoints: dict(translated))
    monkeypatch.setattr(steps, "apply_group_offsets", apply)
    return seen


def test_a_warm_standbys_consuming_application_is_not_raced(kafka: dict[str, Any]) -> None:
    sw = switchover(standby_replicas=1)
    result = steps.consumer_group(sw)
    assert result.skipped and not result.moved and kafka["applied"] is None
    (check,) = sw.report.checks
    assert check.name == "consumer-group" and check.outcome == "skip"
    assert "1 member(s)" in check.detail and "synced offsets" in check.detail


@pytest.mark.parametrize(("replicas", "said"), [(0, "runs 0 replicas"), (None, "runs unreadable")])
def test_pilot_light_with_a_member_on_the_target_still_refuses(
    kafka: dict[str, Any], replicas: int | None, said: str
) -> None:
    # Nothing of ours consumes there (the application at 0, or its count unreadable): someone else's, racing commits.
    kafka["replicas"] = replicas
    with pytest.raises(Unsafe, match=f"1 active member.*{said}.*stop it, then rerun"):
        steps.consumer_group(switchover(standby_replicas=0))
    assert kafka["applied"] is None


def test_pilot_light_rerun_after_the_application_step_is_not_raced(kafka: dict[str, Any]) -> None:
    # A run whose consumer-group step failed went on to scale the application up; the rerun finds it consuming.
    kafka["replicas"] = 2
    sw = switchover(standby_replicas=0)
    result = steps.consumer_group(sw)
    assert result.skipped and kafka["applied"] is None
    (check,) = sw.report.checks
    assert check.outcome == "skip" and "the application, 2 replica(s) on" in check.detail


@pytest.mark.parametrize("standby_replicas", [0, 1])
def test_an_idle_group_is_moved_to_the_translated_offsets(kafka: dict[str, Any], standby_replicas: int) -> None:
    kafka["members"] = []
    sw = switchover(standby_replicas)
    result = steps.consumer_group(sw)
    assert result.moved and kafka["applied"] == {Partition("OrderRejected", 0): 40}
    assert sw.report.measured["consumer_group"]["partitions"] == [
        {"topic": "OrderRejected", "partition": 0, "offset": 40, "previous": None}
    ]
