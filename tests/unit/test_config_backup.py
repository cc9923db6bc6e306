"""What `backup config` collects: every stack file byte for byte, the MirrorMaker 2 properties the stack runs, and
Kubernetes objects without the fields the server owns; a dry run returns what it would upload and prints nothing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from drtopo.backup.config import backup, collect
from drtopo.backup.kube_export import SERVER_FIELDS, without_server_fields
from drtopo.mm2_properties import render_mm2_properties
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput, Clock, Report
from drtopo.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def _outputs() -> StackOutputs:
    return StackOutputs.model_construct(
        stack="dr",
        kafka_bootstrap="127.0.0.1:9092",
        peer_kafka_bootstrap="127.0.0.1:9093",
        namespace="no-such-ns",
        config_bucket="dr-config",
    )


def test_stack_files_and_rendered_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl: Kubernetes is skipped, and says so
    for path in REPO.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    files, outcome, note = collect("dr", _outputs(), tmp_path)
    by_name = {f.name: f for f in files}
    for path in tmp_path.glob("Pulumi*.yaml"):
        assert by_name[path.name].content == path.read_bytes()
    expected = render_mm2_properties(
        load_settings("dr", tmp_path), bootstrap_servers="127.0.0.1:9092", peer_bootstrap_servers="127.0.0.1:9093"
    )
    assert by_name["mirrormaker/dr.properties"].content == expected.encode()
    assert outcome == "skip" and note.startswith("not exported: no reachable cluster (no kubectl on PATH)")
    assert not any(name.startswith("kubernetes/") for name in by_name)


def test_a_dry_run_returns_each_upload_and_prints_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl
    for path in REPO.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    report = Report()
    planned = backup("dr", _outputs(), report, Clock(quiet=True), dry_run=True, project_dir=tmp_path)
    files, _, _ = collect("dr", _outputs(), tmp_path)
    assert len(planned) == len(files) > 0
    for p, f in zip(planned, files, strict=True):
        line = rf"would upload s3://dr-config/config/dr/\d{{8}}T\d{{6}}Z/{re.escape(f.name)} \({len(f.content)} bytes\)"
        assert re.fullmatch(line, str(p)), str(p)
    assert [c.name for c in report.checks] == ["kubernetes objects", "plan"]
    assert capsys.readouterr() == ("", "")


def test_missing_stack_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"Pulumi.dr.yaml is not in .*DRTOPO_PROJECT_DIR"):
        collect("dr", _outputs(), tmp_path)


def test_exported_objects_lose_what_the_server_owns_and_keep_the_rest() -> None:
    item = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "drtopo-backup-config",
            "namespace": "biopro-prod",
            "labels": {"app.kubernetes.io/part-of": "drtopo"},
            "resourceVersion": "431",
            "uid": "0b6c7f1e-1111-2222-3333-444455556666",
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "managedFields": [{"manager": "drtopo-lab", "operation": "Apply"}],
            "generation": 1,
            "selfLink": "/api/v1/namespaces/biopro-prod/configmaps/drtopo-backup-config",
        },
        "data": {"outputs.json": "{}"},
        "status": {"phase": "whatever"},
    }
    listing = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "500"}, "items": [item]}
    stripped = without_server_fields(listing)
    assert stripped == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "drtopo-backup-config",
                    "namespace": "biopro-prod",
                    "labels": {"app.kubernetes.io/part-of": "drtopo"},
                },
                "data": {"outputs.json": "{}"},
            }
        ],
    }
    assert set(SERVER_FIELDS) <= set(item["metadata"]), "the input is left as it was"
