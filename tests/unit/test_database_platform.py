"""A database is a type: the implementation is chosen once from the stack outputs (an RDS ARN, `selfManaged`, or
both: the lab's pair), and the pair does both halves in order. The halves here are small fakes of the `Database`
protocol, never fakes of servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from drtopo.database import NoDatabase, database_for
from drtopo.database.paired import PairedDatabase
from drtopo.database.pitr.request import BadFlags, PitrRequest
from drtopo.database.platform import Database
from drtopo.database.rds import RdsDatabase
from drtopo.database.replication import Lag
from drtopo.database.self_managed import SelfManagedDatabase
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput
from drtopo.settings import Settings

RDS_ARN = "arn:aws:rds:eu-west-1:123456789012:db:prod-db"
SERVER = SelfManagedPostgres(bin_dir="/usr/lib/postgresql/16/bin", data_dir="/lab/pg/prod", archive_dir="/lab/a",
                             base_backup_dir="/lab/b")  # fmt: skip


def outputs(db_arn: str, server: SelfManagedPostgres | None) -> StackOutputs:
    return StackOutputs(
        stack="prod",
        role="primary",
        region="eu-west-1",
        peer_region="eu-central-1",
        peer_stack="dr",
        db_instance_id="prod-db",
        db_arn=db_arn,
        db_address="127.0.0.1",
        db_port=5432,
        db_name="app",
        db_user="app",
        kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k",
        dump_bucket="d",
        wal_bucket="w",
        config_bucket="c",
        audit_bucket="a",
        hosted_zone_id="Z1",
        record_name="app.example.com",
        set_identifier="prod",
        health_check_id="h",
        failover="PRIMARY",
        kafka_bootstrap="127.0.0.1:9092",
        peer_kafka_bootstrap="127.0.0.1:9093",
        service_url="http://127.0.0.1:8080",
        namespace="app",
        self_managed=server,
    )


def test_an_rds_arn_alone_is_an_rds_database() -> None:
    db = database_for(outputs(RDS_ARN, None))
    assert isinstance(db, RdsDatabase)
    assert db.live_address  # its address is the live instance's once RDS has it


def test_self_managed_alone_is_a_self_managed_database() -> None:
    db = database_for(outputs("local:prod", SERVER))
    assert isinstance(db, SelfManagedDatabase)
    assert db.server == SERVER


def test_both_are_the_pair_of_an_rds_control_plane_and_a_self_managed_data_plane() -> None:
    db = database_for(outputs(RDS_ARN, SERVER))
    assert isinstance(db, PairedDatabase)
    assert isinstance(db.control, RdsDatabase) and not db.control.live_address  # clients reach the server
    assert isinstance(db.data, SelfManagedDatabase)
    assert db.outputs.db_arn == RDS_ARN


def test_outputs_naming_neither_are_bad_input_naming_the_stack() -> None:
    with pytest.raises(NoDatabase, match="outputs of prod name neither an RDS instance nor selfManaged"):
        database_for(outputs("local:prod", None))
    assert issubclass(NoDatabase, BadInput)


@dataclass
class Half:
    """A fake half of the pair: it records each call in the shared `calls` and answers with its name."""

    name: str
    calls: list[str]
    answers: bool = True
    outputs: StackOutputs = field(default_factory=lambda: outputs(RDS_ARN, SERVER))

    def _did(self, what: str) -> dict[str, Any]:
        self.calls.append(f"{self.name}.{what}")
        return {self.name: what}

    def reachable(self) -> bool:
        self.calls.append(f"{self.name}.reachable")
        return self.answers

    def rebuildable_when_down(self) -> bool:
        self.calls.append(f"{self.name}.rebuildable_when_down")
        return self.answers

    def open_for_reading(self) -> bool:
        self.calls.append(f"{self.name}.open_for_reading")
        return self.answers

    def require_replica(self) -> None:
        self._did("require_replica")

    def lag(self, primary: Database | None) -> Lag:
        self._did("lag")
        return Lag(0.5, 10, self.name)

    def fence(self) -> dict[str, Any]:
        return self._did("fence")

    def promote(self, lift_lease_fence: bool = False) -> dict[str, Any]:
        return self._did("promote, lifting the lease's fence" if lift_lease_fence else "promote")

    def rebuild(self, source: Database, settings: Settings, deployed: str | None = None) -> dict[str, Any]:
        return self._did(f"rebuild from {source.outputs.stack} ({deployed})")

    def protect(self, name: str) -> dict[str, Any]:
        return self._did(f"protect {name}")

    def generation(self, settings: Settings, generation: int | None = None, refresh: bool = False) -> Half:
        self._did(f"generation {generation}")
        return self


def pair(calls: list[str], control_answers: bool = True, data_answers: bool = True) -> PairedDatabase:
    return PairedDatabase(Half("rds", calls, control_answers), Half("postgres", calls, data_answers))  # type: ignore[arg-type]


def test_the_pair_promotes_the_control_plane_then_the_server_and_keeps_both_results() -> None:
    calls: list[str] = []
    assert pair(calls).promote() == {"rds": "promote", "postgres": "promote"}
    assert calls == ["rds.promote", "postgres.promote"]
    calls.clear()
    pair(calls).promote(lift_lease_fence=True)  # the lease on: both halves are told, each lifts where it waits
    assert calls == ["rds.promote, lifting the lease's fence", "postgres.promote, lifting the lease's fence"]


def test_the_pair_protects_the_new_timeline_on_both_halves() -> None:
    """The control plane's snapshot and automated backups, then the server's base backup and archiving."""
    calls: list[str] = []
    assert pair(calls).protect("after-promote") == {"rds": "protect after-promote", "postgres": "protect after-promote"}
    assert calls == ["rds.protect after-promote", "postgres.protect after-promote"]


def test_the_pair_rebuilds_the_control_plane_then_the_server() -> None:
    calls: list[str] = []
    source = pair([])
    result = pair(calls).rebuild(source, None, "prod-db")  # type: ignore[arg-type]
    assert calls == ["rds.rebuild from prod (prod-db)", "postgres.rebuild from prod (prod-db)"]
    assert list(result) == ["rds", "postgres"]


def test_what_a_client_observes_of_the_pair_is_the_server() -> None:
    calls: list[str] = []
    db = pair(calls, control_answers=False)
    assert db.reachable()
    db.require_replica()
    assert db.lag(None).source == "postgres"
    assert db.fence() == {"postgres": "fence"}
    assert calls == ["postgres.reachable", "postgres.require_replica", "postgres.lag", "postgres.fence"]


def test_the_pair_is_rebuildable_when_down_by_either_half() -> None:
    calls: list[str] = []
    assert pair(calls, data_answers=False).rebuildable_when_down()
    assert calls == ["postgres.rebuildable_when_down", "rds.rebuildable_when_down"]
    assert not pair([], control_answers=False, data_answers=False).rebuildable_when_down()


def test_the_pair_restores_from_its_server_unless_rds_is_asked_for() -> None:
    db = pair([])
    assert db.restorer() is db.data
    assert db.restorer(rds=True) is db.control


def test_the_pair_moves_both_halves_to_a_generation() -> None:
    calls: list[str] = []
    moved = pair(calls).generation(None, 3)  # type: ignore[arg-type]
    assert calls == ["rds.generation 3", "postgres.generation 3"]
    assert isinstance(moved, PairedDatabase)


def test_a_self_managed_database_restores_with_rds_only_when_asked() -> None:
    db = database_for(outputs("local:prod", SERVER))
    assert db.restorer() is db
    assert isinstance(db.restorer(rds=True), RdsDatabase)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({}, "pitr needs --time T"),
        ({"window": True, "damage_xids": (7,)}, "--damage-xid goes with --cutover"),
        ({"window": True, "restart": True}, "--restart goes with --cutover"),
        ({"time": "2026-11-27T14:05:00Z", "cutover": True, "wal_source": "bucket"}, "--wal-source bucket is not for"),
    ],
)
def test_a_pitr_request_refuses_flags_that_do_not_go_together(flags: dict[str, Any], message: str) -> None:
    time = flags.pop("time", None)
    with pytest.raises(BadFlags, match=message):
        PitrRequest.parse(time, datetime.now(UTC), **flags)


@pytest.mark.parametrize(
    ("db", "flags", "message"),
    [
        (RdsDatabase, {"target_port": 6000}, "--target-dir/--target-port are for a self-managed restore"),
        (RdsDatabase, {"wal_source": "bucket"}, "--wal-source bucket is for a self-managed restore"),
        (SelfManagedDatabase, {"target_instance": "x"}, "; self-managed takes --target-dir/--target-port$"),
        (SelfManagedDatabase, {"target_instance": "x", "cutover": True}, r"\(add --rds\)$"),
    ],
)
def test_each_platform_refuses_the_other_platforms_restore_flags(db: type, flags: dict[str, Any], message: str) -> None:
    request = PitrRequest(time=datetime(2026, 11, 27, tzinfo=UTC), **flags)
    database = RdsDatabase(outputs(RDS_ARN, None)) if db is RdsDatabase else database_for(outputs("x", SERVER))
    with pytest.raises(BadInput, match=message):
        database.check_restore(request)


def test_the_pair_is_opened_for_reading_by_its_server_alone() -> None:
    """Before a rebuild the old primary's rows are read from the server; the control plane starts nothing."""
    calls: list[str] = []
    assert pair(calls, control_answers=True, data_answers=False).open_for_reading() is False
    assert calls == ["postgres.open_for_reading"]
