"""The service checks after a recovery: the health endpoint answers healthy, the list endpoint answers within the p95
latency limit of settings (`service.latencyP95Ms`) over a series of requests."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from drtopo.report import Report

TIMEOUT = 5.0
LIST_PATH = "/api/v1/exceptions?limit=20"


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in (0, 100]) of a non-empty series."""
    if not samples:
        raise ValueError("no samples; expected at least one")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile {pct} is outside (0, 100]")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET; connection failures are status 0 with the reason as the body."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
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


def latency_check(report: Report, base_url: str, requests: int, limit_ms: float) -> None:
    """`service.latency_p95`: p95 over `requests` sequential GETs of the list endpoint; every one must answer 200."""
    url = base_url.rstrip("/") + LIST_PATH
    samples, failures = [], []
    for _ in range(requests):
        start = time.perf_counter()
        status, _body = _get(url)
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
