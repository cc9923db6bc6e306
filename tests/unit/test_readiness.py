"""The readiness rules, estimate and page as pure functions: each rule's PASS / FAIL / SKIP at its edges, the
estimate's measured and modelled parts, the page's rows and chart points."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drtopo.failover.marker import RoleMarker
from drtopo.kafka.admin import Partition
from drtopo.readiness import drills, publish, rules
from drtopo.readiness.estimate import MEASURED, MODELLED, estimate
from drtopo.readiness.page import render
from drtopo.report import FAIL, PASS, SKIP
from drtopo.settings import load_settings
from scripts import status

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
RPO = 900.0
DAY = rules.dump_age_limit("daily")


@pytest.mark.parametrize(
    ("seconds", "outcome"),
    [(0.0, PASS), (RPO, PASS), (RPO + 0.001, FAIL), (None, FAIL)],
)
def test_replica_lag_passes_up_to_the_rpo_and_fails_beyond_or_unmeasured(seconds: float | None, outcome: str) -> None:
    item = rules.replica_lag(seconds, RPO, "dr behind prod")
    assert (item.name, item.outcome, item.limit) == (rules.REPLICA_LAG, outcome, RPO)


@pytest.mark.parametrize(
    ("tier", "age", "outcome"),
    [
        ("daily", 0.0, PASS),
        ("daily", DAY, PASS),
        ("daily", DAY + 1, FAIL),
        ("weekly", DAY + 1, PASS),
        ("weekly", rules.dump_age_limit("weekly") + 1, FAIL),
        ("daily", None, FAIL),
    ],
)
def test_dump_age_is_judged_by_its_tier(tier: str, age: float | None, outcome: str) -> None:
    item = rules.dump_age(age, tier, "daily/db/x.dump", "dumps")
    assert (item.outcome, item.limit) == (outcome, rules.dump_age_limit(tier))
    if age is None:
        assert "no dump in s3://dumps" in item.detail


def test_dump_age_limit_is_the_interval_plus_the_grace() -> None:
    assert rules.dump_age_limit("daily") == 25 * 3600


@pytest.mark.parametrize(
    ("record", "outcome"),
    [
        (None, SKIP),
        ({"at": "2026-12-01T10:00:00+00:00", "ok": True, "key": "k"}, PASS),
        ({"at": "2026-12-01T10:00:00+00:00", "ok": False, "key": "k"}, FAIL),
    ],
)
def test_restore_test_skips_with_a_reason_when_none_is_recorded(record: dict | None, outcome: str) -> None:
    item = rules.restore_test(record, NOW)
    assert item.outcome == outcome
    assert item.detail
    if record is not None:
        assert item.value == 86400


@pytest.mark.parametrize(("gaps", "outcome"), [([], PASS), (["000000010000000000000003"], FAIL), (None, FAIL)])
def test_wal_chain(gaps: list[str] | None, outcome: str) -> None:
    assert rules.wal_chain(gaps, "detail").outcome == outcome


@pytest.mark.parametrize(("age", "outcome"), [(60.0, PASS), (RPO, PASS), (RPO + 1, FAIL), (None, FAIL)])
def test_wal_age_against_the_rpo(age: float | None, outcome: str) -> None:
    assert rules.wal_age(age, RPO, "wal").outcome == outcome


@pytest.mark.parametrize(
    ("records", "seconds", "outcome"),
    [
        ({"a": 0, "b": 0}, {"a": None, "b": None}, PASS),
        ({"a": 100, "b": 3}, {"a": 299.0, "b": 1.0}, PASS),
        ({"a": 101, "b": 0}, {"a": 1.0, "b": None}, FAIL),
        ({"a": 5}, {"a": 301.0}, FAIL),
        (None, {}, FAIL),
    ],
)
def test_mirror_lag_bounds_records_and_age(records: dict | None, seconds: dict, outcome: str) -> None:
    item = rules.mirror_lag(records, seconds, 100, 300.0, "cluster down")
    assert item.outcome == outcome
    if records:
        assert item.value == max(records.values())
    if records is None:
        assert "cluster down" in item.detail


P0, P1 = Partition("OrderRejected", 0), Partition("OrderRejected", 1)
T = 1_000_000.0


@pytest.mark.parametrize(
    ("checkpoints", "committed", "outcome"),
    [
        ({}, {}, SKIP),
        ({P0: (10, T - 3600)}, {P0: 10}, PASS),  # idle group: an old checkpoint at its commit is current
        ({P0: (10, T - 300), P1: (5, T - 900)}, {P0: 12, P1: 5}, PASS),  # behind, newest within the RPO
        ({P0: (10, T - 300.5)}, {P0: 12}, FAIL),  # behind, newest beyond the RPO
        ({P0: (10, T - 10)}, {P0: 10, P1: 3}, PASS),  # a partition without one, the newest young
        ({}, {P0: 1}, FAIL),  # committed but no checkpoint at all
    ],
)
def test_checkpoint_age_judges_only_checkpoints_behind_the_commits(
    checkpoints: dict, committed: dict, outcome: str
) -> None:
    item = rules.checkpoint_age(checkpoints, committed, T, 300.0, "us-east-1.checkpoints.internal on dr")
    assert (item.name, item.outcome) == (rules.CHECKPOINT_AGE, outcome)
    assert item.detail


def _marker(primary: str, standby: str) -> RoleMarker:
    return RoleMarker(3, primary, standby, "2026-12-01T00:00:00+00:00", "promote")


@pytest.mark.parametrize(
    ("configured", "marker", "outcome"),
    [
        ({"prod": "primary", "dr": "standby"}, None, PASS),
        ({"prod": "primary", "dr": "standby"}, _marker("prod", "dr"), PASS),
        ({"prod": "primary", "dr": "standby"}, _marker("dr", "prod"), FAIL),
        ({"prod": "primary", "dr": "primary"}, None, FAIL),
        ({"prod": "standby", "dr": "standby"}, _marker("prod", "dr"), FAIL),
    ],
)
def test_roles_need_one_primary_one_standby_and_the_marker(
    configured: dict[str, str], marker: RoleMarker | None, outcome: str
) -> None:
    item = rules.roles(configured, marker, "/drtopo/roles/dr/prod in us-west-2")
    assert item.outcome == outcome
    if marker is not None and marker.primary == "dr" and outcome == FAIL:
        assert "the marker /drtopo/roles/dr/prod in us-west-2 says" in item.detail


def test_last_drill_skips_without_a_report_and_follows_its_result() -> None:
    assert rules.last_drill(None, "s3://cfg/drills/").outcome == SKIP
    assert "s3://cfg/drills/" in rules.last_drill(None, "s3://cfg/drills/").detail
    run = {"at": "2026-12-01T00:00:00+00:00", "ok": False, "scenarios": [{"scenario": "region-failure"}]}
    assert rules.last_drill(run, "x").outcome == FAIL
    assert rules.last_drill({**run, "ok": True}, "x").outcome == PASS


def _scenario(name: str, rto: float, rpo: float, ok: bool = True) -> dict[str, Any]:
    return {
        "scenario": name,
        "ok": ok,
        "error": None,
        "measured": {"rto_seconds": rto - 100, "client_rto_seconds": rto, "rpo_seconds": rpo, "rows_lost": 0},
        "objectives": {"rto_seconds": 14400.0, "rpo_seconds": 900.0},
        "phases": [
            {"phase": "detection", "seconds": 30.0, "how": "modelled: health check"},
            {"phase": "promote", "seconds": rto - 30.0, "how": "measured on the lab"},
        ],
    }


def test_a_drill_record_keeps_the_client_rto_and_the_newest_groups_its_scenarios() -> None:
    at = NOW - timedelta(days=1)
    record = drills.scenario_record(_scenario("region-failure", 200.0, 0.5), at)
    assert (record["rto_seconds"], record["rpo_seconds"], record["at"]) == (200.0, 0.5, at.isoformat())
    assert drills.drill_key("region-failure", at) == "drills/region-failure/20261201T100000Z.json"
    older = drills.scenario_record(_scenario("kafka-cluster-failure", 50.0, 0.0, ok=False), at - timedelta(days=1))
    newest = drills.newest({"region-failure": [record], "kafka-cluster-failure": [older]})
    assert newest is not None and newest["ok"] and [s["scenario"] for s in newest["scenarios"]] == ["region-failure"]
    assert drills.newest({}) is None


def test_estimate_labels_measured_and_modelled_parts() -> None:
    settings = load_settings("dr")
    drill = drills.scenario_record(_scenario("region-failure", 200.0, 0.5), NOW)
    est = estimate(settings, drill, replica_lag=2.0, mirror_lag=7.5)
    assert est.rto.seconds == 200.0
    assert [(p.name, p.kind) for p in est.rto.parts] == [("detection", MODELLED), ("promote", MEASURED)]
    assert est.rpo.seconds == 7.5 and {p.kind for p in est.rpo.parts} == {MEASURED}
    assert est.rto.within and est.rpo.within


def test_estimate_without_a_drill_has_no_rto_total_and_an_unmeasured_lag_no_rpo() -> None:
    settings = load_settings("dr")
    est = estimate(settings, None, replica_lag=None, mirror_lag=0.0)
    assert est.rto.seconds is None and {p.kind for p in est.rto.parts} == {MODELLED}
    assert "no region-failure drill" in est.rto.note
    assert est.rpo.seconds is None and est.rpo.within is None


def test_the_page_has_a_row_per_item_and_a_point_per_drill() -> None:
    settings = load_settings("dr")
    runs = [
        drills.scenario_record(_scenario("region-failure", 100.0 + i, 0.1 * i), NOW + timedelta(days=i))
        for i in range(3)
    ]
    items = [rules.replica_lag(1.0, RPO, "d"), rules.last_drill(None, "s3://cfg/drills/")]
    document = {
        "ok": True,
        "checks": [c.to_dict() for c in items],
        "measured": {"pair": ["dr", "prod"], "stack": "dr", "at": NOW.isoformat()},
        "estimate": estimate(settings, runs[-1], 1.0, 0.0).to_dict(),
        "drills": {"region-failure": runs},
    }
    page = render(document)
    assert len(re.findall(r'<tr class="item ', page)) == 2
    assert 'data-item="drill.last"' in page and '<tr class="item skip"' in page
    assert len(re.findall(r'<circle class="point rto"', page)) == 3
    assert len(re.findall(r'<circle class="point rpo"', page)) == 3
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_status_refuses_an_unknown_stack_as_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main(["--stack", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_the_published_metrics_are_one_per_item_and_the_totals() -> None:
    items = [rules.replica_lag(1.0, RPO, "d"), rules.wal_chain(None, "none"), rules.last_drill(None, "x")]
    data = publish.metric_data({"checks": [c.to_dict() for c in items]}, "dr", NOW)
    per_item = {d["Dimensions"][1]["Value"]: d["Value"] for d in data if d["MetricName"] == publish.ITEM_METRIC}
    assert per_item == {rules.REPLICA_LAG: 0.0, rules.WAL_CHAIN: 1.0, rules.DRILL: 0.0}
    totals = {d["MetricName"]: d["Value"] for d in data if d["MetricName"] != publish.ITEM_METRIC}
    assert totals == {publish.FAILING_METRIC: 1.0, publish.SKIPPED_METRIC: 1.0}
    assert publish.readiness_key("dr", NOW) == "readiness/dr/20261202T100000Z.json"
    assert publish.readiness_key("dr") == "readiness/dr/latest.json"
