"""The namespace's Secrets come back from the secret store, never from a backup.

The program declares which key of which Kubernetes Secret comes from which Secrets Manager secret (`drtopo:secrets`,
drtopo/settings.py SecretSource). That declaration is the Secret inventory the configuration export records (no
listing: listing Secrets returns their values, and the export's account may not). `restore secrets` (and `restore
config`, before the workloads) reads each value from Secrets Manager in the stack's own region, the region the
restore runs in, and writes the Secrets by server-side apply: values go to kubectl on stdin, never in argv, and no
last-applied annotation keeps a copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from drtopo.aws import stack_client
from drtopo.backup import kube_export
from drtopo.errors import one_line
from drtopo.outputs import StackOutputs
from drtopo.report import Report
from drtopo.settings import SecretSource, Settings

INVENTORY_FILE = "secret-inventory.json"
FIELD_MANAGER = "drtopo-restore-secrets"
SOURCE_ANNOTATION = "drtopo.biopro.com/secrets-manager-secrets"
LABELS = {"app.kubernetes.io/part-of": "drtopo", "app.kubernetes.io/managed-by": "drtopo-restore-secrets"}


def inventory(sources: Sequence[SecretSource]) -> dict[str, Any]:
    """The Secret inventory: each Kubernetes Secret's keys and where each value comes from (pure, no value)."""
    secrets: dict[str, dict[str, dict[str, str | None]]] = {}
    for s in sources:
        secrets.setdefault(s.kubernetes_secret, {})[s.key] = {
            "secretsManagerSecret": s.secrets_manager_secret,
            "jsonKey": s.json_key,
        }
    return {"declaredIn": "drtopo:secrets", "values": "none: restored from Secrets Manager", "secrets": secrets}


def inventory_file(namespace: str, sources: Sequence[SecretSource]) -> tuple[str, bytes]:
    body = json.dumps(inventory(sources), indent=2, sort_keys=True).encode()
    return f"kubernetes/{namespace}/{INVENTORY_FILE}", body


def inventory_note(sources: Sequence[SecretSource]) -> str:
    """How the export's message states the Secrets (pure)."""
    if not sources:
        return "Secrets: not read, and drtopo:secrets declares none"
    by_secret = inventory(sources)["secrets"]
    listed = ", ".join(f"{name} ({', '.join(sorted(keys))})" for name, keys in sorted(by_secret.items()))
    return f"Secrets: not read; inventory from drtopo:secrets: {listed}"


def secret_documents(namespace: str, sources: Sequence[SecretSource], values: dict[tuple[str, str], str]) -> list[dict]:
    """One Opaque Secret per declared Kubernetes Secret holding its declared keys (pure)."""
    grouped: dict[str, list[SecretSource]] = {}
    for s in sources:
        grouped.setdefault(s.kubernetes_secret, []).append(s)
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(LABELS),
                "annotations": {SOURCE_ANNOTATION: ",".join(sorted({s.secrets_manager_secret for s in keys}))},
            },
            "type": "Opaque",
            "stringData": {s.key: values[(name, s.key)] for s in keys},
        }
        for name, keys in sorted(grouped.items())
    ]


def value_of(secret_string: str, source: SecretSource) -> str:
    """The declared value inside a SecretString: the whole string, or one field of its JSON (pure)."""
    if source.json_key is None:
        return secret_string
    try:
        document = json.loads(secret_string)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get(source.json_key), str):
        raise KeyError(f"has no string field {source.json_key!r}")
    return str(document[source.json_key])


@dataclass(frozen=True)
class Read:
    values: dict[tuple[str, str], str]
    failures: dict[tuple[str, str], str]


def read_values(client: Any, sources: Sequence[SecretSource]) -> Read:
    values: dict[tuple[str, str], str] = {}
    failures: dict[tuple[str, str], str] = {}
    cache: dict[str, str] = {}
    for s in sources:
        where = (s.kubernetes_secret, s.key)
        try:
            if s.secrets_manager_secret not in cache:
                answer = client.get_secret_value(SecretId=s.secrets_manager_secret)
                cache[s.secrets_manager_secret] = answer["SecretString"]
            values[where] = value_of(cache[s.secrets_manager_secret], s)
        except (ClientError, KeyError) as exc:
            failures[where] = f"Secrets Manager secret {s.secrets_manager_secret}: {one_line(exc)}"
    return Read(values, failures)


def restore(settings: Settings, outputs: StackOutputs, report: Report, dry_run: bool) -> list[str]:
    """Write the declared Secrets into the stack's namespace from Secrets Manager in the stack's region; a dry run
    reads the values (proving they are there) and returns what it would write, never a value."""
    sources = settings.secrets
    namespace, region = outputs.namespace, outputs.region
    if not sources:
        report.skip("secrets", "drtopo:secrets declares none")
        return []
    read = read_values(stack_client("secretsmanager", outputs), sources)
    for (name, key), why in sorted(read.failures.items()):
        report.check(f"secret {name} key {key}", False, why)
    complete = [s for s in sources if not any(f[0] == s.kubernetes_secret for f in read.failures)]
    documents = secret_documents(namespace, complete, read.values)
    if dry_run:
        return [
            f"would write Secret {d['metadata']['name']} in {namespace} (keys {', '.join(sorted(d['stringData']))}) "
            f"from Secrets Manager in {region}"
            for d in documents
        ]
    context = settings.kubernetes.context
    for document in documents:
        name, keys = document["metadata"]["name"], sorted(document["stringData"])
        proc = kube_export.kubectl(
            context,
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "--force-conflicts",
            "-f",
            "-",
            stdin=json.dumps(document),
        )
        ok = proc is not None and proc.returncode == 0
        why = "no answer" if proc is None else kube_export.last_line(proc.stderr, "applied")
        detail = f"keys {', '.join(keys)} from Secrets Manager in {region}" if ok else f"kubectl apply: {why}"
        report.check(f"secret {name}", ok, detail)
    report.measured.update(secrets=len(documents))
    return []
