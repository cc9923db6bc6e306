"""A drill's results: per scenario the measured RTO and RPO against the objective, as a table, JSON and a PNG timeline.

The JSON keeps DESIGN.md's report shape (`ok`, `checks`, `measured`) and adds `scenarios`: a list with, for each,
`scenario`, `ok`, `measured` (`rto_seconds`, `rpo_seconds`, `rows_lost`, ...), `objectives` and the timed `steps`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drtopo.report import Report


@dataclass
class ScenarioResult:
    scenario: str
    objective_rto_seconds: float
    objective_rpo_seconds: float
    measured: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    checks: Report = field(default_factory=Report)
    error: str | None = None

    @property
    def rto_ok(self) -> bool:
        rto = self.measured.get("rto_seconds")
        return rto is not None and rto <= self.objective_rto_seconds

    @property
    def rpo_ok(self) -> bool:
        rpo = self.measured.get("rpo_seconds")
        return rpo is not None and rpo <= self.objective_rpo_seconds

    @property
    def ok(self) -> bool:
        return self.error is None and self.rto_ok and self.rpo_ok and self.checks.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "error": self.error,
            "measured": self.measured,
            "objectives": {"rto_seconds": self.objective_rto_seconds, "rpo_seconds": self.objective_rpo_seconds},
            "checks": self.checks.to_dict()["checks"],
            "steps": self.steps,
        }


def drill_report(results: list[ScenarioResult], machine: dict[str, Any]) -> dict[str, Any]:
    report = Report()
    for r in results:
        report.check(
            f"{r.scenario}: RTO",
            r.rto_ok and r.error is None,
            r.error or "time until a client is served again",
            r.measured.get("rto_seconds"),
            r.objective_rto_seconds,
        )
        report.check(
            f"{r.scenario}: RPO",
            r.rpo_ok and r.error is None,
            f"{r.measured.get('rows_lost', 'n/a')} acknowledged rows lost",
            r.measured.get("rpo_seconds"),
            r.objective_rpo_seconds,
        )
        for c in r.checks.checks:
            report.check(f"{r.scenario}: {c.name}", c.ok, c.detail, c.value, c.limit)
    document = report.to_dict()
    document["measured"] = {r.scenario: r.measured for r in results}
    document["machine"] = machine
    document["scenarios"] = [r.to_dict() for r in results]
    return document


def print_table(results: list[ScenarioResult], out: Any = None) -> None:
    header = f"{'scenario':<24} {'RTO s':>9} {'goal':>8} {'RPO s':>8} {'goal':>8} {'lost':>6}  result"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in results:
        m = r.measured
        rto, rpo = m.get("rto_seconds"), m.get("rpo_seconds")
        print(
            f"{r.scenario:<24} {_num(rto):>9} {r.objective_rto_seconds:>8g} {_num(rpo):>8} "
            f"{r.objective_rpo_seconds:>8g} {m.get('rows_lost', '-')!s:>6}  {'PASS' if r.ok else 'FAIL'}"
            + (f" ({r.error})" if r.error else ""),
            file=out,
        )
        for c in r.checks.checks:
            if not c.ok:
                print(f"{'':<24} failed check: {c.name}: {c.detail}", file=out)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def write_json(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def write_timeline(results: list[ScenarioResult], path: Path) -> None:
    """A Gantt chart per scenario (one row per step), the failure and recovery marked, for a post-mortem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(len(r.steps), 1) * 0.35 + 1.0 for r in results]
    fig, axes = plt.subplots(
        len(results), 1, figsize=(11, sum(heights) + 0.5), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, r in zip(axes[:, 0], results, strict=True):
        names = [step["step"] for step in r.steps]
        for i, step in enumerate(r.steps):
            color = "tab:green" if step.get("ok", True) else "tab:red"
            ax.barh(i, max(step.get("seconds", 0.0), 0.02), left=step.get("start_seconds", 0.0), color=color)
        ax.set_yticks(range(len(names)), [n if len(n) <= 60 else n[:57] + "..." for n in names], fontsize=7)
        ax.invert_yaxis()
        start, rto = r.measured.get("failure_at_seconds"), r.measured.get("rto_seconds")
        if start is not None:
            ax.axvline(start, color="tab:red", linestyle="--", linewidth=1, label="failure")
            if rto is not None:
                ax.axvline(start + rto, color="tab:blue", linestyle="--", linewidth=1, label="served again")
            ax.legend(loc="lower right", fontsize=7)
        verdict = "PASS" if r.ok else "FAIL"
        ax.set_title(
            f"{r.scenario}: RTO {_num(rto)} s (goal {r.objective_rto_seconds:g}), "
            f"RPO {_num(r.measured.get('rpo_seconds'))} s (goal {r.objective_rpo_seconds:g}) - {verdict}",
            fontsize=9,
        )
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("seconds since scenario start", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
