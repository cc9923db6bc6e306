"""A stand-in of the Interface Exception Collector over one stack's database, so drills measure what clients see.

`python -m lab.service --port P --conninfo "host=... port=... dbname=... user=..."`; the password comes from
PGPASSWORD in the environment, never argv. Endpoints:
  GET  /actuator/health             200 {"status": "UP", "database": "primary"|"standby"}, else 503 {"status": "DOWN"}
  GET  /actuator/prometheus         the collector's counters and the process's memory, Prometheus text format
  GET  /api/v1/exceptions?limit=N   the newest N rows (default 20, at most 1000), newest first
  GET  /api/v1/exceptions/<txid>    one row by its transaction id, 404 when there is none
  POST /api/v1/exceptions           insert one row (JSON, camelCase) -> 201 {"id": ...}; 503 when read-only or down
With SERVICE_API_TOKEN in the environment (the lab sets it from a Secret), every GET under /api/ needs
`Authorization: Bearer <token>` (401 without it); POST stays the lab's load path (the drills' load generator).
Each request thread keeps its own connection and reconnects after the database restarts or is promoted.

The collector: with KAFKA_BOOTSTRAP_SERVERS in the environment (from the application's endpoints ConfigMap), a thread
consumes the runbook's exception topics as consumer group KAFKA_CONSUMER_GROUP, writes each event's row idempotently
(keyed by its transactionId: a re-read event writes nothing), produces `ExceptionCaptured` for each new row, and
commits a batch's offsets only once its rows are written and its ExceptionCaptured acknowledged. It joins the group
only while its database accepts writes (a standby region's collector holds no partitions) and leaves it when the
database stops accepting them, or on SIGTERM (a clean leave, so the group rebalances at once when its pod stops). The
bootstrap is read at start: switching clusters is a new ConfigMap and a restart.
"""

from __future__ import annotations

import argparse
import errno
import hmac
import json
import os
import signal
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import errors

# The topics the collector consumes (the runbook's: one per interface that reports exceptions) and the one it
# produces; the interface type of an event that names none comes from its topic.
EVENT_TOPICS = {
    "OrderRejected": "ORDER",
    "OrderCancelled": "ORDER",
    "CollectionRejected": "COLLECTION",
    "DistributionFailed": "DISTRIBUTION",
    "ValidationError": "VALIDATION",
}
CAPTURED_TOPIC = "ExceptionCaptured"
TOKEN_ENV = "SERVICE_API_TOKEN"

COLUMNS = (
    "id",
    "transaction_id",
    "interface_type",
    "exception_reason",
    "operation",
    "status",
    "severity",
    "category",
    "retryable",
    "customer_id",
    "retry_count",
    "created_at",
    "updated_at",
)
REQUIRED = ("transaction_id", "interface_type", "exception_reason", "operation")
WRITABLE = (*REQUIRED, "status", "severity", "category", "retryable", "customer_id", "retry_count")
MAX_LIMIT = 1000
EXCEPTION_PATH = "/api/v1/exceptions/"
BIND_TIMEOUT_S = 15.0
STOP_GRACE_S = 1.5  # for the collector to leave its group on SIGTERM (the pod's grace period is 2 s)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def row_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return {camel(c): (v.isoformat() if isinstance(v, datetime) else v) for c, v in zip(COLUMNS, row, strict=True)}


def insert_values(body: Any) -> dict[str, Any]:
    """The columns to insert from a camelCase JSON object; ValueError names what is missing or unknown."""
    if not isinstance(body, dict):
        raise ValueError(f"body is {type(body).__name__}; expected a JSON object")
    allowed = {camel(c): c for c in WRITABLE}
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; expected some of {sorted(allowed)}")
    values = {allowed[k]: v for k, v in body.items()}
    missing = [camel(c) for c in REQUIRED if not values.get(c)]
    if missing:
        raise ValueError(f"missing fields {missing}; expected {[camel(c) for c in REQUIRED]}")
    return values


def event_values(topic: str, raw: bytes | None) -> dict[str, Any]:
    """The row of one exception event (a JSON object, camelCase, as the POST body) consumed from `topic`; the
    interface type defaults to the topic's. ValueError when it is not such an object (pure)."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ValueError(f"event on {topic} is not JSON: {exc}") from None
    if isinstance(body, dict) and topic in EVENT_TOPICS:
        body = {"interfaceType": EVENT_TOPICS[topic], **body}
    return insert_values(body)


def bearer_ok(header: str | None, token: str | None) -> bool:
    """No token configured, or `Authorization: Bearer <token>` with exactly that token (constant time) (pure)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class Metrics:
    """The collector's counters, shared by its thread and the HTTP handlers."""

    NAMES = {
        "collector_events_consumed_total": "exception events read from Kafka",
        "collector_events_written_total": "events whose row was written",
        "collector_events_duplicate_total": "events whose row existed (re-read after a restart or a failover)",
        "collector_events_invalid_total": "events that are not an exception (skipped)",
        "collector_exceptions_captured_total": "ExceptionCaptured events acknowledged",
        "collector_batches_failed_total": "batches left uncommitted (database or Kafka refused)",
    }

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = dict.fromkeys(self.NAMES, 0)
        self.assigned = 0
        self.bootstrap = ""
        self.started = time.time()

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                self.values[f"collector_{name}"] += n

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        with self.lock:
            values = dict(self.values)
        lines = []
        for name, help_text in self.NAMES.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {values[name]}"]
        gauges = {
            "collector_partitions_assigned": (self.assigned, "partitions this collector holds"),
            "process_resident_memory_bytes": (resident_bytes(), "resident memory size in bytes"),
            "process_start_time_seconds": (round(self.started, 3), "start time since the epoch in seconds"),
        }
        for name, (value, help_text) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        bootstrap = self.bootstrap.replace("\\", "\\\\").replace('"', '\\"')
        lines += ["# TYPE collector_kafka_info gauge", f'collector_kafka_info{{bootstrap="{bootstrap}"}} 1']
        return "\n".join(lines) + "\n"


def resident_bytes() -> int:
    """This process's resident set size (VmRSS of /proc/self/status), 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def parse_limit(query: str) -> int:
    raw = parse_qs(query).get("limit", ["20"])[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit {raw!r} is invalid; expected an integer from 1 to {MAX_LIMIT}")
    return int(raw)


class Database:
    """One connection per request thread, dropped on any connection error so the next request reconnects."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.local = threading.local()

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2)
                    self.local.conn = conn
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self.local.conn = None
                if conn is not None:
                    conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def write_events(self, rows: list[dict[str, Any]]) -> list[bool | None]:
        """Insert `rows` idempotently in one transaction: one multi-row `INSERT ... ON CONFLICT (transaction_id) DO
        NOTHING` per column set (a batch is a few statements and one commit, not a round trip per row). Per row: True
        when it was written, False when its transaction id was there already (or earlier in the batch), None when the
        database refused its values: only then is the batch retried row by row, each under a savepoint, so one bad
        event never blocks the rest. Any other error rolls back and raises; a broken connection is dropped."""
        conn = getattr(self.local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2)
                self.local.conn = conn
            try:
                with conn.transaction():
                    written: set[str] = set()
                    for columns, group in group_by_columns(rows).items():
                        written |= {r[0] for r in conn.execute(*multi_insert(columns, group)).fetchall()}
                return first_occurrences(rows, written)
            except (psycopg.DataError, psycopg.IntegrityError):
                pass
            returned: list[bool | None] = []
            with conn.transaction():
                for row in rows:
                    try:
                        with conn.transaction():
                            returned.append(bool(conn.execute(*multi_insert(tuple(row), [row])).fetchall()))
                    except (psycopg.DataError, psycopg.IntegrityError):
                        returned.append(None)
            return returned
        except psycopg.OperationalError:
            self.local.conn = None
            if conn is not None:
                conn.close()
            raise


def group_by_columns(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


def multi_insert(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> tuple[str, tuple[Any, ...]]:
    """One idempotent INSERT of `rows` (all with `columns`), returning the transaction ids it wrote (pure)."""
    one = f"({', '.join(['%s'] * len(columns))})"
    sql = (
        f"INSERT INTO interface_exceptions ({', '.join(columns)}) VALUES {', '.join([one] * len(rows))} "
        "ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id"
    )
    return sql, tuple(row[c] for row in rows for c in columns)


def first_occurrences(rows: list[dict[str, Any]], written: set[str]) -> list[bool | None]:
    """Per row, whether it is the one that wrote its transaction id (a later copy in the same batch is not) (pure)."""
    seen: set[str] = set()
    out: list[bool | None] = []
    for row in rows:
        txid = str(row["transaction_id"])
        out.append(txid in written and txid not in seen)
        seen.add(txid)
    return out


class Collector(threading.Thread):
    """The exception collector: consume the event topics as the group while the database accepts writes."""

    BATCH = 500
    WRITABLE_EVERY_S = 2.0

    def __init__(self, db: Database, metrics: Metrics, bootstrap: str, group: str) -> None:
        super().__init__(name="collector", daemon=True)
        self.db, self.metrics, self.bootstrap, self.group = db, metrics, bootstrap, group
        self.stopping = threading.Event()  # set on SIGTERM: leave the group cleanly, as a real consumer's shutdown does
        metrics.bootstrap = bootstrap

    def writable(self) -> bool:
        """The database is a primary and not fenced read-only (False when it does not answer)."""
        try:
            sql = "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only')::bool"
            return not self.db.run(sql)[0][0]
        except psycopg.Error:
            return False

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.writable():
                    self.consume_while_writable()
                else:
                    self.stopping.wait(1)
            except Exception as exc:  # the collector outlives a library error; Kubernetes keeps the log
                log(f"collector: {type(exc).__name__}: {exc}")
                self.stopping.wait(1)

    def consume_while_writable(self) -> None:
        from confluent_kafka import Consumer, Producer

        common = {"bootstrap.servers": self.bootstrap, "log_level": 3}
        consumer = Consumer(
            {
                **common,
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        producer = Producer({**common, "acks": "all", "enable.idempotence": True, "linger.ms": 5})

        def assigned(_consumer: Any, partitions: list[Any]) -> None:
            self.metrics.assigned = len(partitions)

        consumer.subscribe(list(EVENT_TOPICS), on_assign=assigned, on_revoke=lambda c, p: assigned(c, []))
        log(f"collector: joined group {self.group} on {self.bootstrap}")
        checked = time.monotonic()
        try:
            while not self.stopping.is_set():
                events = [m for m in consumer.consume(num_messages=self.BATCH, timeout=0.5) if not m.error()]
                if time.monotonic() - checked > self.WRITABLE_EVERY_S:
                    if not self.writable():
                        return  # leave the group: what was read and not committed is read again later
                    checked = time.monotonic()
                if not events:
                    continue
                if not self.handle(events, producer):
                    self.metrics.add(batches_failed_total=1)
                    return
                consumer.commit(asynchronous=False)
        finally:
            self.metrics.assigned = 0
            consumer.close()
            producer.flush(5)
            log(f"collector: left group {self.group}")

    def handle(self, events: list[Any], producer: Any) -> bool:
        """Write each event's row (idempotently) and produce its ExceptionCaptured; True once all are acknowledged."""
        failed: list[str] = []
        acked = [0]

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))
            else:
                acked[0] += 1

        parsed: list[tuple[str, dict[str, Any]]] = []
        invalid = 0
        for msg in events:
            try:
                parsed.append((msg.topic(), event_values(msg.topic(), msg.value())))
            except ValueError:
                invalid += 1
        try:
            new = self.db.write_events([values for _topic, values in parsed])
        except psycopg.Error as exc:
            log(f"collector: a batch of {len(parsed)} rows not written: {type(exc).__name__}")
            return False
        for (topic, values), is_new in zip(parsed, new, strict=True):
            if is_new is None:
                invalid += 1
                continue
            # At least once: a re-read event produces its ExceptionCaptured again, so none is lost between the row
            # and the acknowledgement.
            txid = str(values["transaction_id"])
            captured = {"transactionId": txid, "sourceTopic": topic, "new": is_new}
            producer.produce(CAPTURED_TOPIC, json.dumps(captured).encode(), txid.encode(), on_delivery=delivered)
            producer.poll(0)
        written = sum(1 for n in new if n is True)
        duplicate = sum(1 for n in new if n is False)
        left = producer.flush(10)
        self.metrics.add(
            events_consumed_total=len(events),
            events_written_total=written,
            events_duplicate_total=duplicate,
            events_invalid_total=invalid,
            exceptions_captured_total=acked[0],
        )
        if left or failed:
            log(f"collector: {left} ExceptionCaptured unacknowledged, {len(failed)} failed ({failed[:1]})")
            return False
        return True


def log(line: str) -> None:
    print(f"{datetime.now().isoformat(timespec='seconds')} {line}", flush=True)


class Handler(BaseHTTPRequestHandler):
    db: Database
    metrics: Metrics
    token: str | None = None
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle on, the body waits for the client's delayed ACK (40 ms),
    # which capped a keep-alive connection at about 22 requests a second.
    disable_nagle_algorithm = True

    def reply(self, status: HTTPStatus, payload: Any, content_type: str = "application/json") -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/api/") and not bearer_ok(self.headers.get("Authorization"), self.token):
            self.reply(HTTPStatus.UNAUTHORIZED, {"error": "a bearer token is required (Authorization: Bearer ...)"})
            return
        if url.path == "/actuator/prometheus":
            self.reply(HTTPStatus.OK, self.metrics.render(), "text/plain; version=0.0.4")
        elif url.path.startswith(EXCEPTION_PATH) and len(url.path) > len(EXCEPTION_PATH):
            self.one(url.path[len(EXCEPTION_PATH) :])
        elif url.path == "/actuator/health":
            try:
                in_recovery = self.db.run("SELECT pg_is_in_recovery()")[0][0]
            except psycopg.Error as exc:
                self.reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "DOWN", "error": type(exc).__name__})
                return
            self.reply(HTTPStatus.OK, {"status": "UP", "database": "standby" if in_recovery else "primary"})
        elif url.path == "/api/v1/exceptions":
            try:
                limit = parse_limit(url.query)
            except ValueError as exc:
                self.reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            try:
                rows = self.db.run(
                    f"SELECT {', '.join(COLUMNS)} FROM interface_exceptions ORDER BY created_at DESC, id DESC LIMIT %s",
                    (limit,),
                )
            except psycopg.Error as exc:
                self.reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": type(exc).__name__})
                return
            self.reply(HTTPStatus.OK, [row_json(r) for r in rows])
        else:
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no route {url.path}"})

    def one(self, transaction_id: str) -> None:
        try:
            rows = self.db.run(
                f"SELECT {', '.join(COLUMNS)} FROM interface_exceptions WHERE transaction_id = %s", (transaction_id,)
            )
        except psycopg.Error as exc:
            self.reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": type(exc).__name__})
            return
        if rows:
            self.reply(HTTPStatus.OK, row_json(rows[0]))
        else:
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no exception with transactionId {transaction_id!r}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/v1/exceptions":
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            values = insert_values(json.loads(self.rfile.read(length) or b"null"))
        except (ValueError, json.JSONDecodeError) as exc:
            self.reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        columns = list(values)
        sql = (
            f"INSERT INTO interface_exceptions ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id"
        )
        try:
            new_id = self.db.run(sql, tuple(values[c] for c in columns))[0][0]
        except errors.UniqueViolation:
            self.reply(HTTPStatus.CONFLICT, {"error": f"transactionId {values['transaction_id']!r} exists"})
            return
        except (errors.ReadOnlySqlTransaction, psycopg.OperationalError) as exc:
            self.reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": type(exc).__name__})
            return
        except psycopg.Error as exc:
            self.reply(HTTPStatus.BAD_REQUEST, {"error": str(exc).strip().splitlines()[0]})
            return
        self.reply(HTTPStatus.CREATED, {"id": new_id})


def bind(host: str, port: int, timeout: float = BIND_TIMEOUT_S) -> ThreadingHTTPServer:
    """The HTTP server on host:port, retrying while the port is still held (a replaced pod on the same host network
    may still be exiting), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def serve(host: str, port: int, conninfo: str, kafka: tuple[str, str] | None = None, token: str | None = None) -> None:
    """Serve HTTP on host:port; with `kafka` (bootstrap, group) the collector runs beside it."""
    Handler.db, Handler.metrics, Handler.token = Database(conninfo), Metrics(), token or None
    collector = Collector(Database(conninfo), Handler.metrics, *kafka) if kafka is not None else None
    if collector is not None:
        collector.start()
    server = bind(host, port)
    server.daemon_threads = True

    def shut_down() -> None:
        # The collector closes its consumer (a LeaveGroup: the group rebalances at once instead of waiting out the
        # session timeout, and a tool may commit the group's offsets right after the pod is gone), then HTTP stops.
        if collector is not None:
            collector.stopping.set()
            collector.join(STOP_GRACE_S)
        server.shutdown()

    # A handler, not the default: as the container's PID 1 the process would ignore SIGTERM until the SIGKILL.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: threading.Thread(target=shut_down, daemon=True).start())
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lab.service", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conninfo", required=True, help="libpq conninfo without password (PGPASSWORD supplies it)")
    p.add_argument(
        "--kafka-bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", ""),
        help="run the collector against this cluster (default $KAFKA_BOOTSTRAP_SERVERS; empty: no collector)",
    )
    p.add_argument("--group", default=os.environ.get("KAFKA_CONSUMER_GROUP", "interface-exception-collector"))
    args = p.parse_args(argv)
    if "password" in psycopg.conninfo.conninfo_to_dict(args.conninfo):
        p.error("--conninfo must not hold a password; set PGPASSWORD in the environment")
    kafka = (args.kafka_bootstrap, args.group) if args.kafka_bootstrap else None
    serve(args.host, args.port, args.conninfo, kafka, os.environ.get(TOKEN_ENV))


if __name__ == "__main__":
    main()
