"""`scripts.restore pitr --cutover` on the lab: corruption recovered end to end with writes going on.

A damaging transaction deletes and updates rows at T while the service keeps writing; the cutover restores to T,
re-applies every write after T except the damage's, validates, and swaps the restored instance into the damaged one's
endpoint (the damaged data directory kept, renamed), then rebuilds dr's standby from it and takes a base backup of
the new timeline into the WAL bucket, every step journalled; `restore cleanup` then removes the damaged copy and the
scratch WAL, refusing the live data directory. `--dry-run` lists the rows and changes nothing. `--find-damage` lists
the damage's transaction first; the cutover takes T from its xid alone and holds the failover lock of both stacks
(a promote started during it is refused, and it is refused while a promote runs), and after the swap it probes a
write through the service. An interrupted cutover's journal older than the limit is refused until --restart.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import pytest

from drtopo.backup import store, wal
from drtopo.database.connect import connect
from drtopo.database.pitr.cutover import CUTOVER_PLAN, kept_identifier, rds_rename_swap, wait_archived
from drtopo.database.replication import wait_replayed
from drtopo.failover.lock import FailoverLock, held
from drtopo.outputs import StackOutputs, load_outputs
from drtopo.report import Clock
from lab.core import Lab
from scripts import promote, restore
from scripts import wal as wal_command
from scripts.cli import context_from_environment
from tests.integration.backup_helpers import checks, insert_rows, run_cli, stack_args

pytestmark = pytest.mark.lab


@pytest.fixture
def prod(fresh_pg: Lab) -> Iterator[StackOutputs]:
    """A fresh pair; rebuilt afterwards (the cutover leaves prod on a new timeline and the damaged one kept)."""
    yield load_outputs(fresh_pg.prod.outputs_path, "prod")
    fresh_pg.reset_postgres()


def post(url: str, key: str) -> int:
    body = {"transactionId": key, "interfaceType": "ORDER", "exceptionReason": "r", "operation": "CREATE"}
    request = urllib.request.Request(
        f"{url}/api/v1/exceptions", json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(json.loads(response.read())["id"])


class Crash(BaseException):
    """The command dying right after a journalled step (in-process: nothing in it catches this)."""


def crash_after(name: str) -> Callable[[str], None]:
    def hook(step: str) -> None:
        if step == name:
            raise Crash(step)

    return hook


def run_restore(args: list[str], report: Path, after_step: Callable[[str], None] | None = None) -> tuple[int, dict]:
    """`scripts.restore` in-process with the shell's context, and `after_step` as its journal hook when given."""
    ctx = context_from_environment()
    if after_step is not None:
        ctx = dataclasses.replace(ctx, after_step=after_step)
    return run_cli(lambda argv: restore.main(argv, ctx), args, report)


def damage(prod: StackOutputs) -> tuple[str, int]:
    """T and the id of a transaction that deletes ids % 3 = 0 and closes ids % 3 = 1, seeing the rows as of T."""
    with connect(prod, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        xid = int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        conn.execute("DELETE FROM interface_exceptions WHERE id % 3 = 0")
        conn.execute("UPDATE interface_exceptions SET status = 'CLOSED' WHERE id % 3 = 1")
        conn.commit()
    return target.isoformat(), xid


def test_cutover_reapplies_every_write_after_t_but_the_damage_and_swaps_the_endpoint(
    lab: Lab, prod: StackOutputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prod.self_managed is not None
    with connect(prod) as conn:
        insert_rows(conn, "before-", 300)
        before = dict(conn.execute("SELECT id, status FROM interface_exceptions").fetchall())
    time.sleep(1.0)  # the bulk insert's commit stays out of the --find-damage window below
    target, xid = damage(prod)
    after_ids = [post(prod.service_url, f"after-{i}") for i in range(20)]  # acknowledged by the service after T
    with connect(prod) as conn:
        changed = min(i for i in before if i % 3 == 2)
        conn.execute("UPDATE interface_exceptions SET retry_count = 7 WHERE id = %s", (changed,))
    data_dir = Path(prod.self_managed.data_dir)
    identity = (data_dir / "postmaster.pid").read_text()

    # Found in the WAL (read-only: the damage's segment is not archived yet, pg_wal holds it): biggest first.
    capsys.readouterr()
    find = ["pitr", "--find-damage", "--around", target, "--width", "1", *stack_args(lab)]
    code, found = run_cli(restore.main, find, tmp_path / "find.json")
    out = capsys.readouterr().out
    assert code == 0, found
    first = found["measured"]["transactions"][0]
    assert first["xid"] == xid, found["measured"]["transactions"]
    assert first["tables"] == {"interface_exceptions": {"inserted": 0, "updated": 100, "deleted": 100}}
    assert out.splitlines()[2].split()[0] == str(xid) and "interface_exceptions" in out.splitlines()[2]
    assert (data_dir / "postmaster.pid").read_text() == identity
    code, narrowed = run_cli(restore.main, [*find, "--table", "retry_attempts"], tmp_path / "find-ra.json")
    assert code == 0 and narrowed["measured"]["transactions"] == [], narrowed

    args = ["pitr", "--cutover", "--damage-xid", str(xid), *stack_args(lab)]
    capsys.readouterr()
    code, report = run_cli(restore.main, [*args, "--time", target, "--dry-run"], tmp_path / "dry.json")
    out = capsys.readouterr().out
    assert code == 0, report
    assert report["measured"]["would_reapply"]["interface_exceptions"] == sorted([changed, *after_ids])
    assert "would re-apply 21 rows of interface_exceptions" in out
    assert "100 written by the damage left as at T" in out
    assert (data_dir / "postmaster.pid").read_text() == identity, "the dry run left the source alone"
    assert not Path(report["measured"]["data_dir"]).exists(), "the scratch restore is removed"

    # A promote started during the cutover (once it has fenced the damaged database) is refused by the pair's lock.
    dr = load_outputs(lab.dr.outputs_path, "dr")
    meanwhile: list[tuple[int, str]] = []

    def promote_meanwhile(step: str) -> None:
        if step == "fence":
            holder = FailoverLock(dr).holder()
            argv = [*stack_args(lab, "dr"), "--skip-consumer-group", "--json", str(tmp_path / "promote.json")]
            meanwhile.append((promote.main(argv), holder.describe() if holder else "none"))

    # No --time: T from the damage's commit.
    code, report = run_restore(args, tmp_path / "cut.json", promote_meanwhile)
    out, err = capsys.readouterr()
    assert code == 0, report
    assert len(meanwhile) == 1 and meanwhile[0][0] == 3, meanwhile
    assert meanwhile[0][1].startswith("cutover of prod by pid"), meanwhile
    assert "refused: another failover holds the lock" in err and "cutover of prod" in err
    assert not (tmp_path / "promote.json").exists()
    m = report["measured"]
    committed = datetime.fromisoformat(first["committed_at"])
    assert m["target_from_xid"] == {"xid": xid, "committed_at": first["committed_at"]}
    assert datetime.fromisoformat(m["target_time"]) == committed - timedelta(microseconds=1)
    assert f"just before transaction {xid} committed at {first['committed_at']}" in out
    assert m["rows_reapplied_per_table"] == {"interface_exceptions": 21, "retry_attempts": 0}
    assert m["rows_excluded_as_damage"]["interface_exceptions"] == 100
    assert checks(report)["restored holds every write after T"]["ok"]
    assert checks(report)["standby"]["ok"], checks(report)["standby"]
    # The report as it is after the swap: counts, the write-unavailability window, sequences, paths and port.
    assert "re-applied 21 rows written after T (interface_exceptions 21)" in out
    assert "written by the damage and left out (as at T): 100 rows (interface_exceptions 100)" in out
    window = m["write_unavailable"]
    assert window["seconds"] > 0 and datetime.fromisoformat(window["from"]) < datetime.fromisoformat(window["to"])
    assert f"writes refused for {window['seconds']:.1f} s" in out
    assert "deleted after T and kept as at T (back in the table): 100 rows (interface_exceptions 100)" in out
    # The service took a write after the swap: its probe row went through the API and is gone again.
    probe = m["write_probe"]
    assert checks(report)["service.write_probe"]["ok"], checks(report)["service.write_probe"]
    assert probe["acknowledged"] and probe["removed"] and probe["status"] == 201, probe
    assert f"the service writes again: POST {probe['url']} -> 201" in out
    assert f"probe row id {probe['id']} ({probe['transaction_id']}) removed" in out
    assert "sequences moved past the re-applied ids" in out or "sequences: none needed moving" in out
    assert m["data_dir"] == str(data_dir) and m["port"] == prod.db_port and Path(m["log"]).is_file()
    assert Path(m["log"]).parent == data_dir
    assert len(m["locks"]) == 2, "the lock of both stacks of the pair"
    assert FailoverLock(prod).holder() is None and FailoverLock(dr).holder() is None, "released at the end"
    kept = Path(m["damaged_kept"])
    assert kept.is_dir() and (kept / "PG_VERSION").is_file(), "the damaged data directory is kept, renamed"
    with connect(prod) as conn:  # the same endpoint, now the restored instance
        rows = dict(conn.execute("SELECT id, status FROM interface_exceptions WHERE id = ANY(%s)", (list(before),)))
        assert rows == before, "deleted rows are back and the damage's update is not replayed"
        assert conn.execute("SELECT retry_count FROM interface_exceptions WHERE id = %s", (changed,)).fetchone()[0] == 7
        found = conn.execute("SELECT count(*) FROM interface_exceptions WHERE id = ANY(%s)", (after_ids,)).fetchone()
        assert found[0] == len(after_ids)
        assert conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0] >= 2
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        probes = "SELECT count(*) FROM interface_exceptions WHERE transaction_id LIKE 'drtopo-write-probe-%'"
        assert conn.execute(probes).fetchone()[0] == 0, "the write probe left nothing behind"
    # The service writes again on the restored database, with ids after every re-applied one.
    newest = post(prod.service_url, "after-cutover")
    assert newest > max(after_ids)
    # dr's standby was rebuilt from the restored instance: it follows the new timeline and has the new row.
    with connect(prod) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    with connect(dr) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        wait_replayed(conn, lsn, 60)
        assert conn.execute("SELECT count(*) FROM interface_exceptions WHERE id = %s", (newest,)).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM interface_exceptions WHERE id = ANY(%s)", (list(before),)).fetchone()[
            0
        ] == len(before), "the standby holds the rows the damage deleted"
    archive = Path(prod.self_managed.archive_dir)
    assert any(name.endswith(".history") for name in m["wal_shipped"])
    assert all((archive / name).is_file() for name in m["wal_shipped"])
    # ... and through the source's own archive command into its WAL bucket too.
    in_bucket = wal.listing(store.s3_client(prod), prod.wal_bucket)
    assert set(m["wal_shipped"]) <= set(in_bucket), sorted(set(m["wal_shipped"]) - set(in_bucket))
    # The archive now continues on the new timeline, with no gap from the base backup through the fork.
    with connect(prod) as conn:
        wait_archived(conn)
    code, window = run_cli(restore.main, ["pitr", "--window", *stack_args(lab)], tmp_path / "w.json")
    assert code == 0 and checks(window)["WAL chain"]["ok"], window

    # Journalled step by step, closed at the end; a base backup of the new timeline went into the WAL bucket.
    assert [s["step"] for s in m["cutover_steps"]] == [str(s) for s in CUTOVER_PLAN] and m["resumed"] is False
    assert m["journal"].startswith(f"s3://{prod.config_bucket}/journals/cutover-prod.")
    made = m["base_backup_after"]
    assert made["start_wal"] in wal.read_archive(store.s3_client(prod), prod.wal_bucket).base_backups
    assert made["start_wal"][:8] != "00000001", "the new base backup is on the new timeline"
    assert checks(report)["WAL chain"]["ok"], checks(report)["WAL chain"]
    code, chain = run_cli(wal_command.main, ["check", *stack_args(lab)], tmp_path / "chain.json")
    assert code == 0, chain
    assert f"base backup of the new timeline: {made['folder']}" in out

    # Clean-up: the next steps name the command; a dry run first, the live data directory refused, then removal.
    scratch = Path(m["scratch_wal"])
    assert scratch.is_dir() and f"cleanup --stack prod {kept} {scratch} --dry-run" in out
    names = [str(kept), str(scratch)]
    code, dry = run_cli(restore.main, ["cleanup", *names, "--dry-run", *stack_args(lab)], tmp_path / "dry-clean.json")
    assert code == 0 and kept.is_dir() and scratch.is_dir(), dry
    assert set(dry["measured"]["cleanup"]) == set(names)
    capsys.readouterr()
    code, refused = run_cli(restore.main, ["cleanup", str(kept), str(data_dir), *stack_args(lab)], tmp_path / "r.json")
    assert code == 2 and refused == {} and kept.is_dir()
    assert f"{data_dir} is (or holds) the live data directory" in capsys.readouterr().err
    code, cleaned = run_cli(restore.main, ["cleanup", *names, *stack_args(lab)], tmp_path / "clean.json")
    assert code == 0 and not kept.exists() and not scratch.exists(), cleaned
    assert (data_dir / "PG_VERSION").is_file()
    assert post(prod.service_url, "after-cleanup") > newest, "the service writes after the clean-up"


def test_one_recovery_at_a_time_a_promote_during_a_cutover_and_a_cutover_during_a_promote_are_refused(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cutover holds the pair's lock as `held` takes it; promote refuses (exit 3), and a cutover refuses while a
    promote holds dr's lock, before it changes anything."""
    prod, dr = (load_outputs(lab.region(s).outputs_path, s) for s in ("prod", "dr"))
    capsys.readouterr()
    with held([prod, dr], "cutover", "prod"):
        code = promote.main([*stack_args(lab, "dr"), "--skip-consumer-group", "--json", str(tmp_path / "p.json")])
        assert code == 3
        assert "another failover holds the lock" in capsys.readouterr().err
    with connect(dr) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True, "dr was not promoted"
    assert FailoverLock(prod).holder() is None and FailoverLock(dr).holder() is None
    restores = set(Path(prod.self_managed.data_dir).parent.glob("pitr-*"))
    running = FailoverLock(dr)
    running.acquire("promote", "dr")
    try:
        with connect(prod) as conn:
            target = conn.execute("SELECT clock_timestamp()").fetchone()[0].isoformat()
        args = ["pitr", "--cutover", "--damage-xid", "812", "--time", target, *stack_args(lab)]
        code, report = run_cli(restore.main, args, tmp_path / "c.json")
        assert code == 3 and report == {}
        assert "promote of dr" in capsys.readouterr().err
        assert FailoverLock(prod).holder() is None, "the lock it took first was given back"
        assert set(Path(prod.self_managed.data_dir).parent.glob("pitr-*")) == restores, "nothing restored"
    finally:
        running.release()


def wait_writable(outputs: StackOutputs, timeout: float = 60) -> None:
    """Until the stack's database takes connections as a primary (a server just started by a swap)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(outputs) as conn:
                if conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{outputs.stack}'s database not writable within {timeout} s")
        time.sleep(0.2)


@pytest.mark.parametrize("step", ["reapply", "swap"], ids=["before-the-swap", "after-the-swap"])
def test_an_interrupted_cutover_older_than_the_limit_is_refused_until_restart(
    lab: Lab, prod: StackOutputs, step: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cutover dies right after `step`; its journal, made 30 h old, is refused (exit 3, naming it, nothing
    touched) until --restart: before the swap that removes the restored instance it left and cuts over anew; after the
    swap it cuts nothing over again and names what was left undone. Either way every row is back once."""
    with connect(prod) as conn:
        insert_rows(conn, "restart-before-", 60)
        before = dict(conn.execute("SELECT id, status FROM interface_exceptions").fetchall())
    target, xid = damage(prod)
    after_ids = [post(prod.service_url, f"restart-after-{i}") for i in range(5)]
    args = ["pitr", "--cutover", "--damage-xid", str(xid), "--time", target, *stack_args(lab)]
    with pytest.raises(Crash):
        run_restore(args, tmp_path / "crash.json", crash_after(step))
    s3, key = store.s3_client(prod), "journals/cutover-prod.json"
    journal = json.loads(s3.get_object(Bucket=prod.config_bucket, Key=key)["Body"].read())
    assert list(journal["steps"])[-1] == step
    restored_dir = Path(journal["steps"]["restore"]["result"]["details"]["data_dir"])
    assert restored_dir.is_dir() is (step != "swap"), "the swap renames it into the source's place"
    journal["started_at"] = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    s3.put_object(Bucket=prod.config_bucket, Key=key, Body=json.dumps(journal).encode(), **store.encryption_args(prod))

    capsys.readouterr()
    code, refused = run_restore(args, tmp_path / "stale.json")
    err = capsys.readouterr().err
    assert code == 3 and refused == {}, refused
    assert (
        f"refused: the interrupted cutover of prod started {journal['started_at']} (30.0 h ago, beyond "
        f"failover.journalMaxAgeHours 24; journal s3://{prod.config_bucket}/{key})"
    ) in err
    assert err.strip().endswith("then rerun with --restart")
    assert restored_dir.is_dir() is (step != "swap"), "refused before touching anything"
    assert FailoverLock(prod).holder() is None

    code, report = run_restore([*args, "--restart"], tmp_path / "restart.json")
    out = capsys.readouterr().out
    assert code == 0, report
    m = report["measured"]
    assert m["restarted"]["journal"] == f"s3://{prod.config_bucket}/{key}" and step in m["restarted"]["steps_done"]
    if step == "swap":
        assert "cutover_at" not in m and "restore" not in [s["step"] for s in m.get("cutover_steps", [])]
        assert "had swapped the restored instance in, so nothing is cut over again" in out
        assert "steps it left undone: writable, standby, base-backup" in out
        assert "left to do: check that the database takes writes" in out and "rebuild dr's standby" in out
        wait_writable(prod)
    else:
        assert m["restarted"]["removed"] == [str(restored_dir), f"{restored_dir}.wal"]
        assert m["resumed"] is False and [s["step"] for s in m["cutover_steps"]] == [str(s) for s in CUTOVER_PLAN]
        assert checks(report)["service.write_probe"]["ok"]
    assert s3.list_objects_v2(Bucket=prod.config_bucket, Prefix=key).get("KeyCount") == 0, "no journal left open"
    with connect(prod) as conn:
        rows = dict(conn.execute("SELECT id, status FROM interface_exceptions WHERE id = ANY(%s)", (list(before),)))
        assert rows == before, "every row as at T"
        later = conn.execute("SELECT count(*) FROM interface_exceptions WHERE id = ANY(%s)", (after_ids,)).fetchone()
        assert later[0] == len(after_ids)
        twice = "SELECT transaction_id FROM interface_exceptions GROUP BY 1 HAVING count(*) > 1"
        assert conn.execute(twice).fetchall() == [], "no row twice"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cutover"], "--cutover needs --damage-xid"),
        (["--damage-xid", "812"], "--damage-xid goes with --cutover"),
        (["--cutover", "--damage-xid", "812", "--rds", "--target-port", "6000"], "--target-dir/--target-port are"),
        (["--cutover", "--damage-xid", "812", "--target-instance", "x"], "--target-instance is for an RDS restore"),
        (["--cutover", "--damage-xid", "x1"], "'x1' is not a transaction id"),
    ],
    ids=["no-xid", "xid-alone", "rds-port", "self-managed-instance", "bad-xid"],
)
def test_cutover_bad_input_is_one_line_and_exit_2(
    lab: Lab, extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(load_outputs(lab.prod.outputs_path, "prod")) as conn:
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0].isoformat()
    capsys.readouterr()
    try:
        code, report = run_cli(restore.main, ["pitr", "--time", target, *extra, *stack_args(lab)], tmp_path / "c.json")
    except SystemExit as usage:  # flag errors stop in the parser, before a report exists
        code, report = int(usage.code or 0), {}
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and report == {}
    assert message in err[-1]


def test_rds_cutover_renames_the_damaged_instance_away_and_the_restored_one_into_its_name(
    lab: Lab, tmp_path: Path
) -> None:
    """The control-plane half on the emulator (its instances have no database to re-apply into): the dry run plans,
    the rename swap keeps the damaged instance under a new name with deletion protection and tags, and the restored
    instance answers to the service's identifier."""
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    rds = boto3.client("rds", region_name=outputs.region)
    source = rds.describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]
    target = datetime.now(UTC)
    while target <= source["InstanceCreateTime"] + timedelta(seconds=1):
        time.sleep(0.2)
        target = datetime.now(UTC)
    args = ["pitr", "--rds", "--cutover", "--damage-xid", "812", "--time", target.isoformat(), *stack_args(lab)]
    code, plan = run_cli(restore.main, [*args, "--dry-run"], tmp_path / "plan.json")
    assert code == 0, plan
    kept = kept_identifier(outputs.db_instance_id, target)
    assert f"rename {outputs.db_instance_id} -> {kept} (kept)" in checks(plan)["plan"]["detail"]
    restored_name = f"{outputs.db_instance_id}-restored"
    rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=outputs.db_instance_id, TargetDBInstanceIdentifier=restored_name, RestoreTime=target
    )
    try:
        swapped = rds_rename_swap(rds, outputs.db_instance_id, restored_name, target, Clock(quiet=True), 60)
        assert swapped["kept"] == kept
        names = {i["DBInstanceIdentifier"]: i for i in rds.describe_db_instances()["DBInstances"]}
        assert restored_name not in names and {kept, outputs.db_instance_id} <= set(names)
        assert names[outputs.db_instance_id]["DBInstanceArn"] == swapped["serving_arn"]
        assert names[kept]["DeletionProtection"] is True
        tags = {
            t["Key"]: t["Value"]
            for t in rds.list_tags_for_resource(ResourceName=names[kept]["DBInstanceArn"])["TagList"]
        }
        assert tags["drtopo:replaced-by"] == restored_name
    finally:
        lab.reset_postgres()  # reseeds the emulator with the stack's own instance
