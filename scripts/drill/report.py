"""A drill's results: per scenario the measured RTO and RPO against the objective, as a table, JSON and a PNG timeline.

The JSON keeps DESIGN.md's report shape (`ok`, `checks`, `measured`) and adds `scenarios`: a list with, for each,
`scenario`, `ok`, `measured` (`rto_seconds` as the lab measured it, `client_rto_seconds` the sum of the `phases`,
`rpo_seconds`, `rows_lost`, the load achieved, ...), `objectives`, the timed `steps`, the client-visible RTO's
`phases` (each measured or modelled, and saying which) and `series`: acknowledged writes and Kafka messages per
second since the scenario started. The RTO objective is judged on the client-visible RTO.

With `--json FILE`, each scenario's incident record (drtopo/incident/record.py, marked DRILL) is written beside it
as `FILE-<scenario>.md` (`scenario_record`, `record_path`).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from drtopo.incident.facts import Incident
from drtopo.incident.record import record_markdown, run_record
from drtopo.report import Report
from drtopo.settings import Settings
from scripts.drill.measured import Measured


@dataclass
class ScenarioResult:
    scenario: str
    objective_rto_seconds: float
    objective_rpo_seconds: float
    measured: Measured = field(default_factory=Measured)
    steps: list[dict[str, Any]] = field(default_factory=list)
    checks: Report = field(default_factory=Report)
    error: str | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    # The scenario as an incident (a drill: its stack recovering, the failure's time) and when its clock started.
    incident: Incident | None = None
    started_at: datetime | None = None

    @property
    def client_rto(self) -> float | None:
        """The RTO a user sees: the sum of the phases when the drill has them, else the lab's measured RTO."""
        m = self.measured
        if m.rto_seconds is None:
            return None
        return m.rto_seconds if m.client_rto_seconds is None else m.client_rto_seconds

    @property
    def rto_ok(self) -> bool:
        rto = self.client_rto
        return rto is not None and rto <= self.objective_rto_seconds

    @property
    def rpo_ok(self) -> bool:
        rpo = self.measured.rpo_seconds
        return rpo is not None and rpo <= self.objective_rpo_seconds

    @property
    def ok(self) -> bool:
        return self.error is None and self.rto_ok and self.rpo_ok and self.checks.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "error": self.error,
            "measured": self.measured.to_dict(),
            "objectives": {"rto_seconds": self.objective_rto_seconds, "rpo_seconds": self.objective_rpo_seconds},
            "checks": self.checks.to_dict()["checks"],
            "steps": self.steps,
            "phases": self.phases,
            "series": {k: [list(p) for p in v] for k, v in self.series.items()},
        }


def record_path(json_path: Path, scenario: str) -> Path:
    """`drill.json` -> `drill-region-failure.md`."""
    return json_path.with_name(f"{json_path.stem}-{scenario}.md")


def scenario_record(result: ScenarioResult, settings: Settings, *, command: str, operator: str) -> str | None:
    """The scenario's incident record in Markdown (None when it never started: no incident to tell)."""
    if result.incident is None or result.started_at is None:
        return None
    m = result.measured
    report = Report(
        checks=list(result.checks.checks),
        measured={
            "steps": result.steps,
            "rto_seconds": m.rto_seconds,
            "client_rto_seconds": m.client_rto_seconds,
            "rpo_seconds": m.rpo_seconds,
            "rows_lost": m.rows_lost,
            # The record's phases are named `name` (drtopo.incident.record); the drill's JSON calls it `phase`.
            "phases": [{"name": p["phase"], "seconds": p["seconds"], "how": p.get("how", "")} for p in result.phases],
        },
    )
    if m.client_rto_seconds is None:
        report.measured.pop("client_rto_seconds")
    if result.error:
        report.check("scenario", False, result.error)
    record = run_record(
        report, incident=result.incident, command=command, operator=operator, run_started_at=result.started_at
    )
    return record_markdown(record, settings)


def drill_report(results: list[ScenarioResult], machine: dict[str, Any]) -> dict[str, Any]:
    report = Report()
    for r in results:
        report.check(
            f"{r.scenario}: RTO",
            r.rto_ok and r.error is None,
            r.error or "time until a client is served again, as a client sees it (measured and modelled phases)",
            r.client_rto,
            r.objective_rto_seconds,
        )
        report.check(
            f"{r.scenario}: RPO",
            r.rpo_ok and r.error is None,
            f"{_text(r.measured.rows_lost, 'n/a')} acknowledged rows lost",
            r.measured.rpo_seconds,
            r.objective_rpo_seconds,
        )
        for c in r.checks.checks:
            report.check(f"{r.scenario}: {c.name}", c.ok, c.detail, c.value, c.limit)
    document = report.to_dict()
    document["measured"] = {r.scenario: r.measured.to_dict() for r in results}
    document["machine"] = machine
    document["scenarios"] = [r.to_dict() for r in results]
    return document


def print_table(results: list[ScenarioResult], out: Any = None) -> None:
    header = (
        f"{'scenario':<22} {'load':>7} {'writes/s':>8} {'acked':>7} {'RTO lab':>8} {'RTO user':>8} {'goal':>6} "
        f"{'RPO s':>6} {'goal':>5} {'lost':>5} {'msgs/s':>7} {'m lost':>6} {'re-read':>7}  result"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in results:
        m = r.measured
        print(
            f"{r.scenario:<22} {_text(m.load):>7} {_num(m.write_rate_achieved, 0):>8} "
            f"{_text(m.rows_acknowledged):>7} {_num(m.rto_seconds, 2):>8} {_num(r.client_rto, 1):>8} "
            f"{r.objective_rto_seconds:>6g} {_num(m.rpo_seconds, 2):>6} {r.objective_rpo_seconds:>5g} "
            f"{_text(m.rows_lost):>5} {_num(m.kafka_rate_achieved, 0):>7} "
            f"{_text(m.messages_lost):>6} {_text(m.messages_reread):>7}  {'PASS' if r.ok else 'FAIL'}"
            + (f" ({r.error})" if r.error else ""),
            file=out,
        )
        if r.phases:
            parts = " + ".join(
                f"{p['phase']} {p['seconds']:g}{'*' if p['how'].startswith('modelled') else ''}" for p in r.phases
            )
            print(f"{'':<22}   user RTO = {parts} s", file=out)
        figures = m.to_dict()
        if "dns_path" in figures or "split_brain_writes" in figures:
            split = _text(figures.get("split_brain_writes"), "not measured")
            print(f"{'':<22}   DNS via {_text(figures.get('dns_path'))}; split-brain writes {split}", file=out)
        for c in r.checks.checks:
            if not c.ok:
                print(f"{'':<22} failed check: {c.name}: {c.detail}", file=out)
    if any(r.phases for r in results):
        print("(* modelled from the stack's settings, not measured: see each phase's 'how' in the JSON)", file=out)


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _text(v: object, unmeasured: str = "-") -> str:
    return unmeasured if v is None else str(v)


def write_json(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


PHASE_COLORS = {
    "detection": "tab:orange",
    "decision": "tab:purple",
    "action": "tab:green",
    "dns": "tab:cyan",
    "reconnect": "tab:olive",
}


def write_timeline(results: list[ScenarioResult], path: Path) -> None:
    """The timeline picture (see `timeline_figure`) as a PNG."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def timeline_figure(results: list[ScenarioResult]) -> Any:
    """Per scenario: its steps as bars, under them the acknowledged writes and Kafka messages per second, the
    failure, the first acknowledged write after it and the lab's recovery marked, and beside them the client-visible
    RTO phase by phase (modelled phases hatched). Step names wrap; none is cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrapped = [[textwrap.fill(step["step"], 48) for step in r.steps] for r in results]
    rows: list[float] = []
    for names in wrapped:
        lines = sum(n.count("\n") + 1 for n in names) or 1
        rows += [lines * 0.2 + 0.9, 1.6]
    fig, axes = plt.subplots(
        len(rows),
        2,
        figsize=(15, sum(rows) + 0.6),
        squeeze=False,
        gridspec_kw={"height_ratios": rows, "width_ratios": [3.2, 1]},
    )
    for i, (r, names) in enumerate(zip(results, wrapped, strict=True)):
        steps_ax, rate_ax, phase_ax, blank = axes[2 * i, 0], axes[2 * i + 1, 0], axes[2 * i, 1], axes[2 * i + 1, 1]
        blank.axis("off")
        for j, step in enumerate(r.steps):
            color = "tab:green" if step.get("ok", True) else "tab:red"
            steps_ax.barh(j, max(step.get("seconds", 0.0), 0.02), left=step.get("start_seconds", 0.0), color=color)
        steps_ax.set_yticks(range(len(names)), names, fontsize=7)
        steps_ax.invert_yaxis()
        steps_ax.tick_params(axis="x", labelsize=7)
        _rates(rate_ax, r)
        rate_ax.sharex(steps_ax)
        failure, rto = r.measured.failure_at_seconds, r.measured.rto_seconds
        for ax in (steps_ax, rate_ax):
            if failure is not None:
                ax.axvline(failure, color="tab:red", linestyle="--", linewidth=1, label="failure")
                if rto is not None:
                    ax.axvline(
                        failure + rto, color="tab:blue", linestyle="--", linewidth=1, label="recovered (lab RTO)"
                    )
                    action = r.measured.action_seconds
                    if action is not None and action <= rto:
                        ax.axvspan(failure, failure + action, color="tab:green", alpha=0.15, label="action (lab)")
                        ax.axvspan(
                            failure + action, failure + rto, color="tab:olive", alpha=0.15, label="reconnect (lab)"
                        )
                first = r.measured.first_ack_after_failure_seconds
                if first is not None:
                    ax.axvline(
                        failure + first, color="black", linestyle=":", linewidth=1.2, label="first acknowledged write"
                    )
        rate_ax.legend(loc="upper left", fontsize=6, ncol=5)
        _phases(phase_ax, r)
        verdict = "PASS" if r.ok else "FAIL"
        steps_ax.set_title(
            f"{r.scenario} ({_text(r.measured.load, '?')} load): lab RTO {_num(rto, 2)} s, user RTO "
            f"{_num(r.client_rto, 1)} s (goal {r.objective_rto_seconds:g}), "
            f"RPO {_num(r.measured.rpo_seconds, 2)} s (goal {r.objective_rpo_seconds:g}), "
            f"{_text(r.measured.rows_lost)} rows lost - {verdict}",
            fontsize=9,
            loc="left",
        )
    axes[-1, 0].set_xlabel("seconds since the scenario started", fontsize=8)
    fig.tight_layout()
    return fig


def _rates(ax: Any, r: ScenarioResult) -> None:
    writes, kafka = r.series.get("writes", []), r.series.get("kafka", [])
    if writes:
        ax.step(
            [t for t, _ in writes],
            [n for _, n in writes],
            where="post",
            color="tab:blue",
            linewidth=1,
            label="acknowledged writes/s",
        )
    ax.set_ylabel("writes/s", fontsize=7)
    ax.tick_params(labelsize=7)
    if kafka:
        twin = ax.twinx()
        twin.step([t for t, _ in kafka], [n for _, n in kafka], where="post", color="tab:gray", linewidth=1)
        twin.set_ylabel("Kafka msgs/s (gray)", fontsize=7)
        twin.tick_params(labelsize=7)
    if not writes and not kafka:
        ax.text(0.5, 0.5, "no load recorded", transform=ax.transAxes, ha="center", fontsize=7)


def _phases(ax: Any, r: ScenarioResult) -> None:
    left = 0.0
    for p in r.phases:
        modelled = p["how"].startswith("modelled")
        ax.barh(
            0,
            p["seconds"],
            left=left,
            color=PHASE_COLORS.get(p["phase"], "tab:gray"),
            hatch="//" if modelled else None,
            edgecolor="black",
            linewidth=0.5,
            label=f"{p['phase']} {p['seconds']:g} s{' (modelled)' if modelled else ''}",
        )
        left += p["seconds"]
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"user-visible RTO {left:g} s" if r.phases else "no RTO phases", fontsize=8)
    if r.phases:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize=6, ncol=2, frameon=False)
