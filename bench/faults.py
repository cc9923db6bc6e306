"""The fault matrix: faults injected into the lab while the companion commands run, each with its expected outcome.

`python -m bench.faults` runs every fault on a lab (a fresh one, or `--lab-root`) and prints a table: fault,
expected outcome, outcome, acknowledged rows lost; `tests/integration/test_fault_matrix.py` asserts each row. Every
fault starts from the lab's baseline (prod primary, dr standby). What must hold across the whole matrix: no split
brain, no half-applied failover, no acknowledged row lost where the objectives promise RPO 0, no process killed by
a library crash, and every refusal said in one line with its exit code.

Every row first proves that its fault took effect (the process is gone, the journal holds the step the run crashed
after, the lock was contended between two live runs, the object is damaged), and only then judges the outcome: the
exit code, the reason as the JSON report records it (a check's name and outcome, a measured field) where the command
writes one, and the end state (roles, writers, DNS judged from the raw Route53, alarm and metric state by
bench.switchover.RawDns, the target of a refused restore untouched). The rows are written out one by one in FAULTS,
never generated from the plans, so a step's row cannot disappear with the step: the unit test in
tests/integration/test_fault_matrix.py counts them and checks them against the plans.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
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
import psycopg
from confluent_kafka import Consumer, Producer

from bench import lease_faults
from bench.common import REPO, a_lab
from bench.switchover import (
    BASELINE_DNS,
    DB_ONLY,
    FAILED_OVER_DNS,
    DnsFollowingWriter,
    application_settled,
    connect,
    end_state,
    outputs,
    present,
    run_cli,
    server_state,
    signals_agree,
    wait_acks,
    write_refused,
)
from components.kafka_mirror import NAME as MIRROR_APP
from drtopo.errors import one_line
from drtopo.failover.journal import JOURNAL_PREFIX
from drtopo.failover.lock import lock_key
from drtopo.failover.plan import Step
from drtopo.settings import load_settings
from lab import kafka, kube, kube_workloads, registry
from lab.core import Lab

CRASHED = -signal.SIGKILL
JOURNAL_KEY = f"{JOURNAL_PREFIX}promote-dr.json"
FAILBACK_JOURNAL_KEY = f"{JOURNAL_PREFIX}failback-prod.json"
WRITABLE = {"in_recovery": False, "default_read_only": "off"}


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


def _outcomes(document: dict[str, Any], *names: str) -> dict[str, str | None]:
    """The outcome (pass, fail, skip) the JSON report records for each named check (None: not in the report)."""
    checks = _checks(document)
    return {n: checks.get(n, {}).get("outcome") for n in names}


def _no_traceback(*procs: subprocess.CompletedProcess[str]) -> bool:
    return all("Traceback" not in (p.stderr or "") for p in procs)


def _writers(lab: Lab) -> list[str]:
    """The stacks whose database accepts writes now."""
    return [s for s in ("prod", "dr") if server_state(lab, s) == WRITABLE]


def _end_state_problems(lab: Lab, primary: str) -> list[str]:
    """What keeps the pair from being settled on `primary`: the one writer, the other in recovery or down, Route53
    answering `primary`'s record by the raw state (RawDns; each ALARM backed by its metric), the roles in the stack
    files. [] when settled."""
    other = "dr" if primary == "prod" else "prod"
    state = end_state(lab)
    expected_dns = BASELINE_DNS if primary == "prod" else FAILED_OVER_DNS
    problems = []
    if state["servers"][primary] != WRITABLE:
        problems.append(f"{primary} {state['servers'][primary]}")
    if state["servers"][other] == WRITABLE:
        problems.append(f"{other} writable too")
    if state["dns"] != expected_dns:
        problems.append(f"dns {state['dns']} (raw {state['dns_raw']})")
    if not signals_agree(state["dns_raw"]):
        problems.append(f"an ALARM without its metric: {state['dns_raw']}")
    if "drtopo:role: primary" not in state["stack_files"][primary]:
        problems.append(f"Pulumi.{primary}.yaml not primary")
    if "drtopo:role: standby" not in state["stack_files"][other]:
        problems.append(f"Pulumi.{other}.yaml not standby")
    if not application_settled(lab, primary):
        problems.append(f"application {state['application']}")
    return problems


def _failed_over(lab: Lab) -> bool:
    return not _end_state_problems(lab, "dr")


def _journal(lab: Lab, stack: str, key: str) -> dict[str, Any] | None:
    """The open journal the runs share, from the target stack's configuration bucket (None: there is none)."""
    where = outputs(lab, stack)
    s3 = boto3.client("s3", region_name=where.region)
    try:
        return json.loads(s3.get_object(Bucket=where.config_bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


# -- the database and the failover ------------------------------------------------------------------------------
def sigkill_primary_under_writes(lab: Lab, work: Path) -> Outcome:
    """Prod's postmaster SIGKILLed under a writer that follows DNS; promote of dr measures the lag it can and goes.

    The data-loss oracle is the writer's own, not the product's lag figure: the acknowledged writes dr lacks are a
    contiguous tail (every row prod acknowledged up to the newest row dr holds is on dr, every lost row was written
    after it, by the writer's sequence numbers), and their number fits the write rate times the bound promote
    reported (`replica_lag_seconds`; a report without it fails the row) plus one measured write interval."""
    writer = DnsFollowingWriter(lab)
    writer.start()
    try:
        wait_acks(writer, 100)
        killed = lab.prod.postgres.kill()  # RuntimeError when no postmaster ran: no crash, a failed row
        after_kill = server_state(lab, "prod")
        proc, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
        wait_acks(writer, len(writer.acks) + 20)
    finally:
        acks = writer.stop()  # never left writing into the next fault's databases
    if after_kill != {"down": True}:
        return Outcome(False, f"prod still answers after SIGKILL of pid {killed}: {after_kill}")
    lag = report.get("measured", {}).get("replica_lag_seconds")
    if not isinstance(lag, int | float):
        return Outcome(False, f"exit {proc.returncode}: no replica_lag_seconds in promote's report: no loss bound")
    by_prod = sorted((a for a in acks if a.stack == "prod"), key=lambda a: a.seq)
    held = present(lab, "dr", [a.key for a in by_prod])
    newest_held = max((a.seq for a in by_prod if a.key in held), default=0)
    lost = [a for a in by_prod if a.key not in held]
    contiguous = all(a.seq > newest_held for a in lost)
    # One write interval as measured (the writer's largest gap between two acknowledged writes to prod).
    slack = max((b.at - a.at for a, b in itertools.pairwise(by_prod)), default=0.0)
    allowed = writer.rate * (lag + slack)
    checks = _outcomes(report, "fence", "replica-lag", "promote")
    ok = (
        proc.returncode == 0
        and checks == {"fence": "skip", "replica-lag": "pass", "promote": "pass"}
        and contiguous
        and len(lost) <= allowed
        and any(a.stack == "dr" for a in acks)
        and _failed_over(lab)
        and server_state(lab, "prod") == {"down": True}
    )
    detail = (
        f"pid {killed} gone, exit {proc.returncode}, {checks}; lost {len(lost)} "
        f"{'contiguous' if contiguous else 'NOT contiguous'} after seq {newest_held}, "
        f"<= {allowed:.1f} ({writer.rate:g}/s x ({lag:.3f} s bound + {slack:.3f} s))"
    )
    return Outcome(ok, detail, len(lost))


def _crash_then_resume(lab: Lab, work: Path, command: str, stack: str, step: Step, journal_key: str) -> Outcome:
    """The command killed (SIGKILL) right after `step`: the fault is shown by the exit (-9) and by the shared
    journal, whose last entry is `step`, done; then the rerun resumes it (its report says so) and converges."""
    env = _env(work)
    crashed, _ = _cmd(lab, command, stack, work, *DB_ONLY, env={**env, "DRTOPO_CRASH_AFTER": str(step)})
    journal = _journal(lab, stack, journal_key) or {"steps": {}}
    steps = list(journal["steps"])
    if crashed.returncode != CRASHED or not steps or steps[-1] != step or not journal["steps"][step].get("ok"):
        return Outcome(False, f"no crash after {step}: exit {crashed.returncode}, journal steps {steps}")
    resumed, report = _cmd(lab, command, stack, work, *DB_ONLY, env=env)
    resumed_flag = report.get("measured", {}).get("resumed")
    still_open = _journal(lab, stack, journal_key) is not None
    problems = _end_state_problems(lab, stack)
    ok = resumed.returncode == 0 and resumed_flag is True and not still_open and not problems
    return Outcome(
        ok,
        f"killed after {step} (journal {len(steps)} steps), rerun exit {resumed.returncode}, resumed {resumed_flag}, "
        f"journal {'OPEN' if still_open else 'closed'}, " + ("; ".join(problems) or f"settled on {stack}, one writer"),
    )


def crash_after_promote_step(step: Step) -> Callable[[Lab, Path], Outcome]:
    def run(lab: Lab, work: Path) -> Outcome:
        return _crash_then_resume(lab, work, "promote", "dr", step, JOURNAL_KEY)

    return run


def crash_after_failback_step(step: Step) -> Callable[[Lab, Path], Outcome]:
    def run(lab: Lab, work: Path) -> Outcome:
        promoted, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work / "promote"))
        if promoted.returncode != 0:
            return Outcome(False, f"promote before the failback exited {promoted.returncode}: {_last_line(promoted)}")
        return _crash_then_resume(lab, work, "failback", "prod", step, FAILBACK_JOURNAL_KEY)

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
    killed = lab.prod.postgres.kill()
    after_kill = server_state(lab, "prod")
    promoted, promote_report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    lab.prod.postgres.start()  # back as it was: a primary, writable
    writers_before = _writers(lab)
    proc, report = _cmd(lab, "validate", "dr", work, "--skip", "service", "--skip", "kafka", env=_env(work))
    pair = _outcomes(report, "fence.pending", "db.split_brain")
    refused = "read-only transaction" in write_refused(lab, "prod")
    ok = (
        after_kill == {"down": True}
        and promoted.returncode == 0
        and _outcomes(promote_report, "fence")["fence"] == "skip"
        and writers_before == ["prod", "dr"]  # the fault: two writers until validate pays the fence owed
        and proc.returncode == 0
        and pair == {"fence.pending": "pass", "db.split_brain": "pass"}
        and refused
        and _writers(lab) == ["dr"]
    )
    detail = (
        f"pid {killed} gone; promote exit {promoted.returncode}; writers {writers_before} on restart; "
        f"validate exit {proc.returncode}: {pair}; writers {_writers(lab)}"
    )
    return Outcome(ok, detail)


def _tiny_rpo_project(lab: Lab, work: Path, rpo_minutes: float = 0.000001) -> Path:
    """A copy of the lab's project whose dr stack has a region-failure RPO of `rpo_minutes` (tiny by default)."""
    project = work / "project"
    subprocess.run(["cp", "-r", str(lab.project_dir), str(project)], check=True)
    with (project / "Pulumi.dr.yaml").open("a") as f:
        f.write(f"  drtopo:objectives:\n    regionFailure:\n      rtoMinutes: 240\n      rpoMinutes: {rpo_minutes}\n")
    return project


def replica_beyond_the_rpo(lab: Lab, work: Path) -> Outcome:
    project = _tiny_rpo_project(lab, work)
    with connect(lab, "dr") as dr:
        dr.execute("SELECT pg_wal_replay_pause()")
    _insert(lab, "prod", "beyond-rpo")
    time.sleep(0.2)
    missing = not present(lab, "dr", ["beyond-rpo"])  # the fault: dr is behind
    before = end_state(lab)
    proc, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work, DRTOPO_PROJECT_DIR=str(project)))
    after = end_state(lab)
    with connect(lab, "dr") as dr:
        dr.execute("SELECT pg_wal_replay_resume()")
    lag = _checks(report).get("replica-lag", {})
    ok = (
        missing
        and proc.returncode == 3
        and lag.get("outcome") == "fail"
        and (lag.get("value") or 0) > (lag.get("limit") or 0)
        and "beyond the region-failure RPO" in _last_line(proc)
        and after == before
        and _no_traceback(proc)
    )
    return Outcome(
        ok,
        f"exit {proc.returncode}, replica-lag {lag.get('outcome')} value {lag.get('value')} "
        f"> limit {lag.get('limit')}, nothing changed {after == before}",
    )


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
    report_path = work / "promote.json"
    # Without the per-region map boto3 takes its per-service variable: CloudWatch alone at a port nobody serves.
    dead_cloudwatch = {"DRTOPO_AWS_ENDPOINTS": "", "AWS_ENDPOINT_URL_CLOUDWATCH": f"http://127.0.0.1:{_closed_port()}"}
    proc = run_cli(
        "promote",
        "--stack",
        "dr",
        "--outputs",
        folder / "dr.json",
        *DB_ONLY,
        "--json",
        report_path,
        env=_env(work, **dead_cloudwatch),
    )
    after = end_state(lab)
    ok = (
        proc.returncode == 3
        and "could not be fenced" in _last_line(proc)
        and after == before
        and _writers(lab) == ["prod"]
        and _no_traceback(proc)
    )
    return Outcome(ok, f"exit {proc.returncode}: {_last_line(proc)[:60]}; nothing changed {after == before}")


def _live_member(lab: Lab, group: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": lab.dr.kafka.bootstrap, "group.id": group, "log_level": 2})
    consumer.subscribe(["OrderRejected"])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.5)
    return consumer


def consumer_group_with_live_members(lab: Lab, work: Path) -> Outcome:
    """A consumer that is not the application holds the group on dr (pilot light: dr's application at 0): the step
    refuses it and the run goes on (the application, DNS); the rerun finds the application that run scaled up
    consuming, and leaves its offsets alone (skip, naming them) rather than racing its commits."""
    group = load_settings("dr", lab.project_dir).kafka.consumer_group
    member = _live_member(lab, group)
    try:
        joined = bool(member.assignment())  # the fault: a live member holds partitions of the group on dr
        proc, report = _cmd(lab, "promote", "dr", work, env=_env(work))
    finally:
        member.close()
    left = report.get("measured", {}).get("left_to_do")
    cg = _outcomes(report, "consumer-group", "promote")
    promoted_anyway = _failed_over(lab)
    refused = "another consumer" in _checks(report).get("consumer-group", {}).get("detail", "")
    rerun, rerun_report = _cmd(lab, "promote", "dr", work, env=_env(work))
    again = _checks(rerun_report).get("consumer-group", {})
    ok = (
        joined
        and proc.returncode == 1
        and left == ["consumer-group"]
        and cg == {"consumer-group": "fail", "promote": "pass"}
        and refused
        and promoted_anyway
        and rerun.returncode == 0
        and again.get("outcome") == "skip"
        and "already consumes" in again.get("detail", "")
        and _failed_over(lab)
    )
    return Outcome(
        ok,
        f"exit {proc.returncode}, {cg}, left {left}, refused as another consumer {refused}; rerun exit "
        f"{rerun.returncode}, consumer-group {again.get('outcome')}",
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dns_api_failing_after_promotion(lab: Lab, work: Path) -> Outcome:
    """Both ways of moving DNS fail after the promotion: CloudWatch refuses (the takeover signal cannot be written,
    the command's CloudWatch at a closed loopback port) and the record UPSERT names a zone Route53 does not have. The
    run stops with dns left to do, and application-down behind it (exit 1); the rerun, with both answering, finishes
    them through the data plane."""
    folder = work / "outputs"
    folder.mkdir()
    (folder / "prod.json").write_text(lab.prod.outputs_path.read_text())
    dr_outputs = json.loads(lab.dr.outputs_path.read_text())
    (folder / "dr.json").write_text(json.dumps({**dr_outputs, "hostedZoneId": "Z0FAULTMATRIXNOZONE"}))
    report_path = work / "promote.json"
    # Without the per-region map boto3 takes its per-service variable: CloudWatch alone at a port nobody serves.
    dead_cloudwatch = {"DRTOPO_AWS_ENDPOINTS": "", "AWS_ENDPOINT_URL_CLOUDWATCH": f"http://127.0.0.1:{_closed_port()}"}
    proc = run_cli(
        "promote",
        "--stack",
        "dr",
        "--outputs",
        folder / "dr.json",
        *DB_ONLY,
        "--json",
        report_path,
        env=_env(work, **dead_cloudwatch),
    )
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    state = end_state(lab)
    half = state["servers"]["dr"] == WRITABLE and "drtopo:role: primary" in state["stack_files"]["dr"]
    left = report.get("measured", {}).get("left_to_do")
    checks = _outcomes(report, "dns", "promote", "roles")
    dns_detail = str(_checks(report).get("dns", {}).get("detail", ""))
    rerun, again = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    ok = (
        proc.returncode == 1
        # The old region's application goes down only once DNS has left it (REQUIRES), so it is left too.
        and left == ["dns", "application-down"]
        and "not written" in dns_detail  # the signal failed first, then the fallback
        and again.get("measured", {}).get("dns_path") == "data plane"
        and checks == {"dns": "fail", "promote": "pass", "roles": "pass"}
        and half
        and rerun.returncode == 0
        and _failed_over(lab)
    )
    return Outcome(ok, f"exit {proc.returncode}, {checks}, left {left}; rerun exit {rerun.returncode}")


# Each of the two runs imports the command, says it is ready, and waits for the go on stdin: both then take the
# lock within a few milliseconds of each other (the barrier is the test's, not the product's).
_AT_THE_BARRIER = (
    "import sys\n"
    "import scripts.promote\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "sys.exit(scripts.promote.main(sys.argv[1:]))\n"
)


def _ready(runs: list[subprocess.Popen[str]], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    waiting = {r.stdout.fileno(): r for r in runs if r.stdout is not None}
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(list(waiting), [], [], max(0.0, deadline - time.monotonic()))
        for fd in readable:
            if waiting.pop(fd).stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                return False
    return not waiting


def two_promotes_at_once(lab: Lab, work: Path) -> Outcome:
    """Two promotes of dr, both started and held at a barrier, released together: both pass the already-primary
    check (the stack files say standby), so the lock decides: exactly one runs, the other is refused by the lock
    (exit 3) naming the winner's pid, the live holder at that moment."""
    reports = [work / f"promote-{i}.json" for i in range(2)]
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _AT_THE_BARRIER,
                "--stack",
                "dr",
                "--outputs",
                str(lab.dr.outputs_path),
                *DB_ONLY,
                "--json",
                str(reports[i]),
            ],
            cwd=REPO,
            env={**os.environ, **_env(work / str(i))},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        if not _ready(runs):
            return Outcome(False, "the two runs did not reach the barrier within 60 s")
        for r in runs:  # the go, to both at once
            assert r.stdin is not None
            r.stdin.write("go\n")
            r.stdin.flush()
        results = [r.communicate(timeout=240) for r in runs]
    finally:
        for r in runs:
            if r.poll() is None:
                r.kill()
                r.wait(timeout=10)
    codes = [r.returncode for r in runs]
    if sorted(codes) != [0, 3]:
        return Outcome(False, f"exits {codes}: {[e.strip().splitlines()[-1:] for _, e in results]}")
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    refusal = results[loser][1].strip().splitlines()[-1]
    by_lock = "another failover holds the lock" in refusal and f"by pid {runs[winner].pid} " in refusal
    won = json.loads(reports[winner].read_text()) if reports[winner].is_file() else {}
    ok = (
        by_lock
        and _outcomes(won, "promote")["promote"] == "pass"
        and not reports[loser].is_file()  # refused before any step ran
        and _failed_over(lab)
        and _no_traceback(*(subprocess.CompletedProcess([], c, o, e) for c, (o, e) in zip(codes, results, strict=True)))
    )
    named = f"naming the winner, pid {runs[winner].pid}" if by_lock else f"NOT by the lock: {refusal[:90]}"
    return Outcome(ok, f"exits {sorted(codes)}: the other refused by the lock {named}")


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
    s3.put_object(Bucket=dr.config_bucket, Key=lock_key(dr.stack), Body=json.dumps(holder).encode())
    before = end_state(lab)
    proc, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    unchanged = end_state(lab) == before
    broken, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--break-lock", env=_env(work))
    ok = (
        proc.returncode == 3
        and "another failover holds the lock" in _last_line(proc)
        and "by pid 4242 on ops-laptop-2" in _last_line(proc)
        and unchanged
        and broken.returncode == 0
        and _outcomes(report, "promote")["promote"] == "pass"
        and _failed_over(lab)
    )
    return Outcome(ok, f"exit {proc.returncode} naming the holder; --break-lock exit {broken.returncode}")


def stale_journal(lab: Lab, work: Path) -> Outcome:
    env = _env(work)
    crashed, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env={**env, "DRTOPO_CRASH_AFTER": "guard"})
    # The journal every operator reads: beside the lock, in dr's configuration bucket.
    dr = outputs(lab, "dr")
    s3 = boto3.client("s3", region_name=dr.region)
    data = json.loads(s3.get_object(Bucket=dr.config_bucket, Key=JOURNAL_KEY)["Body"].read())
    journalled = list(data["steps"])
    data["started_at"] = (datetime.now(UTC) - timedelta(days=90)).isoformat(timespec="milliseconds")
    s3.put_object(Bucket=dr.config_bucket, Key=JOURNAL_KEY, Body=json.dumps(data).encode())
    before = end_state(lab)
    refused, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=env)
    unchanged = end_state(lab) == before
    restarted, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--restart", env=env)
    ok = (
        crashed.returncode == CRASHED
        and journalled == ["preflight", "guard"]
        and refused.returncode == 3
        and "journalMaxAgeHours" in _last_line(refused)
        and "--restart" in _last_line(refused)
        and unchanged
        and restarted.returncode == 0
        and report.get("measured", {}).get("resumed") is False
        and _failed_over(lab)
    )
    return Outcome(
        ok, f"journal {journalled} aged 90 d: exit {refused.returncode}; --restart exit {restarted.returncode}"
    )


def resumed_from_another_machine(lab: Lab, work: Path) -> Outcome:
    """A promote that crashed right after promotion on one operator's machine is finished from another's (another
    HOME, another state folder, --break-lock): it resumes the journal kept beside the lock and promotes nothing
    again."""
    laptop_a = {"HOME": str(work / "home-a"), "DRTOPO_STATE_DIR": str(work / "state-a")}
    laptop_b = {"HOME": str(work / "home-b"), "DRTOPO_STATE_DIR": str(work / "state-b")}
    crashed, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env={**laptop_a, "DRTOPO_CRASH_AFTER": "promote"})
    journalled = list((_journal(lab, "dr", JOURNAL_KEY) or {"steps": {}})["steps"])
    resumed, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--break-lock", env=laptop_b)
    promote_check = _checks(report).get("promote", {}).get("detail", "")
    ok = (
        crashed.returncode == CRASHED
        and journalled[-1:] == ["promote"]
        and resumed.returncode == 0
        and promote_check.startswith("done by the interrupted run")
        and report.get("measured", {}).get("resumed") is True
        and _failed_over(lab)
    )
    return Outcome(
        ok,
        f"crash {crashed.returncode} after {journalled[-1:]}; other machine exit {resumed.returncode}, "
        f"promote {promote_check[:40]!r}",
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
    ok = (
        proc.returncode == 3
        and "cannot take the failover lock" in _last_line(proc)
        and end_state(lab) == before
        and _no_traceback(proc)
    )
    return Outcome(ok, f"exit {proc.returncode}: nothing changed")


def incident_topic_gone(lab: Lab, work: Path) -> Outcome:
    """The emulator's SNS refusing every publish during promote: dr's incident topic is deleted in us-west-2 (the
    lab reseeds it with the baseline). The failover completes; each message is reported not sent, never a failure."""
    dr = outputs(lab, "dr")
    sns = boto3.client("sns", region_name=dr.region)
    assert dr.incident_topic_arn, "the lab's outputs name no incident topic"
    sns.delete_topic(TopicArn=dr.incident_topic_arn)
    gone = dr.incident_topic_arn not in {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    seen = len(lab.inbox())
    proc, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    notices = [c for c in report.get("checks", []) if c["name"].startswith("notify ")]
    names = {c["name"] for c in notices}
    skipped = bool(notices) and {c["outcome"] for c in notices} == {"skip"}
    ok = (
        gone
        and proc.returncode == 0
        and report.get("ok") is True
        and names == {"notify start", "notify update", "notify resolution"}
        and skipped
        and all(c["detail"].startswith("not sent: ") for c in notices)
        and lab.inbox()[seen:] == []
        and _failed_over(lab)
        and _no_traceback(proc)
    )
    return Outcome(ok, f"topic gone {gone}, exit {proc.returncode}, failed over, notices {sorted(names)} skipped")


# -- Kafka ------------------------------------------------------------------------------------------------------
def _produce(lab: Lab, stack: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": lab.region(stack).kafka.bootstrap, "acks": "all", "log_level": 2})
    for i in range(count):
        producer.produce(topic, key=f"fault-{i}".encode(), value=b"x")
    producer.flush(15)


def _validate_kafka(lab: Lab, work: Path, stack: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    expect = ("--expect", "standby") if stack == "dr" else ()  # dr's mirror, as the pair was built
    return _cmd(lab, "validate", stack, work, "--skip", "service", "--skip", "database", *expect, env=_env(work))


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


# -- a region cut off (lab/gates.py) ----------------------------------------------------------------------------
def _dns_step(report: dict[str, Any]) -> tuple[str | None, str]:
    """promote's DNS path (measured) and its dns check's detail."""
    return report.get("measured", {}).get("dns_path"), str(_checks(report).get("dns", {}).get("detail", ""))


def us_east_1_api_unreachable_during_promote(lab: Lab, work: Path) -> Outcome:
    """Only us-east-1's AWS endpoint cut off (its gate drops every byte: Route53's control plane and prod's
    CloudWatch, SSM and buckets), prod's database still answering: promote fails over with DNS through the data
    plane (dr's signal on, prod's unclearable counted as no veto), the record UPSERT neither needed nor used: the
    records as declared once us-east-1 answers again."""
    cut = lab.partition("prod", kinds=["aws"])
    try:
        proc, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
    finally:
        lab.heal()
    path, detail = _dns_step(report)
    records = {k: v["failover"] for k, v in end_state(lab)["dns_raw"]["records"].items()}
    ok = (
        cut == ["prod-aws"]
        and records == BASELINE_DNS  # as declared: no UPSERT
        and proc.returncode == 0
        and path == "data plane"
        and "fallback" not in detail
        and "data plane: takeover signal" in detail
        and "peer's signal unreachable" in detail
        and _failed_over(lab)
        and _no_traceback(proc)
    )
    return Outcome(ok, f"cut {cut}, exit {proc.returncode}, dns_path {path}; {detail[:90]}; records {records}")


def prod_partitioned_while_promote_measures_lag(lab: Lab, work: Path) -> Outcome:
    """Prod cut off (every gate) while it still takes writes inside its region, the RPO tiny: promote's guard sees
    a stream that may still be carrying writes and refuses (exit 3) naming the RPO, --accept-data-loss and what it
    cannot measure, nothing changed; with --accept-data-loss it fails over, DNS through the data plane. The write
    prod took inside the cut is not on dr (counted as lost)."""
    project = _tiny_rpo_project(lab, work)
    _insert(lab, "prod", "before-cut")
    deadline = time.monotonic() + 30
    while not present(lab, "dr", ["before-cut"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    env = _env(work, DRTOPO_PROJECT_DIR=str(project))
    lab.partition("prod")
    try:
        _insert(lab, "prod", "inside-cut")  # prod's own port: inside the region, past the gate
        before = end_state(lab)
        refused, refusal = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=env)
        after = end_state(lab)
        accepted, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, "--accept-data-loss", env=env)
    finally:
        lab.heal()
    lag = _checks(refusal).get("replica-lag", {})
    said = _last_line(refused)
    path, _ = _dns_step(report)
    lost = 0 if present(lab, "dr", ["inside-cut"]) else 1
    ok = (
        refused.returncode == 3
        and lag.get("outcome") == "fail"
        and "beyond the region-failure RPO" in said
        and "--accept-data-loss" in said
        and "may still take if it is cut off" in str(lag.get("detail"))
        and after == before
        and accepted.returncode == 0
        and path == "data plane"
        and _no_traceback(refused, accepted)
    )
    return Outcome(
        ok,
        f"refused exit {refused.returncode} ({said[:70]}), nothing changed {after == before}; "
        f"--accept-data-loss exit {accepted.returncode}, dns_path {path}",
        lost,
    )


# The WAN of the lag row: a realistic round trip, and a cap per connection that a write burst outruns.
WAN_LATENCY_MS = 30
WAN_BANDWIDTH_KBPS = 256
WAN_RPO_MINUTES = 0.05  # 3 s: the lag has to build past it, not start there
# About 31 MB of WAL (rows of 1.9 KB, below the TOAST threshold so nothing compresses): 2 min through the cap.
BURST_ROWS = 16_000


def _standby_behind(lab: Lab) -> dict[str, Any]:
    """dr's replication as seen inside both regions (their own ports): the WAL receiver's status, whether replay is
    paused, the age of dr's newest replayed commit, and the bytes of WAL prod wrote that dr has not received."""
    with connect(lab, "dr") as dr:
        status, paused, age, received = dr.execute(
            "SELECT (SELECT status FROM pg_stat_wal_receiver), pg_get_wal_replay_pause_state(),"
            " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8,"
            " pg_last_wal_receive_lsn()::text"
        ).fetchone()
    with connect(lab, "prod") as prod:
        (behind,) = prod.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (received,)
        ).fetchone()
    return {"receiver": status, "replay": paused, "age_seconds": age, "bytes_in_flight": behind}


def wan_lag_beyond_the_rpo(lab: Lab, work: Path) -> Outcome:
    """The WAN degraded with `lab degrade` (30 ms round trip and 256 KB/s per connection on every gate) while prod
    takes a 31 MB write burst inside its region: dr's stream falls behind for real (the receiver streaming, replay
    not paused, WAL in flight, dr's newest replayed commit older than the RPO of 3 s the row's project sets). Promote
    refuses (exit 3, replica-lag fail naming the RPO), nothing changed; once the WAN is back, the row written after
    the burst reaches dr: the link was slow, nothing was lost."""
    project = _tiny_rpo_project(lab, work, WAN_RPO_MINUTES)
    rpo_seconds = WAN_RPO_MINUTES * 60
    _replicated_commit(lab, "before-the-wan")  # dr's newest replayed commit is fresh: the age is the WAN's doing
    degraded = lab.degrade(WAN_LATENCY_MS, 0, WAN_BANDWIDTH_KBPS)
    try:
        with connect(lab, "prod") as prod:  # prod's own port: the burst is written inside the region
            prod.execute("CREATE TABLE wan_burst (pad text)")
            burst = f"INSERT INTO wan_burst SELECT repeat(md5(g::text), 60) FROM generate_series(1, {BURST_ROWS}) g"
            prod.execute(burst)
        _insert(lab, "prod", "behind-the-wan")
        deadline = time.monotonic() + 30
        seen = _standby_behind(lab)
        while (seen["age_seconds"] or 0) <= rpo_seconds and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = _standby_behind(lab)
        built = (
            seen["receiver"] == "streaming"
            and seen["replay"] == "not paused"
            and seen["bytes_in_flight"] > 0
            and seen["age_seconds"] > rpo_seconds
        )
        before = end_state(lab)
        started = time.monotonic()
        proc, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work, DRTOPO_PROJECT_DIR=str(project)))
        took = time.monotonic() - started
        after = end_state(lab)
    finally:
        lab.degrade(0)
    deadline = time.monotonic() + 60
    while not (caught_up := bool(present(lab, "dr", ["behind-the-wan"]))) and time.monotonic() < deadline:
        time.sleep(0.2)
    lag = _checks(report).get("replica-lag", {})
    ok = (
        sorted(degraded) == lab.gates.names()  # every gate: the WAN is between every pair of regions
        and built
        and proc.returncode == 3
        and lag.get("outcome") == "fail"
        and lag.get("limit") == rpo_seconds
        and (lag.get("value") or 0) > rpo_seconds
        and "beyond the region-failure RPO" in _last_line(proc)
        and after == before
        and caught_up
        and _no_traceback(proc)
    )
    return Outcome(
        ok,
        f"lag built: {seen['bytes_in_flight']} B in flight, newest replayed commit {seen['age_seconds']:.1f} s old, "
        f"replay {seen['replay']}; exit {proc.returncode} in {took:.1f} s, replica-lag {lag.get('outcome')} "
        f"{lag.get('value')} > {lag.get('limit')}, nothing changed {after == before}, caught up after {caught_up}",
    )


def _config_objects(lab: Lab, stack: str) -> set[str]:
    """The lock and journal keys in `stack`'s configuration bucket (read at the emulator itself, past every gate)."""
    where = outputs(lab, stack)
    s3 = boto3.client("s3", region_name=where.region)
    keys: set[str] = set()
    for prefix in (JOURNAL_PREFIX, lock_key(where.stack).rsplit("/", 1)[0]):
        keys |= {o["Key"] for o in s3.list_objects_v2(Bucket=where.config_bucket, Prefix=prefix).get("Contents") or []}
    return keys


def peer_configuration_bucket_unreachable(lab: Lab, work: Path) -> Outcome:
    """prod's configuration bucket unreachable (us-east-1's AWS endpoint cut off, its gate dropping every byte) for
    the whole of a promote that crashes right after the promotion and of the rerun that resumes it: the lock and the
    journal live in the target's own bucket (dr, us-west-2), so the crash leaves the journal there, the rerun resumes
    it, fails over, releases the lock and keeps the closed journal there; prod's bucket is never written. DESIGN.md
    wants it so: the journal is kept beside the lock, and a failover must not need the failed region's control plane;
    refusing here would make it need it."""
    env = _env(work)
    prod_before, dr_before = _config_objects(lab, "prod"), _config_objects(lab, "dr")
    cut = lab.partition("prod", kinds=["aws"])
    try:
        started = time.monotonic()
        crashed, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env={**env, "DRTOPO_CRASH_AFTER": str(Step.PROMOTE)})
        crashed_s = time.monotonic() - started
        journal = _journal(lab, "dr", JOURNAL_KEY) or {"steps": {}}
        held = lock_key("dr") in _config_objects(lab, "dr")  # the crashed run never released it
        started = time.monotonic()
        resumed, report = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=env)
        resumed_s = time.monotonic() - started
    finally:
        lab.heal()
    steps = list(journal["steps"])
    dr_new = sorted(_config_objects(lab, "dr") - dr_before)
    closed = [k for k in dr_new if k.startswith(f"{JOURNAL_PREFIX}promote-dr.") and k != JOURNAL_KEY]
    prod_after = _config_objects(lab, "prod")
    ok = (
        cut == ["prod-aws"]
        and crashed.returncode == CRASHED
        and steps[-1:] == [str(Step.PROMOTE)]
        and held
        and resumed.returncode == 0
        and report.get("measured", {}).get("resumed") is True
        and _outcomes(report, "promote")["promote"] == "pass"
        and len(closed) == 1
        and dr_new == closed  # the open journal and the lock gone: closed, released
        and prod_after == prod_before
        and _failed_over(lab)
        and _no_traceback(crashed, resumed)
    )
    return Outcome(
        ok,
        f"cut {cut}; crash after {steps[-1:]} ({crashed_s:.0f} s), lock held {held}, journal {len(steps)} steps in "
        f"dr's bucket; rerun exit {resumed.returncode} ({resumed_s:.0f} s) resumed "
        f"{report.get('measured', {}).get('resumed')}; new in dr's bucket {dr_new}, prod's bucket unchanged "
        f"{prod_after == prod_before}",
    )


def _mirror_restarts(lab: Lab) -> tuple[str, int]:
    """dr's MirrorMaker pod and its containers' restarts."""
    (pod,) = kube_workloads.pods(lab.root, lab.dr.namespace, MIRROR_APP)
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return pod["metadata"]["name"], sum(c.get("restartCount", 0) for c in statuses)


REGISTRY_PULL_TIMEOUT_S = 120.0
PULL_REFUSED = ("ErrImagePull", "ImagePullBackOff")


def _pull_probe(name: str, namespace: str, image: str) -> dict[str, Any]:
    """A pod that only starts once its image is pulled from the registry its name says (policy Always): `true` on
    the node's network, as drtopo's job account would run it (non-root, nothing mounted)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"drtopo.lab/probe": "registry"}},
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Always",
                    "command": ["true"],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def _pull_outcome(lab: Lab, namespace: str, name: str, deadline: float) -> str:
    """`started` once the pod's container ran (its image pulled), `refused` once the pull failed (ErrImagePull,
    ImagePullBackOff), `waiting` at the deadline."""
    while True:
        proc = kube.kubectl(lab.root, "get", "pod", name, "-n", namespace, "-o", "json", check=False)
        if proc.returncode == 0:
            status = json.loads(proc.stdout).get("status", {})
            if status.get("phase") in ("Running", "Succeeded"):
                return "started"
            for container in status.get("containerStatuses", []):
                state = container.get("state", {})
                if "terminated" in state or "running" in state:
                    return "started"
                if state.get("waiting", {}).get("reason") in PULL_REFUSED:
                    return "refused"
        if time.monotonic() > deadline:
            return "waiting"
        time.sleep(0.5)


def prod_registry_down(lab: Lab, work: Path) -> Outcome:
    """prod's registry down (its process stopped: a registry outage in us-east-1) after ECR's replication had copied
    the backup image to dr's registry: a pod in dr naming dr's own registry (as the stacks' images do, policy
    workload-image-own-region) pulls and starts, from dr's registry (its access log shows containerd's request); the
    control, the same pod naming prod's registry, fails to pull. Both pods use pull policy Always, so an image
    already on the node proves nothing."""
    refs = lab.publish_image("backup")
    repository, tag = refs["dr"].split("/", 1)[1].rsplit(":", 1)
    digests = {s: lab.registry_digest(s, repository, tag) for s in ("prod", "dr")}
    namespace = lab.dr.namespace
    names = {"own": "registry-probe-own", "peer": "registry-probe-peer"}
    lab.stop_registry("prod")
    try:
        pods = [_pull_probe(names["own"], namespace, refs["dr"]), _pull_probe(names["peer"], namespace, refs["prod"])]
        listing = {"apiVersion": "v1", "kind": "List", "items": pods}
        kube.kubectl(lab.root, "apply", "-f", "-", stdin=json.dumps(listing))
        deadline = time.monotonic() + REGISTRY_PULL_TIMEOUT_S
        results = {which: _pull_outcome(lab, namespace, name, deadline) for which, name in names.items()}
    finally:
        kube.kubectl(lab.root, "delete", "pod", *names.values(), "-n", namespace, "--wait=false", check=False)
        lab.start_registries()
    from_dr = registry.pulled_by_containerd(lab.registry_log("dr"), repository, tag, refs["dr"].split("/", 1)[0])
    ok = results == {"own": "started", "peer": "refused"} and from_dr and digests["prod"] == digests["dr"]
    same = "same digest" if digests["prod"] == digests["dr"] else f"digests differ {digests}"
    got = f"dr's image {results['own']}, prod's {results['peer']}; pulled from dr's registry {from_dr}; {same}"
    return Outcome(ok, got)


def mirrormaker_links_reset(lab: Lab, work: Path) -> Outcome:
    """The cross-region link MirrorMaker consumes through (prod's `kafka-pods` gate) resets every connection as soon
    as it carries a byte (Toxiproxy's reset_peer), mid-stream: the mirror was caught up, then 300 records are
    produced on prod. validate and status on dr report the mirror's lag (exit 1, as for any failed check; no
    traceback); once the link stops resetting, the same MirrorMaker pod (no restart) catches up."""
    topic = "OrderRejected"
    prod_kafka, dr_kafka = lab.prod.kafka.bootstrap, lab.dr.kafka.bootstrap
    _produce(lab, "prod", topic, 50)
    kafka.wait_mirroring(prod_kafka, dr_kafka, topic, 60)  # streaming before the fault
    pod, restarts = _mirror_restarts(lab)
    reset = lab.reset_links("prod", kinds=["kafka-pods"])
    try:
        _produce(lab, "prod", topic, 300)
        validated, report = _validate_kafka(lab, work, "dr")
        status, readiness = _cmd(lab, "status", "dr", work, env=_env(work))
    finally:
        lab.stop_resets()
    try:
        waited = kafka.wait_mirroring(prod_kafka, dr_kafka, topic, 90)
    except TimeoutError:
        waited = None
    after = _mirror_restarts(lab)
    lag = _checks(report).get(f"kafka.mirror_lag.{topic}", {})
    item = _checks(readiness).get("mirror.lag", {})
    ok = (
        reset == ["prod-kafka-pods"]
        and validated.returncode == 1
        and lag.get("ok") is False
        and (lag.get("value") or 0) >= 300
        and status.returncode == 1
        and item.get("outcome") == "fail"
        and (item.get("value") or 0) >= 300
        and waited is not None
        and after == (pod, restarts)
        and _no_traceback(validated, status)
    )
    return Outcome(
        ok,
        f"validate exit {validated.returncode} (lag {lag.get('value')}), status exit {status.returncode} (mirror.lag "
        f"{item.get('outcome')} {item.get('value')}); caught up "
        + (f"{waited:.1f} s after the link healed" if waited is not None else "NOT within 90 s")
        + f", pod {after[0]} restarts {restarts} -> {after[1]}",
    )


class _InsideWriter(DnsFollowingWriter):
    """A client inside prod's region: it writes to prod's own server whatever DNS says (past the gate)."""

    def primary(self) -> str:
        return "prod"


def partition_healing_after_promotion(lab: Lab, work: Path) -> Outcome:
    """Issues 21 and 26, one row: the lease off (drtopo:fencing.mode as shipped), prod cut off while a client inside
    its region keeps writing to it, dr promoted and written to, then the partition healed. validate on dr finds the
    rows prod took after the fork and lists them (nothing written); failback re-applies every one to dr before it
    rebuilds prod (under dr's next ids: dr handed prod's to its own clients), then switches back: every
    write acknowledged on either side is on prod at the end (0 lost), nothing left listed."""
    _replicated_commit(lab, "before-the-cut")
    inside, outside = _InsideWriter(lab, rate=50, prefix="inside"), DnsFollowingWriter(lab, rate=50)
    inside.start()
    outside.start()
    try:
        wait_acks(inside, 20)
        lab.partition("prod")
        try:
            promoted, _ = _cmd(lab, "promote", "dr", work, *DB_ONLY, env=_env(work))
            promoted_at = time.time()
            wait_acks(inside, len(inside.acks) + 60)  # split-brain writes: prod acknowledges them after the fork
            deadline = time.monotonic() + 30
            while sum(a.stack == "dr" for a in outside.acks) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            lab.heal()
        took_inside = inside.stop()
        validated, found = _cmd(lab, "validate", "dr", work, "--skip", "service", "--skip", "kafka", env=_env(work))
        failback, back = _cmd(lab, "failback", "prod", work, *DB_ONLY, env=_env(work))
    finally:
        inside.stop()
        acks = [*outside.stop(), *inside.acks]
    split_brain = sum(a.at > promoted_at for a in took_inside)
    seen = found.get("measured", {}).get("diverged") or {}
    done = back.get("measured", {}).get("diverged") or {}
    lost = len(acks) - len(present(lab, "prod", [a.key for a in acks]))
    problems = _end_state_problems(lab, "prod")
    ok = (
        promoted.returncode == 0
        and split_brain > 0
        and _outcomes(found, "diverged")["diverged"] == "fail"  # listed, not yet re-applied
        and (seen.get("found") or 0) >= split_brain
        and failback.returncode == 0
        and _outcomes(back, "diverged")["diverged"] == "pass"
        and done.get("found") == done.get("reapplied") >= split_brain
        and done.get("listed") == 0
        and lost == 0
        and not problems
        and _no_traceback(promoted, validated, failback)
    )
    return Outcome(
        ok,
        f"promote exit {promoted.returncode}; prod took {split_brain} writes after promotion; validate found "
        f"{seen.get('found')} ({seen.get('counts')}); failback exit {failback.returncode}, re-applied "
        f"{done.get('reapplied')} of {done.get('found')}, listed {done.get('listed')}; {len(acks)} acknowledged, "
        f"{lost} lost; " + ("; ".join(problems) or "settled on prod"),
        lost,
    )


# -- the primary lease (bench/lease_faults.py) ------------------------------------------------------------------
def lease_primary_partitioned(lab: Lab, work: Path) -> Outcome:
    ok, detail, split = lease_faults.primary_partitioned(lab, work, _cmd, _env(work))
    return Outcome(ok, detail, split)


def lease_region_down(name: str) -> Callable[[Lab, Path], Outcome]:
    def run(lab: Lab, work: Path) -> Outcome:
        return Outcome(*lease_faults.region_down_alone(name)(lab), 0)

    return run


def lease_old_primary_restarted(lab: Lab, work: Path) -> Outcome:
    _replicated_commit(lab, "before-the-crash")  # a replayed commit to measure the lag by
    return Outcome(*lease_faults.old_primary_restarted(lab, work, _cmd, _env(work)))


def lease_guard_killed(lab: Lab, work: Path) -> Outcome:
    return Outcome(*lease_faults.guard_killed(lab), 0)


# -- backups ----------------------------------------------------------------------------------------------------
def _damaged_dump(lab: Lab, work: Path, damage: Callable[[bytes], bytes]) -> Outcome:
    """A dump damaged in its bucket: verify fails its sha256 check (exit 1); a restore into an empty database
    refuses it on the same check (exit 1, `sha256` fail in its report, no pg_restore step) and leaves the target
    as it was: empty."""
    made, report = _cmd(lab, "backup", "prod", work, "run")
    key = report["measured"]["keys"][0]
    prod = outputs(lab, "prod")
    s3 = boto3.client("s3", region_name=prod.region)
    stored = s3.get_object(Bucket=prod.dump_bucket, Key=key)
    original = stored["Body"].read()
    s3.put_object(
        Bucket=prod.dump_bucket,
        Key=key,
        Body=damage(original),
        Metadata=stored["Metadata"],
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=prod.kms_key_arn,
    )
    damaged = s3.get_object(Bucket=prod.dump_bucket, Key=key)["Body"].read() != original
    verified, checks = _cmd(lab, "backup", "prod", work, "verify", key)
    with connect(lab, "prod") as conn:
        conn.execute("DROP DATABASE IF EXISTS fault_restore_target")
        conn.execute("CREATE DATABASE fault_restore_target")
    target = lab.prod.postgres.conninfo(dbname="fault_restore_target")
    restored, refusal = _cmd(lab, "restore", "prod", work, "dump", key, "--target", target)
    with psycopg.connect(target, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    steps = [s.get("step") or s.get("name") for s in refusal.get("measured", {}).get("steps", [])]
    verify_sha = _outcomes(checks, "sha256")["sha256"]
    restore_sha = _outcomes(refusal, "sha256")["sha256"]
    ok = (
        made.returncode == 0
        and damaged
        and verified.returncode == 1
        and verify_sha == "fail"
        and restored.returncode == 1
        and restore_sha == "fail"
        and "does not match its SHA-256; the target was not touched" in restored.stderr
        and "download" in steps
        and not any("pg_restore" in str(s) for s in steps)
        and tables == 0
        and _no_traceback(verified, restored)
    )
    return Outcome(
        ok,
        f"verify exit {verified.returncode} (sha256 {verify_sha}), restore exit {restored.returncode} "
        f"(sha256 {restore_sha}), target tables {tables}",
    )


def truncated_dump(lab: Lab, work: Path) -> Outcome:
    return _damaged_dump(lab, work, lambda body: body[: len(body) // 2])


def bit_flipped_dump(lab: Lab, work: Path) -> Outcome:
    return _damaged_dump(lab, work, lambda body: body[:100] + bytes([body[100] ^ 0x01]) + body[101:])


def pitr_outside_the_archive(lab: Lab, work: Path) -> Outcome:
    too_old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    proc, _ = _cmd(lab, "restore", "prod", work, "pitr", "--time", too_old)
    ok = proc.returncode == 2 and "restorable window" in _last_line(proc) and _no_traceback(proc)
    return Outcome(ok, f"exit {proc.returncode}: {_last_line(proc)[:60]}")


# -- the corruption cutover (restore pitr --cutover, issue 29): a crash after each mutating step, then a rerun --------
CUTOVER_JOURNAL_KEY = f"{JOURNAL_PREFIX}cutover-prod.json"


def _damage_prod(lab: Lab) -> tuple[str, int, set[int], list[str]]:
    """Rows on prod, then a damaging transaction deleting a third of them (T read inside it, before the delete),
    then writes after it: (T, the damage's xid, the ids before the damage, the keys written after it)."""
    for i in range(30):
        _insert(lab, "prod", f"cutover-before-{i}")
    with connect(lab, "prod") as conn:
        before = {r[0] for r in conn.execute("SELECT id FROM interface_exceptions").fetchall()}
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            xid = int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
            conn.execute("DELETE FROM interface_exceptions WHERE id % 3 = 0")
    after = [f"cutover-after-{i}" for i in range(5)]
    for key in after:
        _insert(lab, "prod", key)
    return target.isoformat(), xid, before, after


def _cutover_converged(lab: Lab, before: set[int], after: list[str]) -> list[str]:
    """What keeps prod from holding exactly the rows before the damage and each write after it once."""
    with connect(lab, "prod") as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM interface_exceptions").fetchall()}
        twice = conn.execute(
            "SELECT transaction_id FROM interface_exceptions GROUP BY transaction_id HAVING count(*) > 1"
        ).fetchall()
    problems = [f"{len(before - ids)} rows before the damage missing"] if before - ids else []
    missing = set(after) - present(lab, "prod", after)
    if missing:
        problems.append(f"writes after the damage missing: {sorted(missing)}")
    if twice:
        problems.append(f"rows twice: {[r[0] for r in twice]}")
    return problems


def crash_after_cutover_step(step: str) -> Callable[[Lab, Path], Outcome]:
    """The cutover killed (SIGKILL) right after `step`: the shared journal's last entry is `step`, done; the rerun
    (same command) resumes it (its report says so), converges (prod the one writer on the new timeline, dr its
    standby, DNS and roles as at the baseline, every deleted row back, every write after the damage present once,
    no key re-applied by two passes), closes the journal; then `restore cleanup` removes what it left."""

    def run(lab: Lab, work: Path) -> Outcome:
        target, xid, before, after = _damage_prod(lab)
        env = _env(work)
        args = ("pitr", "--cutover", "--damage-xid", str(xid), "--time", target)
        crashed, _ = _cmd(lab, "restore", "prod", work, *args, env={**env, "DRTOPO_CRASH_AFTER": step})
        journal = _journal(lab, "prod", CUTOVER_JOURNAL_KEY) or {"steps": {}}
        steps = list(journal["steps"])
        if crashed.returncode != CRASHED or steps[-1:] != [step] or not journal["steps"][step].get("ok"):
            return Outcome(False, f"no crash after {step}: exit {crashed.returncode}, journal steps {steps}")
        resumed, report = _cmd(lab, "restore", "prod", work, *args, env=env)
        m = report.get("measured", {})
        passes = m.get("passes", [])
        once = sum(p.get("rows_reapplied", 0) for p in passes) == m.get("rows_reapplied")
        still_open = _journal(lab, "prod", CUTOVER_JOURNAL_KEY) is not None
        problems = _end_state_problems(lab, "prod") + _cutover_converged(lab, before, after)
        cleaned, _ = _cmd(lab, "restore", "prod", work, "cleanup", env=env)
        ok = (
            resumed.returncode == 0
            and m.get("resumed") is True
            and once
            and not still_open
            and not problems
            and cleaned.returncode == 0
            and _no_traceback(crashed, resumed, cleaned)
        )
        return Outcome(
            ok,
            f"killed after {step} (journal {len(steps)} steps), rerun exit {resumed.returncode}, resumed "
            f"{m.get('resumed')}, re-applied {m.get('rows_reapplied')} in passes "
            f"{[p.get('rows_reapplied') for p in passes]}, journal {'OPEN' if still_open else 'closed'}, cleanup exit "
            f"{cleaned.returncode}, " + ("; ".join(problems) or "prod the one writer, every row back once"),
        )

    return run


CONVERGES = "killed, rerun resumes and converges, one writer"

# Written out, one row a fault: removing a step from a plan does not remove its row (the count and the plan check
# in tests/integration/test_fault_matrix.py fail instead). The crash rows run with --skip-consumer-group: the
# consumer-group step has a fault of its own (live members).
FAULTS: list[Fault] = [
    Fault(
        "SIGKILL of the primary under writes", "promoted, loss a tail within the bound", sigkill_primary_under_writes
    ),
    Fault("crash after promote step preflight", CONVERGES, crash_after_promote_step(Step.PREFLIGHT)),
    Fault("crash after promote step guard", CONVERGES, crash_after_promote_step(Step.GUARD)),
    Fault("crash after promote step fence", CONVERGES, crash_after_promote_step(Step.FENCE)),
    Fault("crash after promote step drain", CONVERGES, crash_after_promote_step(Step.DRAIN)),
    Fault("crash after promote step promote", CONVERGES, crash_after_promote_step(Step.PROMOTE)),
    Fault("crash after promote step application", CONVERGES, crash_after_promote_step(Step.APPLICATION)),
    Fault("crash after promote step dns", CONVERGES, crash_after_promote_step(Step.DNS)),
    Fault("crash after promote step application-down", CONVERGES, crash_after_promote_step(Step.APPLICATION_DOWN)),
    Fault("crash after promote step roles", CONVERGES, crash_after_promote_step(Step.ROLES)),
    Fault("crash after promote step protect", CONVERGES, crash_after_promote_step(Step.PROTECT)),
    Fault("crash after failback step preflight", CONVERGES, crash_after_failback_step(Step.PREFLIGHT)),
    Fault("crash after failback step rebuild", CONVERGES, crash_after_failback_step(Step.REBUILD)),
    Fault("crash after failback step catch-up", CONVERGES, crash_after_failback_step(Step.CATCH_UP)),
    Fault("crash after failback step guard", CONVERGES, crash_after_failback_step(Step.GUARD)),
    Fault("crash after failback step fence", CONVERGES, crash_after_failback_step(Step.FENCE)),
    Fault("crash after failback step drain", CONVERGES, crash_after_failback_step(Step.DRAIN)),
    Fault("crash after failback step promote", CONVERGES, crash_after_failback_step(Step.PROMOTE)),
    Fault("crash after failback step application", CONVERGES, crash_after_failback_step(Step.APPLICATION)),
    Fault("crash after failback step dns", CONVERGES, crash_after_failback_step(Step.DNS)),
    Fault("crash after failback step application-down", CONVERGES, crash_after_failback_step(Step.APPLICATION_DOWN)),
    Fault("crash after failback step roles", CONVERGES, crash_after_failback_step(Step.ROLES)),
    Fault("crash after failback step protect", CONVERGES, crash_after_failback_step(Step.PROTECT)),
    Fault("crash after failback step rebuild-peer", CONVERGES, crash_after_failback_step(Step.REBUILD_PEER)),
    # The corruption cutover's crash rows (restore pitr --cutover; the steps of drtopo.database.pitr.cutover).
    Fault("crash after cutover step restore", CONVERGES, crash_after_cutover_step("restore")),
    Fault("crash after cutover step reapply", CONVERGES, crash_after_cutover_step("reapply")),
    Fault("crash after cutover step fence", CONVERGES, crash_after_cutover_step("fence")),
    Fault("crash after cutover step reapply-fenced", CONVERGES, crash_after_cutover_step("reapply-fenced")),
    Fault("crash after cutover step swap", CONVERGES, crash_after_cutover_step("swap")),
    Fault("crash after cutover step standby", CONVERGES, crash_after_cutover_step("standby")),
    Fault("crash after cutover step base-backup", CONVERGES, crash_after_cutover_step("base-backup")),
    Fault("old primary restarts writable", "fenced by validate, one writer", old_primary_returns_writable),
    Fault("replica beyond the RPO", "exit 3, replica-lag fail, nothing changed", replica_beyond_the_rpo),
    Fault("fence impossible, old primary answers", "exit 3, nothing changed", fence_impossible),
    Fault(
        "consumer group with live members",
        "exit 1, consumer-group left, rerun 0 (skip)",
        consumer_group_with_live_members,
    ),
    Fault(
        "DNS API failing after promotion",
        "exit 1, dns and application-down left, rerun 0",
        dns_api_failing_after_promotion,
    ),
    Fault("two promotes at once", "one runs, one refused by the lock", two_promotes_at_once),
    Fault("lock held by another operator", "exit 3 naming it", lock_held_by_another_operator),
    Fault("stale journal", "exit 3 until --restart", stale_journal),
    Fault("crash, resumed from another machine", "resumed, no second promotion", resumed_from_another_machine),
    Fault("AWS emulator down", "exit 3, nothing changed", emulator_down),
    Fault("incident topic gone (SNS refusing)", "exit 0, failed over, messages not sent", incident_topic_gone),
    Fault(
        "us-east-1 API unreachable during promote",
        "exit 0, DNS via the data plane, no UPSERT",
        us_east_1_api_unreachable_during_promote,
    ),
    Fault(
        "prod partitioned while promote measures lag",
        "exit 3 naming why, --accept-data-loss 0",
        prod_partitioned_while_promote_measures_lag,
    ),
    Fault(
        "WAN latency pushing replica lag past the RPO",
        "exit 3, replica-lag fail, nothing changed",
        wan_lag_beyond_the_rpo,
    ),
    Fault(
        "peer's configuration bucket unreachable",
        "lock and journal in dr: crash, resume, exit 0",
        peer_configuration_bucket_unreachable,
    ),
    Fault(
        "partition healing after promotion (lease off)",
        "writes prod took re-applied by failback, 0 lost",
        partition_healing_after_promotion,
    ),
    # With the primary lease on (drtopo:fencing.mode lease; the lab's 6 s lease, 2 s renewals).
    Fault("lease: primary partitioned", "fenced by its guard in lease+renew, 0 split-brain", lease_primary_partitioned),
    Fault("lease: standby region down alone", "primary keeps taking writes, no fence", lease_region_down("dr")),
    Fault("lease: witness region down alone", "primary keeps taking writes, no fence", lease_region_down("witness")),
    Fault(
        "lease: old primary restarted writable after an unplanned promote",
        "its guard fences it in lease+renew, no command",
        lease_old_primary_restarted,
    ),
    Fault("lease: guard's pod killed", "restarted by Kubernetes, no fence", lease_guard_killed),
    Fault("MirrorMaker stopped", "exit 1, lag reported", mirrormaker_stopped),
    Fault(
        "MirrorMaker's links reset mid-stream",
        "validate and status exit 1, lag reported, recovers",
        mirrormaker_links_reset,
    ),
    Fault("source Kafka down", "exit 1, mirror unmeasurable", source_kafka_down),
    Fault(
        "prod's registry down",
        "dr's pod pulls from dr's registry and starts; prod's refused",
        prod_registry_down,
    ),
    Fault("truncated dump", "verify 1, restore 1 on sha256", truncated_dump),
    Fault("bit-flipped dump", "verify 1, restore 1 on sha256", bit_flipped_dump),
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


def baseline_line(lab: Lab) -> str:
    """Where the last restore_baseline's time went, phase by phase (phases may overlap: the emulator's reseed runs
    beside the PostgreSQL pair)."""
    phases = ", ".join(f"{name} {seconds:.1f}" for name, seconds in lab.baseline_timings.items())
    return f"baseline ({phases})"


def print_table(rows: list[tuple[Fault, Outcome, float]]) -> None:
    width = max(len(f.name) for f, _, _ in rows)
    said = max(len(f.expected) for f, _, _ in rows)
    print(f"{'fault':<{width}}  {'expected':<{said}}  {'ok':<4}  {'lost':>4}  {'s':>5}  outcome")
    for fault, outcome, seconds in rows:
        lost = "-" if outcome.rows_lost is None else str(outcome.rows_lost)
        ok = "PASS" if outcome.ok else "FAIL"
        print(f"{fault.name:<{width}}  {fault.expected:<{said}}  {ok:<4}  {lost:>4}  {seconds:5.1f}  {outcome.got}")
    print(f"{sum(o.ok for _, o, _ in rows)}/{len(rows)} faults met their expected outcome")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    p.add_argument("--lab-root", type=Path, help="a running lab (default: a fresh one, stopped afterwards)")
    p.add_argument("--only", action="append", help="run the faults whose name contains this text (repeatable)")
    args = p.parse_args(argv)
    chosen = [f for f in FAULTS if not args.only or any(text in f.name for text in args.only)]
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
                print(f"    {time.monotonic() - start:.1f} s, {baseline_line(lab)}", flush=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    print()
    print_table(rows)
    return 0 if all(o.ok for _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
