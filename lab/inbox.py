"""The lab's incident inbox: an HTTP subscriber on loopback to both stacks' incident topics in the emulator.

`python -m lab.inbox --port P --file F` listens on 127.0.0.1:P and appends each SNS `Notification` it is posted
(Type, MessageId, TopicArn, Subject, Message, Timestamp, and when it arrived) as one JSON line to F. moto 5 marks an
http subscription confirmed at once and sends no handshake; a `SubscriptionConfirmation` (real SNS's) is confirmed by
fetching its SubscribeURL, only when that URL is on loopback. `python -m lab inbox [--json]` lists the file
(`received`).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
PROCESS_NAME = "inbox"
FILE_NAME = "inbox.jsonl"
MAX_BODY_BYTES = 1024 * 1024
KEPT = ("Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

log = logging.getLogger(__name__)


def url(port: int) -> str:
    """The endpoint the lab subscribes to the incident topics."""
    return f"http://{LOOPBACK}:{port}/sns"


def inbox_file(root: Path) -> Path:
    return root / FILE_NAME


def topic_region(topic_arn: str) -> str:
    parts = topic_arn.split(":")
    return parts[3] if len(parts) >= 4 else ""


def received(root: Path) -> list[dict[str, Any]]:
    """What the inbox received, oldest first; each with its topic's `Region`. Empty when nothing came yet."""
    try:
        lines = inbox_file(root).read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = [json.loads(line) for line in lines if line.strip()]
    return [{**e, "Region": topic_region(str(e.get("TopicArn", "")))} for e in entries]


def _confirm(subscribe_url: str) -> None:
    host = urlsplit(subscribe_url).hostname
    if host not in _LOOPBACK_HOSTS:
        log.warning("not confirming %s: not on loopback", subscribe_url)
        return
    with urllib.request.urlopen(subscribe_url, timeout=10) as answer:
        answer.read()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send_error(413, "body too large")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_error(400, "expected an SNS JSON document")
            return
        kind = body.get("Type")
        if kind == "SubscriptionConfirmation" and body.get("SubscribeURL"):
            _confirm(str(body["SubscribeURL"]))
        elif kind == "Notification":
            entry = {k: body.get(k) for k in KEPT}
            entry["ReceivedAt"] = datetime.now(UTC).isoformat()
            with self.server.lock, self.server.file.open("a") as out:
                out.write(json.dumps(entry) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    def __init__(self, port: int, file: Path) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.file = file
        self.lock = threading.Lock()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.inbox", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.touch()
    _Server(args.port, args.file).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
