"""The runbook's post-recovery steps 4-6 and its performance validation, made checks that can fail.

- `service.api_auth` (step 4): the API answers an authenticated call (`Authorization: Bearer <token>`, the token from
  the environment variable settings name, handed in by the command) and refuses the same call without the token.
- `service.processing` (step 5): a probe event produced to the Kafka cluster the application consumes shows up as its
  row through the API within `service.processingLimitSeconds`.
- `kafka.consistency` (after a Kafka failover): every event of the collector's topics in the last
  `service.consistencyWindowSeconds`, up to the group's committed offsets, has its row (0 missing; a record without a
  transactionId is no exception event and is left out); `kafka.duplicates`: the events the collector found already
  written (re-read after the switch) within what MirrorMaker 2's checkpoints allow: per partition up to
  `offsetLagMax` records (offset-sync granularity), plus what the collector consumes in one checkpoint interval (the
  commits a checkpoint can miss).
- `service.metrics` (step 6): `/actuator/prometheus` answers and parses as the Prometheus text format;
  `service.memory`: the service's memory against `service.memoryLimitMb` (the JVM's `jvm_memory_used_bytes` summed,
  as the runbook's jvm.memory.used, else `process_resident_memory_bytes`).
The probe and the consistency check run their Kafka client in a child (drtopo/kafka/isolated.py), like the Kafka
checks. Which cluster the application consumes comes from its endpoints ConfigMap (drtopo/kafka/app_switch.py).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg
from confluent_kafka import KafkaException, Producer

from drtopo.database.connect import connect
from drtopo.kafka import isolated
from drtopo.kafka.admin import Partition, committed_offsets
from drtopo.kafka.offsets import read_topic
from drtopo.outputs import StackOutputs
from drtopo.report import Report
from drtopo.settings import Settings

API_AUTH, PROCESSING, CONSISTENCY, DUPLICATES = (
    "service.api_auth",
    "service.processing",
    "kafka.consistency",
    "kafka.duplicates",
)
METRICS, MEMORY = "service.metrics", "service.memory"
API_PATH = "/api/v1/exceptions"
TIMEOUT = 5.0
PROBE_OPERATION = "DRTOPO_PROBE"
# The collector's counters (lab/service.py; the application's own names where they differ belong in settings).
DUPLICATE_METRIC = "collector_events_duplicate_total"
CONSUMED_METRIC = "collector_events_consumed_total"
START_METRIC = "process_start_time_seconds"
STEP_TIMEOUT = 120.0


# ---- pure parts ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    """`a="x",b="y"` -> (("a", "x"), ("b", "y")), with the format's escapes (\\\\, \\", \\n)."""
    out, i = [], 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= len(text) or text[eq + 1] != '"':
            raise ValueError(f"metrics line {line!r}: bad label set")
        name, j, value = text[i:eq].strip(), eq + 2, []
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                value.append({"n": "\n"}.get(text[j + 1], text[j + 1]))
                j += 2
            else:
                value.append(text[j])
                j += 1
        if j >= len(text):
            raise ValueError(f"metrics line {line!r}: unterminated label value")
        out.append((name, "".join(value)))
        i = j + 1
        if i < len(text) and text[i] == ",":
            i += 1
    return tuple(out)


def parse_prometheus(text: str) -> list[Sample]:
    """The samples of a Prometheus text-format (0.0.4) exposition; ValueError naming the first bad line (pure)."""
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            label_text, close, after = rest.rpartition("}")
            if not close:
                raise ValueError(f"metrics line {line!r}: no closing brace")
            labels = _labels(label_text, line)
            fields = after.split()
        else:
            name, *fields = line.split()
            labels = ()
        if not name or not fields or len(fields) > 2:
            raise ValueError(f"metrics line {line!r}: expected `name[{{labels}}] value [timestamp]`")
        try:
            value = float(fields[0])
        except ValueError:
            raise ValueError(f"metrics line {line!r}: value {fields[0]!r} is not a number") from None
        samples.append(Sample(name.strip(), labels, value))
    return samples


def metric(samples: Iterable[Sample], name: str) -> float | None:
    """The sum of `name`'s samples, None when there is none (pure)."""
    values = [s.value for s in samples if s.name == name]
    return sum(values) if values else None


def memory_bytes(samples: list[Sample]) -> tuple[float, str] | None:
    """The service's memory and the metric it came from: the JVM's used memory summed, else the process RSS (pure)."""
    for name in ("jvm_memory_used_bytes", "process_resident_memory_bytes"):
        value = metric(samples, name)
        if value is not None:
            return value, name
    return None


def duplicates_allowed(partitions: int, offset_lag_max: int, rate_per_s: float, checkpoint_interval_s: int) -> int:
    """Re-read events a consumer group moved by checkpoints may see: up to `offset_lag_max` per partition (translated
    offsets trail by up to the offset-sync granularity) plus one checkpoint interval of consumption (pure)."""
    return partitions * offset_lag_max + math.ceil(max(rate_per_s, 0.0) * checkpoint_interval_s)


def transaction_id(value: bytes | None) -> str | None:
    """An exception event's transactionId, from its JSON value; None for a record that is not such an event (the
    collector cannot write a row for it: it counts it as invalid) (pure)."""
    try:
        body = json.loads(value or b"null")
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("transactionId"), str) and body["transactionId"]:
        return str(body["transactionId"])
    return None


def probe_event(txid: str) -> dict[str, str]:
    """The probe's event: a row the collector writes like any other, marked as drtopo's (pure)."""
    return {
        "transactionId": txid,
        "exceptionReason": "drtopo validate: exception processing probe",
        "operation": PROBE_OPERATION,
    }


# ---- HTTP -----------------------------------------------------------------------------------------------------------
def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (with a bearer token when given); unreachable is status 0 with the reason."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc)).encode()


def api_check(report: Report, base_url: str, token: str | None, token_env: str) -> None:
    """`service.api_auth`: 200 and a JSON list with the token, 401 or 403 without it."""
    if not token:
        report.skip(API_AUTH, f"not checked: no API token in ${token_env}")
        return
    url = f"{base_url.rstrip('/')}{API_PATH}?limit=5"
    status, body = http_get(url, token)
    try:
        listed = isinstance(json.loads(body), list)
    except ValueError:
        listed = False
    anonymous, _ = http_get(url)
    ok = status == 200 and listed and anonymous in (401, 403)
    detail = f"GET {url} with the token -> {status or 'unreachable'}; without it -> {anonymous or 'unreachable'}"
    if status == 200 and not listed:
        detail += " (with the token: not a JSON list)"
    report.check(API_AUTH, ok, detail, value=status, limit=200)


def metrics_checks(report: Report, base_url: str, settings: Settings) -> list[Sample]:
    """`service.metrics` and `service.memory`; returns the samples (empty when the scrape failed)."""
    service = settings.service
    url = base_url.rstrip("/") + service.metrics_path
    status, body = http_get(url)
    samples: list[Sample] = []
    why = f"GET {url} -> {status or 'unreachable'}"
    if status == 200:
        try:
            samples = parse_prometheus(body.decode(errors="replace"))
            why = f"{why}: {len(samples)} samples"
        except ValueError as exc:
            why = f"{why}: {exc}"
    report.check(METRICS, bool(samples), why, value=len(samples), limit=">= 1")
    found = memory_bytes(samples)
    if found is None:
        report.check(MEMORY, False, f"no memory metric in {url}", limit=service.memory_limit_mb)
        return samples
    mb = round(found[0] / 1024 / 1024, 1)
    report.check(MEMORY, mb <= service.memory_limit_mb, f"{found[1]} at {url}", value=mb, limit=service.memory_limit_mb)
    return samples


# ---- Kafka (in an isolated child) -----------------------------------------------------------------------------------
def produce_probe(bootstrap: str, topic: str, txid: str) -> None:
    """Produce the probe event and wait for its acknowledgement (KafkaException when it is not acknowledged)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 10000, "log_level": 2})
    errors: list[str] = []
    producer.produce(
        topic,
        json.dumps(probe_event(txid)).encode(),
        txid.encode(),
        on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
    )
    left = producer.flush(15)
    if left or errors:
        raise KafkaException(f"probe to {topic} on {bootstrap} not acknowledged: {errors[:1] or 'timed out'}")


def processing_step(report: Report, base_url: str, token: str | None, bootstrap: str, topic: str, limit: float) -> None:
    """`service.processing`: produce a probe event, poll the API for its row until `limit` seconds."""
    if not token:
        report.skip(PROCESSING, "not checked: no API token to read the probe's row")
        return
    txid = f"drtopo-probe-{uuid.uuid4()}"
    try:
        produce_probe(bootstrap, topic, txid)
    except KafkaException as exc:
        report.check(PROCESSING, False, str(exc.args[0]), limit=limit)
        return
    start = time.monotonic()
    url = f"{base_url.rstrip('/')}{API_PATH}/{txid}"
    status = 0
    while True:
        status, _ = http_get(url, token)
        elapsed = time.monotonic() - start
        if status == 200 or elapsed > limit:
            break
        time.sleep(0.2)
    took = round(elapsed, 2)
    # A row seen at the first poll may still have taken longer than the limit: both must hold.
    in_time = status == 200 and elapsed <= limit
    detail = f"probe {txid} to {topic} on {bootstrap}: its row through the API " + (
        f"after {took:.2f} s (limit {limit:g} s)"
        if status == 200
        else f"not within {limit:g} s (last {status or 'unreachable'})"
    )
    report.check(PROCESSING, in_time, detail, value=took, limit=limit)


def consistency_step(report: Report, settings: Settings, outputs: StackOutputs, bootstrap: str) -> None:
    """`kafka.consistency`: every event up to the group's committed offsets on `bootstrap` has its row."""
    group, topics = settings.kafka.consumer_group, settings.service.event_topics
    window = settings.service.consistency_window_seconds
    since_ms = int((time.time() - window) * 1000)
    try:
        committed = committed_offsets(bootstrap, group, topics)
        events: dict[str, Partition] = {}
        not_events = 0  # committed records with no transactionId: no row can exist for them
        for topic in topics:
            for r in read_topic(bootstrap, topic, since_ms=since_ms):
                tp = Partition(r.topic, r.partition)
                if tp not in committed or r.offset >= committed[tp]:
                    continue
                txid = transaction_id(r.value)
                if txid:
                    events.setdefault(txid, tp)
                else:
                    not_events += 1
    except (KafkaException, LookupError, TimeoutError) as exc:
        report.check(CONSISTENCY, False, f"group {group} on {bootstrap}: {exc}", limit=0)
        return
    try:
        with connect(outputs) as conn:
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT transaction_id FROM interface_exceptions WHERE transaction_id = ANY(%s)", (list(events),)
                )
            }
    except psycopg.Error as exc:
        report.check(CONSISTENCY, False, f"database: {str(exc).strip().splitlines()[0]}", limit=0)
        return
    missing = sorted(set(events) - present)
    report.measured["consistency"] = {
        "bootstrap": bootstrap,
        "events": len(events),
        "partitions_committed": len(committed),
        "missing": missing[:20],
        "not_events": not_events,
        "window_seconds": window,
    }
    detail = f"{len(events)} events of the last {window:g} s, {len(committed)} committed partitions on {bootstrap}"
    if not_events:
        detail += f" ({not_events} records without a transactionId left out: not exception events)"
    if missing:
        detail += f"; no row for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
    report.check(CONSISTENCY, not missing, detail, value=len(missing), limit=0)


def run_steps(
    settings: Settings, outputs: StackOutputs, base_url: str, token: str | None, bootstrap: str
) -> Iterator[Report]:
    """The child's side: the probe, then the consistency check, each in a Report of its own."""
    part = Report()
    topic = settings.service.event_topics[-1]
    processing_step(part, base_url, token, bootstrap, topic, settings.service.processing_limit_seconds)
    yield part
    part = Report()
    consistency_step(part, settings, outputs, bootstrap)
    yield part


def kafka_processing_checks(
    report: Report, settings: Settings, outputs: StackOutputs, base_url: str, token: str | None, bootstrap: str
) -> None:
    """`service.processing` and `kafka.consistency` in an isolated child; a crash or hang fails the one it hit."""
    pending = [PROCESSING, CONSISTENCY]
    try:
        for part in isolated.stream(
            run_steps, settings, outputs, base_url, token, bootstrap, timeout=STEP_TIMEOUT, what="the processing checks"
        ):
            for c in part.checks:
                report.record(c.name, c.outcome, c.detail, c.value, c.limit)
            report.measured.update(part.measured)
            pending.pop(0)
    except isolated.IsolatedError as exc:
        for name in pending:
            report.check(name, False, str(exc))


def duplicates_check(report: Report, settings: Settings, samples: list[Sample]) -> None:
    """`kafka.duplicates`: the collector's re-read events against what the checkpoints allow."""
    duplicates, consumed, started = (metric(samples, n) for n in (DUPLICATE_METRIC, CONSUMED_METRIC, START_METRIC))
    if duplicates is None or consumed is None or started is None:
        report.skip(DUPLICATES, f"not measured: the service exports no {DUPLICATE_METRIC}")
        return
    mirror = settings.kafka.mirror
    partitions = int(report.measured.get("consistency", {}).get("partitions_committed", 0))
    rate = consumed / max(time.time() - started, 1.0)
    allowed = duplicates_allowed(partitions, mirror.offset_lag_max, rate, mirror.emit_checkpoints_interval_seconds)
    detail = (
        f"re-read since the service started: {partitions} partitions x offsetLagMax {mirror.offset_lag_max} + "
        f"{rate:.1f} events/s x checkpoint interval {mirror.emit_checkpoints_interval_seconds} s"
    )
    report.check(DUPLICATES, duplicates <= allowed, detail, value=int(duplicates), limit=allowed)


def application_checks(
    report: Report,
    settings: Settings,
    outputs: StackOutputs,
    base_url: str,
    token: str | None,
    bootstrap: str,
) -> None:
    """Steps 4-6 of the runbook's post-recovery validation, and the Kafka consistency after a failover."""
    api_check(report, base_url, token, settings.service.api_auth_env)
    kafka_processing_checks(report, settings, outputs, base_url, token, bootstrap)
    samples = metrics_checks(report, base_url, settings)
    duplicates_check(report, settings, samples)
