"""Carrying out a failover or failback plan: load the pair, take the lock, run the steps through the journal, finish.

`switchover` is what `scripts.promote` and `scripts.failback` call. It loads both stacks (`load`), takes the lock
(drtopo/failover/lock.py) and either shows the plan (`dry_run`: only the read-only steps run) or runs it
(`run_steps`: each step of drtopo/failover/steps.py, journalled; after the point of no return no failure stops the
run) and closes it (`finish`). It returns an `Outcome` for the command to render; it prints nothing.

A real run tells the incident topic of the target's region (the side that is alive) that it started, an update
when a step fails or the point of no return is passed, and a resolution with the measured RTO and RPO and what is
left (drtopo/incident/notify.py); a dry run sends nothing. With a JSON report, the incident record in Markdown is
written beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drtopo.backup.store import encryption_args, s3_client
from drtopo.context import Context
from drtopo.database import database_for
from drtopo.errors import one_line
from drtopo.failover.journal import Journal, Runner, S3JournalStore
from drtopo.failover.lock import FailoverLock
from drtopo.failover.plan import MUTATING, POINT_OF_NO_RETURN, REQUIRES, SPECS, PlannedStep, Resume, Step, render
from drtopo.failover.results import (
    GuardResult,
    PreflightResult,
    ProtectResult,
    RebuildResult,
    RolesResult,
    StepResult,
)
from drtopo.failover.roles import planned_switch
from drtopo.failover.steps import STEPS, Kind, Switchover, take_back
from drtopo.incident.facts import Figures, Incident, MessageKind
from drtopo.incident.notify import Notifier
from drtopo.incident.statuspage import MONITORING
from drtopo.outputs import StackOutputs, load_outputs, peer_outputs_path
from drtopo.report import EXIT_FAILED, EXIT_OK, BadInput, Clock, Report, Unsafe, settings_for

log = logging.getLogger(__name__)

PlanFor = Callable[[Switchover, PreflightResult], list[PlannedStep]]


@dataclass
class Outcome:
    """How a run ended, for the command to show: the report (also written as JSON), what to print on stdout, the
    one error line for stderr, and the exit code. A refusal (Unsafe) or bad input is raised instead."""

    code: int
    report: Report
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    # Set by a dry run whose guard would refuse: shown after the plan, as a refusal.
    would_refuse: str | None = None


def journal_store(outputs: StackOutputs, kind: Kind) -> S3JournalStore:
    """The shared journal of `kind` to `outputs`' stack, beside the lock in its configuration bucket."""
    return S3JournalStore(
        s3_client(outputs), outputs.config_bucket, f"{kind}-{outputs.stack}", encryption=encryption_args(outputs)
    )


def open_journal(sw: Switchover) -> Journal:
    return Journal.open(sw.kind, sw.target.stack, sw.ctx.state_dir, journal_store(sw.target, sw.kind))


def load(
    kind: Kind,
    stack: str,
    outputs_path: Path | None,
    ctx: Context,
    *,
    dry_run: bool = False,
    restart: bool = False,
    accept_data_loss: bool = False,
    skip_consumer_group: bool = False,
    skip_app_check: bool = False,
    strict: bool = False,
    break_lock: bool = False,
    acknowledge_diverged: bool = False,
) -> Switchover:
    """Settings and outputs of the target stack and its peer; refuses a target that is already the primary (unless
    its interrupted run resumes)."""
    settings = settings_for(stack, ctx.project_dir)
    peer_settings = settings_for(settings.peer_stack, ctx.project_dir)
    # The databases the stack files declare now (they run ahead of the outputs until the next `pulumi up`).
    deployed = {
        s: load_outputs(p, s)
        for s, p in ((stack, outputs_path), (settings.peer_stack, peer_outputs_path(outputs_path, settings.peer_stack)))
    }
    target = database_for(deployed[stack]).generation(settings).outputs
    peer = database_for(deployed[settings.peer_stack]).generation(peer_settings).outputs
    sw = Switchover(
        kind=kind,
        target=target,
        peer=peer,
        settings=settings,
        ctx=ctx,
        accept_data_loss=accept_data_loss,
        skip_consumer_group=skip_consumer_group,
        skip_app_check=skip_app_check,
        acknowledge_diverged=acknowledge_diverged,
        dry_run=dry_run,
        break_lock=break_lock,
        report=Report(strict=strict, log=str(ctx.log_path) if ctx.log_path else None),
        deployed={s: o.db_instance_id for s, o in deployed.items()},
    )
    # A target already primary is refused, unless it is an interrupted run resuming (its roles step had run).
    if settings.is_primary and (dry_run or restart or not _read_journal(sw).resumed):
        raise BadInput(
            f"stack {stack} is already primary in Pulumi.{stack}.yaml; expected the standby to "
            + ("promote" if kind == Kind.PROMOTE else "fail back to (run scripts.promote first)")
        )
    return sw


def _refuse_stale(sw: Switchover, journal: Journal) -> None:
    """An interrupted run older than `failover.journalMaxAgeHours` is not resumed (Journal.refuse_stale)."""
    limit = sw.settings.failover.journal_max_age_hours
    journal.refuse_stale(limit, "failover.journalMaxAgeHours", "check the pair's state")


def _read_journal(sw: Switchover) -> Journal:
    try:
        return open_journal(sw)
    except Unsafe:
        raise
    except Exception as exc:
        log.exception("reading the journal")
        raise Unsafe(f"cannot read the journal in s3://{sw.target.config_bucket}: {one_line(exc)}") from None


def switchover(
    kind: Kind,
    plan_for: PlanFor,
    ctx: Context,
    *,
    stack: str,
    outputs_path: Path | None,
    restart: bool = False,
    json_path: Path | None = None,
    command: str = "",
    operator: str = "",
    **flags: bool,
) -> Outcome:
    """A whole promote or failback to `stack`: load it (`flags`: dry_run, accept_data_loss, skip_consumer_group,
    skip_app_check, strict, break_lock, acknowledge_diverged), then run the plan that `plan_for(switchover,
    preflight)` names. `command` and `operator` (`user@host`) go into the incident record."""
    sw = load(kind, stack, outputs_path, ctx, restart=restart, **flags)
    clock = Clock(ctx.reporter)
    notifier = incident_notifier(sw, command, operator)
    try:
        if sw.dry_run:
            return dry_run(sw, plan_for, clock, json_path)
        lock = FailoverLock(sw.target)
        owner = lock.acquire(sw.kind, sw.target.stack, sw.break_lock)
        clock.say(f"lock {lock.where} taken ({owner.describe()})")
        try:
            notifier.send(MessageKind.START)
            journal = _read_journal(sw)
            if restart:
                journal.discard()
                journal = _read_journal(sw)
            _refuse_stale(sw, journal)
            return run_steps(sw, plan_for, clock, journal, json_path, notifier)
        finally:
            lock.release()
    finally:
        # Beside the JSON report: none when the run stopped before writing one (the lock refused, bad input).
        if json_path is not None and json_path.is_file():
            notifier.write_record(json_path)


def incident_notifier(sw: Switchover, command: str = "", operator: str = "") -> Notifier:
    """The run's incident (a region failure, on the target: the region that is alive) and its notifier; a dry run
    sends nothing."""
    incident = Incident(
        scenario="region-failure",
        stack=sw.target.stack,
        region=sw.target.region,
        started_at=datetime.now(UTC),
        drill=sw.ctx.drill,
    )
    return Notifier.open(
        incident,
        sw.settings,
        sw.report,
        sw.target.incident_topic_arn,
        command=command or f"python -m scripts.{sw.kind} --stack {sw.target.stack}",
        operator=operator,
        send_nothing=sw.dry_run,
        secret=sw.ctx.secret,
    )


def _measured_figures(sw: Switchover, runner: Runner, clock: Clock) -> Figures:
    """What the run measured, also put in the report: the RTO from the run's start until DNS named the new primary
    (the whole run when it did not flip DNS), the RPO bounded by the lag the guard measured."""
    measured = sw.report.measured
    rto = measured.get("seconds_to_dns_flipped", round(clock.elapsed(), 3))
    guard = runner.results.get(Step.GUARD)
    rpo = guard.rpo_seconds if isinstance(guard, GuardResult) else None
    measured["rto_seconds"] = rto
    if rpo is not None:
        measured["rpo_seconds"] = rpo
    return Figures(rto_seconds=rto, rpo_seconds=rpo)


def dry_run(sw: Switchover, plan_for: PlanFor, clock: Clock, json_path: Path | None) -> Outcome:
    """The read-only steps and the plan; nothing changes."""
    runner = Runner(None, clock)
    preflight = runner.run(Step.PREFLIGHT, lambda: STEPS[Step.PREFLIGHT](sw))
    assert isinstance(preflight, PreflightResult)
    plan = plan_for(sw, preflight)
    # Only a failover can measure its lag beforehand; a failback's target is not a replica until rebuilt.
    guard = runner.run(Step.GUARD, lambda: STEPS[Step.GUARD](sw)) if sw.kind == Kind.PROMOTE else None
    if sw.kind == Kind.FAILBACK:
        take_back(sw)  # what the rebuild step would re-apply and list, found without writing anything
    switch = planned_switch(sw.target.stack, sw.peer.stack, sw.project_dir)
    sw.report.measured.update(plan=[str(s.name) for s in plan], stack_files=[c.as_dict() for c in switch])
    sw.report.write(json_path)
    lines = [
        f"plan ({sw.kind} to {sw.target.stack}; dry run, nothing changed):\n{render(plan)}",
        "stack files after the roles step:\n" + "\n".join(f"    {c.describe()}" for c in switch),
    ]
    refused = isinstance(guard, GuardResult) and guard.refused
    return Outcome(EXIT_OK, sw.report, lines, would_refuse=sw.report.checks[-1].detail if refused else None)


def _forget_for_resume(journal: Journal) -> None:
    """What a resumed run does again before the point of no return (`Resume` of each step in plan.SPECS)."""
    if journal.done(POINT_OF_NO_RETURN):
        return
    for step in journal.steps_done():
        how = SPECS[step].resume
        if how is Resume.REPEAT or (how is Resume.REPEAT_IF_UNDONE and journal.result(step).undone()):
            journal.forget(step)


def run_steps(
    sw: Switchover,
    plan_for: PlanFor,
    clock: Clock,
    journal: Journal,
    json_path: Path | None,
    notifier: Notifier | None = None,
) -> Outcome:
    """Every step of the plan the journal does not hold yet, in order; then `finish`."""
    resumed = journal.resumed
    if resumed:
        clock.say(f"resuming the run started {journal.data['started_at']} (journal {journal.where})")
        _forget_for_resume(journal)
    runner = Runner(journal, clock, _after_step(sw, notifier))
    plan: list[PlannedStep] = []
    try:
        preflight = runner.run(Step.PREFLIGHT, lambda: STEPS[Step.PREFLIGHT](sw))
        assert isinstance(preflight, PreflightResult)
        plan = plan_for(sw, preflight)
        for planned in plan:
            _run_one(sw, runner, planned.name, clock, notifier)
    except (BadInput, Unsafe, KeyboardInterrupt) as exc:
        if notifier is not None:
            notifier.send(MessageKind.UPDATE, f"the {sw.kind} stopped: {one_line(exc) or type(exc).__name__}")
        _stopped(sw, journal, runner, json_path)
        raise
    except Exception as exc:
        # Anything else before promotion (an API error, a server that went away mid-step) stops the run; the
        # journal keeps what is done, the log keeps the traceback.
        failed = next((s["step"] for s in reversed(clock.steps) if not s["ok"]), str(Step.PREFLIGHT))
        log.exception("step %s failed", failed)
        reason = one_line(exc)
        sw.report.check(failed, False, reason)
        if notifier is not None:
            notifier.send(MessageKind.UPDATE, f"step {failed} failed: {reason}; the {sw.kind} stopped before promotion")
        kept = _stopped(sw, journal, runner, json_path)
        resume = f"; rerun to resume from it (journal {journal.where})" if kept else ""
        return Outcome(EXIT_FAILED, sw.report, error=f"error: step {failed} failed: {reason}{resume}{_log(sw)}")
    return finish(sw, plan, runner, clock, journal, resumed, json_path, notifier)


def _after_step(sw: Switchover, notifier: Notifier | None) -> Callable[[str], None]:
    """After each journalled step: the context's hook (the crash tests'), then what is pending is sent again."""
    if notifier is None:
        return sw.ctx.after_step

    def hook(step: str) -> None:
        sw.ctx.after_step(step)
        notifier.retry(step)

    return hook


def _run_one(sw: Switchover, runner: Runner, step: Step, clock: Clock, notifier: Notifier | None = None) -> None:
    if step in runner.results:
        return
    needs = REQUIRES.get(step)
    if needs is not None and needs not in runner.results:
        sw.report.skip(step, f"not run: {needs} did not complete (a rerun does both)")
        return
    run = STEPS[step]
    if POINT_OF_NO_RETURN in runner.results:
        _run_after_promotion(sw, runner, step, run, notifier)
    else:
        runner.run(step, lambda: run(sw))
        if step is POINT_OF_NO_RETURN and notifier is not None and not runner.resumed_last():
            notifier.send(
                MessageKind.UPDATE,
                f"{sw.target.stack} ({sw.target.region}) is promoted: the point of no return is passed",
                page_status=MONITORING,
            )
    if step in runner.results and runner.resumed_last():
        sw.report.check(step, True, f"done by the interrupted run: {runner.results[step].as_dict()}")
    if step is Step.DNS and step in runner.results:
        sw.report.measured["seconds_to_dns_flipped"] = round(clock.elapsed(), 3)
        # Which way DNS moved: through the data plane (the takeover signal) or the control plane's record UPSERT.
        sw.report.measured["dns_path"] = getattr(runner.results[step], "dns_path", "") or None


def finish(
    sw: Switchover,
    plan: list[PlannedStep],
    runner: Runner,
    clock: Clock,
    journal: Journal,
    resumed: bool,
    json_path: Path | None,
    notifier: Notifier | None = None,
) -> Outcome:
    """Close a run whose steps all ran: or, promoted with steps left, keep the journal open for a rerun."""
    left = [str(s.name) for s in plan if s.name not in runner.results]
    if left:
        # Promoted, but not everything followed: the journal stays open so a rerun does exactly what is left.
        sw.report.measured.update(steps=runner.timeline, resumed=resumed, left_to_do=left)
        if notifier is not None:
            todo = [f"rerun scripts.{sw.kind} to finish {', '.join(left)}"]
            notifier.send(MessageKind.RESOLUTION, figures=_measured_figures(sw, runner, clock), left_to_do=todo)
        sw.report.write(json_path)
        error = (
            f"error: {sw.target.stack} is promoted but {', '.join(left)} did not complete; "
            f"rerun the same command to finish them (journal {journal.where}){_log(sw)}"
        )
        return Outcome(EXIT_FAILED, sw.report, [sw.report.table()], error=error)
    sw.report.measured.update(total_seconds=round(clock.elapsed(), 3), steps=runner.timeline, resumed=resumed)
    sw.report.measured["journal"] = journal.close()
    # What the script created before Pulumi did (a failback's replicas) is adopted first, then the stacks converge.
    adopt = [
        c
        for step in (Step.REBUILD, Step.REBUILD_PEER)
        if isinstance(done := runner.results.get(step), RebuildResult)
        for c in done.pulumi_import
    ]
    roles = runner.results[Step.ROLES]
    assert isinstance(roles, RolesResult)
    protected = runner.results.get(Step.PROTECT)
    missing = (
        [f"until {sw.peer.stack} returns: {m}" for m in protected.missing]
        if isinstance(protected, ProtectResult)
        else []
    )
    if notifier is not None:
        todo = [*adopt, *roles.next_commands, *missing]
        sw.report.measured["left_to_do"] = todo
        notifier.send(MessageKind.RESOLUTION, figures=_measured_figures(sw, runner, clock), left_to_do=todo)
    sw.report.write(json_path)
    lines = [sw.report.table(), "next:\n  " + "\n  ".join([*adopt, *roles.next_commands, *missing])]
    return Outcome(sw.report.exit_code(), sw.report, lines)


def _log(sw: Switchover) -> str:
    return f" (log: {sw.ctx.log_path})" if sw.ctx.log_path else ""


def _run_after_promotion(
    sw: Switchover,
    runner: Runner,
    step: Step,
    run: Callable[[Switchover], StepResult],
    notifier: Notifier | None = None,
) -> None:
    """Run a step after the point of no return: a failure of any kind is reported, never a stop."""
    try:
        runner.run(step, lambda: run(sw))
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        log.exception("step %s failed after the point of no return", step)
        sw.report.check(step, False, f"{one_line(exc)} (left to do: rerun to repeat this step)")
        if notifier is not None:
            notifier.send(MessageKind.UPDATE, f"step {step} failed after promotion: {one_line(exc)}; the run goes on")


def _stopped(sw: Switchover, journal: Journal, runner: Runner, json_path: Path | None) -> bool:
    """Record a stopped run; drop its journal when nothing had changed yet. Returns whether the journal is kept."""
    kept = bool(journal.steps_done() & MUTATING)
    if not kept:
        try:
            journal.discard()
        except Exception:
            log.exception("discarding the journal %s", journal.where)
    sw.report.measured["steps"] = runner.timeline
    sw.report.write(json_path)
    return kept
