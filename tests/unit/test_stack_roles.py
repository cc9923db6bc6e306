"""The role switch in Pulumi.<stack>.yaml: only the role value changes, comments and other keys stay byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from drtopo.failover.roles import RoleRewriteError, current_role, set_role, switch_roles
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
    for stack in ("prod", "dr"):
        shutil.copy(REPO_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    before = {s: (tmp_path / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dr")}

    changed = switch_roles("dr", "prod", tmp_path)

    assert sorted(Path(p).name for p in changed) == ["Pulumi.dr.yaml", "Pulumi.prod.yaml"]
    assert load_settings("dr", tmp_path).role is Role.PRIMARY
    assert load_settings("prod", tmp_path).role is Role.STANDBY
    for stack in ("prod", "dr"):
        after = (tmp_path / f"Pulumi.{stack}.yaml").read_text().splitlines()
        diff = [(a, b) for a, b in zip(before[stack].splitlines(), after, strict=True) if a != b]
        assert len(diff) == 1 and "drtopo:role:" in diff[0][0]
    assert switch_roles("dr", "prod", tmp_path) == []
    switch_roles("prod", "dr", tmp_path)
    assert {s: (tmp_path / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dr")} == before
