"""The drill's scenario table and its typed figures: one object per row of the objectives table, the runner's failure
time, and figures reported under the keys (and only the keys) that were measured."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from drtopo.context import Context
from drtopo.report import Clock
from drtopo.settings import SCENARIOS, DrillLoad, Objectives, load_settings
from scripts.drill.measured import Figures, Measured
from scripts.drill.report import ScenarioResult
from scripts.drill.run import lab_context, lab_variables
from scripts.drill.scenarios import BY_NAME, NAMES, ORDER
from scripts.drill.scenarios import SCENARIOS as TABLE
from scripts.drill.scenarios.context import LIGHT, DrillContext
from scripts.drill.scenarios.phases import rto_phases
from scripts.drill.scenarios.region_failure import RegionFigures
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun


def test_the_table_has_one_scenario_per_row_of_the_objectives_table() -> None:
    assert NAMES == SCENARIOS
    for scenario in TABLE:
        assert scenario.objectives_key in Objectives.model_fields, scenario.name
        settings = load_settings("prod")
        assert scenario.objective(settings) == settings.objectives.for_scenario(scenario.name)
        assert scenario.summary and not scenario.summary.startswith(scenario.name)
    assert len({s.order for s in TABLE}) == len(TABLE)


def test_all_runs_least_destructive_first() -> None:
    assert ORDER == (
        "single-pod-failure",
        "configuration-loss",
        "database-corruption",
        "kafka-cluster-failure",
        "region-failure",
    )


def test_the_drill_carries_rows_and_messages_for_the_scenarios_that_do_not() -> None:
    assert {s.name for s in TABLE if not s.writes_rows} == {"configuration-loss", "kafka-cluster-failure"}
    assert {s.name for s in TABLE if s.produces_to_kafka} == {"kafka-cluster-failure"}


def test_a_context_without_a_load_runs_the_light_level_settings_define() -> None:
    assert DrillLoad().light == LIGHT


@dataclass
class _Extra(Figures):
    pods: int
    uid: str | None = None


def test_only_measured_figures_are_reported_in_the_order_measured() -> None:
    m = Measured()
    assert m.to_dict() == {}
    m.failure_at_seconds = 1.5
    m.rto_seconds = None  # measured: no recovery seen
    m.details = _Extra(pods=2)
    m.rows_lost = 0
    m.rto_seconds = 3.0  # measured again: keeps its place
    m.details.uid = "u1"
    assert list(m.to_dict().items()) == [
        ("failure_at_seconds", 1.5),
        ("rto_seconds", 3.0),
        ("pods", 2),
        ("uid", "u1"),
        ("rows_lost", 0),
    ]
    assert "rpo_seconds" not in m.to_dict()
    assert Measured(rows_lost=0, rto_seconds=None).to_dict() == {"rows_lost": 0}
    json.dumps(m.to_dict())


class _Probe(Scenario[list[str]]):
    """probe: a scenario that records what the runner asked of it."""

    name = "probe"
    objectives_key = "region_failure"
    order = 99
    writes_rows = True
    rto_phases = ()

    def inject(self, run: ScenarioRun) -> list[str]:
        run.fault_injected()
        return ["inject"]

    def recover(self, run: ScenarioRun, state: list[str]) -> None:
        state.append("recover")

    def verify(self, run: ScenarioRun, state: list[str]) -> None:
        state.append("verify")
        run.measured.rto_seconds = 1.0
        run.checks.check("played in order", state == ["inject", "recover", "verify"])


def test_a_scenario_is_played_inject_recover_verify_and_the_run_records_the_failure(tmp_path: Path) -> None:
    ctx = DrillContext(lab=None, json_dir=tmp_path, commands=Context())  # type: ignore[arg-type]
    run = ScenarioRun(ctx, ScenarioResult("probe", 10, 1), Clock(quiet=True))
    _Probe().play(run)
    assert run.failure_at is not None and run.measured.failure_at_seconds is not None
    assert run.measured.failure_at_seconds >= 0 and run.checks.ok
    assert list(run.measured.to_dict()) == ["failure_at_seconds", "rto_seconds"]


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_lists_its_rto_phases_ending_with_the_reconnect(name: str) -> None:
    phases = rto_phases(BY_NAME[name].rto_phases, load_settings("prod"), Measured(rto_seconds=2.0))
    assert [p["phase"] for p in phases][:2] == ["detection", "decision"]
    assert [p["phase"] for p in phases][-1] == "reconnect"
    assert sum(p["seconds"] for p in phases) >= 2.0


def test_the_region_failure_rto_shows_the_application_phase_inside_the_action() -> None:
    """promote's application step (scale-up, rollout, health) is its own phase, cut out of the action: the phases
    still add up to what was measured, and a warm standby's near-zero phase shows as such."""
    settings = load_settings("prod")
    for app_seconds, mode in (
        (6.0, "pilot light, 0 -> 1 replicas"),
        (0.2, "warm standby (1 running), 1 -> 1 replicas"),
    ):
        measured = Measured(rto_seconds=20.0, action_seconds=15.0, application_seconds=app_seconds, application=mode)
        phases = {p["phase"]: p for p in rto_phases(BY_NAME["region-failure"].rto_phases, settings, measured)}
        assert list(phases)[2:4] == ["action", "application"]
        assert phases["application"]["seconds"] == app_seconds and mode in phases["application"]["how"]
        assert phases["action"]["seconds"] == pytest.approx(15.0 - app_seconds)
        assert phases["action"]["seconds"] + phases["application"]["seconds"] + phases["reconnect"]["seconds"] == (
            pytest.approx(20.0)
        )
    # A scenario that measured no application phase keeps its action whole.
    whole = {
        p["phase"]: p
        for p in rto_phases(
            BY_NAME["region-failure"].rto_phases, settings, Measured(rto_seconds=20.0, action_seconds=15.0)
        )
    }
    assert whole["action"]["seconds"] == 15.0 and whole["application"]["seconds"] == 0.0


def test_with_the_lease_the_rto_shows_the_lease_expiry_and_the_application_apart_from_the_action() -> None:
    """region-failure-lease: promote's wait for the old lease and its application step are phases of their own, cut
    out of the action; the phases still add up to the client's RTO."""
    settings = load_settings("prod")
    measured = Measured(rto_seconds=30.0, action_seconds=25.0, application_seconds=4.0, application="pilot light")
    measured.details = RegionFigures(rows_lost_before_failure=0, lease_wait_seconds=8.5)
    phases = {
        p["phase"]: p["seconds"] for p in rto_phases(BY_NAME["region-failure-lease"].rto_phases, settings, measured)
    }
    assert list(phases)[:5] == ["detection", "decision", "lease-expiry", "action", "application"]
    assert (phases["lease-expiry"], phases["application"]) == (8.5, 4.0)
    assert phases["action"] == pytest.approx(25.0 - 8.5 - 4.0)
    lab_part = phases["lease-expiry"] + phases["action"] + phases["application"] + phases["reconnect"]
    assert lab_part == pytest.approx(30.0)


class _FakeLab:
    def __init__(self, root: Path) -> None:
        self.root, self.project_dir = root, root / "project"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "PGPASSWORD": "lab",
            "DRTOPO_PROJECT_DIR": str(self.project_dir),
            "DRTOPO_LAB_DIR": str(self.root),
        }


def test_the_commands_get_the_labs_folders_in_one_context_and_the_environment_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = _FakeLab(tmp_path)
    monkeypatch.setenv("PGPASSWORD", "mine")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("DRTOPO_PROJECT_DIR", raising=False)
    commands = lab_context(Context(log_path=tmp_path / "drill.log"), lab)  # type: ignore[arg-type]
    assert (commands.project_dir, commands.state_dir) == (lab.project_dir, tmp_path / "journal")
    assert commands.log_path is None  # each command opens its own
    with lab_variables(lab):  # type: ignore[arg-type]
        assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1" and os.environ["PGPASSWORD"] == "lab"
        assert "DRTOPO_PROJECT_DIR" not in os.environ
    assert os.environ["PGPASSWORD"] == "mine" and "AWS_ENDPOINT_URL" not in os.environ
