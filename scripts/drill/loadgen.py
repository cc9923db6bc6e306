"""Steady write load for drills: rows through the service's API and messages to Kafka, each acknowledgement recorded.

RPO is measured as data: after a recovery the drill asks the new primary which acknowledged rows survived. The row
writer asks `endpoint()` for the URL to use before every request, so it follows a DNS failover the way a client does.
"""

from __future__ import annotations

import bisect
import http.client
import itertools
import json
import logging
import threading
import time
import urllib.parse
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# librdkafka reports every refused connection to a dead cluster; a drill kills clusters on purpose.
QUIET_LOG = logging.getLogger("drtopo.drill.kafka")
QUIET_LOG.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Ack:
    key: str
    at: float  # wall-clock seconds (time.time()) when the acknowledgement arrived
    target: str
    sent: float | None = None  # wall-clock seconds when its request was sent (None: not recorded)


@dataclass
class LoadStats:
    """Acknowledgements in the order they arrived (their times never decrease) and the failed requests."""

    acks: list[Ack] = field(default_factory=list)
    errors: int = 0
    first_error_at: float | None = None
    last_error_at: float | None = None
    started_at: float | None = None  # wall-clock time the first thread writing into these stats started
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def ack(self, key: str, target: str, sent: float | None = None) -> None:
        # The time is taken under the lock, so `acks` stays sorted by time even with many writer threads.
        with self._lock:
            self.acks.append(Ack(key, time.time(), target, sent))

    def error(self) -> None:
        with self._lock:
            now = time.time()
            self.errors += 1
            self.first_error_at = self.first_error_at or now
            self.last_error_at = now

    def acked_keys(self) -> set[str]:
        return {a.key for a in self.acks}

    def acks_between(self, start: float, end: float) -> list[Ack]:
        lo = bisect.bisect_left(self.acks, start, key=_at)
        hi = bisect.bisect_right(self.acks, end, key=_at)
        return self.acks[lo:hi]

    def first_ack_after(self, moment: float) -> Ack | None:
        i = bisect.bisect_right(self.acks, moment, key=_at)
        return self.acks[i] if i < len(self.acks) else None

    def first_ack_sent_after(self, moment: float) -> Ack | None:
        """The first acknowledgement of a request sent after `moment`: a response already on the wire when a
        server died (sent before, arriving after) is the old server's last word, not a recovery."""
        i = bisect.bisect_right(self.acks, moment, key=_at)
        return next((a for a in self.acks[i:] if a.sent is None or a.sent > moment), None)

    def longest_gap(self, start: float, end: float) -> float | None:
        """The longest time no write was acknowledged around [start, end]: the gaps between consecutive
        acknowledgements from the last one at or before `start` to the first one after `end` (so an outage that
        began before `start` or ends after `end` is counted whole). None without an acknowledgement after `end`."""
        after = bisect.bisect_right(self.acks, end, key=_at)
        if after >= len(self.acks):
            return None
        first = max(bisect.bisect_right(self.acks, start, key=_at) - 1, 0)
        times = [a.at for a in self.acks[first : after + 1]]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def rate(self, start: float | None = None, end: float | None = None) -> float:
        """Acknowledgements per second between `start` and `end` (default: the first and the last)."""
        if not self.acks:
            return 0.0
        start = self.acks[0].at if start is None else start
        end = self.acks[-1].at if end is None else end
        return len(self.acks_between(start, end)) / (end - start) if end > start else 0.0


def _at(a: Ack) -> float:
    return a.at


def per_second(acks: Sequence[Ack], origin: float) -> list[tuple[float, int]]:
    """(second since `origin`, acknowledgements in that second) for every second from the first to the last ack."""
    if not acks:
        return []
    counts: dict[int, int] = {}
    for a in acks:
        counts[int(a.at - origin)] = counts.get(int(a.at - origin), 0) + 1
    first, last = min(counts), max(counts)
    return [(float(s), counts.get(s, 0)) for s in range(first, last + 1)]


class _Paced(threading.Thread, ABC):
    """A daemon thread calling `self.once()` `rate` times per second until stopped.

    It keeps the pace by counting what is due since it started, so a cheap `once()` (a Kafka produce) can run
    thousands of times a second without a sleep each; after a stall (a slow request on a busy machine) it
    catches up at most half a second's worth, so an outage is not followed by a burst.
    """

    def __init__(self, name: str, rate: float, stats: LoadStats | None = None) -> None:
        super().__init__(name=name, daemon=True)
        if rate <= 0:
            raise ValueError(f"rate {rate} is not positive; expected writes per second > 0")
        self.rate = rate
        self._halt = threading.Event()
        self.stats = stats if stats is not None else LoadStats()
        track(self)

    def run(self) -> None:
        with self.stats._lock:
            self.stats.started_at = self.stats.started_at or time.time()
        start, done = time.monotonic(), 0
        backlog = max(1, int(self.rate / 2))
        while not self._halt.is_set():
            due = int((time.monotonic() - start) * self.rate) - done
            if due <= 0:
                self._halt.wait(max((done + 1) / self.rate - (time.monotonic() - start), 0.0005))
                continue
            if due > backlog:  # fell behind: drop what cannot be caught up within half a second
                done += due - backlog
            self.once()
            done += 1

    @abstractmethod
    def once(self) -> None:
        """One request; record an ack or an error."""

    def stop(self) -> LoadStats:
        self._halt.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=10)
        untrack(self)
        return self.stats

    def _ack(self, key: str, target: str, sent: float | None = None) -> None:
        self.stats.ack(key, target, sent)

    def _error(self) -> None:
        self.stats.error()


class Stoppable(Protocol):
    def stop(self) -> object: ...


# Every load or consumer thread not yet stopped: a scenario that breaks half-way must not leave writers writing, or
# a consumer holding its group, into the next scenario.
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def track(thread: Stoppable) -> None:
    """Register a thread `stop_all` stops; its own `stop` must call `untrack`."""
    _LIVE.add(thread)


def untrack(thread: Stoppable) -> None:
    _LIVE.discard(thread)


def stop_all() -> int:
    """Stop every tracked thread still running; returns how many there were."""
    live = list(_LIVE)
    for thread in live:
        thread.stop()
    return len(live)


def exception_row(key: str) -> dict[str, object]:
    """A row of the service's `interface_exceptions`, as its API accepts it (camelCase JSON)."""
    return {
        "transactionId": key,
        "interfaceType": "ORDER",
        "exceptionReason": "drill load",
        "operation": "CREATE_ORDER",
        "severity": "MEDIUM",
        "customerId": "drill",
    }


class _RowLane(_Paced):
    """One client connection (HTTP/1.1 keep-alive) POSTing rows; a 201 is an acknowledged write."""

    def __init__(self, writer: RowWriter, index: int, rate: float) -> None:
        super().__init__(f"row-writer-{index}", rate, writer.stats)
        self.writer = writer
        self._conn: http.client.HTTPConnection | None = None
        self._base = ""

    def _connection(self, base: str) -> http.client.HTTPConnection:
        if self._conn is None or base != self._base:
            self._close()
            url = urllib.parse.urlsplit(base)
            if url.scheme != "http" or not url.hostname:
                raise ValueError(f"service URL {base!r} is not http://host:port")
            self._conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=self.writer.timeout)
            self._base = base
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def once(self) -> None:
        key = f"{self.writer.prefix}-{uuid.uuid4().hex}"
        sent = time.time()
        try:
            base = self.writer.endpoint()
            conn = self._connection(base)
            body = json.dumps(exception_row(key)).encode()
            conn.request("POST", "/api/v1/exceptions", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 201:
                self._ack(key, base, sent)
                return
            if response.will_close:
                self._close()
        except (OSError, http.client.HTTPException, ValueError):
            self._close()  # a refused or broken connection: the next request connects afresh
        self._error()

    def stop(self) -> LoadStats:
        stats = super().stop()
        self._close()
        return stats


class RowWriter:
    """POSTs rows to `<endpoint()>/api/v1/exceptions` over `connections` client connections sharing `rate`.

    A 201 is an acknowledged write. `endpoint()` is asked before every request, so the writer follows a DNS
    failover the way a client does; each connection is kept alive and re-opened after an error.
    """

    def __init__(
        self,
        endpoint: Callable[[], str],
        rate: float = 50.0,
        prefix: str = "drill",
        timeout: float = 1.0,
        connections: int = 1,
    ) -> None:
        if connections < 1:
            raise ValueError(f"connections {connections} is invalid; expected at least 1")
        if rate <= 0:
            raise ValueError(f"rate {rate} is not positive; expected writes per second > 0")
        self.endpoint, self.prefix, self.timeout, self.rate = endpoint, prefix, timeout, rate
        self.stats = LoadStats()
        self.lanes = [_RowLane(self, i, rate / connections) for i in range(connections)]
        for lane in self.lanes:
            untrack(lane)
        track(self)

    def start(self) -> None:
        for lane in self.lanes:
            lane.start()

    def is_alive(self) -> bool:
        return any(lane.is_alive() for lane in self.lanes)

    def stop(self) -> LoadStats:
        for lane in self.lanes:
            lane._halt.set()
        for lane in self.lanes:
            lane.stop()
        untrack(self)
        return self.stats


class MessageProducer(_Paced):
    """Produces keyed messages to `topic` on `bootstrap()`; a delivery report without error is an acknowledgement."""

    def __init__(
        self,
        bootstrap: Callable[[], str],
        topic: str,
        rate: float = 50.0,
        prefix: str = "drill",
        value: Callable[[str], bytes] | None = None,
    ) -> None:
        super().__init__("message-producer", rate)
        self.bootstrap = bootstrap
        self.topic = topic
        self.prefix = prefix
        self.value = value  # the message's value for its key (default: the key itself)
        self._producer = None
        self._servers = ""
        self._seq = 0

    def _client(self) -> Any:
        from confluent_kafka import Producer

        servers = self.bootstrap()
        if self._producer is None or servers != self._servers:
            if self._producer is not None:
                self._producer.flush(1)
            self._producer = Producer(
                {
                    "bootstrap.servers": servers,
                    "acks": "all",
                    "enable.idempotence": True,
                    "message.timeout.ms": 5000,
                    "linger.ms": 5,
                    "logger": QUIET_LOG,
                }
            )
            self._servers = servers
        return self._producer

    def once(self) -> None:
        self._seq += 1
        key = f"{self.prefix}-{self._seq}"
        sent = time.time()
        try:
            producer = self._client()
            target = self._servers

            def delivered(err: object, _msg: object, key: str = key, target: str = target, sent: float = sent) -> None:
                if err is None:
                    self._ack(key, target, sent)
                else:
                    self._error()

            value = self.value(key) if self.value else key
            producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
            producer.poll(0)
        except (BufferError, ValueError, RuntimeError):
            self._error()

    def stop(self) -> LoadStats:
        stats = super().stop()
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        return stats
