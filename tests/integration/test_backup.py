"""`scripts.backup` on the lab: dumps land in the emulator's dump bucket under the right tiers, encrypted with the
stack's KMS key and carrying their SHA-256; verify catches corrupt and truncated objects; list flags gaps; the
configuration backup comes back byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import boto3
import pytest

from drtopo.database.connect import connect
from drtopo.database.pg_tools import table_counts
from drtopo.outputs import load_outputs
from lab import kube, kube_workloads
from lab.core import Lab
from scripts import backup, restore
from tests.integration.backup_helpers import checks, empty_bucket, insert_rows, run_cli, stack_args

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def dumped(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Lab, dict]:
    """An empty dump bucket, then one dump taken on Sunday 1 November 2026 (daily, weekly, monthly)."""
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    empty_bucket(outputs.region, outputs.dump_bucket)
    with connect(outputs) as conn:
        insert_rows(conn, f"bk-{uuid.uuid4()}-", 120)
        conn.execute(
            "INSERT INTO retry_attempts (exception_id, attempt_number)"
            " SELECT id, 1 FROM interface_exceptions ORDER BY id DESC LIMIT 7 ON CONFLICT DO NOTHING"
        )
        counts = table_counts(conn)
    report_path = tmp_path_factory.mktemp("dumped") / "run.json"
    code, report = run_cli(backup.main, ["run", *stack_args(lab), "--date", "2026-11-01"], report_path)
    assert code == 0, report
    report["counts_at_dump"] = counts
    return lab, report


def test_run_stores_the_dump_under_every_tier_of_its_date_with_kms_and_sha256(dumped: tuple[Lab, dict]) -> None:
    lab, report = dumped
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    keys = report["measured"]["keys"]
    assert [k.split("/")[0] for k in keys] == ["daily", "weekly", "monthly"]
    s3 = boto3.client("s3", region_name=outputs.region)
    bodies = set()
    for key in keys:
        obj = s3.get_object(Bucket=outputs.dump_bucket, Key=key)
        body = obj["Body"].read()
        bodies.add(body)
        assert obj["ServerSideEncryption"] == "aws:kms"
        assert obj["SSEKMSKeyId"] == outputs.kms_key_arn
        assert obj["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert obj["Metadata"]["source"] == f"prod/{outputs.db_instance_id}"
        assert "row-counts" not in obj["Metadata"], "row counts live in the manifest (metadata is limited to 2 KB)"
        manifest = json.loads(s3.get_object(Bucket=outputs.dump_bucket, Key=f"{key}.manifest.json")["Body"].read())
        assert manifest["row_counts"] == report["counts_at_dump"]
        assert manifest["sha256"] == obj["Metadata"]["sha256"] and manifest["bytes"] == len(body)
        assert body.startswith(b"PGDMP")  # custom format
    assert len(bodies) == 1


def test_a_weekday_goes_to_daily_only(dumped: tuple[Lab, dict], tmp_path: Path) -> None:
    lab, _ = dumped
    code, report = run_cli(backup.main, ["run", *stack_args(lab), "--date", "2026-11-25"], tmp_path / "r.json")
    assert code == 0
    assert [k.split("/")[0] for k in report["measured"]["keys"]] == ["daily"]


def test_verify_latest_with_a_restore_test_compares_counts(dumped: tuple[Lab, dict], tmp_path: Path) -> None:
    lab, dump = dumped
    code, report = run_cli(backup.main, ["verify", "--latest", "--restore-test", *stack_args(lab)], tmp_path / "v.json")
    assert code == 0, report
    found = checks(report)
    assert found["sha256"]["ok"] and found["every block readable"]["ok"]
    for table in ("public.interface_exceptions", "public.retry_attempts"):
        assert found[f"rows {table}"]["value"] == dump["counts_at_dump"][table] > 0
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    with connect(outputs, dbname="postgres") as conn:
        leftovers = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'drtopo_verify_%'").fetchall()
    assert leftovers == []


@pytest.mark.parametrize("fix_digest", [False, True], ids=["truncated", "truncated-with-matching-sha256"])
def test_verify_fails_loudly_on_a_damaged_object(
    dumped: tuple[Lab, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str], fix_digest: bool
) -> None:
    lab, report = dumped
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    s3 = boto3.client("s3", region_name=outputs.region)
    obj = s3.get_object(Bucket=outputs.dump_bucket, Key=report["measured"]["keys"][0])
    key = f"damaged/{uuid.uuid4()}.dump"  # outside the tier layout, so `list` never sees it
    body, metadata = obj["Body"].read(), obj["Metadata"]
    damaged = body[: len(body) * 2 // 3]
    if fix_digest:  # as if the upload itself had been cut short: only reading every block can tell
        metadata = {**metadata, "sha256": hashlib.sha256(damaged).hexdigest()}
    s3.put_object(Bucket=outputs.dump_bucket, Key=key, Body=damaged, Metadata=metadata)
    capsys.readouterr()
    code, result = run_cli(backup.main, ["verify", key, *stack_args(lab)], tmp_path / "v.json")
    assert code == 1
    assert checks(result)["sha256"]["ok"] is fix_digest
    assert checks(result)["pg_restore"]["ok"] is False
    assert f"CORRUPT: dump {key}" in capsys.readouterr().err


def test_backup_runs_off_the_standby_and_restore_tests_on_a_writable_server(lab: Lab, tmp_path: Path) -> None:
    dr = stack_args(lab, "dr")
    code, report = run_cli(backup.main, ["run", *dr], tmp_path / "run.json")
    assert code == 0, report
    key = report["measured"]["keys"][0]
    code, report = run_cli(backup.main, ["verify", key, "--restore-test", *dr], tmp_path / "v.json")
    assert code == 1
    assert "read-only standby; pass --scratch-dsn" in checks(report)["restore test"]["detail"]
    scratch = ["--scratch-dsn", lab.prod.postgres.conninfo()]
    code, report = run_cli(backup.main, ["verify", key, "--restore-test", *scratch, *dr], tmp_path / "v.json")
    assert code == 0, report["checks"]


def test_verify_of_a_missing_key_is_bad_input(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli(backup.main, ["verify", "daily/nope.dump", *stack_args(lab)], tmp_path / "v.json")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dump 'daily/nope.dump' is not in bucket") and "\n" not in err


def test_list_shows_tiers_and_flags_a_missing_daily(dumped: tuple[Lab, dict], tmp_path: Path) -> None:
    lab, _ = dumped
    assert run_cli(backup.main, ["run", *stack_args(lab), "--date", "2026-11-03"], tmp_path / "r.json")[0] == 0
    code, report = run_cli(backup.main, ["list", *stack_args(lab), "--as-of", "2026-11-04"], tmp_path / "l.json")
    assert code == 1
    found = checks(report)
    daily_days = {item["key"].split("/")[2] for item in report["measured"]["backups"]["daily"]}
    assert {"2026-11-01", "2026-11-03"} <= daily_days and "2026-11-02" not in daily_days
    assert found["tier weekly"]["value"] == 1
    assert found["tier monthly"]["value"] == 1 and found["tier yearly"]["value"] == 0
    assert found["gap daily"]["detail"] == "no daily backup for 2026-11-02"
    assert run_cli(backup.main, ["run", *stack_args(lab), "--date", "2026-11-02"], tmp_path / "r.json")[0] == 0
    code, report = run_cli(backup.main, ["list", *stack_args(lab), "--as-of", "2026-11-04"], tmp_path / "l.json")
    assert code == 0, report["checks"]


def test_config_backup_restores_byte_for_byte(lab: Lab, tmp_path: Path) -> None:
    project = lab.project_dir
    originals = {p.name: p.read_bytes() for p in project.glob("Pulumi*.yaml")}
    assert "Pulumi.prod.yaml" in originals
    try:
        code, report = run_cli(backup.main, ["config", *stack_args(lab)], tmp_path / "b.json")
        assert code == 0, report
        found = checks(report)
        # The lab's cluster holds the stack's objects: they are exported beside the files (Secrets: the declared
        # inventory, never a value).
        assert found["kubernetes objects"]["outcome"] == "pass", found["kubernetes objects"]
        exported = [name for name in found if name.startswith("uploaded kubernetes/")]
        for kind in ("namespace", "deployments.apps", "configmaps"):
            assert any(name.endswith(f"/{kind}.yaml") for name in exported), (kind, exported)
        assert any(name.endswith("/secret-inventory.json") for name in exported), exported
        # + the rendered MirrorMaker properties + each exported kind
        assert report["measured"]["files"] == len(originals) + 1 + len(exported)
        for name in originals:
            (project / name).unlink()
        code, report = run_cli(restore.main, ["config", *stack_args(lab)], tmp_path / "r.json")
        assert code == 0, report
        restored = checks(report)
        assert restored["kubernetes objects"]["outcome"] == "pass", restored["kubernetes objects"]
        assert restored["kubernetes objects"]["detail"].startswith("applied "), restored["kubernetes objects"]
        # The database Secret came from the secret store (the lab's password), not from the backup.
        assert restored[f"secret {lab.prod.settings.kubernetes.database_secret}"]["outcome"] == "pass", restored
        assert {p.name: p.read_bytes() for p in project.glob("Pulumi*.yaml")} == originals
        mirror = project / "mirrormaker" / "prod.properties"
        assert b"rendered by drtopo" in mirror.read_bytes()
        # A file edited since the backup is not overwritten silently.
        (project / "Pulumi.prod.yaml").write_bytes(originals["Pulumi.prod.yaml"] + b"# edited\n")
        assert run_cli(restore.main, ["config", *stack_args(lab)], tmp_path / "r.json")[0] == 3
        code, _ = run_cli(restore.main, ["config", *stack_args(lab), "--force"], tmp_path / "r.json")
        assert code == 0
        assert (project / "Pulumi.prod.yaml").read_bytes() == originals["Pulumi.prod.yaml"]
    finally:
        for name, content in originals.items():
            (project / name).write_bytes(content)
        shutil.rmtree(project / "mirrormaker", ignore_errors=True)


def test_restore_secrets_writes_the_declared_secret_from_the_secret_store(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, settings = lab.prod.namespace, lab.prod.settings
    name = settings.kubernetes.database_secret
    (source,) = [s for s in settings.secrets if s.kubernetes_secret == name]
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    stored = boto3.client("secretsmanager", region_name=outputs.region).get_secret_value(
        SecretId=source.secrets_manager_secret
    )
    expected = json.loads(stored["SecretString"])[source.json_key]
    code, report = run_cli(restore.main, ["secrets", *stack_args(lab), "--dry-run"], tmp_path / "d.json")
    printed = capsys.readouterr().out
    assert code == 0, report
    assert f"would write Secret {name} in {namespace} (keys password)" in printed and expected not in printed
    kube.kubectl(lab.root, "delete", "secret", name, "-n", namespace, "--wait=true")
    try:
        code, report = run_cli(restore.main, ["secrets", *stack_args(lab)], tmp_path / "s.json")
        assert code == 0, report
        assert checks(report)[f"secret {name}"]["outcome"] == "pass", report
        secret = kube_workloads.get(lab.root, "secret", name, namespace)
        assert secret is not None and secret["type"] == "Opaque"
        assert base64.b64decode(secret["data"]["password"]).decode() == expected == lab.password
        annotations = secret["metadata"].get("annotations", {})
        assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations, "a copy of the value"
    finally:
        if kube_workloads.get(lab.root, "secret", name, namespace) is None:
            lab.apply_workloads()


def test_restore_test_checks_a_sample_against_the_source_and_records_where_list_sees_it(
    lab: Lab, tmp_path: Path
) -> None:
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    with connect(outputs) as conn:
        insert_rows(conn, f"rt-{uuid.uuid4()}-", 40)
    code, made = run_cli(backup.main, ["run", *stack_args(lab)], tmp_path / "run.json")
    assert code == 0, made
    with connect(outputs) as conn:
        total = conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0]
        # A change made the way the service makes one (updated_at moves) is not a difference; a row deleted since
        # the dump neither.
        conn.execute(
            "UPDATE interface_exceptions SET status = 'CLOSED', updated_at = clock_timestamp()"
            " WHERE id = (SELECT min(id) FROM interface_exceptions)"
        )
        conn.execute("DELETE FROM interface_exceptions WHERE id = (SELECT max(id) FROM interface_exceptions)")
    args = ["restore-test", "--sample", str(total), *stack_args(lab)]
    code, report = run_cli(backup.main, args, tmp_path / "t.json")
    assert code == 0, report["checks"]
    sample = checks(report)["sample interface_exceptions"]
    assert sample["ok"] and "1 changed and 1 deleted since the dump" in sample["detail"]
    assert checks(report)["sample retry_attempts"]["outcome"] == "skip"
    record = report["measured"]["restore_test"]
    # The record names the dump just made (the newest), the source and the sample asked for.
    assert record["ok"] is True and record["key"] in made["measured"]["keys"]
    assert (record["source"], record["sample_rows"]) == (f"prod/{outputs.db_instance_id}", total)
    code, listing = run_cli(backup.main, ["list", *stack_args(lab)], tmp_path / "l.json")
    assert listing["measured"]["restore_test"] == record
    assert checks(listing)["restore test"]["ok"]

    # A row that differs from the source without a later change is damage the sample finds.
    with connect(outputs) as conn:
        conn.execute(
            "UPDATE interface_exceptions SET exception_reason = 'silently altered'"
            " WHERE id = (SELECT min(id) FROM interface_exceptions WHERE status <> 'CLOSED')"
        )
    code, report = run_cli(backup.main, args, tmp_path / "t.json")
    assert code == 1
    assert "differing without a later change" in checks(report)["sample interface_exceptions"]["detail"]
    try:
        code, listing = run_cli(backup.main, ["list", *stack_args(lab)], tmp_path / "l.json")
        found = checks(listing)["restore test"]
        assert code == 1 and found["ok"] is False and "a check failed" in found["detail"]
    finally:  # later tests list the bucket: leave no failed record behind
        s3 = boto3.client("s3", region_name=outputs.region)
        for obj in s3.list_objects_v2(Bucket=outputs.dump_bucket, Prefix=f"daily/{outputs.db_name}/restore-tests/").get(
            "Contents", []
        ):
            s3.delete_object(Bucket=outputs.dump_bucket, Key=obj["Key"])
