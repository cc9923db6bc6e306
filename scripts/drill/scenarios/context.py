"""What every drill scenario works with: the lab, the stacks' settings and outputs, the client's view through DNS.

Scenarios run the real companion scripts in-process (their `main(argv, ctx)`, all with the one `Context` of the lab:
its project copy and its journal folder), so a drill exercises exactly what an operator would run; fault injection
goes through the lab's API.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from drtopo.context import Context
from drtopo.database.connect import connect
from drtopo.outputs import StackOutputs, load_outputs
from drtopo.report import Clock
from drtopo.settings import DrillLoad, LoadLevel, Settings, load_settings
from lab.core import Lab
from lab.resolver import Resolver
from scripts import backup, failback, promote, restore, validate
from scripts.drill.loadgen import MessageProducer, RowWriter

# The companion commands a scenario runs, by the name an operator types after `python -m scripts.`.
COMMANDS: dict[str, Callable[[Sequence[str] | None, Context | None], int]] = {
    "backup": backup.main,
    "failback": failback.main,
    "promote": promote.main,
    "restore": restore.main,
    "validate": validate.main,
}


def exit_detail(code: int, report: Path) -> str:
    """A command's exit code and, when it failed, why, from its JSON report: its first failing checks (name and
    detail) or its error, so a drill's failed step names the cause and not only `exit code 1`."""
    if code == 0:
        return f"exit code {code}"
    try:
        document = json.loads(report.read_text())
    except (OSError, ValueError):
        return f"exit code {code} (no JSON report at {report})"
    failed = [f"{c.get('name')}: {c.get('detail')}" for c in document.get("checks", []) if c.get("outcome") == "fail"]
    error = document.get("error") or (document.get("measured") or {}).get("error")
    why = "; ".join(([str(error)] if error else []) + failed[:3])
    return f"exit code {code}: {why[:600]}" if why else f"exit code {code}"


# What a context runs with when nobody chose a load: the light level (the tests' level) as settings define it.
LIGHT = DrillLoad().light


@dataclass(frozen=True)
class Seeded:
    rows: int  # added before this scenario
    seconds: float


@dataclass
class DrillContext:
    """One drill's lab, and the load every scenario runs under (`--load`, from `drtopo:drill.load`).

    Scenarios make their writers with `row_writer` / `message_producer`, so the load level reaches each of them
    and the drill can report what every writer achieved; `clock()` marks the scenario's start on the wall clock.
    """

    lab: Lab
    json_dir: Path
    commands: Context  # the context of every command the drill runs (scripts/drill/run.py: lab_context)
    quiet: bool = False
    load: LoadLevel = LIGHT
    load_name: str = "light"
    # The round trip of the links between the regions (replication, MirrorMaker) each scenario runs over (0: none).
    wan_latency_ms: int = 0
    writers: list[RowWriter] = field(default_factory=list)
    producers: list[MessageProducer] = field(default_factory=list)
    origin: float = 0.0  # wall-clock time the scenario's clock started
    _dns_cache: tuple[float, str, str] = field(default=(0.0, "", ""))
    _dns_lock: threading.Lock = field(default_factory=threading.Lock)
    _resolver: Resolver | None = None

    def begin(self) -> None:
        """A new scenario: forget the previous one's writers, and the record set the lab rebuilt since."""
        self.writers, self.producers, self.origin = [], [], time.time()
        with self._dns_lock:
            self._resolver, self._dns_cache = None, (0.0, "", "")

    def row_writer(self, endpoint: Callable[[], str], prefix: str) -> RowWriter:
        """A writer at the drill's load (writes/s over its client connections), reported after the scenario."""
        writer = RowWriter(endpoint, rate=self.load.write_rate, prefix=prefix, connections=self.load.connections)
        self.writers.append(writer)
        return writer

    def message_producer(
        self, bootstrap: Callable[[], str], topic: str, prefix: str, value: Callable[[str], bytes] | None = None
    ) -> MessageProducer:
        producer = MessageProducer(bootstrap, topic, rate=self.load.kafka_rate, prefix=prefix, value=value)
        self.producers.append(producer)
        return producer

    def settings(self, stack: str) -> Settings:
        return load_settings(stack, self.lab.project_dir)

    def outputs(self, stack: str) -> StackOutputs:
        return load_outputs(self.lab.region(stack).outputs_path, stack)

    def outputs_path(self, stack: str) -> Path:
        return self.lab.region(stack).outputs_path

    def clock(self) -> Clock:
        self.origin = time.time()
        return Clock(self.commands.reporter, quiet=self.quiet)

    def run(self, module: str, argv: Sequence[str]) -> int:
        """Run `python -m scripts.<module> ARGV` in-process, in the lab's context, and return its exit code."""
        return COMMANDS[module](list(argv), self.commands)

    def active_service_url(self, ttl: float = 0.25) -> str:
        """The service URL a client reaches: the region whose record Route53 answers (cached ttl)."""
        return self._active(ttl)[1]

    def active_stack(self, ttl: float = 0.25) -> str:
        """The stack whose record Route53 answers."""
        return self._active(ttl)[2]

    def _active(self, ttl: float) -> tuple[float, str, str]:
        # Many writer threads ask at once: one of them asks Route53, the others wait for its answer.
        with self._dns_lock:
            at, url, stack = self._dns_cache
            if url and time.monotonic() - at < ttl:
                return self._dns_cache
            outputs = {s: self.outputs(s) for s in ("prod", "dr")}
            # What Route53's data plane answers (lab/resolver.py): the record set as last seen through us-east-1's
            # gate, each region's takeover signal read through its own gate, so clients follow a failover made while
            # a region is cut off.
            if self._resolver is None:
                self._resolver = Resolver(outputs["prod"], self.lab.aws_endpoints())
            primary = self._resolver.serving()
            stack = next((s for s, o in outputs.items() if o.set_identifier == primary), "prod")
            self._dns_cache = (time.monotonic(), outputs[stack].service_url, stack)
            return self._dns_cache

    def seed(self, stack: str = "prod", timeout: float = 300) -> Seeded:
        """The database holds at least the load's `seed_rows` before the fault: one INSERT ... generate_series on
        the primary, replayed by the standby before the scenario starts."""
        start = time.monotonic()
        with connect(self.outputs(stack)) as conn:
            (have,) = conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()
            missing = max(self.load.seed_rows - have, 0)
            if missing:
                conn.execute(SEED, {"rows": missing, "first": have + 1})
                conn.execute("ANALYZE interface_exceptions")
            (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        standby = self.lab.region(self.settings(stack).peer_stack).postgres.conninfo()
        with psycopg.connect(standby, password=self.lab.password, autocommit=True) as peer:
            deadline = time.monotonic() + timeout
            while not peer.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the standby did not replay the seeded rows within {timeout:.0f} s")
                time.sleep(0.1)
        return Seeded(rows=missing, seconds=round(time.monotonic() - start, 3))


# Seed rows look like a year of the service's history, with transaction ids no load writes ('seed-N').
SEED = """
INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation, status, severity,
    customer_id, retry_count, created_at, updated_at)
SELECT 'seed-' || i, (ARRAY['ORDER', 'COLLECTION', 'DISTRIBUTION'])[1 + i %% 3], 'reason ' || i %% 97, 'CREATE_ORDER',
       (ARRAY['NEW', 'ACKNOWLEDGED', 'RESOLVED', 'CLOSED'])[1 + i %% 4], 'MEDIUM', 'cust-' || i %% 1000, i %% 5,
       now() - interval '365 days' + i * interval '10 milliseconds', now() - interval '365 days' + i * interval '10 ms'
FROM generate_series(%(first)s, %(first)s + %(rows)s - 1) i
"""


# How long a scenario waits for a recovery beyond its objective: a recovery slower than the objective is still
# measured (and fails the drill) instead of being cut off where the objective ends.
MIN_PATIENCE_SECONDS = 60.0


def patience(objective_seconds: float) -> float:
    return max(objective_seconds, MIN_PATIENCE_SECONDS)


def wait_healthy(url: str, timeout: float) -> float:
    """Seconds until GET <url>/actuator/health answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/actuator/health", timeout=0.5) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} was not healthy within {timeout:.0f} s")


def surviving(conn: Any, keys: Sequence[str]) -> set[str]:
    """Which of `keys` (transaction ids) are present in the database."""
    if not keys:
        return set()
    rows = conn.execute(
        "SELECT transaction_id FROM interface_exceptions WHERE transaction_id = ANY(%s)", (list(keys),)
    ).fetchall()
    return {r[0] for r in rows}


def data_loss(acks: Sequence[Any], present: set[str], before: float) -> tuple[int, float]:
    """(rows lost, RPO seconds) for acknowledgements up to `before`: the window of acknowledged writes lost."""
    acked = [a for a in acks if a.at <= before]
    lost = [a for a in acked if a.key not in present]
    if not lost:
        return 0, 0.0
    oldest_lost = min(a.at for a in lost)
    kept = [a.at for a in acked if a.key in present and a.at < oldest_lost]
    newest_lost = max(a.at for a in lost)
    return len(lost), newest_lost - (max(kept) if kept else oldest_lost)
