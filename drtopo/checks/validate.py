"""The runbook's post-recovery checks in one run: service, database, comparison with another database, Kafka.

`validate` runs each group not skipped and returns the report; `against_conninfo` resolves what `--against` names.
The stack is expected in a role (`expect`, primary by default: the stack a recovery made primary), and checks that
tell a recovered stack from one that is not go first (drtopo/checks/recovery.py). The service is checked at the
stack's own region (`regionServiceUrl`), the failover record separately (`service.record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import psycopg

from drtopo.checks.application import application_checks
from drtopo.checks.db import (
    EXCEPTIONS_TABLE,
    accepts_writes,
    exception_checks,
    query_time_check,
    rpo_check,
    split_brain_check,
    table_checks,
)
from drtopo.checks.disaster import disaster_time
from drtopo.checks.kafka import kafka_checks
from drtopo.checks.recovery import record_check, role_check, write_probe
from drtopo.checks.service import health_check, latency_check
from drtopo.context import DEFAULT_STATE_DIR
from drtopo.database import database_for
from drtopo.database.compare import DEFAULT_LIMIT, CompareError, compare
from drtopo.database.connect import connect
from drtopo.database.platform import session
from drtopo.failover.pending import settle
from drtopo.failover.takeback import CHECK as DIVERGED
from drtopo.failover.takeback import take_back
from drtopo.kafka.app_switch import active_bootstrap
from drtopo.outputs import StackOutputs, load_outputs, peer_outputs_path
from drtopo.report import BadInput, Report
from drtopo.settings import REPO_DIR, Role, Settings, stacks

GROUPS = ("service", "database", "kafka", "compare", "application")


def against_conninfo(
    against: str, stack: str, outputs_path: Path | None, project_dir: Path = REPO_DIR
) -> StackOutputs | str:
    """The other side of the comparison: the outputs of a stack of the project, or a DSN as given."""
    if against in stacks(project_dir):
        if against == stack:
            raise BadInput(f"--against {against!r} is the stack being validated; expected the other stack or a DSN")
        return load_outputs(peer_outputs_path(outputs_path, against), against)
    if against.startswith(("postgresql://", "postgres://")) or "=" in against:
        try:
            psycopg.conninfo.conninfo_to_dict(against)
        except psycopg.ProgrammingError as exc:
            raise BadInput(f"--against {against!r} is not a valid DSN ({exc})") from None
        return against
    raise BadInput(
        f"--against {against!r} is unknown; expected one of {', '.join(stacks(project_dir))} or a PostgreSQL DSN"
    )


def _connect_other(other: StackOutputs | str) -> psycopg.Connection:
    if isinstance(other, str):
        return psycopg.connect(other, autocommit=True, connect_timeout=3)
    return connect(other)


def database_checks(report: Report, conn: psycopg.Connection, settings: Settings, since: datetime | None) -> None:
    present = table_checks(report, conn, settings.database.tables)
    if EXCEPTIONS_TABLE in present:
        exception_checks(report, conn)
        query_time_check(report, conn, settings.service.db_query_limit_ms)
        if since is not None:
            rpo_check(report, conn, since, settings.objectives.region_failure.rpo_seconds)


def compare_checks(
    report: Report, conn: psycopg.Connection, other: StackOutputs | str, tables: Sequence[str], limit: int
) -> None:
    name = other.stack if isinstance(other, StackOutputs) else "DSN"
    try:
        reference = _connect_other(other)
    except psycopg.OperationalError as exc:
        report.check("compare.connect", False, f"{name}: {str(exc).strip().splitlines()[0]}")
        return
    with reference:
        try:
            diffs = compare(reference, conn, tables, limit=limit)
        except CompareError as exc:
            report.check("compare", False, str(exc))
            return
    report.measured["compare"] = [d.to_dict() for d in diffs]
    for d in diffs:
        report.check(
            f"compare.rows.{d.table}", d.reference_rows == d.target_rows, f"vs {name}", d.target_rows, d.reference_rows
        )
        differing = len(d.keys.missing) + len(d.keys.extra) + len(d.keys.changed)
        report.check(f"compare.keys.{d.table}", d.equal, f"vs {name} in {d.seconds:.2f} s: {d.summary()}", differing, 0)


def _writer(outputs: StackOutputs) -> bool | None:
    """Whether the stack's database accepts writes now (None: it does not answer)."""
    try:
        with connect(outputs) as conn:
            return accepts_writes(conn)
    except psycopg.OperationalError:
        return None


def _in_recovery(outputs: StackOutputs) -> bool | None:
    """Whether the stack's database is a standby (None: it does not answer)."""
    try:
        with session(outputs) as conn:
            return None if conn is None else bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
    except psycopg.Error:
        return None


def diverged_check(report: Report, outputs: StackOutputs, peer: StackOutputs, state_dir: Path) -> None:
    """`diverged`: the rows the peer, an old primary (it answers out of recovery), took after the fork that this
    primary lacks, found and listed, nothing written (`failback` re-applies them before its rebuild)."""
    standby = _in_recovery(peer)
    if standby is None:
        report.skip(DIVERGED, f"{peer.stack}'s database does not answer: its writes after the fork not looked for")
    elif not standby:
        take_back(report, database_for(outputs), database_for(peer), state_dir, apply=False)


def pair_checks(
    report: Report,
    settings: Settings,
    outputs: StackOutputs,
    peer: StackOutputs | None,
    state_dir: Path = DEFAULT_STATE_DIR,
) -> None:
    """First the fence an unplanned promotion owes the peer, then the rows an old primary took after the fork, then
    `db.split_brain` over both databases."""
    if peer is None:
        report.skip("db.split_brain", f"not checked: no outputs of the peer stack {settings.peer_stack}")
        return
    if settings.is_primary:
        settle(report, promoted=outputs, old_primary=peer)
        diverged_check(report, outputs, peer, state_dir)
    split_brain_check(report, {outputs.stack: _writer(outputs), peer.stack: _writer(peer)})


def validate(
    settings: Settings,
    outputs: StackOutputs,
    *,
    other: StackOutputs | str | None = None,
    since: datetime | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
    requests: int = 20,
    limit: int = DEFAULT_LIMIT,
    max_mirror_lag: int = 100,
    peer: StackOutputs | None = None,
    expect: Role = Role.PRIMARY,
    state_dir: Path = DEFAULT_STATE_DIR,
    token: str | None = None,
) -> Report:
    """Every check group of GROUPS not in `skip`; `other` adds the comparison, `since` the measured RPO (default:
    when the last promote's journal says the primary was last heard from, drtopo/checks/disaster.py). With the
    peer's outputs, a fence owed to it is paid first, the rows it took after the fork as an old primary are found
    (listed in `state_dir`) and the split-brain check sees both databases. The stack must
    be `expect` (`stack.role`); a primary's database must accept a write (`db.write_probe`). The `application`
    group (a primary's only: a standby's collector consumes nothing) makes the API call with `token`, sends a probe
    event through the cluster the application consumes, and checks consistency, metrics and memory
    (drtopo/checks/application.py)."""
    report = Report()
    in_role = role_check(report, settings, outputs, expect)
    if since is None and "database" not in skip:
        found = disaster_time(outputs)
        since = found.at
        report.measured["since"] = {"at": since.isoformat() if since else None, "source": found.source}
    elif since is not None:
        report.measured["since"] = {"at": since.isoformat(), "source": "--since"}
    if "database" not in skip:
        pair_checks(report, settings, outputs, peer, state_dir)
    if "service" not in skip:
        url = outputs.region_service_url or outputs.service_url
        if health_check(report, url, settings.service.health_path):
            latency_check(report, url, requests, settings.service.latency_p95_ms, token)
        record_check(report, outputs, expect)
    if not {"database", "compare"} <= skip:
        try:
            conn = connect(outputs)
        except psycopg.OperationalError as exc:
            report.check(
                "db.connect", False, f"{outputs.db_address}:{outputs.db_port}: {str(exc).strip().splitlines()[0]}"
            )
        else:
            with conn:
                if "database" not in skip:
                    if expect is Role.PRIMARY:
                        write_probe(report, conn)
                    database_checks(report, conn, settings, since)
                if other is not None and "compare" not in skip:
                    compare_checks(report, conn, other, settings.database.tables, limit)
    if "kafka" not in skip:
        kafka_checks(report, settings, outputs, max_mirror_lag)
    if "application" not in skip and expect is Role.PRIMARY:
        application_group(report, settings, outputs, token, in_role)
    return report


def application_group(
    report: Report, settings: Settings, outputs: StackOutputs, token: str | None, in_role: bool
) -> None:
    """The application's checks at the stack's own region, through the Kafka cluster it consumes; a stack that is
    not the primary has no collector running (its checks would only time out)."""
    if not in_role:
        report.skip("application", f"not checked: {settings.stack} is not the primary (stack.role)")
        return
    bootstrap, where = active_bootstrap(settings, outputs)
    report.measured["application_kafka"] = {"bootstrap": bootstrap, "source": where}
    url = outputs.region_service_url or outputs.service_url
    application_checks(report, settings, outputs, url, token, bootstrap)
