"""What the fault matrix and the promote and failback tests share: running the commands, a writer that follows DNS,
and the lab's end state.

The writer is a client of the database that asks the emulator's Route53 which region is PRIMARY before each write,
the way the service follows the failover record; a commit that returned is an acknowledged write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg

from drtopo.failover.dns import current
from drtopo.outputs import StackOutputs, load_outputs
from lab.core import Lab
from lab.project import LAB_STACKS as STACKS

REPO = Path(__file__).resolve().parents[1]
# The consumer-group step has its own test; these tests are about the database, DNS and roles.
DB_ONLY = ["--skip-consumer-group"]
# Failover routing per region, as end_state() reads it from the emulator.
BASELINE_DNS = {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}
FAILED_OVER_DNS = {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}


def run_cli(
    module: str, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"scripts.{module}", *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outputs(lab: Lab, stack: str) -> StackOutputs:
    return load_outputs(lab.region(stack).outputs_path, stack)


def connect(lab: Lab, stack: str) -> psycopg.Connection:
    return psycopg.connect(lab.region(stack).postgres.conninfo(), autocommit=True)


def server_state(lab: Lab, stack: str) -> dict[str, Any]:
    try:
        with connect(lab, stack) as conn:
            in_recovery, read_only = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
            ).fetchone()
            return {"in_recovery": in_recovery, "default_read_only": read_only}
    except psycopg.OperationalError:
        return {"down": True}


def end_state(lab: Lab) -> dict[str, Any]:
    """Both halves: the servers, the emulator's records and RDS instances, and the project copy's stack files."""
    dr = outputs(lab, "dr")
    return {
        "servers": {s: server_state(lab, s) for s in STACKS},
        "dns": current(dr),
        "rds": {
            s: sorted(
                i["DBInstanceIdentifier"]
                for i in boto3.client("rds", region_name=outputs(lab, s).region).describe_db_instances()["DBInstances"]
            )
            for s in STACKS
        },
        "stack_files": {s: (lab.project_dir / f"Pulumi.{s}.yaml").read_text() for s in STACKS},
    }


def write_refused(lab: Lab, stack: str) -> str:
    """The error of a write attempted on `stack` from a new session ('' when it went through)."""
    with connect(lab, stack) as conn:
        try:
            with conn.transaction():
                conn.execute("CREATE TABLE fence_check (id int)")
                raise psycopg.Rollback()
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            return str(exc)
    return ""


@dataclass
class Ack:
    key: str
    at: float
    stack: str


class DnsFollowingWriter(threading.Thread):
    """Inserts rows at `rate` per second into whichever stack's database DNS names PRIMARY."""

    def __init__(self, lab: Lab, rate: float = 100.0) -> None:
        super().__init__(name="dns-following-writer", daemon=True)
        self.lab = lab
        self.rate = rate
        self.acks: list[Ack] = []
        self.errors = 0
        self._halt = threading.Event()
        self._outputs = {s: outputs(lab, s) for s in STACKS}
        self._by_set = {o.set_identifier: s for s, o in self._outputs.items()}
        LIVE_WRITERS.add(self)

    def primary(self) -> str:
        state = current(self._outputs["dr"])
        return next(self._by_set[k] for k, v in state.items() if v == "PRIMARY")

    def run(self) -> None:
        conns: dict[str, psycopg.Connection] = {}
        n = 0
        while not self._halt.is_set():
            n += 1
            key = f"writer-{n}"
            try:
                stack = self.primary()
                if stack not in conns:
                    conns[stack] = connect(self.lab, stack)
                conns[stack].execute(
                    "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
                    " VALUES (%s, 'ORDER', 'switchover test', 'CREATE_ORDER')",
                    (key,),
                )
                self.acks.append(Ack(key, time.time(), stack))
            except psycopg.Error:
                self.errors += 1
                for conn in conns.values():
                    conn.close()
                conns.clear()
            self._halt.wait(1 / self.rate)
        for conn in conns.values():
            conn.close()

    def stop(self) -> list[Ack]:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=15)
        LIVE_WRITERS.discard(self)
        return self.acks


# Writers a failed test did not stop: the integration conftest stops them after every test, so no writer keeps
# inserting into the databases the next test starts from.
LIVE_WRITERS: weakref.WeakSet[DnsFollowingWriter] = weakref.WeakSet()


def present(lab: Lab, stack: str, keys: list[str]) -> set[str]:
    with connect(lab, stack) as conn:
        rows = conn.execute(
            "SELECT transaction_id FROM interface_exceptions WHERE transaction_id = ANY(%s)", (keys,)
        ).fetchall()
    return {r[0] for r in rows}


def wait_acks(writer: DnsFollowingWriter, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(writer.acks) < count:
        assert time.monotonic() < deadline, f"writer got {len(writer.acks)} acks, not {count}, in {timeout:.0f} s"
        time.sleep(0.05)
