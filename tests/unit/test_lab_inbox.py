"""The lab's incident inbox (lab/inbox.py) over real HTTP on loopback: a Notification is kept with its region, a
SubscriptionConfirmation is confirmed only through a loopback SubscribeURL, and what is not SNS's JSON is refused."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab import inbox

TOPIC = "arn:aws:sns:us-west-2:123456789012:drtopo-us-west-2-incidents"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    server = inbox._Server(0, inbox.inbox_file(tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox.url(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_notification_is_kept_with_its_region(served: str, tmp_path: Path) -> None:
    assert inbox.received(tmp_path) == []
    document = {"Type": "Notification", "MessageId": "m-1", "TopicArn": TOPIC, "Subject": "S", "Message": "B"}
    assert post(served, json.dumps(document).encode()) == 200
    [entry] = inbox.received(tmp_path)
    assert {k: entry[k] for k in ("MessageId", "TopicArn", "Subject", "Message", "Region")} == {
        "MessageId": "m-1",
        "TopicArn": TOPIC,
        "Subject": "S",
        "Message": "B",
        "Region": "us-west-2",
    }


def test_a_confirmation_is_fetched_only_on_loopback(served: str, tmp_path: Path) -> None:
    fetched: list[str] = []

    class Confirm(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    sns = ThreadingHTTPServer(("127.0.0.1", 0), Confirm)
    threading.Thread(target=sns.serve_forever, daemon=True).start()
    try:
        here = f"http://127.0.0.1:{sns.server_address[1]}/confirm?token=t"
        elsewhere = "http://sns.us-west-2.amazonaws.example/confirm?token=t"
        for url in (here, elsewhere):
            body = {"Type": "SubscriptionConfirmation", "TopicArn": TOPIC, "SubscribeURL": url}
            assert post(served, json.dumps(body).encode()) == 200
    finally:
        sns.shutdown()
        sns.server_close()
    assert fetched == ["/confirm?token=t"]
    assert inbox.received(tmp_path) == []  # a confirmation is no message


def test_what_is_not_json_is_refused(served: str, tmp_path: Path) -> None:
    assert post(served, b"not json") == 400
    assert inbox.received(tmp_path) == []
