"""The drill's load: a row writer acknowledges what a server accepted, and stop_all stops what a scenario left."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from scripts.drill.loadgen import RowWriter, stop_all


class _Accepting(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_writer_records_every_acknowledged_row_and_stop_all_stops_it(service: str) -> None:
    writer = RowWriter(lambda: service, rate=200, prefix="unit")
    writer.start()
    deadline = time.monotonic() + 10
    while len(writer.stats.acks) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stop_all() == 1
    assert not writer.is_alive()
    acked = len(writer.stats.acks)
    assert acked >= 5 and writer.stats.errors == 0
    assert all(a.key.startswith("unit-") and a.target == service for a in writer.stats.acks)
    time.sleep(0.05)
    assert len(writer.stats.acks) == acked  # stopped means no more writes
    assert stop_all() == 0
