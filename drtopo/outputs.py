"""Stack outputs: the one schema of the JSON `pulumi stack output --json --show-secrets` prints, and its loader.

`StackOutputs` is the schema. The Pulumi program (`components/topology.py`) and the lab (`.lab/outputs/<stack>.json`)
both build their document with `outputs_document`, which fills what the settings decide and refuses a key set that
differs from the schema, so the three can no longer drift. `selfManaged` is present only where PostgreSQL is run by
us (the lab, self-hosted) rather than by RDS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from drtopo import naming
from drtopo.report import BadInput
from drtopo.settings import Objectives, Settings


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
    db_kms_key_arn: str | None = None
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
    # The failover record's URL: whichever region Route53 answers.
    service_url: str
    # This region's own service endpoint (`drtopo:dns.endpoint`), beside the record: one region verified by itself
    # (absent from outputs written before it).
    region_service_url: str | None = None
    namespace: str
    objectives: Objectives | None = None
    # The SNS topic the tools tell incidents to, in this stack's region (absent from outputs written before it).
    incident_topic_arn: str | None = None
    self_managed: SelfManagedPostgres | None = None


OUTPUT_KEYS: frozenset[str] = frozenset(f.alias or n for n, f in StackOutputs.model_fields.items())
REQUIRED_KEYS: frozenset[str] = frozenset(f.alias or n for n, f in StackOutputs.model_fields.items() if f.is_required())


# The backup buckets by purpose (as BackupStorage and the lab name them) and the output key of each.
BUCKET_KEYS = {"dumps": "dumpBucket", "wal": "walBucket", "config": "configBucket", "audit": "auditBucket"}


def bucket_outputs(buckets: Mapping[str, Any]) -> dict[str, Any]:
    """The bucket outputs of a stack from its buckets by purpose."""
    return {key: buckets[purpose] for purpose, key in BUCKET_KEYS.items()}


def region_service_url(settings: Settings) -> str:
    """This region's own endpoint, as its health check reaches it: scheme and port from `drtopo:dns` (pure)."""
    dns = settings.dns
    scheme = dns.health_check_type.lower()
    default_port = 443 if scheme == "https" else 80
    port = "" if dns.health_check_port == default_port else f":{dns.health_check_port}"
    return f"{scheme}://{dns.endpoint}{port}"


def settings_outputs(settings: Settings) -> dict[str, Any]:
    """The outputs a stack's settings decide on their own (the rest come from the resources the stack holds)."""
    return {
        "stack": settings.stack,
        "role": settings.role.value,
        "region": settings.region,
        "peerRegion": settings.peer_region,
        "peerStack": settings.peer_stack,
        "dbName": settings.database.name,
        "dbUser": settings.database.username,
        "recordName": settings.dns.record_name,
        "setIdentifier": naming.set_identifier(settings),
        "failover": settings.role.failover,
        "kafkaBootstrap": settings.kafka.bootstrap_servers,
        "peerKafkaBootstrap": settings.kafka.peer_bootstrap_servers,
        "serviceUrl": f"https://{settings.dns.record_name}",
        "regionServiceUrl": region_service_url(settings),
        "namespace": settings.kubernetes.namespace,
        "objectives": settings.objectives.model_dump(by_alias=True),
    }


def outputs_document(settings: Settings, resources: dict[str, Any]) -> dict[str, Any]:
    """The outputs document: what the settings decide, overlaid with `resources`; exactly the schema's keys."""
    document = {**settings_outputs(settings), **resources}
    unknown, missing = sorted(document.keys() - OUTPUT_KEYS), sorted(REQUIRED_KEYS - document.keys())
    if unknown or missing:
        raise ValueError(f"stack outputs differ from StackOutputs: unknown keys {unknown}, missing keys {missing}")
    return document


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


def peer_outputs(path: Path | None, peer_stack: str) -> StackOutputs | None:
    """The peer's outputs when they can be read (beside this stack's file, or from the pulumi CLI), else None."""
    try:
        return load_outputs(peer_outputs_path(path, peer_stack), peer_stack)
    except BadInput:
        return None
