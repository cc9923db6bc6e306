"""What `backup config` collects: every stack file byte for byte and the MirrorMaker 2 properties the stack runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from drtopo.backup.config import collect
from drtopo.mm2_properties import render_mm2_properties
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput
from drtopo.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def _outputs() -> StackOutputs:
    return StackOutputs.model_construct(
        stack="dr", kafka_bootstrap="127.0.0.1:9092", peer_kafka_bootstrap="127.0.0.1:9093", namespace="no-such-ns"
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


def test_missing_stack_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"Pulumi.dr.yaml is not in .*DRTOPO_PROJECT_DIR"):
        collect("dr", _outputs(), tmp_path)
