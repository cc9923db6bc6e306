"""The drill's pure parts: scenario and objective parsing, data-loss accounting, the report's verdicts and shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drtopo.report import BadInput
from scripts.drill.loadgen import Ack
from scripts.drill.measured import Measured
from scripts.drill.report import ScenarioResult, drill_report, write_timeline
from scripts.drill.run import parse_objectives, parse_scenarios
from scripts.drill.scenarios import ORDER
from scripts.drill.scenarios.context import data_loss, exit_detail


def test_all_runs_every_scenario_least_destructive_first() -> None:
    assert parse_scenarios("all") == list(ORDER)
    assert parse_scenarios("region-failure,single-pod-failure") == ["single-pod-failure", "region-failure"]
    # A variant runs when named (after the table's rows it is named with), never by `all`.
    assert "region-failure-kill" not in parse_scenarios("all")
    assert parse_scenarios("region-failure-kill,region-failure") == ["region-failure", "region-failure-kill"]


@pytest.mark.parametrize("text", ["regon-failure", "", "all,region-failure"])
def test_an_unknown_scenario_is_bad_input_naming_it(text: str) -> None:
    with pytest.raises(BadInput, match="expected all or one of"):
        parse_scenarios(text)


def test_objective_overrides() -> None:
    assert parse_objectives(["region-failure.rto=1.5", "kafka-cluster-failure.rpo=0"]) == {
        ("region-failure", "rto"): 1.5,
        ("kafka-cluster-failure", "rpo"): 0.0,
    }
    for bad in ["region-failure.rto=-1", "region-failure.mttr=3", "nowhere.rto=3", "region-failure.rto=soon"]:
        with pytest.raises(BadInput, match=r"SCENARIO\.rto=SECONDS"):
            parse_objectives([bad])


def acks(*times: float) -> list[Ack]:
    return [Ack(f"k{t}", t, "x") for t in times]


def test_no_loss_is_zero_rows_and_zero_seconds() -> None:
    a = acks(1.0, 2.0, 3.0)
    assert data_loss(a, {x.key for x in a}, before=10) == (0, 0.0)


def test_loss_is_the_window_from_the_last_kept_write_to_the_newest_lost_one() -> None:
    a = acks(1.0, 2.0, 3.0, 3.5, 4.0)
    kept = {"k1.0", "k2.0", "k3.0"}
    assert data_loss(a, kept, before=10) == (2, pytest.approx(1.0))
    # Writes acknowledged after `before` do not count.
    assert data_loss(a, kept, before=3.6) == (1, pytest.approx(0.5))


def result(rto: float | None, rpo: float | None, goal_rto: float = 10, goal_rpo: float = 1) -> ScenarioResult:
    r = ScenarioResult("region-failure", goal_rto, goal_rpo)
    r.measured = Measured(rto_seconds=rto, rpo_seconds=rpo, rows_lost=0, failure_at_seconds=1.0)
    r.steps = [{"step": "kill", "start_seconds": 0.5, "seconds": 0.1, "ok": True}]
    return r


def test_a_scenario_passes_only_within_both_objectives() -> None:
    assert result(5, 0).ok
    assert not result(11, 0).ok
    assert not result(5, 2).ok
    assert not result(None, 0).ok
    failed_check = result(5, 0)
    failed_check.checks.check("served from the standby region", False)
    assert not failed_check.ok


def test_report_shape_and_timeline(tmp_path) -> None:
    document = drill_report([result(5, 0), result(11, 0)], {"cpus": 2})
    assert document["ok"] is False
    assert [s["scenario"] for s in document["scenarios"]] == ["region-failure", "region-failure"]
    first = document["scenarios"][0]
    assert first["measured"]["rto_seconds"] == 5 and first["objectives"] == {"rto_seconds": 10, "rpo_seconds": 1}
    assert {"name", "ok", "detail", "value", "limit"} <= set(document["checks"][0])
    json.dumps(document)
    png = tmp_path / "t.png"
    write_timeline([result(5, 0)], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dry_run_lists_the_plan_and_starts_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.drill import run as drill

    assert drill.main(["--dry-run", "--objective", "region-failure.rto=30"]) == 0
    *lines, load = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(ORDER)
    assert "region-failure: RTO goal 30 s, RPO goal 900 s" in lines[-1]
    assert load == "load default: 500 writes/s, 2000 Kafka messages/s, 1000000 rows seeded before each fault"


def test_an_unknown_load_level_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.drill import run as drill

    assert drill.main(["--dry-run", "--load", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'huge'" in err and "light, default, heavy" in err


def test_a_negative_wan_latency_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.drill import run as drill

    assert drill.build_parser().parse_args([]).wan_latency == drill.DEFAULT_WAN_LATENCY_MS == 30
    assert drill.main(["--dry-run", "--wan-latency", "-5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--wan-latency -5" in err and "0 ms or more" in err


def test_outputs_outside_a_lab_are_bad_input(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.drill import run as drill

    assert drill.main(["--outputs", str(tmp_path / "dr.json")]) == 2
    assert "is not a lab's outputs file" in capsys.readouterr().err


def test_promote_report_gives_the_dns_path_and_the_point_of_no_return_on_the_wall_clock(tmp_path: Path) -> None:
    from scripts.drill.scenarios.region_failure import promotion

    report = tmp_path / "promote.json"
    measured = {
        "dns_path": "data plane",
        "seconds_to_dns_flipped": 12.5,
        "steps": [
            {"step": "guard", "seconds": 1.0, "at_seconds": 1.0},
            {"step": "promote", "seconds": 3.0, "at_seconds": 9.0},
            {"step": "dns", "seconds": 3.5, "at_seconds": 12.5},
        ],
    }
    report.write_text(json.dumps({"measured": measured}))
    found = promotion(report, started_at=1000.0)
    assert (found.dns_path, found.flipped_seconds, found.point_of_no_return) == ("data plane", 12.5, 1009.0)
    # A promote that never reached its promote step (or wrote no report) has no point of no return.
    report.write_text(json.dumps({"measured": {"steps": measured["steps"][:1]}}))
    assert promotion(report, 1000.0).point_of_no_return is None
    assert promotion(tmp_path / "missing.json", 1000.0).point_of_no_return is None


def test_split_brain_writes_are_the_old_primarys_acks_after_the_point_of_no_return() -> None:
    from scripts.drill.scenarios.region_failure import split_brain

    assert split_brain(acks(1.0, 2.0, 3.0, 4.0), 2.5) == 2
    assert split_brain(acks(1.0, 2.0), 2.5) == 0
    assert split_brain(acks(1.0), None) is None


@pytest.mark.parametrize(
    ("code", "document", "expected"),
    [
        (0, None, "exit code 0"),
        (1, None, "exit code 1 (no JSON report at "),
        (
            1,
            {"checks": [{"name": "rebuild", "outcome": "fail", "detail": "pg_rewind: timeline"}, {"outcome": "pass"}]},
            "exit code 1: rebuild: pg_rewind: timeline",
        ),
        (3, {"checks": [], "measured": {"error": "lock held by promote"}}, "exit code 3: lock held by promote"),
        (1, {"checks": []}, "exit code 1"),
    ],
)
def test_a_failed_commands_check_names_its_first_failures_or_its_error(
    tmp_path: Path, code: int, document: dict | None, expected: str
) -> None:
    report = tmp_path / "report.json"
    if document is not None:
        report.write_text(json.dumps(document))
    detail = exit_detail(code, report)
    assert detail.startswith(expected) and (document is None or detail == expected), detail
