"""The role switch in Pulumi.<stack>.yaml: only the role value changes, comments and other keys stay byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from drtopo.failover.roles import (
    RoleRewriteError,
    StackChange,
    current_role,
    planned_switch,
    role_switch,
    set_role,
    stack_text,
    switch_roles,
)
from drtopo.settings import REPO_DIR, Role, load_settings

TEXT = """# keep me: drtopo:role: primary in a comment is not the setting
config:
  aws:region: us-west-2
  drtopo:role: standby   # the standby region
  drtopo:peerStack: prod
"""


def test_set_role_changes_only_the_value() -> None:
    new = set_role(TEXT, Role.PRIMARY)
    assert new == TEXT.replace("drtopo:role: standby", "drtopo:role: primary")
    assert current_role(new) is Role.PRIMARY


def test_set_role_is_idempotent() -> None:
    once = set_role(TEXT, Role.PRIMARY)
    assert set_role(once, Role.PRIMARY) == once


def test_quoted_role_is_replaced() -> None:
    assert current_role(set_role(TEXT.replace("standby", "'standby'"), Role.PRIMARY)) is Role.PRIMARY


@pytest.mark.parametrize("text", ["config:\n  aws:region: x\n", TEXT + "  drtopo:role: primary\n"])
def test_missing_or_duplicate_role_is_refused(text: str) -> None:
    with pytest.raises(RoleRewriteError, match="expected exactly one"):
        set_role(text, Role.PRIMARY, source="Pulumi.dr.yaml")


def test_switch_roles_on_the_real_stack_files(tmp_path: Path) -> None:
    """Promote dr: dr primary as it is; prod standby at its next generation, every other line byte for byte."""
    for stack in ("prod", "dr"):
        shutil.copy(REPO_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    before = {s: (tmp_path / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dr")}

    changed = switch_roles("dr", "prod", tmp_path)

    assert sorted(Path(p).name for p in changed) == ["Pulumi.dr.yaml", "Pulumi.prod.yaml"]
    dr, prod = load_settings("dr", tmp_path), load_settings("prod", tmp_path)
    assert dr.role is Role.PRIMARY and (dr.database.generation, dr.database.retired_generations) == (0, ())
    assert prod.role is Role.STANDBY and (prod.database.generation, prod.database.retired_generations) == (1, (0,))
    after = {s: (tmp_path / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dr")}
    assert after["dr"] == before["dr"].replace("drtopo:role: standby", "drtopo:role: primary")
    added = "  drtopo:database:\n    generation: 1\n    retiredGenerations: [0]\n"
    assert after["prod"] == before["prod"].replace("  drtopo:role: primary\n", "  drtopo:role: standby\n" + added)


def test_a_rerun_of_the_roles_step_changes_nothing(tmp_path: Path) -> None:
    """An interrupted promote resumed: the demoted file already says standby, so its generation stays."""
    for stack in ("prod", "dr"):
        shutil.copy(REPO_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    switch_roles("dr", "prod", tmp_path)
    once = {s: (tmp_path / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dr")}
    assert switch_roles("dr", "prod", tmp_path) == []
    assert {s: (tmp_path / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dr")} == once


def test_each_switch_demotes_to_the_next_generation_and_retires_the_last(tmp_path: Path) -> None:
    for stack in ("prod", "dr"):
        shutil.copy(REPO_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    seen = []
    for primary, standby in (("dr", "prod"), ("prod", "dr"), ("dr", "prod"), ("prod", "dr")):
        planned = planned_switch(primary, standby, tmp_path)
        switch_roles(primary, standby, tmp_path)
        settings = {s: load_settings(s, tmp_path) for s in ("prod", "dr")}
        assert [c.as_dict() for c in planned] == [
            {
                "stack": s.stack,
                "role": s.role.value,
                "generation": s.database.generation,
                "retired": list(s.database.retired_generations),
            }
            for s in (settings[primary], settings[standby])
        ]
        seen.append((settings["prod"].database.generation, settings["dr"].database.generation))
    assert seen == [(1, 0), (1, 1), (2, 1), (2, 2)]
    assert load_settings("dr", tmp_path).database.retired_generations == (0, 1)


def test_role_switch_is_pure_and_keeps_the_promoted_generation() -> None:
    prod = load_settings("prod", overrides={"database": {"generation": 3, "retiredGenerations": [0, 2]}})
    dr = load_settings("dr", overrides={"database": {"generation": 1}})
    primary, standby = role_switch(dr, prod)
    assert primary == StackChange("dr", Role.PRIMARY, 1, ())
    assert standby == StackChange("prod", Role.STANDBY, 4, (0, 2, 3))
    assert standby.describe() == "Pulumi.prod.yaml: role standby, database.generation 4, retiredGenerations [0, 2, 3]"


BLOCK = """config:
  drtopo:role: primary  # this region
  drtopo:database:
    # the lab's port
    port: 5432
    retiredGenerations:
    - 0
    generation: 1

  drtopo:peerStack: dr
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BLOCK,
            BLOCK.replace("primary  #", "standby  #").replace(
                "    retiredGenerations:\n    - 0\n    generation: 1\n",
                "    retiredGenerations: [0, 1]\n    generation: 2\n",
            ),
        ),
        (
            "config:\n  drtopo:role: primary\n  drtopo:database: {generation: 1, retiredGenerations: [0]}\n",
            "config:\n  drtopo:role: standby\n  drtopo:database: {generation: 2, retiredGenerations: [0, 1]}\n",
        ),
        (
            "config:\n  drtopo:role: primary\n  drtopo:database:\n    port: 1\n  drtopo:peerStack: dr\n",
            "config:\n  drtopo:role: standby\n  drtopo:database:\n    generation: 2\n    retiredGenerations: [0, 1]\n"
            "    port: 1\n  drtopo:peerStack: dr\n",
        ),
    ],
    ids=["block-with-sequence", "flow-mapping", "block-without-generation"],
)
def test_the_generation_is_set_in_whatever_form_the_file_has(text: str, expected: str) -> None:
    assert stack_text(text, StackChange("prod", Role.STANDBY, 2, (0, 1))) == expected


def test_a_database_setting_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(RoleRewriteError, match="drtopo:database is 'fast'; expected a mapping"):
        stack_text(
            "config:\n  drtopo:role: primary\n  drtopo:database: fast\n", StackChange("p", Role.STANDBY, 1, (0,))
        )
