"""The service checks after a recovery: the health endpoint answers healthy, the list endpoint answers within the p95
latency limit of settings (`service.latencyP95Ms`) over a series of requests, and (after a corruption cutover) the
service takes a write again: one probe row POSTed through its API, then removed from the database by its id."""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from drtopo.errors import one_line
from drtopo.report import Report

log = logging.getLogger(__name__)

TIMEOUT = 5.0
LIST_PATH = "/api/v1/exceptions?limit=20"
WRITE_PATH = "/api/v1/exceptions"
WRITE_PROBE = "service.write_probe"
# A probe row says what it is in every text column the service lets a client set, so that one a removal missed is
# never taken for an application's row.
PROBE_PREFIX = "drtopo-write-probe-"


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in (0, 100]) of a non-empty series."""
    if not samples:
        raise ValueError("no samples; expected at least one")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile {pct} is outside (0, 100]")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (with a bearer token when given); connection failures are status 0 with the reason as
    the body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return _send(urllib.request.Request(url, headers=headers))


def _send(request: urllib.request.Request) -> tuple[int, bytes]:
    """Status and body of a request; connection failures are status 0 with the reason as the body."""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason).encode()


def health_check(report: Report, base_url: str, path: str) -> bool:
    """`service.health`: HTTP 200 with `{"status": "UP"}`."""
    url = base_url.rstrip("/") + path
    status, body = _get(url)
    try:
        state = json.loads(body).get("status")
    except (ValueError, AttributeError):
        state = None
    ok = status == 200 and state == "UP"
    detail = f"GET {url} -> {status or 'unreachable'} {state or body[:80].decode(errors='replace')}"
    report.check("service.health", ok, detail, value=state or status, limit="UP")
    return ok


def latency_check(report: Report, base_url: str, requests: int, limit_ms: float, token: str | None = None) -> None:
    """`service.latency_p95`: p95 over `requests` sequential GETs of the list endpoint (with the API's bearer token
    when given); every one must answer 200."""
    url = base_url.rstrip("/") + LIST_PATH
    samples, failures = [], []
    for _ in range(requests):
        start = time.perf_counter()
        status, _body = _get(url, token)
        samples.append((time.perf_counter() - start) * 1000)
        if status != 200:
            failures.append(status)
    p95 = percentile(samples, 95)
    report.measured["latency_ms"] = {
        "p50": round(percentile(samples, 50), 1),
        "p95": round(p95, 1),
        "max": round(max(samples), 1),
        "n": requests,
    }
    detail = f"GET {url} x{requests}" + (f"; {len(failures)} failed (status {failures[0]})" if failures else "")
    report.check("service.latency_p95", not failures and p95 <= limit_ms, detail, value=round(p95, 1), limit=limit_ms)


def probe_body(transaction_id: str) -> dict[str, str]:
    """The probe row the service is asked to write (pure): marked as drtopo's in every field it sets."""
    return {
        "transactionId": transaction_id,
        "interfaceType": "DRTOPO",
        "exceptionReason": "drtopo write probe after a recovery; removed by drtopo",
        "operation": "PROBE",
    }


def write_probe(
    report: Report,
    base_url: str,
    remove: Callable[[int, str], int],
    timeout: float = 30.0,
    poll: float = 0.25,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """`service.write_probe`: the service acknowledges a write through its own API (POST of one probe row), retried
    until `timeout` while it reconnects to a database that has just changed under it; then `remove(id,
    transaction_id)` deletes that row (returns the rows deleted), so nothing is left behind. A write never acknowledged
    fails the check; a probe row that could not be removed is named (id and transactionId) so that it is found."""
    url = base_url.rstrip("/") + WRITE_PATH
    transaction_id = f"{PROBE_PREFIX}{uuid.uuid4()}"
    body = json.dumps(probe_body(transaction_id)).encode()
    started = monotonic()
    attempts, status, answer = 0, 0, b""
    while True:
        attempts += 1
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
        status, answer = _send(request)
        if status == 201 or monotonic() - started >= timeout:
            break
        time.sleep(poll)
    seconds = round(monotonic() - started, 3)
    probe: dict[str, Any] = {
        "url": url,
        "transaction_id": transaction_id,
        "status": status,
        "attempts": attempts,
        "seconds": seconds,
    }
    if status != 201:
        said = answer[:120].decode(errors="replace")
        detail = f"POST {url} -> {status or 'unreachable'} {said}; no write acknowledged in {seconds:.1f} s"
        report.check(WRITE_PROBE, False, detail, value=status, limit=201)
        return {**probe, "acknowledged": False}
    row_id = int(json.loads(answer)["id"])
    probe.update(acknowledged=True, id=row_id)
    try:
        probe["removed"] = remove(row_id, transaction_id) == 1
    except Exception as exc:  # the write was proven; a row left behind is named, not a failed recovery
        log.exception("removing the write probe row %s", row_id)
        probe.update(removed=False, remove_error=one_line(exc))
    left = "removed" if probe["removed"] else f"NOT removed: delete id {row_id} ({transaction_id}) by hand"
    detail = f"POST {url} -> 201, id {row_id}, after {seconds:.1f} s and {attempts} attempt(s); probe row {left}"
    report.check(WRITE_PROBE, True, detail, value=status, limit=201)
    return probe
