"""The fault matrix: faults injected into the lab while the companion commands run, each with its expected outcome.

`python -m bench.faults` runs every fault on a lab (a fresh one, or `--lab-root`) and prints a table: fault,
expected outcome, outcome, acknowledged rows lost; `tests/integration/test_fault_matrix.py` asserts each row. Every
fault starts from the lab's baseline (prod primary, dr standby). What must hold across the whole matrix: no split
brain, no half-applied failover, no acknowledged row lost where the objectives promise RPO 0, no process killed by
a library crash, and every refusal said in one line with its exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from confluent_kafka import Consumer, Producer

from bench.common import a_lab
from bench.switchover import (
    BASELINE_DNS,
    DB_ONLY,
    FAILED_OVER_DNS,
    DnsFollowingWriter,
    connect,
    end_state,
    outputs,
    present,
    run_cli,
    server_state,
    wait_acks,
    write_refused,
)
from drtopo.errors import one_line
from drtopo.failover.journal import JOURNAL_PREFIX
from drtopo.failover.lock import LOCK_KEY
from drtopo.failover.plan import failback_plan, promote_plan
from drtopo.settings import load_settings
from lab.core import Lab

CRASHED = -signal.SIGKILL
JOURNAL_KEY = f"{JOURNAL_PREFIX}promote-dr.json"


@dataclass
class Outcome:
    """What a fault led to: whether it is the expected outcome, what happened, acknowledged rows lost (None: no
    writer ran)."""

    ok: bool
    got: str
    rows_lost: int | None = None


@dataclass(frozen=True)
class Fault:
    name: str
    expected: str
    run: Callable[[Lab, Path], Outcome]


def _env(work: Path, **extra: str) -> dict[str, str]:
    """A journal folder of the fault's own, so no run resumes another fault's journal."""
    return {"DRTOPO_STATE_DIR": str(work / "journal"), **extra}


def _cmd(lab: Lab, module: str, stack: str, work: Path, *args: str, env: dict[str, str] | None = None, **kw: Any):
    report = work / f"{module}-{stack}-{time.monotonic_ns()}.json"
    proc = run_cli(
        module, *args, "--stack", stack, "--outputs", lab.region(stack).outputs_path, "--json", report, env=env, **kw
    )
    document = json.loads(report.read_text()) if report.is_file() else {}
    return proc, document


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _checks(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document.get("checks", [])}


def _failed_over(lab: Lab) -> bool:
    state = end_state(lab)
    return (
        state["servers"]["dr"] == {"in_recovery": False, "default_read_only": "off"}
        and state["dns"] == FAILED_OVER_DNS
        and "drtopo:role: primary" in state["stack_files"]["dr"]
        and "drtopo:role: standby" in state["stack_files"]["prod"]
    )


def _back_at_baseline(lab: Lab) -> bool:
    state = end_state(lab)
    return (
        state["servers"]["prod"] == {"in_recovery": False, "default_read_only": "off"}
        and state["servers"]["dr"].get("in_recovery") is True
        and state["dns"] == BASELINE_DNS
        and "drtopo:role: primary" in state["stack_files"]["prod"]
    )


# -- the database and the failover ------------------------------------------------------------------------------
def sigkill_primary_under_writes(lab: Lab, work: Path) -> Outcome:
    writer = DnsFollowingWriter(lab)
    writer.start()
    try:
        wait_acks(writer, 100)
        lab.prod.postgres.kill()
        proc, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
        wait_acks(writer, len(writer.acks) + 20)
    finally:
        acks = writer.stop()  # never left writing into the next fault's databases
    lag = report.get("measured", {}).get("replica_lag_seconds") or 0.0
    lost = [a for a in acks if a.key not in present(lab, "dr", [a.key for a in acks])]
    killed_at = max((a.at for a in acks if a.stack == "prod"), default=0.0)
    within_lag = all(a.stack == "prod" and killed_at - a.at <= lag + 0.5 for a in lost)
    ok = proc.returncode == 0 and _failed_over(lab) and within_lag and any(a.stack == "dr" for a in acks)
    return Outcome(ok, f"exit {proc.returncode}, failed over, lost within measured lag {lag:.3f} s", len(lost))


def _crash_then_resume(lab: Lab, work: Path, command: str, stack: str, step: str, converged: Callable[[Lab], bool]):
    env = _env(work)
    crashed, _ = _cmd(lab, command, stack, work, *DB_ONLY, env={**env, "DRTOPO_CRASH_AFTER": step})
    resumed, _ = _cmd(lab, command, stack, work, *DB_ONLY, env=env)
    splits = [s for s in ("prod", "dr") if server_state(lab, s) == {"in_recovery": False, "default_read_only": "off"}]
    ok = crashed.returncode == CRASHED and resumed.returncode == 0 and converged(lab) and len(splits) == 1
    return Outcome(ok, f"crash {crashed.returncode}, rerun exit {resumed.returncode}, writers {splits}")


def crash_after_promote_step(step: str) -> Callable[[Lab, Path], Outcome]:
    def run(lab: Lab, work: Path) -> Outcome:
        return _crash_then_resume(lab, work, "promote", "dr", step, _failed_over)

    return run


def crash_after_failback_step(step: str) -> Callable[[Lab, Path], Outcome]:
    def run(lab: Lab, work: Path) -> Outcome:
        promoted, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work / "promote"))
        if promoted.returncode != 0:
            return Outcome(False, f"promote before the failback exited {promoted.returncode}: {_last_line(promoted)}")
        return _crash_then_resume(lab, work, "failback", "prod", step, _back_at_baseline)

    return run


def _insert(lab: Lab, stack: str, key: str) -> None:
    with connect(lab, stack) as conn:
        conn.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
            " VALUES (%s, 'ORDER', 'fault matrix', 'CREATE_ORDER')",
            (key,),
        )


def _replicated_commit(lab: Lab, key: str) -> None:
    """A row committed on prod and replayed on dr (an idle pair has no replayed commit to measure the lag by)."""
    _insert(lab, "prod", key)
    deadline = time.monotonic() + 10
    while not present(lab, "dr", [key]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"row {key} not replayed on dr within 10 s")
        time.sleep(0.05)


def old_primary_returns_writable(lab: Lab, work: Path) -> Outcome:
    _replicated_commit(lab, "before-the-crash")
    lab.prod.postgres.kill()
    promoted, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    lab.prod.postgres.start()  # back as it was: a primary, writable
    writable_before = write_refused(lab, "prod") == ""
    proc, report = _cmd(lab, "validate", "dr", work, "--skip", "service", "--skip", "kafka", env=_env(work))
    checks = _checks(report)
    pair = {name: checks.get(name, {}).get("outcome") for name in ("fence.pending", "db.split_brain")}
    refused = "read-only transaction" in write_refused(lab, "prod")
    ok = promoted.returncode == 0 and writable_before and set(pair.values()) == {"pass"} and refused
    detail = f"promote exit {promoted.returncode}, validate exit {proc.returncode}: {pair}, prod refuses writes"
    return Outcome(ok, detail if refused else f"{detail}: NO ({_last_line(promoted)[:60]})")


def _tiny_rpo_project(lab: Lab, work: Path) -> Path:
    project = work / "project"
    subprocess.run(["cp", "-r", str(lab.project_dir), str(project)], check=True)
    with (project / "Pulumi.dr.yaml").open("a") as f:
        f.write("  drtopo:objectives:\n    regionFailure:\n      rtoMinutes: 240\n      rpoMinutes: 0.000001\n")
    return project


def replica_beyond_the_rpo(lab: Lab, work: Path) -> Outcome:
    project = _tiny_rpo_project(lab, work)
    with connect(lab, "dr") as dr:
        dr.execute("SELECT pg_wal_replay_pause()")
    _insert(lab, "prod", "beyond-rpo")
    time.sleep(0.2)
    before = end_state(lab)
    proc, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work, DRTOPO_PROJECT_DIR=str(project)))
    with connect(lab, "dr") as dr:
        dr.execute("SELECT pg_wal_replay_resume()")
    ok = proc.returncode == 3 and "beyond the region-failure RPO" in _last_line(proc) and end_state(lab) == before
    return Outcome(ok, f"exit {proc.returncode}: {_last_line(proc)[:70]}")


def fence_impossible(lab: Lab, work: Path) -> Outcome:
    password = os.environ["PGPASSWORD"]
    with connect(lab, "prod") as prod:
        prod.execute(f"CREATE ROLE fault_app LOGIN NOSUPERUSER PASSWORD '{password}'")
    folder = work / "outputs"
    folder.mkdir()
    (folder / "dr.json").write_text(lab.dr.outputs_path.read_text())
    prod_outputs = json.loads(lab.prod.outputs_path.read_text())
    (folder / "prod.json").write_text(json.dumps({**prod_outputs, "dbUser": "fault_app"}))
    before = end_state(lab)
    proc = run_cli("promote", "--stack", "dr", "--outputs", folder / "dr.json", *DB_ONLY, env=_env(work))
    ok = proc.returncode == 3 and "could not be fenced" in _last_line(proc) and end_state(lab) == before
    return Outcome(ok, f"exit {proc.returncode}, nothing changed")


def _live_member(lab: Lab, group: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": lab.dr.kafka.bootstrap, "group.id": group, "log_level": 2})
    consumer.subscribe(["OrderRejected"])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.5)
    return consumer


def consumer_group_with_live_members(lab: Lab, work: Path) -> Outcome:
    group = load_settings("dr", lab.project_dir).kafka.consumer_group
    member = _live_member(lab, group)
    try:
        proc, report = _cmd(lab, "promote", "dr", work, env=_env(work))
    finally:
        member.close()
    left = report.get("measured", {}).get("left_to_do")
    promoted_anyway = _failed_over(lab)
    rerun, _ = _cmd(lab, "promote", "dr", work, env=_env(work))
    ok = proc.returncode == 1 and left == ["consumer-group"] and promoted_anyway and rerun.returncode == 0
    return Outcome(ok, f"exit {proc.returncode}, DNS and roles done, left {left}; rerun exit {rerun.returncode}")


def dns_api_failing_after_promotion(lab: Lab, work: Path) -> Outcome:
    folder = work / "outputs"
    folder.mkdir()
    (folder / "prod.json").write_text(lab.prod.outputs_path.read_text())
    dr_outputs = json.loads(lab.dr.outputs_path.read_text())
    (folder / "dr.json").write_text(json.dumps({**dr_outputs, "hostedZoneId": "Z0FAULTMATRIXNOZONE"}))
    proc = run_cli("promote", "--stack", "dr", "--outputs", folder / "dr.json", *DB_ONLY, env=_env(work))
    state = end_state(lab)
    half = state["servers"]["dr"]["in_recovery"] is False and "drtopo:role: primary" in state["stack_files"]["dr"]
    rerun, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    ok = proc.returncode == 1 and "dns did not complete" in _last_line(proc) and half and rerun.returncode == 0
    return Outcome(ok and _failed_over(lab), f"exit {proc.returncode}, roles done, dns left; rerun {rerun.returncode}")


def two_promotes_at_once(lab: Lab, work: Path) -> Outcome:
    args = [
        sys.executable,
        "-m",
        "scripts.promote",
        "--stack",
        "dr",
        "--outputs",
        str(lab.dr.outputs_path),
        *DB_ONLY,
    ]
    runs = [
        subprocess.Popen(
            args,
            env={**os.environ, **_env(work / str(i))},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(r.wait(timeout=240), r.stderr.read() if r.stderr else "") for r in runs]
    codes = sorted(code for code, _ in results)
    refused = next((err for code, err in results if code != 0), "")
    ok = codes[0] == 0 and codes[1] in (2, 3) and _failed_over(lab)
    why = refused.strip().splitlines()[-1][:60] if refused.strip() else ""
    return Outcome(ok, f"exits {codes}: {why}")


def lock_held_by_another_operator(lab: Lab, work: Path) -> Outcome:
    dr = outputs(lab, "dr")
    holder = {
        "host": "ops-laptop-2",
        "pid": 4242,
        "operation": "promote",
        "stack": "dr",
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    s3 = boto3.client("s3", region_name=dr.region)
    s3.put_object(Bucket=dr.config_bucket, Key=LOCK_KEY, Body=json.dumps(holder).encode())
    before = end_state(lab)
    proc, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    unchanged = end_state(lab) == before
    broken, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--break-lock", env=_env(work))
    ok = proc.returncode == 3 and "ops-laptop-2" in _last_line(proc) and unchanged and broken.returncode == 0
    return Outcome(ok, f"exit {proc.returncode} naming the holder; --break-lock exit {broken.returncode}")


def stale_journal(lab: Lab, work: Path) -> Outcome:
    env = _env(work)
    crashed, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env={**env, "DRTOPO_CRASH_AFTER": "guard"})
    # The journal every operator reads: beside the lock, in dr's configuration bucket.
    dr = outputs(lab, "dr")
    s3 = boto3.client("s3", region_name=dr.region)
    data = json.loads(s3.get_object(Bucket=dr.config_bucket, Key=JOURNAL_KEY)["Body"].read())
    data["started_at"] = (datetime.now(UTC) - timedelta(days=90)).isoformat(timespec="milliseconds")
    s3.put_object(Bucket=dr.config_bucket, Key=JOURNAL_KEY, Body=json.dumps(data).encode())
    refused, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=env)
    restarted, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--restart", env=env)
    ok = crashed.returncode == CRASHED and refused.returncode == 3 and "--restart" in _last_line(refused)
    return Outcome(
        ok and restarted.returncode == 0, f"exit {refused.returncode}; --restart exit {restarted.returncode}"
    )


def resumed_from_another_machine(lab: Lab, work: Path) -> Outcome:
    """A promote that crashed right after promotion on one operator's machine is finished from another's (another
    HOME, another state folder, --break-lock): it resumes the journal kept beside the lock and promotes nothing
    again."""
    laptop_a = {"HOME": str(work / "home-a"), "DRTOPO_STATE_DIR": str(work / "state-a")}
    laptop_b = {"HOME": str(work / "home-b"), "DRTOPO_STATE_DIR": str(work / "state-b")}
    crashed, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env={**laptop_a, "DRTOPO_CRASH_AFTER": "promote"})
    resumed, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--break-lock", env=laptop_b)
    promote_check = _checks(report).get("promote", {}).get("detail", "")
    skipped = "promote: done by the interrupted run (journal), skipped" in resumed.stderr
    ok = (
        crashed.returncode == CRASHED
        and resumed.returncode == 0
        and skipped
        and promote_check.startswith("done by the interrupted run")
        and report.get("measured", {}).get("resumed") is True
        and _failed_over(lab)
    )
    return Outcome(
        ok, f"crash {crashed.returncode}; other machine exit {resumed.returncode}, promote skipped {skipped}"
    )


def emulator_down(lab: Lab, work: Path) -> Outcome:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    before = end_state(lab)
    nowhere = f"http://127.0.0.1:{closed}"
    # Both regions' endpoints (the scripts' per-region ones and boto3's own) at a port nobody listens on.
    endpoints = ",".join(f"{lab.region(s).settings.region}={nowhere}" for s in ("prod", "dr"))
    env = _env(work, AWS_ENDPOINT_URL=nowhere, DRTOPO_AWS_ENDPOINTS=endpoints)
    proc, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=env, timeout=120)
    ok = proc.returncode == 3 and "cannot take the failover lock" in _last_line(proc) and end_state(lab) == before
    return Outcome(ok, f"exit {proc.returncode}: nothing changed")


# -- Kafka ------------------------------------------------------------------------------------------------------
def _produce(lab: Lab, stack: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": lab.region(stack).kafka.bootstrap, "acks": "all", "log_level": 2})
    for i in range(count):
        producer.produce(topic, key=f"fault-{i}".encode(), value=b"x")
    producer.flush(15)


def _validate_kafka(lab: Lab, work: Path, stack: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return _cmd(lab, "validate", stack, work, "--skip", "service", "--skip", "database", env=_env(work))


def mirrormaker_stopped(lab: Lab, work: Path) -> Outcome:
    lab.stop_mirrormaker()
    try:
        _produce(lab, "prod", "OrderRejected", 300)
        proc, report = _validate_kafka(lab, work, "dr")
    finally:
        lab.start_mirrormaker()
    lag = _checks(report).get("kafka.mirror_lag.OrderRejected", {})
    ok = proc.returncode == 1 and lag.get("ok") is False and (lag.get("value") or 0) >= 300
    return Outcome(ok, f"exit {proc.returncode}: mirror lag {lag.get('value')} records reported")


def source_kafka_down(lab: Lab, work: Path) -> Outcome:
    lab.prod.kafka.stop()
    try:
        proc, report = _validate_kafka(lab, work, "dr")
    finally:
        lab.prod.kafka.start()
    lag = _checks(report).get("kafka.mirror_lag", {})
    ok = proc.returncode == 1 and lag.get("ok") is False and "unmeasurable" in lag.get("detail", "")
    return Outcome(ok, f"exit {proc.returncode}: the mirror is reported unmeasurable")


def coordinator_moving(lab: Lab, work: Path) -> Outcome:
    lab.prod.kafka.stop()
    lab.prod.kafka.start()  # the group coordinator comes back (NOT_COORDINATOR while it loads)
    proc, report = _validate_kafka(lab, work, "prod")
    ok = proc.returncode in (0, 1) and bool(report.get("checks"))
    return Outcome(ok, f"exit {proc.returncode} with a report of {len(report.get('checks', []))} checks")


# -- backups ----------------------------------------------------------------------------------------------------
def _damaged_dump(lab: Lab, work: Path, damage: Callable[[bytes], bytes]) -> Outcome:
    made, report = _cmd(lab, "backup", "prod", work, "run")
    key = report["measured"]["keys"][0]
    prod = outputs(lab, "prod")
    s3 = boto3.client("s3", region_name=prod.region)
    stored = s3.get_object(Bucket=prod.dump_bucket, Key=key)
    s3.put_object(
        Bucket=prod.dump_bucket,
        Key=key,
        Body=damage(stored["Body"].read()),
        Metadata=stored["Metadata"],
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=prod.kms_key_arn,
    )
    verified, checks = _cmd(lab, "backup", "prod", work, "verify", key)
    target = lab.prod.postgres.conninfo(dbname="postgres")
    restored, _ = _cmd(lab, "restore", "prod", work, "dump", key, "--target", target)
    failed = sorted(name for name, c in _checks(checks).items() if not c["ok"])
    ok = made.returncode == 0 and verified.returncode == 1 and "sha256" in failed and restored.returncode != 0
    return Outcome(ok, f"verify exit {verified.returncode} ({', '.join(failed)}), restore exit {restored.returncode}")


def truncated_dump(lab: Lab, work: Path) -> Outcome:
    return _damaged_dump(lab, work, lambda body: body[: len(body) // 2])


def bit_flipped_dump(lab: Lab, work: Path) -> Outcome:
    return _damaged_dump(lab, work, lambda body: body[:100] + bytes([body[100] ^ 0x01]) + body[101:])


def pitr_outside_the_archive(lab: Lab, work: Path) -> Outcome:
    too_old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    proc, _ = _cmd(lab, "restore", "prod", work, "pitr", "--time", too_old)
    ok = proc.returncode == 2 and "restorable window" in _last_line(proc)
    return Outcome(ok, f"exit {proc.returncode}: {_last_line(proc)[:60]}")


# The consumer-group step has a fault of its own (live members); the crash faults run with --skip-consumer-group.
PROMOTE_STEPS = [s.name for s in promote_plan("dr", "prod", True) if s.name != "consumer-group"]
FAILBACK_STEPS = [s.name for s in failback_plan("prod", "dr") if s.name != "consumer-group"]

FAULTS: list[Fault] = [
    Fault(
        "SIGKILL of the primary under writes", "promoted, loss within the measured lag", sigkill_primary_under_writes
    ),
    *(
        Fault(f"crash after promote step {step}", "rerun converges, one writer", crash_after_promote_step(step))
        for step in PROMOTE_STEPS
    ),
    *(
        Fault(f"crash after failback step {step}", "rerun converges, one writer", crash_after_failback_step(step))
        for step in FAILBACK_STEPS
    ),
    Fault("old primary restarts writable", "fenced by validate, no split brain", old_primary_returns_writable),
    Fault("replica beyond the RPO", "exit 3, nothing changed", replica_beyond_the_rpo),
    Fault("fence impossible, old primary answers", "exit 3, nothing changed", fence_impossible),
    Fault("consumer group with live members", "exit 1, rest done, rerun 0", consumer_group_with_live_members),
    Fault("DNS API failing after promotion", "exit 1, dns left, rerun 0", dns_api_failing_after_promotion),
    Fault("two promotes at once", "one runs, one refused", two_promotes_at_once),
    Fault("lock held by another operator", "exit 3 naming it", lock_held_by_another_operator),
    Fault("stale journal", "exit 3 until --restart", stale_journal),
    Fault("crash, resumed from another machine", "resumed, no second promotion", resumed_from_another_machine),
    Fault("AWS emulator down", "exit 3, nothing changed", emulator_down),
    Fault("MirrorMaker stopped", "exit 1, lag reported", mirrormaker_stopped),
    Fault("source Kafka down", "exit 1, mirror unmeasurable", source_kafka_down),
    Fault("Kafka coordinator moving", "exit 0/1 with a report", coordinator_moving),
    Fault("truncated dump", "verify 1, restore refused", truncated_dump),
    Fault("bit-flipped dump", "verify 1, restore refused", bit_flipped_dump),
    Fault("PITR time outside the archive", "exit 2", pitr_outside_the_archive),
]


def run_fault(lab: Lab, fault: Fault, work: Path) -> Outcome:
    """One fault from the lab's baseline; a fault that raises is a failed row, never a crash of the matrix."""
    lab.restore_baseline()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return fault.run(lab, work)
    except Exception as exc:  # the row says what broke; the matrix goes on
        return Outcome(False, f"{type(exc).__name__}: {one_line(exc)}")


def print_table(rows: list[tuple[Fault, Outcome, float]]) -> None:
    width = max(len(f.name) for f, _, _ in rows)
    print(f"{'fault':<{width}}  {'expected':<40}  {'ok':<4}  {'lost':>4}  {'s':>5}  outcome")
    for fault, outcome, seconds in rows:
        lost = "-" if outcome.rows_lost is None else str(outcome.rows_lost)
        ok = "PASS" if outcome.ok else "FAIL"
        print(f"{fault.name:<{width}}  {fault.expected:<40}  {ok:<4}  {lost:>4}  {seconds:5.1f}  {outcome.got}")
    print(f"{sum(o.ok for _, o, _ in rows)}/{len(rows)} faults met their expected outcome")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    p.add_argument("--lab-root", type=Path, help="a running lab (default: a fresh one, stopped afterwards)")
    p.add_argument("--only", help="run the faults whose name contains this text")
    args = p.parse_args(argv)
    chosen = [f for f in FAULTS if not args.only or args.only in f.name]
    saved = dict(os.environ)
    rows = []
    with a_lab(args.lab_root) as lab:
        os.environ.update(lab.env())
        try:
            for i, fault in enumerate(chosen):
                start = time.monotonic()
                outcome = run_fault(lab, fault, lab.root / "faults" / f"{i:02d}")
                rows.append((fault, outcome, time.monotonic() - start))
                print(f"  {fault.name}: {'PASS' if outcome.ok else 'FAIL'} ({outcome.got})", flush=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    print()
    print_table(rows)
    return 0 if all(o.ok for _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
