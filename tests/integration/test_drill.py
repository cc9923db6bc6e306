"""The drill on the lab: every scenario meets its objectives, and a missed objective makes the drill exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.core import Lab
from scripts.drill import run as drill
from scripts.drill.scenarios import ORDER


def test_every_scenario_meets_its_objectives_on_the_lab(lab: Lab, tmp_path: Path) -> None:
    report = tmp_path / "drill.json"
    code = drill.main(
        ["--scenario", "all", "--load", "light", "--lab-root", str(lab.root), "--json", str(report), "--quiet"]
    )
    document = json.loads(report.read_text())
    failures = [(s["scenario"], s["error"], [c for c in s["checks"] if not c["ok"]]) for s in document["scenarios"]]
    assert code == 0, failures
    assert [s["scenario"] for s in document["scenarios"]] == list(ORDER)
    for scenario in document["scenarios"]:
        measured, objectives = scenario["measured"], scenario["objectives"]
        assert scenario["ok"]
        assert 0 < measured["rto_seconds"] <= measured["client_rto_seconds"] <= objectives["rto_seconds"]
        assert measured["client_rto_seconds"] == pytest.approx(sum(p["seconds"] for p in scenario["phases"]))
        assert measured["rpo_seconds"] <= objectives["rpo_seconds"]
        assert measured["rows_lost"] >= 0
        assert measured["load"] == "light" and measured["kafka_rate_achieved"] > 0
        if objectives["rpo_seconds"] == 0:
            assert measured["rows_lost"] == 0, scenario["scenario"]
        assert scenario["steps"] and all(step["ok"] for step in scenario["steps"])
    by_name = {s["scenario"]: s["measured"] for s in document["scenarios"]}
    assert by_name["region-failure"]["rows_acknowledged"] > 0
    assert by_name["region-failure"]["write_rate_achieved"] > 0
    assert min(by_name["single-pod-failure"]["seed_rows_added"], by_name["region-failure"]["seed_rows_added"]) > 0
    assert by_name["kafka-cluster-failure"]["messages_acknowledged"] > 0
    assert report.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert lab.dr.settings.role.value == "standby", "the lab is left as it was: dr standby again"


def test_a_missed_objective_fails_the_drill(lab: Lab, tmp_path: Path) -> None:
    report = tmp_path / "drill.json"
    code = drill.main(
        [
            "--scenario",
            "single-pod-failure",
            "--objective",
            "single-pod-failure.rto=0.001",
            "--load",
            "light",
            "--lab-root",
            str(lab.root),
            "--json",
            str(report),
            "--quiet",
        ]
    )
    (scenario,) = json.loads(report.read_text())["scenarios"]
    assert code == 1
    assert scenario["ok"] is False
    assert scenario["measured"]["rto_seconds"] > scenario["objectives"]["rto_seconds"] == 0.001


def test_bad_input_is_one_line_and_exit_2(capsys) -> None:
    assert drill.main(["--scenario", "regon-failure"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "regon-failure" in err
