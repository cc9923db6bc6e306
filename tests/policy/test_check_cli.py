"""`python -m policies.check` as CI runs it: exit 0 clean, 1 on a mandatory violation, 2 on invalid config.

Each exit code is proven through the command in a new interpreter (`check`); the other cases run its `main` in this
process (`check_here`), reading what it prints from the file descriptors, as the new interpreter's pipes would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from policies import check as command

ROOT = Path(__file__).resolve().parents[2]

Check = Callable[..., subprocess.CompletedProcess[str]]


def check(*args: str, project_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DRTOPO_PROJECT_DIR", None)
    if project_dir is not None:
        env["DRTOPO_PROJECT_DIR"] = str(project_dir)
    return subprocess.run(
        [sys.executable, "-m", "policies.check", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def check_here(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Check:
    """`check` without a new interpreter: the command's `main` with the same folder and environment, its exit code
    and everything written to stdout and stderr while it ran (a library's own stray lines included)."""

    def run(*args: str, project_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(ROOT)
        if project_dir is None:
            monkeypatch.delenv("DRTOPO_PROJECT_DIR", raising=False)
        else:
            monkeypatch.setenv("DRTOPO_PROJECT_DIR", str(project_dir))
        capfd.readouterr()
        try:
            code = command.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["policies.check", *args], code, out, err)

    return run


def project_with(tmp_path: Path, stack: str, **config: object) -> Path:
    """A copy of the stack files with `drtopo:` keys replaced, as a careless edit would leave them."""
    for name in ("prod", "dr"):
        document = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
        if name == stack:
            document["config"].update({f"drtopo:{k}": v for k, v in config.items()})
        (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_clean_stack_exits_0_with_a_json_report(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    done = check("--stack", "dr", "--json", str(report_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 0 mandatory" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["ok"] is True and report["stack"] == "dr" and report["role"] == "standby"
    assert report["measured"]["resources"] > 40
    assert all(c["ok"] for c in report["checks"])


def test_mandatory_violation_exits_1_naming_resource_property_and_values(tmp_path: Path) -> None:
    project = project_with(tmp_path, "prod", retention={"daily": {"days": 1}})
    report_path = tmp_path / "report.json"
    done = check("--stack", "prod", "--json", str(report_path), project_dir=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "FAIL  lifecycle-covers-tiers" in done.stdout
        and "BucketLifecycleConfiguration 'backups-dumps': rules[0].expiration.days = 1; required == 30" in done.stdout
    )
    failed = [c for c in json.loads(report_path.read_text())["checks"] if not c["ok"]]
    assert {c["name"] for c in failed} == {"lifecycle-covers-tiers"}
    assert {(c["property"], c["value"], c["limit"]) for c in failed} == {("rules[0].expiration.days", 1, "== 30")}


def test_role_flag_evaluates_the_other_role(check_here: Check) -> None:
    done = check_here("--stack", "prod", "--role", "standby")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stack prod (role standby)" in done.stdout


def test_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    done = check("--stack", "prod", project_dir=project_with(tmp_path, "prod", role="primry"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "drtopo:role = 'primry'" in done.stderr


def test_config_the_program_refuses_exits_2(tmp_path: Path, check_here: Check) -> None:
    project = project_with(tmp_path, "prod", kubernetes={"namespace": "biopro-prod", "dumpSchedule": "15 2 * * 0"})
    done = check_here("--stack", "prod", project_dir=project)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "dumpSchedule" in done.stderr


def test_unknown_stack_exits_2(check_here: Check) -> None:
    assert check_here("--stack", "staging").returncode == 2


def renamed_pair(tmp_path: Path, names: dict[str, str]) -> Path:
    """The two stack files under other names, each naming the other as its peer (and primary reference)."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for old, new in names.items():
        document = yaml.safe_load((ROOT / f"Pulumi.{old}.yaml").read_text())
        peer = names[document["config"]["drtopo:peerStack"]]
        document["config"]["drtopo:peerStack"] = peer
        reference = document["config"]["drtopo:primaryStackReference"]
        document["config"]["drtopo:primaryStackReference"] = reference.rsplit("/", 1)[0] + f"/{peer}"
        (tmp_path / f"Pulumi.{new}.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_stack_names_are_free_any_pair_naming_each_other_is_checked(tmp_path: Path, check_here: Check) -> None:
    project = renamed_pair(tmp_path, {"prod": "east", "dr": "west"})
    report_path = tmp_path / "report.json"
    done = check_here("--stack", "west", "--json", str(report_path), project_dir=project)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    assert report["stack"] == "west" and report["role"] == "standby"


def test_an_unknown_stack_names_the_missing_file_in_one_line(tmp_path: Path, check_here: Check) -> None:
    project = renamed_pair(tmp_path, {"prod": "east", "dr": "west"})
    done = check_here("--stack", "north", project_dir=project)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "Pulumi.north.yaml" in done.stderr and "east, west" in done.stderr


def test_a_stack_pulling_from_another_regions_registry_exits_1(tmp_path: Path, check_here: Check) -> None:
    kubernetes = yaml.safe_load((ROOT / "Pulumi.dr.yaml").read_text())["config"]["drtopo:kubernetes"]
    primarys = kubernetes["mirrorMakerImage"].replace(".us-west-2.", ".us-east-1.")
    project = project_with(tmp_path, "dr", kubernetes={**kubernetes, "mirrorMakerImage": primarys})
    report_path = tmp_path / "report.json"
    done = check_here("--stack", "dr", "--json", str(report_path), project_dir=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  workload-image-own-region" in done.stdout and "another region's registry (us-east-1)" in done.stdout
    failed = [c for c in json.loads(report_path.read_text())["checks"] if not c["ok"]]
    assert {c["name"] for c in failed} == {"workload-image-own-region"}
    assert {c["value"] for c in failed} == {primarys}
