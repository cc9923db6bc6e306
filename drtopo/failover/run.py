"""Carrying out a failover or failback plan: each step's work, run in order through the journal and the Clock.

`scripts.promote` and `scripts.failback` differ only in their plan (drtopo/failover/plan.py); the steps are shared:
the data-loss guard, fencing the old primary, draining to its final WAL position, promotion, the consumer group, the
DNS flip and the role switch. Every step is also safe to repeat, so a resumed run converges on the same end state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from drtopo.context import Context
from drtopo.database import fence, replication, standby
from drtopo.database.connect import connect
from drtopo.errors import one_line
from drtopo.failover import marker, pending
from drtopo.failover.dns import DnsFailoverError, fail_over
from drtopo.failover.journal import Journal, Runner
from drtopo.failover.lock import FailoverLock
from drtopo.failover.plan import MUTATING, PlannedStep, render
from drtopo.failover.roles import planned_switch, pulumi_commands, switch_roles
from drtopo.kafka.offsets import (
    CheckpointError,
    KafkaException,
    apply_group_offsets,
    read_checkpoints,
    translated_offsets,
)
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import StackOutputs, load_outputs, peer_outputs_path
from drtopo.report import EXIT_FAILED, BadInput, Clock, Report, Unsafe, settings_for
from drtopo.settings import Settings

log = logging.getLogger(__name__)


class StepFailed(RuntimeError):
    """A step that ran and did not reach its end state; the run reports it and a rerun repeats the step."""


# Once the database is promoted the region pair has a new writer: from then on no step may stop the run, because
# clients, DNS and the stacks' roles must all follow it. Each later failure is reported and left for a rerun.
POINT_OF_NO_RETURN = "promote"


@dataclass
class Switchover:
    """Everything the steps of one run share."""

    kind: str
    target: StackOutputs
    peer: StackOutputs
    settings: Settings
    ctx: Context
    accept_data_loss: bool = False
    skip_consumer_group: bool = False
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

    # -- helpers -------------------------------------------------------------------------------------------------
    def answers(self, outputs: StackOutputs) -> bool:
        if outputs.self_managed:
            return fence.reachable(outputs)
        return fence.rds_reachable(outputs)

    @contextlib.contextmanager
    def sql(self, outputs: StackOutputs) -> Iterator[psycopg.Connection | None]:
        try:
            conn = connect(outputs)
        except psycopg.OperationalError:
            yield None
            return
        with conn:
            yield conn

    # -- steps ---------------------------------------------------------------------------------------------------
    def preflight(self) -> dict[str, Any]:
        target_up = self.answers(self.target)
        peer_up = self.answers(self.peer)
        if self.kind == "failback":
            # An old primary owed a fence (unplanned promotion) is fenced before anything else touches it: the
            # instance it held then is the generation it has retired since.
            retired = self.settings.database.retired_generations
            old = standby.generation_outputs(self.target, self.settings, retired[-1]) if retired else self.target
            pending.settle(self.report, promoted=self.peer, old_primary=old, rebuilt_next=True)
        result: dict[str, Any] = {"target_reachable": target_up, "peer_reachable": peer_up}
        where = f"{self.target.db_address}:{self.target.db_port}"
        if self.kind == "failback" and not target_up:
            # A failback rebuilds the target anyway: a stopped or crashed server whose files are here will do.
            sm = self.target.self_managed
            target_up = bool(sm and (Path(sm.data_dir) / "PG_VERSION").is_file()) or standby.region_answers(self.target)
            where += " down; will be rebuilt"
        self.report.check(f"{self.target.stack}-reachable", target_up, where)
        if not target_up:
            raise Unsafe(
                f"{self.target.stack}'s database {self.target.db_instance_id} does not answer; target not ready"
            )
        self.report.check(
            f"{self.peer.stack}-state",
            True,
            "reachable: will be fenced" if peer_up else "unreachable: treated as failed",
            value=peer_up,
        )
        if self.kind == "promote":
            self.require_replica()
        if self.kind == "failback":
            if not peer_up:
                raise Unsafe(f"{self.peer.stack} (the current primary) does not answer; a failback needs it")
            if self.target.self_managed is None and not standby.is_rds(self.target):
                raise BadInput(f"outputs of {self.target.stack} name neither an RDS instance nor selfManaged")
        return result

    def require_replica(self) -> None:
        """Promotion needs a replica: a server in recovery (self-managed) or an RDS read replica."""
        with self.sql(self.target) as conn:
            if self.target.self_managed and conn is not None:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    raise Unsafe(f"{self.target.stack}'s database is not a standby (not in recovery); target not ready")
                return
        if standby.is_rds(self.target) and not self.target.self_managed:
            inst = standby.describe(self.target) or {}
            if not inst.get("ReadReplicaSourceDBInstanceIdentifier"):
                raise Unsafe(f"RDS instance {self.target.db_instance_id} is not a read replica; target not ready")

    def guard(self) -> dict[str, Any]:
        rpo = self.settings.objectives.region_failure.rpo_seconds
        lags = []
        with self.sql(self.target) as standby_conn, self.sql(self.peer) as primary_conn:
            if standby_conn is not None:
                lags.append(replication.pg_lag(standby_conn, primary_conn))
        if standby.is_rds(self.target) and not self.target.self_managed:
            lags.append(replication.rds_replica_lag(self.target.db_instance_id, self.target.region))
        lag = replication.worst(lags) if lags else replication.Lag(None, None, "nothing measurable")
        ok = lag.seconds is not None and lag.seconds <= rpo
        self.report.measured.update(
            replica_lag_seconds=lag.seconds, replica_lag_bytes=lag.bytes, replica_lag_source=lag.source
        )
        detail = f"{lag.source}; {lag.detail}" + ("" if ok else " (beyond the RPO)")
        if not ok and self.accept_data_loss:
            detail += "; accepted with --accept-data-loss"
        self.report.check("replica-lag", ok or self.accept_data_loss, detail, value=lag.seconds, limit=rpo)
        if not ok and not self.accept_data_loss and not self.dry_run:
            shown = "unknown" if lag.seconds is None else f"{lag.seconds:.3f} s"
            raise Unsafe(
                f"replica lag of {self.target.stack} is {shown} ({lag.source}), beyond the region-failure RPO of "
                f"{rpo:g} s; pass --accept-data-loss to promote anyway"
            )
        if "(replay paused)" in lag.detail and self.answers(self.peer) and not self.dry_run:
            # A planned switchover drains to the old primary's final position, which a paused standby never reaches.
            raise Unsafe(f"WAL replay is paused on {self.target.stack}; resume it (pg_wal_replay_resume()) first")
        return {"lag": lag.as_dict(), "rpo_seconds": rpo, "refused": not ok and not self.accept_data_loss}

    def fence(self) -> dict[str, Any]:
        if not self.answers(self.peer):
            # Owed, not done: recorded once promotion has happened, paid the moment the old primary answers.
            self.fence_owed = True
            self.report.skip("fence", f"{self.peer.stack} unreachable: fence owed, recorded after promotion")
            return {"fenced": False, "reason": "unreachable", "owed": True}
        try:
            result = fence.fence(self.peer)
        except fence.FenceError as exc:
            raise Unsafe(f"old primary {self.peer.stack} is reachable and could not be fenced: {exc}") from None
        self.report.check("fence", True, f"{result['method']}; {result['proof']}")
        return {"fenced": True, **result}

    def drain(self) -> dict[str, Any]:
        with self.sql(self.peer) as primary_conn, self.sql(self.target) as standby_conn:
            if primary_conn is None or standby_conn is None:
                raise Unsafe(f"cannot read WAL positions of {self.peer.stack} and {self.target.stack} to drain")
            final = replication.current_lsn(primary_conn)
            try:
                waited = replication.wait_replayed(standby_conn, final, timeout=120)
            except TimeoutError as exc:
                raise Unsafe(f"{self.target.stack} did not catch up with the fenced primary: {exc}") from None
        self.report.check("drain", True, f"{self.target.stack} replayed {self.peer.stack}'s final WAL position {final}")
        self.report.measured["final_lsn"] = final
        return {"final_lsn": final, "waited_seconds": round(waited, 3)}

    def promote(self) -> dict[str, Any]:
        try:
            result = standby.promote(self.target)
        except standby.StandbyError as exc:
            raise Unsafe(str(exc)) from None
        if self.fence_owed:
            try:
                result["fence_pending"] = pending.record(self.target, self.peer)
            except (ClientError, BotoCoreError) as exc:
                # Promoted already: the debt not written down must not stop the run; it is reported instead.
                self.report.check("fence.pending", False, f"fence owed to {self.peer.stack} not recorded: {exc}")
        self.report.check("promote", True, "; ".join(f"{k}={v}" for k, v in result.items()))
        return result

    def consumer_group(self) -> dict[str, Any]:
        group = self.settings.kafka.consumer_group
        if self.skip_consumer_group:
            self.report.skip("consumer-group", "not moved: --skip-consumer-group")
            return {"skipped": True}
        source_alias = cluster_alias(self.peer.region)
        try:
            checkpoints = read_checkpoints(self.target.kafka_bootstrap, source_alias, group)
            offsets = translated_offsets(checkpoints)
            applied = apply_group_offsets(self.target.kafka_bootstrap, group, offsets)
        except (CheckpointError, KafkaException) as exc:
            raise StepFailed(f"group {group!r} not moved to {self.target.kafka_bootstrap}: {exc}") from None
        detail = f"group {group!r}: {len(offsets)} partition(s) at translated offsets on {self.target.kafka_bootstrap}"
        self.report.check("consumer-group", True, detail if offsets else f"group {group!r} has no checkpoints yet")
        return {"moved": True, **applied.as_dict()}

    def dns(self) -> dict[str, Any]:
        # The takeover signal in the target's region first; the record UPSERT only as a fallback (drtopo/failover/dns).
        try:
            result = fail_over(self.target, self.peer)
        except DnsFailoverError as exc:
            raise StepFailed(str(exc)) from None
        how = (
            f"takeover signal {result['signal']['signal']}"
            if result["mode"] == "signal"
            else f"fallback record UPSERT ({result['fallback_reason']})"
        )
        self.report.check("dns", True, f"{self.target.record_name}: {result['after']} via {how}")
        return result

    def roles(self) -> dict[str, Any]:
        # The demoted stack's next database generation is written with its role, in one replace per file.
        planned = planned_switch(self.target.stack, self.peer.stack, self.project_dir)
        changed = switch_roles(self.target.stack, self.peer.stack, self.project_dir)
        # The same roles where every later `pulumi up` reads them, whatever its checkout (drtopo.role_guard).
        written = marker.write(self.target, self.peer, by=f"{self.kind} {self.target.stack}")
        commands = pulumi_commands(self.target.stack, self.peer.stack)
        detail = "; ".join(c.describe() for c in planned) + f" in {self.project_dir}"
        detail += (
            f"; role marker {written['name']} epoch {written['marker']['epoch']} in {', '.join(written['written'])}"
        )
        self.report.check("roles", True, detail)
        if written["unreachable"]:
            # Its region is down (an unplanned failover): the newer epoch written here wins once it answers.
            where = ", ".join(f"{r} ({e})" for r, e in written["unreachable"].items())
            self.report.skip("role-marker", f"{written['name']} not written in {where}")
        return {
            "changed": changed,
            "stacks": [c.as_dict() for c in planned],
            "marker": written,
            "next_commands": commands,
        }

    def rebuild(self) -> dict[str, Any]:
        result = standby.rebuild(self.target, self.peer, self.settings, self.deployed.get(self.target.stack))
        self.target = standby.generation_outputs(self.target, self.settings, refresh=True)
        pending.clear(promoted=self.peer, old_primary=self.target)  # a replica takes no writes: nothing owed
        self.report.check("rebuild", True, f"{self.target.stack} is a replica of {self.peer.stack}: {result}")
        return result

    def catch_up(self) -> dict[str, Any]:
        with self.sql(self.peer) as primary_conn, self.sql(self.target) as standby_conn:
            if primary_conn is None or standby_conn is None:
                raise Unsafe(f"cannot reach {self.peer.stack} and {self.target.stack} to wait for catch-up")
            waited = replication.wait_replayed(standby_conn, replication.current_lsn(primary_conn), timeout=300)
        self.report.check("catch-up", True, f"{self.target.stack} caught up in {waited:.2f} s")
        return {"waited_seconds": round(waited, 3)}

    def rebuild_peer(self) -> dict[str, Any]:
        # The roles step has just given the peer its next generation: its replica is that one.
        settings = settings_for(self.peer.stack, self.project_dir)
        peer = standby.generation_outputs(self.peer, settings)
        result = standby.rebuild(peer, self.target, settings, self.deployed.get(self.peer.stack))
        self.report.check("rebuild-peer", True, f"{self.peer.stack} is a replica of {self.target.stack}: {result}")
        return result

    def steps(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """Every step a plan can name (`drtopo.failover.plan`), by that name."""
        return {
            "preflight": self.preflight,
            "guard": self.guard,
            "fence": self.fence,
            "drain": self.drain,
            "promote": self.promote,
            "consumer-group": self.consumer_group,
            "dns": self.dns,
            "roles": self.roles,
            "rebuild": self.rebuild,
            "catch-up": self.catch_up,
            "rebuild-peer": self.rebuild_peer,
        }


def load(
    kind: str,
    stack: str,
    outputs_path: Path | None,
    ctx: Context,
    *,
    dry_run: bool = False,
    restart: bool = False,
    accept_data_loss: bool = False,
    skip_consumer_group: bool = False,
    strict: bool = False,
    break_lock: bool = False,
) -> Switchover:
    """Settings and outputs of the target stack and its peer; refuses a target that is already the primary, and an
    interrupted run's journal older than `failover.journalMaxAgeHours` (the world has moved on since)."""
    settings = settings_for(stack, ctx.project_dir)
    peer_settings = settings_for(settings.peer_stack, ctx.project_dir)
    journal = Journal.open(kind, stack, ctx.state_dir)
    resuming = not dry_run and not restart and journal.resumed
    limit = settings.failover.journal_max_age_hours
    if resuming and journal.age_hours() > limit:
        raise Unsafe(
            f"the interrupted {kind} of {stack} started {journal.data['started_at']} ({journal.age_hours():.1f} h ago, "
            f"beyond failover.journalMaxAgeHours {limit:g}); check the pair's state, then rerun with --restart"
        )
    if settings.is_primary and not resuming:
        raise BadInput(
            f"stack {stack} is already primary in Pulumi.{stack}.yaml; expected the standby to "
            + ("promote" if kind == "promote" else "fail back to (run scripts.promote first)")
        )
    # The databases the stack files declare now (they run ahead of the outputs until the next `pulumi up`).
    deployed = {
        s: load_outputs(p, s)
        for s, p in ((stack, outputs_path), (settings.peer_stack, peer_outputs_path(outputs_path, settings.peer_stack)))
    }
    target = standby.generation_outputs(deployed[stack], settings)
    peer = standby.generation_outputs(deployed[settings.peer_stack], peer_settings)
    return Switchover(
        kind=kind,
        target=target,
        peer=peer,
        settings=settings,
        ctx=ctx,
        accept_data_loss=accept_data_loss,
        skip_consumer_group=skip_consumer_group,
        dry_run=dry_run,
        break_lock=break_lock,
        report=Report(strict=strict, log=str(ctx.log_path) if ctx.log_path else None),
        deployed={s: o.db_instance_id for s, o in deployed.items()},
    )


def execute(
    sw: Switchover,
    plan_for: Callable[[dict[str, Any]], list[PlannedStep]],
    *,
    restart: bool = False,
    json_path: Path | None = None,
) -> int:
    """Run the plan (or, with --dry-run, the read-only steps and the plan); print and write the report."""
    clock = Clock(sw.ctx.reporter)
    lock = None if sw.dry_run else FailoverLock(sw.target)
    if lock is not None:
        owner = lock.acquire(sw.kind, sw.target.stack, sw.break_lock)
        clock.say(f"lock {lock.where} taken ({owner.describe()})")
    try:
        return _execute(sw, plan_for, clock, restart, json_path)
    finally:
        if lock is not None:
            lock.release()


def _resume(journal: Journal) -> None:
    """What a resumed run does again: until the point of no return, preflight and the guard (the world may have
    changed since), and the fence when the old primary was unreachable then (it may answer now)."""
    if journal.done(POINT_OF_NO_RETURN):
        return
    journal.forget("preflight")
    journal.forget("guard")
    if journal.done("fence") and not journal.result("fence").get("fenced"):
        journal.forget("fence")


def _execute(
    sw: Switchover,
    plan_for: Callable[[dict[str, Any]], list[PlannedStep]],
    clock: Clock,
    restart: bool,
    json_path: Path | None,
) -> int:
    journal = None if sw.dry_run else Journal.open(sw.kind, sw.target.stack, sw.ctx.state_dir)
    if journal is not None and restart:
        journal.discard()
        journal = Journal.open(sw.kind, sw.target.stack, sw.ctx.state_dir)
    resumed = journal is not None and journal.resumed
    if resumed:
        clock.say(f"resuming the run started {journal.data['started_at']} (journal {journal.path})")
        _resume(journal)
    runner = Runner(journal, clock, sw.ctx.after_step)
    try:
        preflight = runner.run("preflight", sw.preflight)
        plan = plan_for(preflight)
        if sw.dry_run:
            # Only a failover can measure its lag beforehand; a failback's target is not a replica until rebuilt.
            guard = runner.run("guard", sw.guard) if sw.kind == "promote" else {}
            say = sw.ctx.reporter.info
            say(f"plan ({sw.kind} to {sw.target.stack}; dry run, nothing changed):\n{render(plan)}")
            switch = planned_switch(sw.target.stack, sw.peer.stack, sw.project_dir)
            say("stack files after the roles step:\n" + "\n".join(f"    {c.describe()}" for c in switch))
            sw.report.measured.update(plan=[s.name for s in plan], stack_files=[c.as_dict() for c in switch])
            sw.report.write(json_path)
            if guard.get("refused"):
                raise Unsafe(f"would refuse: {sw.report.checks[-1].detail}")
            return 0
        steps = sw.steps()
        for s in plan:
            if s.name in runner.results:
                continue
            if POINT_OF_NO_RETURN in runner.results:
                _run_after_promotion(sw, runner, s.name, steps[s.name])
            else:
                runner.run(s.name, steps[s.name])
            if runner.timeline[-1].get("resumed"):
                sw.report.check(s.name, True, f"done by the interrupted run: {runner.results[s.name]}")
            if s.name == "dns" and s.name in runner.results:
                sw.report.measured["seconds_to_dns_flipped"] = round(clock.elapsed(), 3)
    except (BadInput, Unsafe, KeyboardInterrupt):
        _stopped(sw, journal, runner, json_path)
        raise
    except Exception as exc:
        # Anything else before promotion (an API error, a server that went away mid-step) stops the run; the journal
        # keeps what is done.
        failed = next((s["step"] for s in reversed(clock.steps) if not s["ok"]), "preflight")
        log.exception("step %s failed", failed)
        reason = one_line(exc)
        sw.report.check(failed, False, reason)
        kept = _stopped(sw, journal, runner, json_path)
        resume = f"; rerun to resume from it (journal {journal.path})" if kept and journal else ""
        sw.ctx.reporter.warning(f"error: step {failed} failed: {reason}{resume}")
        return EXIT_FAILED
    left = [s.name for s in plan if s.name not in runner.results]
    if left:
        # Promoted, but not everything followed: the journal stays open so a rerun does exactly what is left.
        sw.report.measured.update(steps=runner.timeline, resumed=resumed, left_to_do=left)
        sw.ctx.reporter.info(sw.report.table())
        assert journal is not None
        sw.ctx.reporter.warning(
            f"error: {sw.target.stack} is promoted but {', '.join(left)} did not complete; "
            f"rerun the same command to finish them (journal {journal.path})"
        )
        sw.report.write(json_path)
        return EXIT_FAILED
    sw.report.measured.update(total_seconds=round(clock.elapsed(), 3), steps=runner.timeline, resumed=resumed)
    closed = journal.close()
    sw.report.measured["journal"] = str(closed)
    sw.ctx.reporter.info(sw.report.table())
    # What the script created before Pulumi did (a failback's replicas) is adopted first, then the stacks converge.
    adopt = [c for step in ("rebuild", "rebuild-peer") for c in runner.results.get(step, {}).get("pulumi_import", [])]
    sw.ctx.reporter.info("next:\n  " + "\n  ".join([*adopt, *runner.results["roles"]["next_commands"]]))
    sw.report.write(json_path)
    return sw.report.exit_code()


def switchover(
    kind: str,
    plan_for: Callable[[Switchover, dict[str, Any]], list[PlannedStep]],
    ctx: Context,
    *,
    stack: str,
    outputs_path: Path | None,
    restart: bool = False,
    json_path: Path | None = None,
    **flags: bool,
) -> int:
    """A whole promote or failback to `stack`: load it (`flags`: dry_run, accept_data_loss, skip_consumer_group,
    strict), then run the plan that `plan_for(switchover, preflight)` names."""
    sw = load(kind, stack, outputs_path, ctx, restart=restart, **flags)
    return execute(sw, lambda preflight: plan_for(sw, preflight), restart=restart, json_path=json_path)


def _run_after_promotion(sw: Switchover, runner: Runner, name: str, step: Callable[[], dict[str, Any]]) -> None:
    """Run a step after the point of no return: a failure of any kind is reported, never a stop."""
    try:
        runner.run(name, step)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        log.exception("step %s failed after the point of no return", name)
        sw.report.check(name, False, f"{one_line(exc)} (left to do: rerun to repeat this step)")


def _stopped(sw: Switchover, journal: Journal | None, runner: Runner, json_path: Path | None) -> bool:
    """Record a stopped run; drop its journal when nothing had changed yet. Returns whether the journal is kept."""
    kept = journal is not None and bool(set(journal.data["steps"]) & MUTATING)
    if journal is not None and not kept:
        journal.discard()
    sw.report.measured["steps"] = runner.timeline
    sw.report.write(json_path)
    return kept
