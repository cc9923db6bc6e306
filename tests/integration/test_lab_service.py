"""The service stand-in answers health, list and insert over its stack's database, and reports a dead database; its
API reads need the bearer token; its collector writes each consumed event's row once and captures it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from drtopo.checks.application import metric, parse_prometheus
from drtopo.kafka.offsets import read_topic
from lab import kube_workloads
from lab.core import Lab

pytestmark = pytest.mark.lab


def call(url: str, body: Any = None, token: str | None = None, authorization: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token or authorization:
        headers["Authorization"] = authorization or f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def row(txid: str) -> dict[str, str]:
    return {"transactionId": txid, "interfaceType": "ORDER", "exceptionReason": "rejected", "operation": "CREATE"}


def test_health_names_the_database_role(lab: Lab) -> None:
    lab.dr.service.start()  # pilot light keeps the standby's at 0 (the program's patch)
    assert call(f"{lab.prod.service.url}/actuator/health") == (200, {"status": "UP", "database": "primary"})
    assert call(f"{lab.dr.service.url}/actuator/health") == (200, {"status": "UP", "database": "standby"})


def api_token(lab: Lab) -> str:
    return kube_workloads.service_token(lab.password)


def test_insert_then_list_newest_first(lab: Lab) -> None:
    url = f"{lab.prod.service.url}/api/v1/exceptions"
    first, second = f"svc-{uuid.uuid4()}", f"svc-{uuid.uuid4()}"
    assert call(url, row(first))[0] == 201
    status, created = call(url, row(second))
    assert status == 201 and isinstance(created["id"], int)
    status, listed = call(f"{url}?limit=2", token=api_token(lab))
    assert status == 200 and [r["transactionId"] for r in listed] == [second, first]
    status, one = call(f"{url}/{first}", token=api_token(lab))
    assert status == 200 and one["transactionId"] == first
    assert call(f"{url}/absent-{uuid.uuid4()}", token=api_token(lab))[0] == 404
    assert call(url, row(second))[0] == 409
    assert call(url, {"transactionId": "x"})[0] == 400
    assert call(f"{url}?limit=0", token=api_token(lab))[0] == 400


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong", 401), ("Basic {token}", 401), ("Bearer {token}", 200), ("bearer {token}", 200)],
)
def test_api_reads_need_the_bearer_token(lab: Lab, authorization: str | None, status: int) -> None:
    header = authorization.format(token=api_token(lab)) if authorization else None
    assert call(f"{lab.prod.service.url}/api/v1/exceptions?limit=1", authorization=header)[0] == status


def metrics(lab: Lab) -> dict[str, float]:
    with urllib.request.urlopen(f"{lab.prod.service.url}/actuator/prometheus", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        samples = parse_prometheus(response.read().decode())
    return {s.name: s.value for s in samples}


def produce(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "log_level": 2})
    producer.produce(topic, value, key.encode())
    assert producer.flush(15) == 0


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(0.25)
    return found


def test_the_collector_writes_each_event_once_and_captures_it(lab: Lab) -> None:
    """An event on one of the runbook's topics becomes its row (interface type from the topic), a re-read of the same
    event writes nothing (counted as a duplicate), each read is captured on ExceptionCaptured, a malformed event is
    skipped (counted) without blocking the next."""
    bootstrap, url, token = lab.prod.kafka.bootstrap, lab.prod.service.url, api_token(lab)
    txid = f"event-{uuid.uuid4()}"
    event = json.dumps({"transactionId": txid, "exceptionReason": "rejected", "operation": "CREATE"}).encode()
    before = metrics(lab)
    produce(bootstrap, "DistributionFailed", txid, event)
    _status, found = wait_for(
        "the event's row", lambda: (s := call(f"{url}/api/v1/exceptions/{txid}", token=token))[0] == 200 and s
    )
    assert found["interfaceType"] == "DISTRIBUTION" and found["operation"] == "CREATE"
    produce(bootstrap, "DistributionFailed", f"bad-{txid}", b"not json")
    produce(bootstrap, "DistributionFailed", txid, event)

    def counted() -> dict[str, float] | None:
        now = metrics(lab)
        grew = all(now[n] > before[n] for n in ("collector_events_duplicate_total", "collector_events_invalid_total"))
        return now if grew else None

    after = wait_for("the re-read and the malformed event counted", counted)
    assert after["collector_events_written_total"] >= before["collector_events_written_total"] + 1
    assert after["collector_partitions_assigned"] > 0 and after["process_resident_memory_bytes"] > 0
    with psycopg.connect(lab.prod.postgres.conninfo(), autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM interface_exceptions WHERE transaction_id = %s", (txid,)
        ).fetchone() == (1,)
    captured = [json.loads(r.value) for r in read_topic(bootstrap, "ExceptionCaptured") if r.key == txid.encode()]
    assert [c["new"] for c in captured] == [True, False] and {c["sourceTopic"] for c in captured} == {
        "DistributionFailed"
    }


def test_the_standby_collector_holds_no_partitions(lab: Lab) -> None:
    with urllib.request.urlopen(f"{lab.dr.service.url}/actuator/prometheus", timeout=10) as response:
        samples = parse_prometheus(response.read().decode())
    assert metric(samples, "collector_partitions_assigned") == 0
    assert metric(samples, "collector_events_consumed_total") == 0


def test_standby_refuses_writes_with_503(lab: Lab) -> None:
    lab.dr.service.start()
    assert call(f"{lab.dr.service.url}/api/v1/exceptions", row(f"svc-{uuid.uuid4()}"))[0] == 503


def test_503_while_database_is_down_then_recovers(lab: Lab) -> None:
    health = f"{lab.prod.service.url}/actuator/health"
    lab.prod.postgres.stop()
    try:
        assert call(health)[0] == 503
        assert call(f"{lab.prod.service.url}/api/v1/exceptions", row(f"svc-{uuid.uuid4()}"))[0] == 503
    finally:
        lab.prod.postgres.start()
    deadline = time.monotonic() + 10
    while call(health)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert call(health) == (200, {"status": "UP", "database": "primary"})


def restarts(pod: dict[str, Any] | None) -> int:
    return sum(c.get("restartCount", 0) for c in (pod or {}).get("status", {}).get("containerStatuses") or [])


def test_killed_service_is_restarted_by_kubernetes_alone(lab: Lab) -> None:
    before = lab.prod.service.pod()
    assert before is not None
    lab.prod.service.kill()
    deadline = time.monotonic() + 90
    after = lab.prod.service.pod()
    while restarts(after) == restarts(before) and time.monotonic() < deadline:
        time.sleep(0.5)
        after = lab.prod.service.pod()
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert restarts(after) == restarts(before) + 1
    lab.prod.service.wait()
    assert call(f"{lab.prod.service.url}/actuator/health")[0] == 200


def test_standby_service_accepts_writes_once_its_database_is_promoted(fresh_pg: Lab) -> None:
    lab = fresh_pg
    lab.dr.service.start()
    url = lab.dr.service.url
    assert call(f"{url}/actuator/health")[1]["database"] == "standby"
    try:
        with psycopg.connect(lab.dr.postgres.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_promote(wait => true)")
        assert call(f"{url}/actuator/health") == (200, {"status": "UP", "database": "primary"})
        status, created = call(f"{url}/api/v1/exceptions", row(f"promoted-{uuid.uuid4()}"))
        assert status == 201 and created["id"] > 0
    finally:
        lab.reset_postgres()  # the session lab goes back to prod primary, dr standby
