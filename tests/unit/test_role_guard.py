"""The role's single source of truth: the program refuses, at preview and in one line, a role the live state
contradicts (the role marker promote writes, the replica status of its database), unless overridden.

The live state is read through Pulumi data sources; under `pulumi.runtime.set_mocks` the invokes answer what each
test gives (or fail, as a missing parameter or an unreachable region does), so the program's own reading and
judging run here unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.live_state import read_live_state
from drtopo.failover.marker import MarkerError, RoleMarker, marker_name, newest, next_marker, parse
from drtopo.role_guard import LiveState, Verdict, judge
from drtopo.settings import load_settings

MAIN = Path(__file__).resolve().parents[2] / "__main__.py"
SSM = "aws:ssm/getParameter:getParameter"
RDS = "aws:rds/getInstance:getInstance"
PRIMARY_ARN = "arn:aws:rds:us-east-1:123456789012:db:exception-collector-us-east-1"


def marker(primary: str, standby: str, epoch: int = 1) -> str:
    return RoleMarker(epoch, primary, standby, "2026-12-01T12:00:00+00:00", f"promote {primary}").render()


class LiveMocks(pulumi.runtime.Mocks):
    """Invokes answer from `markers` (region -> value, or an Exception to raise) and `instance` (the data source's
    result, or an Exception)."""

    def __init__(self, markers: dict[str, Any], instance: Any) -> None:
        self.markers, self.instance = markers, instance
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append((args.token, dict(args.args)))
        answer = self.markers.get(args.args.get("region")) if args.token == SSM else self.instance
        if args.token not in (SSM, RDS):
            return {}, []
        if isinstance(answer, Exception):
            raise answer
        if args.token == SSM:
            return {"name": args.args["name"], "value": answer, "type": "String"}, []
        return answer, []


def not_found(what: str) -> Exception:
    return Exception(f"invoking {what}: couldn't find resource")


def standalone(identifier: str) -> dict[str, Any]:
    return {"dbInstanceIdentifier": identifier, "dbInstanceArn": f"arn:aws:rds:x:1:db:{identifier}"}


def replica(identifier: str) -> dict[str, Any]:
    return {**standalone(identifier), "replicateSourceDb": PRIMARY_ARN}


def verdict_for(stack: str, mocks: LiveMocks, **overrides: Any) -> Verdict:
    settings = load_settings(stack, overrides=overrides or None)
    pulumi.runtime.set_mocks(mocks, project="drtopo", stack=stack, preview=True)
    return judge(settings, read_live_state(settings))


PROD_DEMOTED = {"role": "standby", "database": {"generation": 1, "retiredGenerations": [0]}}


def test_a_checkout_without_promotes_edit_is_refused_in_one_line() -> None:
    """dr was promoted (the marker says so, in both regions); CI runs prod from a checkout still saying primary."""
    mocks = LiveMocks({r: marker("dr", "prod") for r in ("us-east-1", "us-west-2")}, standalone("x"))
    verdict = verdict_for("prod", mocks)
    assert verdict.refusal is not None and "\n" not in verdict.refusal
    assert verdict.refusal.startswith("refused: Pulumi.prod.yaml says drtopo:role primary but the role marker")
    assert "says standby" in verdict.refusal and "drtopo:roleOverride: primary" in verdict.refusal
    # Both regions' markers and the current generation's instance, each in its own region.
    asked = {(t, a.get("region"), a.get("name") or a.get("dbInstanceIdentifier")) for t, a in mocks.calls}
    assert asked == {
        (SSM, "us-east-1", "/drtopo/roles/dr/prod"),
        (SSM, "us-west-2", "/drtopo/roles/dr/prod"),
        (RDS, "us-east-1", "exception-collector-us-east-1"),
    }


def test_the_override_naming_the_role_deploys_it_with_a_note() -> None:
    mocks = LiveMocks({"us-east-1": marker("dr", "prod")}, standalone("x"))
    verdict = verdict_for("prod", mocks, roleOverride="primary")
    assert verdict.refusal is None
    assert any(n.startswith("overridden by drtopo:roleOverride primary: Pulumi.prod.yaml says") for n in verdict.notes)


def test_an_override_naming_another_role_overrides_nothing() -> None:
    mocks = LiveMocks({"us-east-1": marker("dr", "prod")}, standalone("x"))
    verdict = verdict_for("prod", mocks, roleOverride="standby")
    assert verdict.refusal is not None and "roleOverride standby confirms another role" in verdict.refusal


def test_agreement_passes_after_the_switch() -> None:
    """prod as promote left it: standby at generation 1 (not created yet), the marker saying standby."""
    mocks = LiveMocks(
        {"us-east-1": marker("dr", "prod", 2), "us-west-2": marker("dr", "prod", 2)},
        not_found("aws:rds/getInstance:getInstance"),
    )
    verdict = verdict_for("prod", mocks, **PROD_DEMOTED)
    assert verdict.refusal is None
    assert verdict.notes == [
        "live state not read: database exception-collector-us-east-1-g1 in us-east-1 (invoking "
        "aws:rds/getInstance:getInstance: couldn't find resource); the role is taken from the stack file"
    ]


def test_the_promoted_stack_agrees_with_its_promoted_database() -> None:
    mocks = LiveMocks({"us-west-2": marker("dr", "prod")}, standalone("exception-collector-us-west-2"))
    verdict = verdict_for("dr", mocks, role="primary")
    empty = f"role marker {marker_name('dr', 'prod')} in us-east-1 (empty)"
    assert verdict == Verdict(None, [f"live state not read: {empty}; the role is taken from the stack file"])


def test_a_first_deployment_reads_nothing_and_passes_with_notes() -> None:
    mocks = LiveMocks(
        {r: not_found("aws:ssm/getParameter:getParameter") for r in ("us-east-1", "us-west-2")},
        not_found("aws:rds/getInstance:getInstance"),
    )
    verdict = verdict_for("prod", mocks)
    assert verdict.refusal is None and len(verdict.notes) == 3
    assert all(n.startswith("live state not read: ") for n in verdict.notes)


@pytest.mark.parametrize(
    ("stack", "overrides", "instance", "expected"),
    [
        ("dr", {"role": "primary"}, replica("exception-collector-us-west-2"), "is still a read replica of"),
        ("prod", {"role": "standby"}, standalone("exception-collector-us-east-1"), "which RDS cannot demote"),
    ],
    ids=["primary-but-replica", "standby-but-standalone"],
)
def test_a_role_the_database_contradicts_is_refused(
    stack: str, overrides: dict[str, Any], instance: dict[str, Any], expected: str
) -> None:
    """No marker yet (the first failover was done by hand): the database's own replica status still speaks."""
    verdict = verdict_for(stack, LiveMocks({}, instance), **overrides)
    assert verdict.refusal is not None and expected in verdict.refusal


def test_the_newest_marker_wins_over_one_left_behind_in_a_region_that_was_down() -> None:
    """us-east-1 was down during the failover: its marker still says prod primary (epoch 1), dr's says epoch 2."""
    markers = {"us-east-1": marker("prod", "dr", 1), "us-west-2": marker("dr", "prod", 2)}
    mocks = LiveMocks(markers, not_found("aws:rds/getInstance:getInstance"))
    assert verdict_for("prod", mocks, **PROD_DEMOTED).refusal is None
    refused = verdict_for("prod", mocks).refusal
    assert refused is not None and "/drtopo/roles/dr/prod in us-west-2 says standby" in refused


def test_marker_values_are_parsed_strictly() -> None:
    assert parse(marker("dr", "prod", 3)).role_of("prod") is not None
    with pytest.raises(MarkerError, match="expected the JSON promote writes"):
        parse("primary")
    with pytest.raises(MarkerError, match="both primary and standby"):
        parse(json.dumps({"epoch": 1, "primary": "dr", "standby": "dr", "at": "", "by": ""}))
    assert newest([None, parse(marker("dr", "prod", 2)), parse(marker("prod", "dr", 1))]).primary == "dr"
    assert next_marker(parse(marker("dr", "prod", 2)), "prod", "dr", "failback prod").epoch == 3
    assert marker_name("prod", "dr") == marker_name("dr", "prod") == "/drtopo/roles/dr/prod"


def test_judge_is_pure_over_the_live_state() -> None:
    settings = load_settings("prod")
    assert judge(settings, LiveState()) == Verdict(None, [])
    stale = LiveState(marker=parse(marker("dr", "prod")), marker_where="/drtopo/roles/dr/prod in us-west-2")
    assert judge(settings, stale).refusal is not None


def run_main(tmp_path: Path, mocks_source: str) -> subprocess.CompletedProcess[str]:
    """The program file run as the Pulumi host would, with mocks whose invokes answer as `mocks_source` says."""
    runner = tmp_path / "run.py"
    runner.write_text(
        "import runpy, pulumi\n"
        f"{mocks_source}\n"
        "pulumi.runtime.set_mocks(M(), project='drtopo', stack='prod', preview=True)\n"
        f"runpy.run_path({str(MAIN)!r}, run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, str(runner)],
        capture_output=True,
        text=True,
        cwd=MAIN.parent,
        env={**{k: v for k, v in os.environ.items() if k != "DRTOPO_PROJECT_DIR"}, "PYTHONPATH": str(MAIN.parent)},
        check=False,
        timeout=120,
    )


MOCKS = """
class M(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return args.name + '-id', dict(args.inputs)
    def call(self, args):
        if args.token == 'aws:ssm/getParameter:getParameter':
            return {'value': VALUE}, []
        raise Exception('DBInstanceNotFound')
"""


def test_the_program_refuses_at_preview_with_one_line_and_exit_3(tmp_path: Path) -> None:
    done = run_main(tmp_path, f"VALUE = {marker('dr', 'prod')!r}\n{MOCKS}")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: refused: Pulumi.prod.yaml says"), done.stderr
