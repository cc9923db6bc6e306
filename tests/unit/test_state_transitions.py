"""Failover and failback as `pulumi up` would run them on a real account: each stack's state is kept between
program evaluations, the cloud is kept between stacks, and every step obeys the provider's rules
(`tests/unit/provider_rules.py`, each with its source).

The cycle: `up prod`, `up dr`; promote dr (the replica promoted out of band, both records flipped, and the stack
files written by the very function promote's roles step calls, `drtopo.failover.roles.switch_roles`: the roles and
prod's next database generation); `up --refresh dr`, `up --refresh prod`; fail back the same way; both again. Each
evaluation passes the program's live-state guard first (`drtopo.role_guard`, over this cloud and the role marker
promote writes). At every stage: no refusal, no replacement of a protected resource, exactly one PRIMARY record,
and no RDS instance in the cloud that no stack's state holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic.alias_generators import to_camel

import components.database
from drtopo import naming
from drtopo.database.instance import import_command, instance_inputs, replica_requests
from drtopo.failover.marker import RoleMarker, next_marker
from drtopo.failover.roles import set_role, switch_roles
from drtopo.role_guard import LiveState, judge
from drtopo.settings import REPO_DIR, Role, Settings, load_settings, stack_file
from evaluation.mock_program import ACCOUNT_ID, Evaluation, Registered, evaluate
from tests.evaluations import evaluation_of
from tests.unit.provider_rules import (
    OTHER,
    RDS_INSTANCE,
    REPLICA_CREATE_PARAMETERS,
    REPLICA_FROM_SOURCE,
    REPLICA_MODIFY_PARAMETERS,
    ROUTE53_RECORD,
    RULES,
    Desired,
    Live,
    Refused,
    StateEntry,
    Step,
    plan,
    with_ignored,
)

STACKS = ("prod", "dr")
SNAPSHOT = "aws:rds/snapshot:Snapshot"
KMS_KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"
STACK_REFERENCE = "pulumi:pulumi:StackReference"


@dataclass
class Instance:
    """A live RDS instance: its source ARN while it is a replica, its database name and master user (a replica's
    are its source's)."""

    source: str | None
    db_name: str | None
    username: str | None
    deletion_protection: bool
    # What the provider's Read reports for the arguments the instance was created with (camelCased).
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cloud:
    instances: dict[str, Instance] = field(default_factory=dict)  # by ARN
    records: dict[str, str] = field(default_factory=dict)  # set identifier -> PRIMARY | SECONDARY
    snapshots: set[str] = field(default_factory=set)


@dataclass
class World:
    """Both stacks' state and exports, their stack files (in `project`), the cloud, and what ran."""

    project: Path
    replica_reports_db_name: bool
    cloud: Cloud = field(default_factory=Cloud)
    config: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in STACKS})
    states: dict[str, dict[str, StateEntry]] = field(default_factory=lambda: {s: {} for s in STACKS})
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    marker: RoleMarker | None = None  # the role marker promote writes (both regions alike here)
    steps: list[tuple[str, str, Step]] = field(default_factory=list)  # (stack, type, step)
    # The session's evaluations (tests/evaluations.py); `evaluate` itself for a test that patches the program.
    program: Callable[..., Evaluation] = evaluation_of

    def evaluate(self, stack: str) -> Evaluation:
        settings = load_settings(stack, self.project, overrides=self.config[stack])
        # The program's live-state guard first (__main__.py), over what this cloud would answer its data sources.
        verdict = judge(settings, self.live_state(settings))
        if verdict.refusal:
            raise Refused(verdict.refusal)
        if settings.is_primary:
            return self.program(settings)
        return self.program(settings, references={settings.primary_stack_reference: self.exports[settings.peer_stack]})

    def live_state(self, settings: Settings) -> LiveState:
        instance = self.cloud.instances.get(declared_arn(settings))
        return LiveState(
            marker=self.marker,
            marker_where="/drtopo/roles/dr/prod",
            replica_of=instance.source if instance else None,
            database=naming.db_identifier(settings),
            database_is_replica=None if instance is None else instance.source is not None,
        )

    def refresh(self, stack: str) -> None:
        """`pulumi refresh`: the provider's Read of every resource in the stack's state."""
        state = self.states[stack]
        for urn, entry in list(state.items()):
            if entry.type == RDS_INSTANCE:
                instance = self.cloud.instances.get(entry.attrs["arn"])
                if instance is None:
                    del state[urn]
                    continue
                set_or_drop(entry.attrs, "replicateSourceDb", instance.source)
                reports = instance.source is None or self.replica_reports_db_name
                set_or_drop(entry.attrs, "dbName", instance.db_name if reports else None)
                set_or_drop(entry.attrs, "username", instance.username if reports else None)
            if entry.type == ROUTE53_RECORD:
                entry.attrs["failoverRoutingPolicies"] = [{"type": self.cloud.records[entry.attrs["setIdentifier"]]}]

    def up(self, stack: str, refresh: bool = True) -> dict[str, Step]:
        """`pulumi up [--refresh]`: plan every resource (a refusal stops the run), then apply the steps."""
        if refresh:
            self.refresh(stack)
        evaluation = self.evaluate(stack)
        declared = {r.urn: r for r in evaluation.resources if r.custom and r.type != STACK_REFERENCE}
        state = self.states[stack]
        planned = {}
        for urn in sorted(declared.keys() | state.keys()):
            record = declared.get(urn)
            entry = state.get(urn)
            planned[urn] = plan(urn, entry, desired(record), self.live(entry))
        for urn, step in planned.items():
            kind = declared[urn].type if urn in declared else state[urn].type
            self.apply(stack, urn, step, declared.get(urn))
            self.steps.append((stack, kind, step))
        self.exports[stack] = evaluation.exports
        return planned

    def live(self, entry: StateEntry | None) -> Live | None:
        instance = self.cloud.instances.get(entry.attrs["arn"]) if entry and entry.type == RDS_INSTANCE else None
        return Live(is_replica=instance.source is not None) if instance else None

    def apply(self, stack: str, urn: str, step: Step, record: Registered | None) -> None:
        state = self.states[stack]
        if step.kind in ("delete", "forget"):
            entry = state.pop(urn)
            if step.kind == "delete":
                self.remove(entry)
            return
        assert record is not None
        entry = state.get(urn)
        inputs = with_ignored(record.inputs, entry.inputs if entry else {}, record.ignore_changes)
        if step.kind == "create":
            self.create(record)
            entry = StateEntry(record.type, dict(record.inputs), dict(record.outputs), record.protect,
                               record.retain_on_delete, record.ignore_changes)  # fmt: skip
            state[urn] = entry
            return
        assert entry is not None and step.kind in ("same", "update", "promote"), step  # replace is refused
        if step.kind == "promote":
            self.cloud.instances[entry.attrs["arn"]].source = None
        if record.type == ROUTE53_RECORD:
            self.cloud.records[inputs["setIdentifier"]] = inputs["failoverRoutingPolicies"][0]["type"]
        for key in RULES.get(record.type, OTHER).unset_when_absent - inputs.keys():
            entry.attrs.pop(key, None)
        entry.attrs.update(inputs)
        entry.inputs = inputs
        entry.protect, entry.retain_on_delete = record.protect, record.retain_on_delete

    def create(self, record: Registered) -> None:
        inputs = record.inputs
        if record.type == RDS_INSTANCE:
            arn, source = record.outputs["arn"], inputs.get("replicateSourceDb")
            if arn in self.cloud.instances:
                raise Refused(f"{record.urn}: DBInstanceAlreadyExists {arn}")
            if source and source not in self.cloud.instances:
                raise Refused(f"{record.urn}: DBInstanceNotFound: source {source}")
            origin = self.cloud.instances[source] if source else None
            name, user = (origin.db_name, origin.username) if origin else (inputs["dbName"], inputs["username"])
            attrs = {**inputs, "arn": arn}
            self.cloud.instances[arn] = Instance(source, name, user, bool(inputs.get("deletionProtection")), attrs)
        if record.type == ROUTE53_RECORD:
            if inputs["setIdentifier"] in self.cloud.records:
                raise Refused(f"{record.urn}: CREATE of an existing record {inputs['setIdentifier']}")
            self.cloud.records[inputs["setIdentifier"]] = inputs["failoverRoutingPolicies"][0]["type"]
        if record.type == SNAPSHOT:
            self.cloud.snapshots.add(inputs["dbSnapshotIdentifier"])

    def remove(self, entry: StateEntry) -> None:
        if entry.type == RDS_INSTANCE:
            if self.cloud.instances[entry.attrs["arn"]].deletion_protection:
                raise Refused(f"DeleteDBInstance {entry.attrs['arn']}: deletion protection is on")
            del self.cloud.instances[entry.attrs["arn"]]
        if entry.type == ROUTE53_RECORD:
            del self.cloud.records[entry.attrs["setIdentifier"]]

    # What the scripts and the operator do between runs (none of it through Pulumi).

    def promote(self, stack: str, switch: Callable[[str, str, Path], object] = switch_roles) -> None:
        """scripts.promote: promote `stack`'s replica, flip both records, and write the stack files exactly as its
        roles step does (`drtopo.failover.roles.switch_roles`: the roles, and the demoted stack's next generation)."""
        peer = self.exports[stack]["peerStack"]
        self.cloud.instances[self.exports[stack]["dbArn"]].source = None
        self.cloud.records[self.exports[stack]["setIdentifier"]] = "PRIMARY"
        self.cloud.records[self.exports[peer]["setIdentifier"]] = "SECONDARY"
        switch(stack, peer, self.project)
        self.marker = next_marker(self.marker, stack, peer, f"promote {stack}")

    def script_replica(self, stack: str, source_stack: str, key_output: str = "dbKmsKeyArn") -> str:
        """scripts.failback's rebuild on RDS: the replica `stack` declares now, of `source_stack`'s declared
        database, made with boto3 from `replica_requests` (nothing through Pulumi). Returns its ARN."""
        settings = load_settings(stack, self.project, overrides=self.config[stack])
        source = declared_arn(load_settings(source_stack, self.project, overrides=self.config[source_stack]))
        inputs = instance_inputs(settings, settings.database.generation, self.exports[stack][key_output])
        create, modify = replica_requests(inputs, source)
        arn = declared_arn(settings)
        if arn in self.cloud.instances:
            raise Refused(f"CreateDBInstanceReadReplica: DBInstanceAlreadyExists {arn}")
        origin = self.cloud.instances[source]
        # What Read reports: the arguments sent, under their input names (the provider's parameters as documented,
        # provider_rules.py, not the script's own table: a parameter the script does not send fails here), and what
        # the replica inherits.
        sent = {**create, **modify}
        parameters = {**REPLICA_CREATE_PARAMETERS, **REPLICA_MODIFY_PARAMETERS}
        attrs = {to_camel(k): sent[api] for k, api in parameters.items()}
        attrs["tags"] = {t["Key"]: t["Value"] for t in sent["Tags"]}
        attrs.update({to_camel(k): origin.attrs[to_camel(k)] for k in REPLICA_FROM_SOURCE})
        attrs.update(arn=arn, replicateSourceDb=source)
        if self.replica_reports_db_name:
            attrs.update(dbName=origin.db_name, username=origin.username)
        self.cloud.instances[arn] = Instance(
            source, origin.db_name, origin.username, create["DeletionProtection"], attrs
        )
        return arn

    def pulumi_import(self, stack: str, command: str) -> None:
        """`pulumi import TYPE NAME ID --parent NAME=URN --protect`: the resource enters the stack's state with the
        provider's Read of the live resource as its inputs (pulumi.com/docs/iac/adopting-pulumi/import)."""
        words = command.split()
        type_token, _name, identifier = words[-3:]
        parent = next(w for w in words if w.startswith("database=")).split("=", 1)[1]
        head, project, parent_type, _parent_name = parent.split("::")
        urn = f"{head}::{project}::{parent_type}${type_token}::{_name}"
        if urn in self.states[stack]:
            raise Refused(f"{urn}: already in state")
        instance = next(i for arn, i in self.cloud.instances.items() if arn.endswith(f":db:{identifier}"))
        attrs = {k: v for k, v in instance.attrs.items() if k != "replicateSourceDb" or instance.source}
        inputs = {k: v for k, v in attrs.items() if k != "arn"}
        self.states[stack][urn] = StateEntry(
            type_token, inputs, attrs, protect="--protect" in words, retain_on_delete=False
        )

    def release(self, stack: str, generation: int) -> None:
        """`pulumi state unprotect` the retired instance and drop it from retiredGenerations."""
        settings = load_settings(stack, self.project, overrides=self.config[stack])
        identifier = naming.db_identifier(settings, generation)
        kept = [g for g in settings.database.retired_generations if g != generation]
        self.config[stack] = {"database": {"generation": settings.database.generation, "retiredGenerations": kept}}
        for entry in self.states[stack].values():
            if identifier in (entry.attrs.get("identifier"), entry.attrs.get("dbInstanceIdentifier")):
                entry.protect = False
                self.released.add(entry.attrs.get("arn", ""))

    # What must hold at every stage.

    def check(self) -> None:
        assert list(self.cloud.records.values()).count("PRIMARY") == 1, self.cloud.records
        held = {e.attrs["arn"] for state in self.states.values() for e in state.values() if e.type == RDS_INSTANCE}
        assert set(self.cloud.instances) - held <= self.released, "an RDS instance no stack's state holds"
        lost = [(stack, kind) for stack, kind, step in self.steps if step.kind in ("replace", "delete")]
        assert not [x for x in lost if x[1] in (RDS_INSTANCE, SNAPSHOT, KMS_KEY, BUCKET)], lost


def declared_arn(settings: Settings) -> str:
    """The ARN of the instance `settings` declare now, as the mocks (and RDS) name it."""
    return f"arn:aws:rds:{settings.region}:{ACCOUNT_ID}:db:{naming.db_identifier(settings)}"


def set_or_drop(attrs: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        attrs.pop(key, None)
    else:
        attrs[key] = value


def desired(record: Registered | None) -> Desired | None:
    if record is None:
        return None
    return Desired(record.type, record.inputs, record.protect, record.retain_on_delete, record.ignore_changes)


def project_copy(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", *(f"Pulumi.{s}.yaml" for s in STACKS)):
        shutil.copy(REPO_DIR / name, tmp_path / name)
    return tmp_path


def database_of(world: World, stack: str) -> dict[str, Any]:
    return {"arn": world.exports[stack]["dbArn"], **vars(world.cloud.instances[world.exports[stack]["dbArn"]])}


def kinds(steps: dict[str, Step], kind: str) -> list[str]:
    return sorted(urn.rsplit("::", 1)[-1] for urn, step in steps.items() if step.kind == kind)


def deployed(
    tmp_path: Path, replica_reports_db_name: bool = True, program: Callable[..., Evaluation] = evaluation_of
) -> World:
    world = World(project_copy(tmp_path), replica_reports_db_name, program=program)
    for stack in STACKS:
        world.up(stack, refresh=False)
        world.check()
    return world


def failover(world: World, to: str) -> Iterator[str]:
    """Promote `to`, then converge both stacks with refreshed state; yields each stage's name after its checks."""
    peer = world.exports[to]["peerStack"]
    world.promote(to)
    world.check()
    yield f"promote {to}"
    for stack in (to, peer):
        world.up(stack)
        world.check()
        yield f"up --refresh {stack}"


@pytest.mark.parametrize("replica_reports_db_name", [True, False], ids=["replica-reports-dbname", "replica-hides-it"])
def test_failover_failback_and_convergence_never_refuse_replace_or_orphan(
    tmp_path: Path, replica_reports_db_name: bool
) -> None:
    world = deployed(tmp_path, replica_reports_db_name)
    prod0, dr0 = database_of(world, "prod"), database_of(world, "dr")
    assert prod0["source"] is None and dr0["source"] == prod0["arn"]
    assert world.cloud.records == {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}

    stages = list(failover(world, "dr"))
    assert stages == ["promote dr", "up --refresh dr", "up --refresh prod"]
    assert database_of(world, "dr")["arn"] == dr0["arn"] and database_of(world, "dr")["source"] is None
    prod1 = database_of(world, "prod")
    assert prod1["arn"].endswith("exception-collector-us-east-1-g1") and prod1["source"] == dr0["arn"]
    assert world.cloud.instances[prod0["arn"]].deletion_protection, "the retired primary keeps its protection"
    assert "exception-collector-us-east-1-retired" in world.cloud.snapshots
    assert world.cloud.records == {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}

    list(failover(world, "prod"))
    assert database_of(world, "prod")["arn"] == prod1["arn"] and database_of(world, "prod")["source"] is None
    assert database_of(world, "dr")["source"] == prod1["arn"]
    assert world.cloud.records == {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}
    assert len(world.cloud.instances) == 4  # two retired former primaries, the primary, its replica

    for stack in STACKS:
        assert {step.kind for step in world.up(stack).values()} == {"same"}, f"{stack} did not converge"
        world.check()


def test_the_promotion_itself_is_a_no_op_once_refreshed_and_nothing_stateful_is_recreated(tmp_path: Path) -> None:
    world = deployed(tmp_path)
    world.promote("dr")
    dr_steps, prod_steps = world.up("dr"), world.up("prod")
    assert not kinds(dr_steps, "promote")
    # The new primary copies its backups, writes the master password it sets to its own replicated secret and
    # replicates its registry's images to the old primary's region.
    assert kinds(dr_steps, "create") == ["database-backup-copies", "database-master-secret", "images-replication"]
    assert "database" in kinds(dr_steps, "update")  # the write-only master password, in place
    assert kinds(prod_steps, "create") == ["database-g1", "database-retired"]
    assert kinds(prod_steps, "same").count("database") == 1
    # The primary's backup copying and image replication only.
    assert kinds(prod_steps, "delete") == ["database-backup-copies", "images-replication"]


def test_up_without_refresh_after_promotion_is_refused(tmp_path: Path) -> None:
    """The README's old sequence: state still holds replicate_source_db, so the provider promotes again."""
    world = deployed(tmp_path)
    world.promote("dr")
    with pytest.raises(Refused, match="not a read replica"):
        world.up("dr", refresh=False)


def roles_only(primary: str, standby: str, project: Path) -> None:
    """The roles switched by hand, the demoted stack's generation left as it was (the old README's sequence)."""
    for stack, role in ((primary, Role.PRIMARY), (standby, Role.STANDBY)):
        path = stack_file(stack, project)
        path.write_text(set_role(path.read_text(), role))


def test_a_demoted_stack_that_keeps_its_generation_is_refused(tmp_path: Path) -> None:
    world = deployed(tmp_path)
    world.promote("dr", switch=roles_only)
    world.up("dr")
    with pytest.raises(Refused, match="is a standalone instance, which RDS cannot demote"):
        world.up("prod")  # the program's guard, at preview
    world.config["prod"] = {"roleOverride": "standby"}
    with pytest.raises(Refused, match="cannot elect new source database for replication"):
        world.up("prod")  # and the provider's own refusal behind it


def test_a_checkout_without_promotes_edit_is_refused_by_the_role_marker(tmp_path: Path) -> None:
    """CI runs `pulumi up -s prod` from a checkout that still says primary: the marker promote wrote says not."""
    world = deployed(tmp_path)
    list(failover(world, "dr"))
    shutil.copy(REPO_DIR / "Pulumi.prod.yaml", world.project / "Pulumi.prod.yaml")
    with pytest.raises(Refused, match=r"says drtopo:role primary but the role marker .* says standby"):
        world.up("prod")
    world.check()


def promoted_with_other_spelling(tmp_path: Path, program: Callable[..., Evaluation] = evaluation_of) -> World:
    """dr promoted, its settings spelling the database name and user otherwise than the replica inherited."""
    world = deployed(tmp_path, program=program)
    world.promote("dr")
    world.config["dr"] = {"database": {"name": "collector", "username": "collector_admin"}}
    return world


def test_a_promoted_replica_is_kept_whatever_name_and_user_the_settings_spell(tmp_path: Path) -> None:
    world = promoted_with_other_spelling(tmp_path)
    steps = world.up("dr")
    (database,) = [urn for urn in steps if urn.endswith("Instance::database")]
    assert steps[database].kind == "update" and not {"dbName", "username"} & set(steps[database].changed)
    world.check()


def test_without_ignoring_create_only_inputs_the_promoted_replica_would_be_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why dbName and username are ignored after creation: both force a new instance."""
    monkeypatch.setattr(components.database, "CREATE_ONLY_INPUTS", ())
    world = promoted_with_other_spelling(tmp_path, program=evaluate)
    with pytest.raises(Refused, match=r"\['dbName', 'username'\] force a replacement of a protected resource"):
        world.up("dr")


def test_both_stacks_configure_the_database_name_and_user_a_replica_inherits() -> None:
    prod, dr = (load_settings(stack).database for stack in STACKS)
    assert (prod.name, prod.username) == (dr.name, dr.username)


def test_a_retired_instance_leaves_state_only_by_an_explicit_release_and_stays_in_aws(tmp_path: Path) -> None:
    world = deployed(tmp_path)
    list(failover(world, "dr"))
    retired = database_of(world, "prod")["arn"].removesuffix("-g1")
    world.config["prod"] = {"database": {"generation": 1}}  # dropped from the program without the release
    with pytest.raises(Refused, match="cannot delete a protected resource"):
        world.up("prod")
    world.config["prod"] = {"database": {"generation": 1, "retiredGenerations": [0]}}
    world.release("prod", 0)
    steps = world.up("prod")
    assert kinds(steps, "forget") == ["database", "database-retired"]
    assert retired in world.cloud.instances and world.cloud.instances[retired].deletion_protection
    assert "exception-collector-us-east-1-retired" in world.cloud.snapshots
    world.check()


def failback_by_script(world: World, key_output: str = "dbKmsKeyArn") -> None:
    """scripts.failback to prod on RDS, prod not converged since the failover: rebuild (prod's next generation made
    as a replica of dr), promote it, flip both records, switch the roles, rebuild-peer (dr's next generation)."""
    world.script_replica("prod", "dr", key_output)
    prod = load_settings("prod", world.project)
    world.cloud.instances[declared_arn(prod)].source = None
    world.cloud.records.update({"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"})
    switch_roles("prod", "dr", world.project)
    world.marker = next_marker(world.marker, "prod", "dr", "failback prod")
    world.script_replica("dr", "prod", key_output)


def adopt_and_converge(world: World) -> None:
    """What failback prints next: the imports, then `pulumi up --refresh` of both stacks."""
    for stack in ("prod", "dr"):
        world.pulumi_import(stack, import_command(load_settings(stack, world.project)))
    for stack in ("prod", "dr"):
        world.up(stack)
        world.check()


def failed_over_to_dr(tmp_path: Path) -> World:
    world = deployed(tmp_path)
    world.promote("dr")
    world.up("dr")
    world.check()
    return world


def test_a_failback_by_script_is_adopted_by_import_and_converges_without_replacing_anything(tmp_path: Path) -> None:
    world = failed_over_to_dr(tmp_path)
    failback_by_script(world)
    with pytest.raises(AssertionError, match="an RDS instance no stack's state holds"):
        world.check()  # made behind Pulumi's back until imported

    adopt_and_converge(world)

    assert world.cloud.records == {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}
    prod, dr = database_of(world, "prod"), database_of(world, "dr")
    assert prod["arn"].endswith(":db:exception-collector-us-east-1-g1") and prod["source"] is None
    assert dr["arn"].endswith(":db:exception-collector-us-west-2-g1") and dr["source"] == prod["arn"]
    assert len(world.cloud.instances) == 4  # the two retired former primaries, the primary, its replica
    for stack in STACKS:
        assert {step.kind for step in world.up(stack).values()} == {"same"}, f"{stack} did not converge"
        world.check()


def test_a_failback_replica_not_imported_collides_with_the_program_creating_it(tmp_path: Path) -> None:
    world = failed_over_to_dr(tmp_path)
    failback_by_script(world)
    with pytest.raises(Refused, match=r"DBInstanceAlreadyExists .*exception-collector-us-east-1-g1"):
        world.up("prod")


def test_a_failback_replica_made_with_the_buckets_key_would_be_replaced_once_imported(tmp_path: Path) -> None:
    """Why the script takes the database key (dbKmsKeyArn): kms_key_id forces a new instance."""
    world = failed_over_to_dr(tmp_path)
    failback_by_script(world, key_output="kmsKeyArn")
    world.pulumi_import("prod", import_command(load_settings("prod", world.project)))
    with pytest.raises(Refused, match=r"\['kmsKeyId'\] force a replacement of a protected resource"):
        world.up("prod")
