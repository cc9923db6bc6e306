"""The lab's project copy of the application's settings (lab/project.py): one stand-in on the primary (one host
port per node), the standby's pilot light by default, a warm standby when a drill asks for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from drtopo.settings import Role, SettingsError, load_settings
from lab.project import LAB_APPLICATION, StackEndpoints, write_project

ENDPOINTS = {"prod": StackEndpoints(5432, 9092, 8080), "dr": StackEndpoints(5433, 9093, 8081)}


@pytest.mark.parametrize(("standby", "expected"), [(None, 0), (0, 0), (1, 1)])
def test_the_lab_runs_one_replica_on_the_primary_and_the_asked_count_on_the_standby(
    tmp_path: Path, standby: int | None, expected: int
) -> None:
    write_project(tmp_path, ENDPOINTS, standby_replicas=standby)
    prod, dr = load_settings("prod", tmp_path), load_settings("dr", tmp_path)
    assert prod.application.replicas(Role.PRIMARY) == LAB_APPLICATION["primaryReplicas"] == 1
    assert dr.application.replicas(Role.STANDBY) == expected
    assert dr.application.pilot_light is (expected == 0)


def test_a_standby_count_above_the_primarys_is_refused_by_the_settings(tmp_path: Path) -> None:
    write_project(tmp_path, ENDPOINTS, standby_replicas=2)
    with pytest.raises(SettingsError, match="standbyReplicas 2 is above primaryReplicas 1"):
        load_settings("dr", tmp_path)
