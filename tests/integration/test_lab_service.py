"""The service stand-in answers health, list and insert over its stack's database, and reports a dead database."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import psycopg
import pytest

from lab.core import Lab

pytestmark = pytest.mark.lab


def call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
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


def test_insert_then_list_newest_first(lab: Lab) -> None:
    url = f"{lab.prod.service.url}/api/v1/exceptions"
    first, second = f"svc-{uuid.uuid4()}", f"svc-{uuid.uuid4()}"
    assert call(url, row(first))[0] == 201
    status, created = call(url, row(second))
    assert status == 201 and isinstance(created["id"], int)
    status, listed = call(f"{url}?limit=2")
    assert status == 200 and [r["transactionId"] for r in listed] == [second, first]
    assert call(url, row(second))[0] == 409
    assert call(url, {"transactionId": "x"})[0] == 400
    assert call(f"{url}?limit=0")[0] == 400


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
