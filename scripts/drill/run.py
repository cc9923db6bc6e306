"""`python -m scripts.drill`: run the objectives table's scenarios on the lab and measure real RTO and RPO.

Without `--lab-root` it starts a fresh lab in a temporary folder and stops it afterwards, so
`python -m scripts.drill --scenario all` works from nothing but the set-up. Each scenario starts from a healthy lab
(prod primary, dr standby), injects its failure under load, recovers with the companion scripts and reports
measured RTO/RPO against the objective in settings. Exit 0 when every objective is met, 1 when one is missed.

`--load light|default|heavy` picks a level of `drtopo:drill.load`: before each scenario the primary is seeded to its
row count (replayed by the standby), the scenario's writers run at its write rate and Kafka carries its message rate
(the Kafka scenario's own producer, a background producer for the others). The report gives, per scenario, the write
rate achieved, the acknowledged writes, the lab's RTO and the client-visible RTO phase by phase, RPO, rows lost,
Kafka messages lost and re-read.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from drtopo import aws
from drtopo.context import Context
from drtopo.database.connect import connect
from drtopo.errors import one_line
from drtopo.incident.facts import Incident
from drtopo.report import EXIT_OK, BadInput
from drtopo.settings import LOAD_LEVELS, SettingsError, load_settings
from lab import gates
from lab.core import Lab
from lab.project import LAB_APPLICATION
from scripts.cli import AWS_ENDPOINTS_ENV, OneLineParser, command_line, main_guard, operator, state_dir
from scripts.drill.history import keep
from scripts.drill.loadgen import Ack, LoadStats, MessageProducer, per_second, stop_all
from scripts.drill.report import (
    ScenarioResult,
    drill_report,
    print_table,
    record_path,
    scenario_record,
    write_json,
    write_timeline,
)
from scripts.drill.scenarios import BY_NAME, CHOICES, ORDER
from scripts.drill.scenarios.context import DrillContext, data_loss, surviving
from scripts.drill.scenarios.phases import rto_phases
from scripts.drill.scenarios.scenario import ScenarioRun

# The topic the background Kafka load writes to (the service's own events topic, mirrored to the peer).
BACKGROUND_TOPIC = "ExceptionCaptured"
# The round trip the issue (#21) asks the drills to face between the regions by default; a pair sets its own.
DEFAULT_WAN_LATENCY_MS = 30


log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m scripts.drill", description=__doc__.splitlines()[0])
    p.add_argument(
        "--scenario",
        default="all",
        help=f"one of: all, {', '.join(CHOICES)} (comma-separated list ok; all is the objectives table's rows)",
    )
    p.add_argument("--lab-root", type=Path, help="use the running lab in this folder instead of starting a fresh one")
    p.add_argument(
        "--outputs",
        type=Path,
        help="a running lab's stack outputs (<lab>/outputs/<stack>.json): drill on that lab (same as --lab-root)",
    )
    p.add_argument(
        "--load",
        default="default",
        help=f"load level of drtopo:drill.load: {', '.join(LOAD_LEVELS)} (default: default; the tests run light)",
    )
    p.add_argument(
        "--wan-latency",
        type=int,
        default=DEFAULT_WAN_LATENCY_MS,
        metavar="MS",
        help="round trip of the links between the regions (the standby's replication, MirrorMaker) in every scenario, "
        f"the lab's gates' latency (default {DEFAULT_WAN_LATENCY_MS}; 0: none)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the scenarios and their objectives; run nothing")
    p.add_argument("--json", dest="json_path", type=Path, metavar="FILE", help="write the JSON report here")
    p.add_argument("--png", type=Path, metavar="FILE", help="timeline picture (default: beside --json)")
    p.add_argument(
        "--objective",
        action="append",
        default=[],
        metavar="SCENARIO.rto|rpo=SECONDS",
        help="override an objective for this drill, e.g. region-failure.rto=1 (to see a drill fail)",
    )
    p.add_argument(
        "--app-standby-replicas",
        type=int,
        metavar="N",
        help="the standby's application replicas during the drill: 0 pilot light (the shipped default), N warm "
        f"standby (the lab runs at most {LAB_APPLICATION['primaryReplicas']})",
    )
    p.add_argument("--quiet", action="store_true", help="no step-by-step progress")
    return p


def parse_scenarios(text: str) -> list[str]:
    if text == "all":
        return list(ORDER)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise BadInput(f"--scenario {text!r} is unknown; expected all or one of {', '.join(CHOICES)}")
    return sorted(set(names), key=lambda n: (BY_NAME[n].order, n))


def parse_objectives(items: Sequence[str]) -> dict[tuple[str, str], float]:
    overrides: dict[tuple[str, str], float] = {}
    for item in items:
        key, _, value = item.partition("=")
        scenario, _, kind = key.rpartition(".")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if scenario not in BY_NAME or kind not in ("rto", "rpo") or seconds < 0:
            raise BadInput(f"--objective {item!r} is invalid; expected SCENARIO.rto=SECONDS or SCENARIO.rpo=SECONDS")
        overrides[(scenario, kind)] = seconds
    return overrides


def machine() -> dict[str, object]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def run_scenario(
    ctx: DrillContext, name: str, overrides: dict[tuple[str, str], float], restore: bool = True
) -> ScenarioResult:
    scenario = BY_NAME[name]
    settings = ctx.settings("prod")
    objective = scenario.objective(settings)
    result = ScenarioResult(
        scenario=name,
        objective_rto_seconds=overrides.get((name, "rto"), objective.rto_seconds),
        objective_rpo_seconds=overrides.get((name, "rpo"), objective.rpo_seconds),
    )
    print(f"== {name} (RTO goal {result.objective_rto_seconds:g} s, RPO goal {result.objective_rpo_seconds:g} s)")
    ctx.begin()
    m = result.measured
    # The baseline opened every gate: the links between the regions get the WAN again, for the whole scenario.
    ctx.lab.degrade(ctx.wan_latency_ms, kinds=gates.WAN_KINDS)
    m.wan_latency_ms = ctx.wan_latency_ms
    background: MessageProducer | None = None
    run: ScenarioRun | None = None
    try:
        with _timed(f"seed the primary to {ctx.load.seed_rows} rows, replayed by the standby"):
            seeded = ctx.seed()
        m.load, m.seed_rows_added, m.seed_seconds = ctx.load_name, seeded.rows, seeded.seconds
        if not scenario.produces_to_kafka:
            background = ctx.message_producer(
                lambda: ctx.lab.region(ctx.active_stack()).kafka.bootstrap, BACKGROUND_TOPIC, prefix=f"{name}-bg"
            )
            background.start()
        # A scenario that writes no rows itself: the service carries the load's writes in the background, and every
        # acknowledged one must still be in the database afterwards.
        writer = None if scenario.writes_rows else ctx.row_writer(ctx.active_service_url, prefix=f"{name}-bg")
        if writer is not None:
            writer.start()
        run = ScenarioRun(ctx, result, ctx.clock())
        scenario.play(run)
        result.steps = run.clock.steps
        if writer is not None:
            background_rows_kept(ctx, result, writer.stop())
    except Exception as exc:  # a scenario that breaks is a failed drill, reported, not a traceback
        result.error = f"{type(exc).__name__}: {one_line(exc) if str(exc) else ''}"
    finally:
        if background is not None:
            background.stop()
        left = stop_all()
        if left:
            print(f"   (stopped {left} load thread(s) the scenario left running)")
        load_figures(ctx, result, None if run is None else run.failure_at)
        if run is not None:
            result.incident, result.started_at = scenario_incident(ctx, scenario.objectives_key, run)
        result.phases = rto_phases(scenario.rto_phases, settings, m)
        if result.phases:
            m.client_rto_seconds = round(sum(p["seconds"] for p in result.phases), 3)
        if restore:
            with _timed("restore the lab to a healthy prod=primary, dr=standby"):
                ctx.lab.restore_baseline()
    return result


def scenario_incident(ctx: DrillContext, objectives_key: str, run: ScenarioRun) -> tuple[Incident, datetime]:
    """The scenario as a drill's incident: the stack clients reach after it (the one recovering), since the fault
    (the scenario's start when it injected none); and when its clock started."""
    try:
        stack = ctx.active_stack(ttl=0)
    except Exception:  # a lab the scenario broke: the record still names the primary stack
        stack = "prod"
    started = datetime.fromtimestamp(ctx.origin, UTC)
    failure = datetime.fromtimestamp(run.failure_at, UTC) if run.failure_at is not None else started
    region = ctx.settings(stack).region
    return Incident(objectives_key.replace("_", "-"), stack, region, failure, drill=True), started


def background_rows_kept(ctx: DrillContext, result: ScenarioResult, stats: LoadStats) -> None:
    """The rows a background writer had acknowledged are all in the database the clients now reach."""
    stack = ctx.active_stack(ttl=0)
    with connect(ctx.outputs(stack)) as conn:
        present = surviving(conn, [a.key for a in stats.acks])
    lost, rpo = data_loss(stats.acks, present, before=time.time())
    result.measured.rows_lost, result.measured.rows_rpo_seconds = lost, round(rpo, 3)
    result.checks.check(
        "every acknowledged write kept (the service's load during the scenario)",
        lost == 0,
        f"{len(stats.acks) - lost} of {len(stats.acks)} acknowledged rows in {stack}'s database",
        lost,
        0,
    )


def achieved_rate(acks: list[Ack], started: float | None, end: float) -> float | None:
    """Acknowledgements per second from when the load started until `end` (the failure, or the last ack): what the
    clients got, connection set-up included (a rate from the first ack alone counts a producer's first burst)."""
    if started is None or end - started < 0.2:
        return None
    return sum(1 for a in acks if started <= a.at <= end) / (end - started)


def _started(stats: Iterable[LoadStats]) -> float | None:
    return min((s.started_at for s in stats if s.started_at is not None), default=None)


def load_figures(ctx: DrillContext, result: ScenarioResult, failure: float | None) -> None:
    """The load a scenario carried: write and message rates achieved before the failure (wall-clock time, None
    before the fault went in), totals, per-second series."""
    m = result.measured
    writes = sorted((a for w in ctx.writers for a in w.stats.acks), key=lambda a: a.at)
    messages = sorted((a for p in ctx.producers for a in p.stats.acks), key=lambda a: a.at)
    end_writes = failure or (writes[-1].at if writes else 0.0)
    rate = achieved_rate(writes, _started(w.stats for w in ctx.writers), end_writes)
    # Kafka over the whole run: the failure of one cluster is not the end of the load.
    kafka_rate = (
        achieved_rate(messages, _started(p.stats for p in ctx.producers), messages[-1].at) if messages else None
    )
    if failure is not None and writes:
        # A response on the wire when the failure struck (sent before it) is not the first write after it.
        first = next((a for a in writes if a.at > failure and (a.sent is None or a.sent > failure)), None)
        m.first_ack_after_failure_seconds = None if first is None else round(first.at - failure, 3)
    m.write_rate_goal = ctx.load.write_rate if ctx.writers else None
    m.write_rate_achieved = None if rate is None else round(rate, 1)
    m.kafka_rate_goal = ctx.load.kafka_rate if ctx.producers else None
    m.kafka_rate_achieved = None if kafka_rate is None else round(kafka_rate, 1)
    # What the scenario did not count itself (a scenario's own writer counts its own rows).
    if ctx.writers and m.rows_acknowledged is None:
        m.rows_acknowledged = len(writes)
    if ctx.writers and m.failed_requests is None:
        m.failed_requests = sum(w.stats.errors for w in ctx.writers)
    if ctx.producers and m.messages_acknowledged is None:
        m.messages_acknowledged = len(messages)
    result.series = {"writes": per_second(writes, ctx.origin), "kafka": per_second(messages, ctx.origin)}


class _timed:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        print(f"   ({self.what}: {time.monotonic() - self.start:.1f} s)")


def lab_root_of(outputs: Path) -> Path:
    """Drills inject failures through the lab: --outputs must be one of a lab's outputs files."""
    root = outputs.resolve().parent.parent
    if not (root / "state.json").is_file():
        raise BadInput(
            f"--outputs {outputs} is not a lab's outputs file; drills inject failures through the lab, "
            "expected <lab root>/outputs/<stack>.json"
        )
    return root


def print_plan(scenarios: list[str], overrides: dict[tuple[str, str], float], project_dir: Path) -> None:
    settings = load_settings("prod", project_dir)
    for name in scenarios:
        scenario = BY_NAME[name]
        goal = scenario.objective(settings)
        rto, rpo = overrides.get((name, "rto"), goal.rto_seconds), overrides.get((name, "rpo"), goal.rpo_seconds)
        print(f"{name}: RTO goal {rto:g} s, RPO goal {rpo:g} s - {scenario.summary}")


def run(argv: Sequence[str] | None, ctx: Context) -> int:
    args = build_parser().parse_args(argv)
    command = command_line("drill", argv)
    scenarios = parse_scenarios(args.scenario)
    overrides = parse_objectives(args.objective)
    # Bad repository config, or a load level it does not have, fails here, before any server starts.
    try:
        load_settings("prod", ctx.project_dir).drill.load.level(args.load)
    except SettingsError as exc:
        raise BadInput(f"--load {args.load!r} is unknown; expected one of {', '.join(LOAD_LEVELS)}") from exc
    if args.wan_latency < 0:
        raise BadInput(f"--wan-latency {args.wan_latency} is invalid; expected a round trip of 0 ms or more")
    standby = args.app_standby_replicas
    if standby is not None and not 0 <= standby <= LAB_APPLICATION["primaryReplicas"]:
        raise BadInput(
            f"--app-standby-replicas {standby} is outside what the lab runs; expected 0 (pilot light) to "
            f"{LAB_APPLICATION['primaryReplicas']} (warm standby: one stand-in per node and region)"
        )
    if args.outputs is not None:
        args.lab_root = lab_root_of(args.outputs)
    if args.dry_run:
        load = load_settings("prod", ctx.project_dir).drill.load.level(args.load)
        print_plan(scenarios, overrides, ctx.project_dir)
        print(
            f"load {args.load}: {load.write_rate:g} writes/s, {load.kafka_rate:g} Kafka messages/s, "
            f"{load.seed_rows} rows seeded before each fault"
        )
        return EXIT_OK

    with tempfile.TemporaryDirectory(prefix="drtopo-drill-") as scratch:
        Path(scratch).chmod(0o711)  # the lab's PostgreSQL runs as user postgres and must traverse into it
        own_lab = args.lab_root is None
        lab = Lab(Path(scratch) / "lab") if own_lab else Lab(args.lab_root)
        if not own_lab and not lab.is_up():
            raise BadInput(f"--lab-root {args.lab_root} has no running lab; start it with `python -m lab up`")
        json_dir = Path(scratch) / "reports"
        json_dir.mkdir()
        try:
            if own_lab:
                start = time.monotonic()
                print("starting a fresh lab ...", flush=True)
                lab.up()
                print(f"lab up in {time.monotonic() - start:.1f} s")
            else:
                print("bringing the running lab to its baseline (prod primary, dr standby, every server up) ...")
                lab.restore_baseline()
            if standby is not None:
                lab.set_application_standby(standby)
                print(
                    f"application on the standby: {standby} replica(s) ({'warm standby' if standby else 'pilot light'})"
                )
            with lab_variables(lab):
                load = lab.prod.settings.drill.load.level(args.load)
                print(
                    f"load {args.load}: {load.write_rate:g} writes/s over {load.connections} connections, "
                    f"{load.kafka_rate:g} Kafka messages/s, {load.seed_rows} rows before each fault"
                )
                print(f"WAN between the regions: {args.wan_latency} ms round trip ({', '.join(gates.WAN_KINDS)} gates)")
                drill = DrillContext(
                    lab,
                    json_dir,
                    lab_context(ctx, lab),
                    quiet=args.quiet,
                    load=load,
                    load_name=args.load,
                    wan_latency_ms=args.wan_latency,
                )
                # The lab is rebuilt after each scenario, except after the last one of a lab the drill stops anyway.
                results = [
                    run_scenario(drill, name, overrides, restore=not own_lab or i < len(scenarios) - 1)
                    for i, name in enumerate(scenarios)
                ]
                keep(lab, results)
        finally:
            if own_lab:
                lab.down()
    document = drill_report(results, machine())
    if ctx.log_path:
        document["log"] = str(ctx.log_path)  # the drill's own; each command it ran names its own in its report
    print()
    print_table(results)
    if args.json_path:
        write_json(document, args.json_path)
        for result in results:
            try:
                settings = load_settings("prod", ctx.project_dir)
                text = scenario_record(result, settings, command=command, operator=operator())
                if text is not None:
                    record_path(args.json_path, result.scenario).write_text(text)
            except Exception as exc:  # a record that cannot be written never turns the drill's verdict
                log.exception("writing the incident record of %s", result.scenario)
                ctx.reporter.warning(f"no incident record for {result.scenario}: {one_line(exc)}")
        png = args.png or args.json_path.with_suffix(".png")
        write_timeline(results, png)
        print(f"report: {args.json_path}  timeline: {png}")
    elif args.png:
        write_timeline(results, args.png)
    return EXIT_OK if document["ok"] else 1


def lab_context(ctx: Context, lab: Lab) -> Context:
    """The one context of every command the drill runs: the lab's project copy, its journal folder, and marked as
    a drill (the commands' incident notifications and records say DRILL), reaching each region's AWS API through
    that region's gate as a command run from the lab's env would."""
    env = lab.env()
    return replace(
        ctx,
        project_dir=lab.project_dir,
        state_dir=state_dir(env),
        log_path=None,
        drill=True,
        aws_endpoints=aws.parse_endpoints(env.get(AWS_ENDPOINTS_ENV, "")),
    )


@contextmanager
def lab_variables(lab: Lab) -> Iterator[None]:
    """The lab's standard variables for the process while the drill runs (AWS endpoint and credentials, PGPASSWORD,
    KUBECONFIG, PATH with the lab's kubectl), as they were afterwards. Not its DRTOPO_* ones: the commands the drill
    runs get the lab's folders in `lab_context`."""
    values = {k: v for k, v in lab.env().items() if not k.startswith("DRTOPO_")}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(run, argv, "drill", ctx)
