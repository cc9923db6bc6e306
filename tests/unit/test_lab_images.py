"""The lab's image plan (lab/images.py): each image's key follows its inputs, so a warm set-up builds nothing and a
changed input rebuilds only what depends on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import images, kube_store


def test_digest_is_the_sha256_of_the_length_prefixed_parts() -> None:
    # Written out with coreutils: `printf '2:ab1:c' | sha256sum | cut -c1-12` and likewise for the others.
    assert images.digest(["ab", "c"]) == "430fb1b4ac43"
    assert images.digest(["a", "bc"]) == "5310a5878878"  # the same bytes, other boundaries: another key
    assert images.digest([b"x"]) == images.digest(["x"]) == "553f121d1ece"


def test_every_image_has_a_local_ref_and_an_archive_named_by_its_key() -> None:
    plan = images.plan()
    assert set(plan) == set(images.NAMES)
    for name, image in plan.items():
        assert image.ref == f"{images.REGISTRY}/{name}:{image.key}"
        assert image.archive.name == f"{name}-{image.key}.tar"
        assert image.archive.parent == images.image_dir()


def test_a_changed_copied_file_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("a = 1\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    files = images.tree_files(tmp_path, ["pkg"])
    assert [p.name for p in files] == ["a.py"]
    before = images.digest(images.files_digest(tmp_path, files))
    (tmp_path / "pkg" / "a.py").write_text("a = 2\n")
    assert images.digest(images.files_digest(tmp_path, files)) != before


def test_the_backup_image_builds_from_the_lab_base_with_debians_client_tools() -> None:
    plan = images.plan()
    args = images.backup_build_args(plan["base"])
    assert args["BASE_IMAGE"] == plan["base"].ref
    assert args["PG_APT"] == "debian" and args["PG_MAJOR"] == images.DEBIAN_PG_MAJOR
    dockerfile = (images.REPO_DIR / "Dockerfile").read_text()
    for name in ("BASE_IMAGE", "PG_APT", "KUBECTL_BASE_URL", "RDS_CA_BUNDLE_URL"):
        assert f"ARG {name}=" in dockerfile, name
    assert "FROM ${BASE_IMAGE}" in dockerfile


def test_a_new_build_keeps_the_newest_other_versions_for_checkouts_sharing_the_cache(tmp_path: Path) -> None:
    paths = []
    for age, name in enumerate(["e", "d", "c", "b", "a"]):  # "a" is the oldest
        path = tmp_path / f"backup-{name}.tar"
        path.write_text(name)
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
        paths.append(path)
    current = tmp_path / "backup-new.tar"
    current.write_text("new")
    stale = kube_store.stale_versions([*paths, current], current, keep=3)
    # The current one and the two newest others stay; a worktree's lab that imports "e" or "d" still finds it.
    assert [p.name for p in stale] == ["backup-c.tar", "backup-b.tar", "backup-a.tar"]
    assert kube_store.stale_versions([current], current, keep=1) == []
