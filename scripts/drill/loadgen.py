"""Steady write load for drills: rows through the service's API and messages to Kafka, each acknowledgement recorded.

RPO is measured as data: after a recovery the drill asks the new primary which acknowledged rows survived. The row
writer asks `endpoint()` for the URL to use before every request, so it follows a DNS failover the way a client does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
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


@dataclass
class LoadStats:
    acks: list[Ack] = field(default_factory=list)
    errors: int = 0
    first_error_at: float | None = None
    last_error_at: float | None = None

    def acked_keys(self) -> set[str]:
        return {a.key for a in self.acks}

    def acks_between(self, start: float, end: float) -> list[Ack]:
        return [a for a in self.acks if start <= a.at <= end]

    def first_ack_after(self, moment: float) -> Ack | None:
        return next((a for a in self.acks if a.at > moment), None)


class _Paced(threading.Thread, ABC):
    """A daemon thread calling `self.once()` at `rate` per second until stopped."""

    def __init__(self, name: str, rate: float) -> None:
        super().__init__(name=name, daemon=True)
        if rate <= 0:
            raise ValueError(f"rate {rate} is not positive; expected writes per second > 0")
        self.interval = 1.0 / rate
        self._halt = threading.Event()
        self.stats = LoadStats()
        self._lock = threading.Lock()
        track(self)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            self.once()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            else:
                next_at = time.monotonic()

    @abstractmethod
    def once(self) -> None:
        """One request; record an ack or an error."""

    def stop(self) -> LoadStats:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)
        untrack(self)
        return self.stats

    def _ack(self, key: str, target: str) -> None:
        with self._lock:
            self.stats.acks.append(Ack(key, time.time(), target))

    def _error(self) -> None:
        with self._lock:
            now = time.time()
            self.stats.errors += 1
            self.stats.first_error_at = self.stats.first_error_at or now
            self.stats.last_error_at = now


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


class RowWriter(_Paced):
    """POSTs rows to `<endpoint()>/api/v1/exceptions`; a 201 is an acknowledged write."""

    def __init__(self, endpoint: Callable[[], str], rate: float = 50.0, prefix: str = "drill", timeout: float = 1.0):
        super().__init__("row-writer", rate)
        self.endpoint = endpoint
        self.prefix = prefix
        self.timeout = timeout

    def once(self) -> None:
        key = f"{self.prefix}-{uuid.uuid4().hex}"
        try:
            base = self.endpoint()
            request = urllib.request.Request(
                f"{base.rstrip('/')}/api/v1/exceptions",
                data=json.dumps(exception_row(key)).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if response.status == 201:
                    self._ack(key, base)
                    return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        self._error()


class MessageProducer(_Paced):
    """Produces keyed messages to `topic` on `bootstrap()`; a delivery report without error is an acknowledgement."""

    def __init__(self, bootstrap: Callable[[], str], topic: str, rate: float = 50.0, prefix: str = "drill"):
        super().__init__("message-producer", rate)
        self.bootstrap = bootstrap
        self.topic = topic
        self.prefix = prefix
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
        try:
            producer = self._client()
            target = self._servers

            def delivered(err: object, _msg: object, key: str = key, target: str = target) -> None:
                if err is None:
                    self._ack(key, target)
                else:
                    self._error()

            producer.produce(self.topic, key=key, value=key, on_delivery=delivered)
            producer.poll(0)
        except (BufferError, ValueError, RuntimeError):
            self._error()

    def stop(self) -> LoadStats:
        stats = super().stop()
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        return stats
