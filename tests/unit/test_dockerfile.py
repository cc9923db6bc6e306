"""The backup image's Dockerfile agrees with what the CronJobs and the scripts need.

No image is built here (no Docker daemon in CI); instead the Dockerfile is read and checked against the code:
every third-party package that `scripts.backup` can import is installed at its pinned version, the user is the
non-root uid the CronJobs run as, the CA bundle is where the jobs point libpq, and the copied folders exist.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from components.backup_jobs import BACKUP_UID, RDS_CA_BUNDLE
from drtopo.database import pg_tools
from drtopo.settings import POSTGRES_MAJORS, Database, Kubernetes

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PROJECT_PACKAGES = ("scripts", "drtopo", "components")
# Import name -> the requirements.txt distribution that provides it.
DISTRIBUTIONS = {
    "boto3": "boto3",
    "botocore": "boto3",
    "confluent_kafka": "confluent-kafka",
    "psycopg": "psycopg[binary]",
    "pydantic": "pydantic",
    "yaml": "PyYAML",
}


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(entry: str) -> set[str]:
    """Top-level names of the non-project, non-stdlib modules reachable from `entry` through project imports."""
    seen: set[str] = set()
    found: set[str] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        path = module_path(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT_PACKAGES:
                    pending.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


def installed_distributions() -> list[str]:
    match = re.search(r"grep -E '\^\((?P<names>[^)]+)\)=='", DOCKERFILE)
    assert match, "the Dockerfile no longer selects packages from requirements.txt"
    return [name.replace("\\", "") for name in match["names"].split("|")]


def test_every_package_the_backup_scripts_import_is_installed_at_its_pin() -> None:
    imported = third_party_imports("scripts.backup")
    assert {"boto3", "psycopg", "pydantic", "yaml"} <= imported
    assert not any(name.startswith("pulumi") for name in imported), "the backup image carries no Pulumi code"
    unknown = imported - set(DISTRIBUTIONS)
    assert not unknown, f"scripts.backup imports {sorted(unknown)}, which the backup image does not install"
    installed = installed_distributions()
    assert {DISTRIBUTIONS[name] for name in imported} <= set(installed)
    pinned = {line.split("==")[0] for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    assert set(installed) <= pinned


def test_every_package_the_scheduled_readiness_check_imports_is_installed_at_its_pin() -> None:
    # The readiness CronJob runs `scripts.status` in this image (components/readiness_check.py).
    imported = third_party_imports("scripts.status")
    assert "confluent_kafka" in imported and not any(name.startswith("pulumi") for name in imported)
    unknown = imported - set(DISTRIBUTIONS)
    assert not unknown, f"scripts.status imports {sorted(unknown)}, which the backup image does not install"
    assert {DISTRIBUTIONS[name] for name in imported} <= set(installed_distributions())


def test_image_runs_as_the_non_root_uid_the_cron_jobs_use() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert users == [f"{BACKUP_UID}:{BACKUP_UID}"] and BACKUP_UID > 0
    assert f"--uid {BACKUP_UID}" in DOCKERFILE


def test_the_client_tools_follow_the_pg_major_build_arg_and_land_where_the_code_looks() -> None:
    (default,) = re.findall(r"^ARG PG_MAJOR=(\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert default == Database().major and default in POSTGRES_MAJORS
    assert Kubernetes.model_fields["backup_image"].default.endswith(f"-pg{default}")
    assert '"postgresql-client-${PG_MAJOR}"' in DOCKERFILE
    assert "postgresql-client-1" not in DOCKERFILE, "a major is pinned in the Dockerfile"
    assert f'"{pg_tools.INSTALL_ROOT}/${{PG_MAJOR}}/bin/pg_dump" --version' in DOCKERFILE


def test_kubectl_and_ca_bundle_are_where_the_code_looks() -> None:
    assert "/usr/local/bin/kubectl" in DOCKERFILE and "sha256sum -c" in DOCKERFILE
    assert f"curl -fsSLo {RDS_CA_BUNDLE} " in DOCKERFILE


def test_copied_folders_exist_and_are_not_ignored() -> None:
    copied = re.findall(r"^COPY\s+(\S+)\s", DOCKERFILE, flags=re.MULTILINE)
    assert copied == ["requirements.txt", "drtopo/", "scripts/"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for path in copied:
        assert (ROOT / path).exists()
        assert f"!{path}" in ignore
    assert (ROOT / "scripts" / "backup.py").is_file()
