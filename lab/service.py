"""A stand-in of the Interface Exception Collector over one stack's database, so drills measure what clients see.

`python -m lab.service --port P --conninfo "host=... port=... dbname=... user=..."`; the password comes from
PGPASSWORD in the environment, never argv. Endpoints:
  GET  /actuator/health             200 {"status": "UP", "database": "primary"|"standby"}, else 503 {"status": "DOWN"}
  GET  /api/v1/exceptions?limit=N   the newest N rows (default 20, at most 1000), newest first
  POST /api/v1/exceptions           insert one row (JSON, camelCase) -> 201 {"id": ...}; 503 when read-only or down
Each request thread keeps its own connection and reconnects after the database restarts or is promoted.
"""

from __future__ import annotations

import argparse
import errno
import json
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import errors

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
BIND_TIMEOUT_S = 15.0


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


class Handler(BaseHTTPRequestHandler):
    db: Database
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle on, the body waits for the client's delayed ACK (40 ms),
    # which capped a keep-alive connection at about 22 requests a second.
    disable_nagle_algorithm = True

    def reply(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/actuator/health":
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


def serve(host: str, port: int, conninfo: str) -> None:
    Handler.db = Database(conninfo)
    server = bind(host, port)
    server.daemon_threads = True
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lab.service", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conninfo", required=True, help="libpq conninfo without password (PGPASSWORD supplies it)")
    args = p.parse_args(argv)
    if "password" in psycopg.conninfo.conninfo_to_dict(args.conninfo):
        p.error("--conninfo must not hold a password; set PGPASSWORD in the environment")
    serve(args.host, args.port, args.conninfo)


if __name__ == "__main__":
    main()
