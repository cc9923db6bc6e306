"""What each failover and failback step does, over one `Switchover`: the data-loss guard, fencing the old primary,
draining to its final WAL position, promotion, the consumer group, the DNS flip, the role switch and the rebuilds.

`scripts.promote` and `scripts.failback` differ only in their plan (drtopo/failover/plan.py); the steps are shared and
found by name in `STEPS`. Each returns its typed record (drtopo/failover/results.py) and records its checks in the
run's report. The databases are `drtopo.database.Database`s: no step asks which platform runs them. Every step is
safe to repeat, so a resumed run converges on the same end state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from drtopo.application import deployment
from drtopo.application.deployment import RegionApp, Unreachable
from drtopo.application.rollout import RolloutFailed
from drtopo.backup import wal
from drtopo.backup.store import s3_client
from drtopo.context import Context
from drtopo.database import Database, database_for, replication
from drtopo.database.diverged import Fork, fork_point
from drtopo.database.loss_bound import BoundKind
from drtopo.database.platform import FenceError, StandbyError, session
from drtopo.errors import one_line
from drtopo.failover import marker, pending, takeback
from drtopo.failover.dns import DATA_PLANE, DnsFailoverError, fail_over
from drtopo.failover.plan import AppMove, Step
from drtopo.failover.protect import JobsNotResumed, missing_protection, resume_backup_jobs
from drtopo.failover.results import (
    ApplicationDownResult,
    ApplicationResult,
    CatchUpResult,
    ConsumerGroupResult,
    DnsResult,
    DrainResult,
    FenceResult,
    GuardResult,
    LeaseGuardsResult,
    PreflightResult,
    PromoteResult,
    ProtectResult,
    RebuildResult,
    RolesResult,
    StepResult,
)
from drtopo.failover.roles import planned_switch, pulumi_commands, switch_roles
from drtopo.fencing.deployment import GuardDeployment, GuardError, wait_renewing
from drtopo.fencing.fence import is_fenced, lift_fence
from drtopo.fencing.quorum import LeaseLost
from drtopo.fencing.store import lease_stores
from drtopo.fencing.takeover import take_over
from drtopo.kafka.offsets import (
    CheckpointError,
    KafkaException,
    apply_group_offsets,
    group_members,
    read_checkpoints,
    translated_offsets,
)
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import StackOutputs
from drtopo.report import Report, Unsafe, settings_for
from drtopo.settings import FencingMode, Role, Settings

# How long the lease-guards step waits for a guard's pods (an image already on the node starts in seconds).
GUARD_POD_TIMEOUT_S = 120.0


def lease_on(settings: Settings) -> bool:
    """Whether the stack runs with the primary lease (drtopo:fencing.mode lease)."""
    return settings.fencing.mode is FencingMode.LEASE


class StepFailed(RuntimeError):
    """A step that ran and did not reach its end state; the run reports it and a rerun repeats the step."""


class Kind(StrEnum):
    """What a run does: a failover to the standby, or the way back."""

    PROMOTE = "promote"
    FAILBACK = "failback"


@dataclass
class Switchover:
    """Everything the steps of one run share."""

    kind: Kind
    target: StackOutputs
    peer: StackOutputs
    settings: Settings
    ctx: Context
    accept_data_loss: bool = False
    skip_consumer_group: bool = False
    # DNS moves to the target even when its application was not seen healthy (reported, never silent).
    skip_app_check: bool = False
    # The rows an old primary took that are listed (not re-applied) are accepted: its rebuild may go on.
    acknowledge_diverged: bool = False
    dry_run: bool = False
    break_lock: bool = False
    report: Report = field(default_factory=Report)
    # Set by the fence step when the old primary did not answer: the promotion records the fence it owes.
    fence_owed: bool = False
    # The database instance each stack's outputs (its Pulumi state) named when the run started.
    deployed: dict[str, str] = field(default_factory=dict)

    @property
    def project_dir(self) -> Path:
        return self.ctx.project_dir

    @property
    def failback(self) -> bool:
        return self.kind == Kind.FAILBACK

    def db(self, outputs: StackOutputs) -> Database:
        return database_for(outputs)

    def sql(self, outputs: StackOutputs) -> contextlib.AbstractContextManager[psycopg.Connection | None]:
        """A session on the stack's database, or None when it does not answer."""
        return session(outputs)


def preflight(sw: Switchover) -> PreflightResult:
    target, peer = sw.db(sw.target), sw.db(sw.peer)
    target_up = target.reachable()
    peer_up = peer.reachable()
    if sw.failback:
        # An old primary owed a fence (unplanned promotion) is fenced before anything else touches it: the
        # instance it held then is the generation it has retired since.
        retired = sw.settings.database.retired_generations
        old = target.generation(sw.settings, retired[-1]).outputs if retired else sw.target
        pending.settle(sw.report, promoted=sw.peer, old_primary=old, rebuilt_next=True)
    result = PreflightResult(target_reachable=target_up, peer_reachable=peer_up)
    where = f"{sw.target.db_address}:{sw.target.db_port}"
    if sw.failback and not target_up:
        # A failback rebuilds the target anyway: a stopped or crashed server whose files are here will do.
        target_up = target.rebuildable_when_down()
        where += " down; will be rebuilt"
    sw.report.check(f"{sw.target.stack}-reachable", target_up, where)
    if not target_up:
        raise Unsafe(f"{sw.target.stack}'s database {sw.target.db_instance_id} does not answer; target not ready")
    sw.report.check(
        f"{sw.peer.stack}-state",
        True,
        "reachable: will be fenced" if peer_up else "unreachable: treated as failed",
        value=peer_up,
    )
    if not sw.failback:
        target.require_replica()
    elif not peer_up:
        raise Unsafe(f"{sw.peer.stack} (the current primary) does not answer; a failback needs it")
    return result


def guard(sw: Switchover) -> GuardResult:
    """The replica lag against the region-failure RPO. With the old primary unreachable the lag is a bound whose
    kind is reported (`loss_bound.BoundKind`); an unknown one is judged on its measurable part: refused only when
    that exceeds the RPO, and the part nobody can measure without a lease (a cut-off primary that still commits) is
    said in the check, never turned into a refusal that every unplanned failover would have to override."""
    rpo = sw.settings.objectives.region_failure.rpo_seconds
    lag = sw.db(sw.target).lag(sw.db(sw.peer))
    ok = lag.seconds is not None and lag.seconds <= rpo
    sw.report.measured.update(
        replica_lag_seconds=lag.seconds,
        replica_lag_bytes=lag.bytes,
        replica_lag_source=lag.source,
        replica_lag_bound=lag.bound or "measured against the answering primary",
        replica_lag_last_contact=lag.last_contact,
    )
    detail = f"{lag.source}; {lag.detail}" + ("" if ok else " (beyond the RPO)")
    if lag.bound == BoundKind.UNKNOWN:
        measurable = "unknown" if lag.seconds is None else f"{lag.seconds:.3f} s"
        unmeasured = (
            f"not measurable: writes {sw.peer.stack} may still take if it is cut off rather than down (confirm it "
            f"is down; once it answers, `validate --against {sw.peer.stack}` compares the two)"
        )
        detail += f"; measurable part {measurable}; {unmeasured}"
        sw.ctx.reporter.warning(f"data-loss bound {lag.bound}: {unmeasured}")
    if not ok and sw.accept_data_loss:
        detail += "; accepted with --accept-data-loss"
    sw.report.check("replica-lag", ok or sw.accept_data_loss, detail, value=lag.seconds, limit=rpo)
    if not ok and not sw.accept_data_loss and not sw.dry_run:
        shown = "unknown" if lag.seconds is None else f"{lag.seconds:.3f} s"
        raise Unsafe(
            f"replica lag of {sw.target.stack} is {shown} ({lag.source}), beyond the region-failure RPO of "
            f"{rpo:g} s; pass --accept-data-loss to promote anyway"
        )
    if "(replay paused)" in lag.detail and sw.db(sw.peer).reachable() and not sw.dry_run:
        # A planned switchover drains to the old primary's final position, which a paused standby never reaches.
        raise Unsafe(f"WAL replay is paused on {sw.target.stack}; resume it (pg_wal_replay_resume()) first")
    return GuardResult(lag=lag.as_dict(), rpo_seconds=rpo, refused=not ok and not sw.accept_data_loss)


def _take_lease(sw: Switchover, wait: bool) -> None:
    """With `drtopo:fencing.mode: lease`: the next epoch for the target; when the old primary did not answer, the
    wait until its lease has run out and its guard has fenced it (an RTO phase; the data-loss bound is then proven)."""
    if sw.settings.fencing.mode is not FencingMode.LEASE:
        return
    try:
        taken = take_over(
            lease_stores(sw.settings, sw.target, sw.peer), sw.target.stack, sw.target.region, sw.settings.fencing, wait
        )
    except (LeaseLost, ValueError) as exc:
        raise Unsafe(f"cannot take the primary lease for {sw.target.stack}: {exc}") from None
    sw.report.measured["lease_epoch"] = taken.lease.epoch
    if wait:
        sw.report.measured["lease_wait_seconds"] = round(taken.waited_seconds, 3)
        sw.report.measured["replica_lag_bound"] = BoundKind.LEASE
    waited = f"waited {taken.waited_seconds:.1f} s for {sw.peer.stack}'s lease to run out" if wait else "handed over"
    sw.report.check("lease", True, f"{taken.describe()}; {waited}")


def fence(sw: Switchover) -> FenceResult:
    old = sw.db(sw.peer)
    reachable = old.reachable()
    if not reachable:
        _take_lease(sw, wait=True)
        # Owed, not done: recorded once promotion has happened, paid the moment the old primary answers.
        sw.fence_owed = True
        sw.report.skip("fence", f"{sw.peer.stack} unreachable: fence owed, recorded after promotion")
        return FenceResult(fenced=False, reason="unreachable", owed=True)
    try:
        done = dict(old.fence())
    except FenceError as exc:
        raise Unsafe(f"old primary {sw.peer.stack} is reachable and could not be fenced: {exc}") from None
    # Handed over once the platform's fence holds: the old guard, seeing the newer epoch, then finds its database
    # read-only already and ends no session of this run (its drain), nor the fence's own.
    _take_lease(sw, wait=False)
    sw.report.check("fence", True, f"{done['method']}; {done['proof']}")
    method, proof = done.pop("method"), done.pop("proof")
    return FenceResult(fenced=True, method=method, proof=proof, details=done)


def drain(sw: Switchover) -> DrainResult:
    with sw.sql(sw.peer) as primary_conn, sw.sql(sw.target) as standby_conn:
        if primary_conn is None or standby_conn is None:
            raise Unsafe(f"cannot read WAL positions of {sw.peer.stack} and {sw.target.stack} to drain")
        final = replication.current_lsn(primary_conn)
        try:
            waited = replication.wait_replayed(standby_conn, final, timeout=120)
        except TimeoutError as exc:
            raise Unsafe(f"{sw.target.stack} did not catch up with the fenced primary: {exc}") from None
    sw.report.check("drain", True, f"{sw.target.stack} replayed {sw.peer.stack}'s final WAL position {final}")
    sw.report.measured["final_lsn"] = final
    return DrainResult(final_lsn=final, waited_seconds=round(waited, 3))


def _fork(sw: Switchover) -> Fork | None:
    """Where the pair forks, read on the standby just before its promotion (None: it does not answer or is out of
    recovery already, a resumed run's)."""
    try:
        with sw.sql(sw.target) as conn:
            return None if conn is None else fork_point(conn)
    except psycopg.Error:
        return None


def _record_fork(sw: Switchover, fork: Fork | None) -> str | None:
    if fork is None:
        return None
    try:
        return takeback.record_fork(sw.target, sw.peer, fork)
    except (ClientError, BotoCoreError) as exc:
        # Promoted already: said, not raised; a later search without it lists every changed row as a conflict.
        sw.report.check("fork", False, f"fork from {sw.peer.stack} not recorded: {exc}")
        return None


def promote(sw: Switchover) -> PromoteResult:
    fork = _fork(sw)
    lease = lease_on(sw.settings)
    try:
        # With the lease, the old primary's guard fences with ALTER DATABASE, which replicates (streamed, or from the
        # WAL archive): the new primary must not keep it, and a wait for writability must not wait on it.
        details = sw.db(sw.target).promote(lift_lease_fence=lease)
    except StandbyError as exc:
        raise Unsafe(str(exc)) from None
    fork_record = _record_fork(sw, fork)
    if lease and "lease_fence" not in details:
        # A platform whose promotion does not wait for writability (RDS) leaves the lift to here.
        try:
            lift_fence(sw.target)
            details["lease_fence"] = "reset on the new primary (ALTER DATABASE ... RESET, whether set or not)"
        except psycopg.Error as exc:
            # Promoted already: said, not raised. This stack's own old guard, lapsed and still running, fences the
            # database again the moment it is writable (ending this session too); the lease-guards step, which
            # follows whenever the lease is on, stops that guard first and then lifts.
            details["lease_fence"] = f"left to the lease-guards step: {one_line(exc)}"
            sw.report.skip(
                "lease.lift",
                f"ALTER DATABASE ... RESET default_transaction_read_only not done here ({one_line(exc)}): the "
                "lease-guards step stops this stack's old guard, then lifts it",
            )
    where = None
    if sw.fence_owed:
        try:
            where = pending.record(sw.target, sw.peer)
        except (ClientError, BotoCoreError) as exc:
            # Promoted already: the debt not written down must not stop the run; it is reported instead.
            sw.report.check("fence.pending", False, f"fence owed to {sw.peer.stack} not recorded: {exc}")
    shown = {**details, **({"fence_pending": where} if where else {})}
    sw.report.check("promote", True, "; ".join(f"{k}={v}" for k, v in shown.items()))
    return PromoteResult(details=details, fence_pending=where, fork=fork_record)


def _refuses_writes(outputs: StackOutputs) -> bool | None:
    """Whether a new session of the stack's database starts read-only; None when it does not answer."""
    try:
        return is_fenced(outputs)
    except psycopg.Error:
        return None


def lease_guards(sw: Switchover) -> LeaseGuardsResult:
    """The lease's guards follow the promotion (drtopo/fencing/deployment.py): the target's restarted (its fence,
    which ALTER DATABASE replicated or an old guard of its own set, lifted first) until it renews the epoch taken;
    the peer's stopped once its database refuses writes, else left running to fence it when it answers."""
    fencing = sw.settings.fencing
    mine = GuardDeployment(sw.settings)
    reporter = sw.ctx.reporter
    try:
        mine.stop(GUARD_POD_TIMEOUT_S)
        lift_fence(sw.target)
        started = mine.start(GUARD_POD_TIMEOUT_S)
        reporter.info(f"{mine.where}: running after {started:.1f} s; waiting for its first renewals")
        stores = lease_stores(sw.settings, sw.target, sw.peer)
        lease = wait_renewing(stores, sw.target.stack, GUARD_POD_TIMEOUT_S, fencing.renew_seconds)
    except (GuardError, psycopg.Error, ValueError) as exc:
        raise StepFailed(f"the lease guard of {sw.target.stack} is not renewing: {exc}") from None
    sw.report.check("lease.guard", True, f"{mine.where} renews {lease.describe()} ({lease.renewals} renewals)")
    old = GuardDeployment(settings_for(sw.peer.stack, sw.project_dir))
    refusing = _refuses_writes(sw.peer)
    if refusing:
        try:
            old.stop(GUARD_POD_TIMEOUT_S)
            outcome = "stopped"
            sw.report.check("lease.old-guard", True, f"{old.where} stopped: {sw.peer.stack} refuses writes")
        except GuardError as exc:
            outcome = f"left running: {exc}"
            sw.report.skip("lease.old-guard", outcome)
    else:
        why = "does not answer" if refusing is None else "answers writable"
        outcome = f"left running: {sw.peer.stack}'s database {why}; its guard fences it the moment it answers"
        sw.report.skip("lease.old-guard", outcome)
    return LeaseGuardsResult(renewing=asdict(lease), started_seconds=round(started, 3), old_guard=outcome)


def _group_in_use(sw: Switchover, group: str, members: int) -> ConsumerGroupResult:
    """The group has members on the target before this step moves it. Drtopo's own application running there (a
    warm standby's, which consumes the moment its database accepts writes; or the one a previous run of this command
    scaled up after this step had failed): it resumed from the offsets MirrorMaker 2 syncs onto the target while the
    group is idle there (sync.group.offsets, declared by the program: checkpoint-translated, so re-reads and never
    skips), and moving them now would race its commits. Nothing of ours running there: someone else's consumer,
    refused."""
    bootstrap = sw.target.kafka_bootstrap
    app = RegionApp.of(sw.settings, sw.target)
    running = _now(app)
    if sw.settings.application.standby_replicas > 0 or (running or 0) > 0:
        interval = sw.settings.kafka.mirror.sync_group_offsets_interval_seconds
        whose = (
            "the warm standby's application" if not running else f"the application, {running} replica(s) on {app.where}"
        )
        sw.report.skip(
            "consumer-group",
            f"not moved: group {group!r} already consumes on {bootstrap} ({members} member(s): {whose}), from "
            f"MirrorMaker 2's synced offsets (every {interval} s)",
        )
        return ConsumerGroupResult(skipped=True)
    scale = "unreadable" if running is None else "0 replicas"
    raise Unsafe(
        f"consumer group {group!r} has {members} active member(s) on {bootstrap} while {app.where} runs {scale}: "
        "another consumer, whose commits would race the translated offsets; stop it, then rerun"
    )


def consumer_group(sw: Switchover) -> ConsumerGroupResult:
    group = sw.settings.kafka.consumer_group
    if sw.skip_consumer_group:
        sw.report.skip("consumer-group", "not moved: --skip-consumer-group")
        return ConsumerGroupResult(skipped=True)
    source_alias = cluster_alias(sw.peer.region)
    try:
        members = group_members(sw.target.kafka_bootstrap, group)
        if members:
            return _group_in_use(sw, group, len(members))
        checkpoints = read_checkpoints(sw.target.kafka_bootstrap, source_alias, group)
        offsets = translated_offsets(checkpoints)
        applied = apply_group_offsets(sw.target.kafka_bootstrap, group, offsets)
    except (CheckpointError, KafkaException) as exc:
        raise StepFailed(f"group {group!r} not moved to {sw.target.kafka_bootstrap}: {exc}") from None
    detail = f"group {group!r}: {len(offsets)} partition(s) at translated offsets on {sw.target.kafka_bootstrap}"
    sw.report.check("consumer-group", True, detail if offsets else f"group {group!r} has no checkpoints yet")
    # Where the group was put (and where it was), per partition: the application moves it on at once.
    sw.report.measured["consumer_group"] = applied.as_dict()
    return ConsumerGroupResult(moved=True, details=applied.as_dict())


# The old region's scale-down is best effort: it must not hold up a failover whose old region is gone.
OLD_REGION_TIMEOUT_SECONDS = 60.0
# The DNS step's own look at the target's health endpoint (the application step waited for it already).
DNS_HEALTH_TIMEOUT_SECONDS = 15.0


def _apps(sw: Switchover) -> tuple[RegionApp, int, RegionApp, int]:
    """The target's application and the primary's replica count; the old region's and the standby's count."""
    peer_settings = settings_for(sw.peer.stack, sw.project_dir)
    return (
        RegionApp.of(sw.settings, sw.target),
        sw.settings.application.replicas(Role.PRIMARY),
        RegionApp.of(peer_settings, sw.peer),
        peer_settings.application.replicas(Role.STANDBY),
    )


def _now(app: RegionApp) -> int | None:
    try:
        return deployment.replicas(app)
    except Unreachable:
        return None


def app_move(sw: Switchover) -> AppMove:
    """The application's replica change for the plan; on a dry run with each region's count read now."""
    up, up_count, down, down_count = _apps(sw)
    if not sw.dry_run:
        return AppMove(up.deployment, up_count, down_count)
    return AppMove(up.deployment, up_count, down_count, target_now=_now(up), peer_now=_now(down))


def application(sw: Switchover) -> ApplicationResult:
    """The target region's application up to the primary's replicas through its own Kubernetes API, its rollout
    waited for as `kubectl rollout status` does, then its own health endpoint (never the shared record). Without
    --skip-app-check an application that does not come up healthy fails the step, and the DNS step, which looks
    again, then leaves the record where it is."""
    up, count, _, _ = _apps(sw)
    limit = sw.settings.application.start_seconds
    progress = sw.ctx.reporter.progress
    started = time.monotonic()
    override = "; --skip-app-check: DNS moves anyway"
    try:
        before = deployment.replicas(up)
        deployment.scale(up, count)
        status = deployment.wait_rollout(up, limit, progress)
    except (Unreachable, TimeoutError, RolloutFailed) as exc:
        if not sw.skip_app_check:
            raise StepFailed(f"{up.where} not brought to {count} replicas: {exc}") from None
        sw.report.skip("application", f"{exc}{override}")
        return ApplicationResult(replicas=count, app_check_skipped=True, health=str(exc))
    rolled = time.monotonic() - started
    healthy, answer = deployment.wait_healthy(up.health_url, max(limit - rolled, DNS_HEALTH_TIMEOUT_SECONDS), progress)
    health_seconds = time.monotonic() - started - rolled
    sw.report.measured["application"] = {
        "replicas": count,
        "before": before,
        "rollout_seconds": round(rolled, 3),
        "health_seconds": round(health_seconds, 3),
        "seconds": round(rolled + health_seconds, 3),
    }
    detail = f"{up.where}: {before} -> {count} replicas, {status.message} in {rolled:.1f} s; {answer}"
    if not healthy and not sw.skip_app_check:
        raise StepFailed(f"{detail}: not healthy within {limit:g} s (application.startSeconds)")
    if healthy:
        sw.report.check("application", True, detail, value=status.available, limit=count)
    else:
        sw.report.skip("application", detail + override)
    return ApplicationResult(
        replicas=count,
        before=before,
        rolled_out_seconds=round(rolled, 3),
        healthy=healthy,
        health=answer,
        app_check_skipped=not healthy,
    )


def application_down(sw: Switchover) -> ApplicationDownResult:
    """The runbook's "stop traffic to the old primary", once DNS has moved: the old region's application to the
    standby's replicas, when its API answers; bounded, reported, never a failure of the run (its guard scales it
    down on its own when its lease lapses)."""
    _, _, down, count = _apps(sw)
    try:
        before = deployment.replicas(down)
        deployment.scale(down, count)
        status = deployment.wait_rollout(down, OLD_REGION_TIMEOUT_SECONDS, sw.ctx.reporter.progress)
    except (Unreachable, TimeoutError, RolloutFailed) as exc:
        detail = f"{down.where} not scaled to {count}: {exc}; rerun when {sw.peer.stack}'s API answers"
        sw.report.skip("application-down", detail)
        return ApplicationDownResult(scaled=False, detail=detail)
    detail = f"{down.where}: {before} -> {count} replicas ({status.message})"
    sw.report.check("application-down", True, detail, value=status.available, limit=count)
    return ApplicationDownResult(scaled=True, detail=detail)


def _app_gate(sw: Switchover) -> str:
    """DNS moves only to a region whose application answers healthy now (its own endpoint), unless overridden."""
    url = RegionApp.of(sw.settings, sw.target).health_url
    if sw.skip_app_check:
        return f"; application check skipped (--skip-app-check), {url} not required healthy"
    healthy, answer = deployment.wait_healthy(url, DNS_HEALTH_TIMEOUT_SECONDS, sw.ctx.reporter.progress)
    if not healthy:
        raise StepFailed(
            f"DNS left as it is: {sw.target.stack}'s application is not healthy ({answer}); rerun once it is, or "
            "pass --skip-app-check to move DNS anyway"
        )
    return f"; {sw.target.stack}'s application healthy ({answer})"


def dns(sw: Switchover) -> DnsResult:
    # The takeover signal in the target's region, verified as the data plane sees it; the record UPSERT (Route53's
    # control plane, us-east-1) only as a fallback (drtopo/failover/dns).
    gate = _app_gate(sw)
    try:
        result = fail_over(sw.target, sw.peer)
    except DnsFailoverError as exc:
        raise StepFailed(str(exc)) from None
    if result["dns_path"] == DATA_PLANE:
        signal = result["signal"]
        how = f"data plane: takeover signal {signal['signal']}, peer's signal {signal['peer']}"
    else:
        how = f"fallback record UPSERT ({result['fallback_reason']})"
    sw.report.check("dns", True, f"{sw.target.record_name}: {result['after']} via {how}{gate}")
    return DnsResult(mode=result["mode"], after=result["after"], details=result, dns_path=result["dns_path"])


def roles(sw: Switchover) -> RolesResult:
    # The demoted stack's next database generation is written with its role, in one replace per file.
    planned = planned_switch(sw.target.stack, sw.peer.stack, sw.project_dir)
    changed = switch_roles(sw.target.stack, sw.peer.stack, sw.project_dir)
    # The same roles where every later `pulumi up` reads them, whatever its checkout (drtopo.role_guard).
    written = marker.write(sw.target, sw.peer, by=f"{sw.kind} {sw.target.stack}")
    commands = pulumi_commands(sw.target.stack, sw.peer.stack)
    detail = "; ".join(c.describe() for c in planned) + f" in {sw.project_dir}"
    detail += f"; role marker {written['name']} epoch {written['marker']['epoch']} in {', '.join(written['written'])}"
    sw.report.check("roles", True, detail)
    if written["unreachable"]:
        # Its region is down (an unplanned failover): the newer epoch written here wins once it answers.
        where = ", ".join(f"{r} ({e})" for r, e in written["unreachable"].items())
        sw.report.skip("role-marker", f"{written['name']} not written in {where}")
    return RolesResult(changed=changed, stacks=[c.as_dict() for c in planned], marker=written, next_commands=commands)


def protect(sw: Switchover) -> ProtectResult:
    """The new primary protected at once (drtopo/failover/protect.py): its backup CronJobs resumed, a base backup
    of its new timeline in its WAL bucket (RDS: a snapshot), its WAL archiving seen reaching the bucket; and what
    the pair lacks until the peer returns (said in the next steps)."""
    try:
        jobs = resume_backup_jobs(sw.settings)
    except JobsNotResumed as exc:
        raise StepFailed(str(exc)) from None
    sw.report.check("protect.backup-jobs", True, f"resumed {', '.join(jobs)} in {sw.settings.kubernetes.context}")
    name = f"drtopo-{sw.target.stack}-after-{sw.kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    try:
        made = sw.db(sw.target).protect(name)
    except StandbyError as exc:
        raise StepFailed(str(exc)) from None
    base: dict[str, Any] = {k: v for k, v in made.items() if k in ("snapshot", "rds_backups")}
    segment = made.get("archived_wal")
    if "base_backup_dir" in made:
        # The server's base backup goes where a restore in this region looks first: its WAL bucket.
        s3 = s3_client(sw.target)
        start = wal.push_base_backup(s3, sw.target, Path(made["base_backup_dir"]))
        base.update(folder=made["base_backup_dir"], bucket=f"s3://{sw.target.wal_bucket}/{wal.base_key(start, '')}")
        if segment is not None and segment not in wal.listing(s3, sw.target.wal_bucket):
            raise StepFailed(f"segment {segment} archived by {sw.target.stack} is not in s3://{sw.target.wal_bucket}")
    sw.report.check("protect.base-backup", True, "; ".join(f"{k} {v}" for k, v in base.items()))
    if segment is not None:
        sw.report.check("protect.wal-archiving", True, f"segment {segment} archived to s3://{sw.target.wal_bucket}")
    missing = [] if sw.failback else missing_protection(sw.target.stack, sw.peer.stack, sw.db(sw.peer).reachable())
    sw.report.check("protect", True, f"{sw.target.stack} protects its new timeline; missing: {len(missing)}")
    return ProtectResult(resumed_jobs=jobs, base_backup=base, archived_wal=segment, missing=missing)


def _rebuild_result(details: dict) -> RebuildResult:
    details = dict(details)
    return RebuildResult(details=details, pulumi_import=list(details.pop("pulumi_import", [])))


def take_back(sw: Switchover) -> None:
    """Before the old primary is rebuilt: what it wrote after the fork is re-applied to the current primary, or
    listed; Unsafe while something is listed (or could not be looked for) and not acknowledged."""
    took = takeback.take_back(
        sw.report,
        sw.db(sw.peer),
        sw.db(sw.target),
        sw.ctx.state_dir,
        apply=not sw.dry_run,
        acknowledged=sw.acknowledge_diverged,
    )
    if sw.acknowledge_diverged or sw.dry_run:  # a dry run only reports what it found
        return
    if not took.looked:
        raise Unsafe(f"{took.reason}; a rebuild would discard them: start it, or pass --acknowledge-diverged")
    if took.left:
        raise Unsafe(
            f"{took.left} rows {sw.target.stack} took after the fork cannot be re-applied to {sw.peer.stack} without "
            f"overwriting (conflicts, deletes), listed in {', '.join(took.where) or 'the report'}; a rebuild would "
            "discard them: resolve them, or pass --acknowledge-diverged"
        )


def rebuild(sw: Switchover) -> RebuildResult:
    target = sw.db(sw.target)
    take_back(sw)
    try:
        done = target.rebuild(sw.db(sw.peer), sw.settings, sw.deployed.get(sw.target.stack))
    except StandbyError as exc:
        raise StepFailed(str(exc)) from None
    sw.target = target.generation(sw.settings, refresh=True).outputs
    pending.clear(promoted=sw.peer, old_primary=sw.target)  # a replica takes no writes: nothing owed
    takeback.clear_fork(promoted=sw.peer, old_primary=sw.target)  # nor writes of its own left to find
    sw.report.check("rebuild", True, f"{sw.target.stack} is a replica of {sw.peer.stack}: {done}")
    return _rebuild_result(done)


def catch_up(sw: Switchover) -> CatchUpResult:
    with sw.sql(sw.peer) as primary_conn, sw.sql(sw.target) as standby_conn:
        if primary_conn is None or standby_conn is None:
            raise Unsafe(f"cannot reach {sw.peer.stack} and {sw.target.stack} to wait for catch-up")
        waited = replication.wait_replayed(standby_conn, replication.current_lsn(primary_conn), timeout=300)
    sw.report.check("catch-up", True, f"{sw.target.stack} caught up in {waited:.2f} s")
    return CatchUpResult(waited_seconds=round(waited, 3))


def rebuild_peer(sw: Switchover) -> RebuildResult:
    # The roles step has just given the peer its next generation: its replica is that one.
    settings = settings_for(sw.peer.stack, sw.project_dir)
    peer = sw.db(sw.peer).generation(settings)
    # Fenced and drained, it took nothing after the fork: looked for all the same, as before every rebuild.
    took = takeback.take_back(
        sw.report,
        sw.db(sw.target),
        sw.db(sw.peer),
        sw.ctx.state_dir,
        apply=True,
        acknowledged=sw.acknowledge_diverged,
        name=f"{takeback.CHECK}.peer",
    )
    if not sw.acknowledge_diverged and (took.left or not took.looked):
        raise StepFailed(
            f"{sw.peer.stack} not rebuilt: {took.left} rows it took after the fork are listed, "
            f"{', '.join(took.where) or took.reason}; rerun with --acknowledge-diverged once resolved"
        )
    try:
        done = peer.rebuild(sw.db(sw.target), settings, sw.deployed.get(sw.peer.stack))
    except StandbyError as exc:
        raise StepFailed(str(exc)) from None
    takeback.clear_fork(promoted=sw.target, old_primary=sw.peer)
    sw.report.check("rebuild-peer", True, f"{sw.peer.stack} is a replica of {sw.target.stack}: {done}")
    return _rebuild_result(done)


# Every step a plan can name, by that name.
STEPS: dict[Step, Callable[[Switchover], StepResult]] = {
    Step.PREFLIGHT: preflight,
    Step.GUARD: guard,
    Step.FENCE: fence,
    Step.DRAIN: drain,
    Step.PROMOTE: promote,
    Step.LEASE_GUARDS: lease_guards,
    Step.CONSUMER_GROUP: consumer_group,
    Step.APPLICATION: application,
    Step.DNS: dns,
    Step.APPLICATION_DOWN: application_down,
    Step.ROLES: roles,
    Step.PROTECT: protect,
    Step.REBUILD: rebuild,
    Step.CATCH_UP: catch_up,
    Step.REBUILD_PEER: rebuild_peer,
}
