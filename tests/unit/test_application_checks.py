"""The pure parts of the application's checks and of its Kafka failover: Prometheus parsing, memory, duplicates
allowed, transaction ids, the endpoints switch, kubectl's rollout rule; and the lab collector's event parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from drtopo.checks import application
from drtopo.checks.application import (
    Sample,
    duplicates_allowed,
    memory_bytes,
    metric,
    parse_prometheus,
    probe_event,
    transaction_id,
)
from drtopo.kafka.app_switch import Endpoints, KubeError, endpoints_data, restart_patch, rollout_done
from drtopo.report import Report
from drtopo.settings import load_settings
from lab import service

EXPOSITION = """# HELP collector_events_consumed_total exception events read from Kafka
# TYPE collector_events_consumed_total counter
collector_events_consumed_total 42
jvm_memory_used_bytes{area="heap",id="G1 Eden Space"} 1.048576e6
jvm_memory_used_bytes{area="nonheap",id="Metaspace \\"x\\", y"} 1048576 1700000000000
process_resident_memory_bytes 5e7
"""


def test_prometheus_text_parses_into_samples_with_labels() -> None:
    samples = parse_prometheus(EXPOSITION)
    assert [s.name for s in samples] == [
        "collector_events_consumed_total",
        "jvm_memory_used_bytes",
        "jvm_memory_used_bytes",
        "process_resident_memory_bytes",
    ]
    assert samples[2].labels == (("area", "nonheap"), ("id", 'Metaspace "x", y'))
    assert metric(samples, "collector_events_consumed_total") == 42
    assert metric(samples, "absent") is None


@pytest.mark.parametrize(
    "line",
    ["up", "up one", 'up{job="x" 1', "up{job=x} 1", "up 1 2 3", "<html><body>Whitelabel Error Page</body></html>"],
)
def test_prometheus_parse_names_the_bad_line(line: str) -> None:
    with pytest.raises(ValueError, match="metrics line"):
        parse_prometheus(f"ok 1\n{line}\n")


def test_memory_is_the_jvm_used_memory_summed_else_the_rss() -> None:
    samples = parse_prometheus(EXPOSITION)
    assert memory_bytes(samples) == (2 * 1048576, "jvm_memory_used_bytes")
    rss_only = [s for s in samples if not s.name.startswith("jvm_")]
    assert memory_bytes(rss_only) == (5e7, "process_resident_memory_bytes")
    assert memory_bytes([Sample("up", (), 1)]) is None


@pytest.mark.parametrize(
    ("seconds", "ok"), [(0.5, True), (0.02, False)], ids=["within-the-limit", "row-at-first-poll-but-late"]
)
def test_the_probe_passes_only_when_its_row_came_within_the_limit(
    monkeypatch: pytest.MonkeyPatch, seconds: float, ok: bool
) -> None:
    # The row answers at the first poll, `took` after the probe: a row seen at once is not in time by itself.
    readings = [100.0, 100.0 + 0.3]  # the probe's start, then every later reading (the first poll answered)
    clock = lambda: readings.pop(0) if len(readings) > 1 else readings[0]  # noqa: E731
    monkeypatch.setattr(application, "produce_probe", lambda bootstrap, topic, txid: None)
    monkeypatch.setattr(application, "http_get", lambda url, token: (200, b"{}"))
    monkeypatch.setattr(application.time, "monotonic", clock)
    report = Report()
    application.processing_step(report, "http://127.0.0.1:8080", "t0ken", "127.0.0.1:9092", "ValidationError", seconds)
    (check,) = report.checks
    assert (check.outcome == "pass") is ok and check.value == 0.3 and check.limit == seconds, check


def test_duplicates_allowed_grow_with_partitions_and_the_checkpoint_interval() -> None:
    assert duplicates_allowed(0, 100, 0.0, 10) == 0
    assert duplicates_allowed(15, 100, 0.0, 10) == 1500
    assert duplicates_allowed(15, 100, 20.5, 10) == 1500 + 205
    assert duplicates_allowed(1, 100, -3.0, 10) == 100


def test_transaction_id_from_the_value_only() -> None:
    assert transaction_id(b'{"transactionId": "t-1"}') == "t-1"
    # Not an exception event (the collector writes no row for it): never counted as a missing row.
    assert transaction_id(b"not json") is None
    assert transaction_id(b"{}") is None
    assert transaction_id(b'{"transactionId": ""}') is None
    assert transaction_id(None) is None


def test_the_probe_is_an_event_the_collector_accepts() -> None:
    values = service.event_values("ValidationError", json.dumps(probe_event("p-1")).encode())
    assert values["transaction_id"] == "p-1" and values["interface_type"] == "VALIDATION"


def test_collector_event_parsing_names_what_is_wrong() -> None:
    assert (
        service.event_values("OrderRejected", b'{"transactionId": "t", "exceptionReason": "r", "operation": "o"}')[
            "interface_type"
        ]
        == "ORDER"
    )
    with pytest.raises(ValueError, match="not JSON"):
        service.event_values("OrderRejected", b"{")
    with pytest.raises(ValueError, match="missing fields"):
        service.event_values("OrderRejected", b'{"transactionId": "t"}')
    with pytest.raises(ValueError, match="unknown fields"):
        service.event_values("OrderRejected", b'{"transactionId": "t", "x": 1}')


def test_bearer_token_is_compared_exactly() -> None:
    assert service.bearer_ok(None, None) and service.bearer_ok("Bearer x", "")
    assert service.bearer_ok("Bearer s3cret", "s3cret") and service.bearer_ok("bearer s3cret", "s3cret")
    assert not service.bearer_ok(None, "s3cret")
    assert not service.bearer_ok("Bearer s3cre", "s3cret")
    assert not service.bearer_ok("Basic s3cret", "s3cret")


def test_collector_metrics_render_as_prometheus_text() -> None:
    metrics = service.Metrics()
    metrics.bootstrap = 'a:1,"b":2'
    metrics.add(events_consumed_total=3, events_duplicate_total=1)
    samples = parse_prometheus(metrics.render())
    assert metric(samples, "collector_events_consumed_total") == 3
    assert metric(samples, "collector_events_duplicate_total") == 1
    (info,) = [s for s in samples if s.name == "collector_kafka_info"]
    assert info.labels == (("bootstrap", 'a:1,"b":2'),)


def test_the_switch_swaps_the_clusters_and_back() -> None:
    settings = load_settings("prod")
    data = endpoints_data(settings)
    endpoints = Endpoints.from_data(data, "cm")
    assert endpoints.alias == settings.region and endpoints.backup_alias == settings.peer_region
    switched = endpoints.switched()
    assert switched.bootstrap == settings.kafka.peer_bootstrap_servers and switched.alias == settings.peer_region
    assert switched.switched() == endpoints
    with pytest.raises(KubeError, match="KAFKA_BACKUP_BOOTSTRAP_SERVERS"):
        Endpoints.from_data({k: v for k, v in data.items() if k != "KAFKA_BACKUP_BOOTSTRAP_SERVERS"}, "cm")


def test_restart_is_kubectls_annotation_on_the_pod_template() -> None:
    patch = restart_patch(datetime(2026, 12, 2, 17, 0, 5, tzinfo=UTC), "us-west-2")
    annotations = patch["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "kubectl.kubernetes.io/restartedAt": "2026-12-02T17:00:05Z",
        "drtopo.io/kafka-cluster": "us-west-2",
    }


def deployment(*, wanted: int = 1, generation: int = 2, observed: int = 2, **status: int) -> dict[str, object]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": observed, **status},
    }


@pytest.mark.parametrize(
    ("doc", "done", "why"),
    [
        (deployment(observed=1, updatedReplicas=1, replicas=1, availableReplicas=1), False, "observed"),
        (deployment(updatedReplicas=0, replicas=1, availableReplicas=1), False, "0 of 1 new replicas updated"),
        (deployment(updatedReplicas=1, replicas=2, availableReplicas=1), False, "1 old replicas pending"),
        (deployment(updatedReplicas=1, replicas=1, availableReplicas=0), False, "0 of 1 updated replicas available"),
        (deployment(updatedReplicas=1, replicas=1, availableReplicas=1), True, "1 of 1 replicas available"),
        (deployment(wanted=0), True, "0 of 0"),
    ],
)
def test_rollout_is_done_as_kubectl_rollout_status_decides(doc: dict[str, object], done: bool, why: str) -> None:
    result = rollout_done(doc)
    assert result[0] is done and why in result[1]


def test_a_rollout_past_its_progress_deadline_is_not_done() -> None:
    doc = deployment(updatedReplicas=0, replicas=1)
    stalled = {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "m"}
    doc["status"] = {**doc["status"], "conditions": [stalled]}  # type: ignore[dict-item]
    assert rollout_done(doc) == (False, "exceeded its progress deadline: m")


def test_a_batch_is_one_insert_per_column_set_and_a_repeated_id_counts_once() -> None:
    a = {"transaction_id": "t1", "interface_type": "ORDER", "exception_reason": "r", "operation": "op"}
    b = {**a, "transaction_id": "t2"}
    c = {**a, "transaction_id": "t3", "severity": "HIGH"}
    groups = service.group_by_columns([a, b, c, a])
    assert [len(g) for g in groups.values()] == [3, 1]
    sql, params = service.multi_insert(tuple(a), [a, b])
    assert sql.count("(%s, %s, %s, %s)") == 2 and "ON CONFLICT (transaction_id) DO NOTHING" in sql
    assert params == ("t1", "ORDER", "r", "op", "t2", "ORDER", "r", "op")
    # t1 written by its first copy; its second copy and t2 (already there) are not new.
    assert service.first_occurrences([a, b, a], {"t1"}) == [True, False, False]
