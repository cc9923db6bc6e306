"""Stack outputs: the JSON `pulumi stack output --json --show-secrets` prints, typed, as every script reads it.

The Pulumi program exports these keys (`__main__.py`) and the lab writes the same keys to `.lab/outputs/<stack>.json`;
`selfManaged` is present only where PostgreSQL is run by us (the lab, self-hosted) rather than by RDS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from drtopo.report import BadInput


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SelfManagedPostgres(_Model):
    """Where a self-managed PostgreSQL keeps its files, for promotion, pg_rewind and point-in-time restore."""

    bin_dir: str
    data_dir: str
    archive_dir: str
    base_backup_dir: str
    os_user: str = "postgres"


class StackOutputs(_Model):
    stack: str
    role: str
    region: str
    peer_region: str
    peer_stack: str
    db_instance_id: str
    db_arn: str
    db_address: str
    db_port: int
    db_name: str
    db_user: str
    db_password_secret_arn: str | None = None
    kms_key_arn: str
    dump_bucket: str
    wal_bucket: str
    config_bucket: str
    audit_bucket: str
    hosted_zone_id: str
    record_name: str
    set_identifier: str
    health_check_id: str
    failover: str
    kafka_bootstrap: str
    peer_kafka_bootstrap: str
    service_url: str
    namespace: str
    self_managed: SelfManagedPostgres | None = None


def _from_pulumi(stack: str) -> dict:
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise BadInput(
            f"--outputs is missing and no pulumi CLI is on PATH to read stack {stack!r}; pass --outputs FILE"
        )
    proc = subprocess.run(
        [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BadInput(f"pulumi stack output --stack {stack} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def load_outputs(path: Path | None, stack: str) -> StackOutputs:
    """Read a stack's outputs from `path` (or the pulumi CLI when None); bad files are BadInput."""
    if path is None:
        data = _from_pulumi(stack)
        source = f"pulumi stack {stack}"
    else:
        source = str(path)
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BadInput(
                f"outputs file {source} does not exist; expected the JSON of `pulumi stack output --json`"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInput(f"outputs file {source} is unreadable ({exc}); expected JSON") from None
    if not isinstance(data, dict):
        raise BadInput(f"outputs file {source} holds {type(data).__name__}; expected a JSON object")
    try:
        outputs = StackOutputs.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(to_camel(str(p)) for p in err["loc"])
        if err["type"] == "missing":
            raise BadInput(
                f"outputs {source}: key {key!r} is missing; expected every key the program exports"
            ) from None
        raise BadInput(f"outputs {source}: key {key!r}: {err['msg']}") from None
    if outputs.stack != stack:
        raise BadInput(f"outputs {source} are for stack {outputs.stack!r}; expected {stack!r}")
    return outputs


def peer_outputs_path(path: Path | None, peer_stack: str) -> Path | None:
    """The peer stack's outputs file: `<peer>.json` beside this stack's file, when there is one."""
    if path is None:
        return None
    return Path(path).with_name(f"{peer_stack}.json")
