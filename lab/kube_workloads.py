"""The lab's workloads on its Kubernetes: both stacks' program objects as the lab's pods see them, the Secrets the
program expects to exist, and the operations drills and tests run on them (scale, wait, run a CronJob now).

One lab node stands in for both regions' clusters, so each stack's objects live in a namespace of its own (the lab's
project copy names it `<namespace>-<region>`, lab/project.py). The program declares no Secret: the database
password (settings.kubernetes.databaseSecret, key `password`) is created by the lab, as an operator or the secrets
operator would create it, and so is the emulator's dummy credential Secret that only the lab's backup jobs use.
Both are in the lab's drtopo:secrets (the credentials: lab/aws.py credential_sources), so `restore secrets` writes
them again from the emulator's Secrets Manager after a namespace is lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from components import kafka_mirror
from drtopo.kafka import app_switch
from lab import aws, kube

LAB_AWS_SECRET = aws.KUBERNETES_CREDENTIALS_SECRET
LAB_LABELS = {"app.kubernetes.io/part-of": "drtopo", "app.kubernetes.io/managed-by": "drtopo-lab"}


def secret_object(namespace: str, name: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LAB_LABELS)},
        "type": "Opaque",
        "stringData": dict(values),
    }


def job_env(aws_endpoint: str, kube_api: tuple[str, int] | None = None) -> tuple[dict[str, Any], ...]:
    """What the lab's backup jobs get on top of the program's env: the emulator and its dummy credentials (from a
    Secret, never a literal), and no TLS to the lab's PostgreSQL (pure). `kube_api`: the API server's address and
    port as in-cluster clients find it (the lab runs no kube-proxy, so the `kubernetes` Service's address routes
    nowhere; the certificate is still checked against the pod's service-account CA)."""

    def from_secret(key: str) -> dict[str, Any]:
        return {"name": key, "valueFrom": {"secretKeyRef": {"name": LAB_AWS_SECRET, "key": key}}}

    return (
        {"name": "AWS_ENDPOINT_URL", "value": aws_endpoint},
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
        from_secret("AWS_ACCESS_KEY_ID"),
        from_secret("AWS_SECRET_ACCESS_KEY"),
        {"name": "PGSSLMODE", "value": "disable"},
    ) + (
        (
            {"name": "KUBERNETES_SERVICE_HOST", "value": kube_api[0]},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(kube_api[1])},
        )
        if kube_api
        else ()
    )


def guard_env(
    endpoints: dict[str, str], own_endpoint: str, kube_api: tuple[str, int] | None = None
) -> tuple[dict[str, Any], ...]:
    """What the lab's lease guard gets on top of the program's env: each region's AWS endpoint as its pod reaches it
    (`endpoints`, region -> URL: its own region's emulator, the others through its region's egress gates), the
    emulator's dummy credentials from a Secret, no TLS to the lab's PostgreSQL (pure). AWS_ENDPOINT_URL (its own
    region's) catches any other region, so nothing it calls leaves the lab. `kube_api`: the API server as in-cluster
    clients find it (as the backup jobs get it: job_env), so the fenced guard's kubectl reaches its own cluster with
    its service account's token (in-region: no gate between a region's pods and its cluster's API)."""
    aws_env = [e for e in job_env(own_endpoint, kube_api) if e["name"] != "PGSSLMODE"]
    return (
        *aws_env,
        {"name": "DRTOPO_AWS_ENDPOINTS", "value": ",".join(f"{r}={u}" for r, u in sorted(endpoints.items()))},
        {"name": "PGSSLMODE", "value": "disable"},
    )


def pod_outputs(outputs: dict[str, Any], node_ip: str, kafka_pods: dict[str, str]) -> dict[str, Any]:
    """A stack's outputs as its pods must read them: the database at the node's address (the bridge forwards the
    same port), Kafka at the clusters' pod listeners (`kafka_pods`: own and peer bootstrap) (pure)."""
    return {
        **outputs,
        "dbAddress": node_ip,
        "kafkaBootstrap": kafka_pods["own"],
        "peerKafkaBootstrap": kafka_pods["peer"],
    }


def get(root: Path, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = kube.kubectl(root, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise kube.KubeError(f"kubectl get {kind} {name} -n {namespace}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def pods(root: Path, namespace: str, app: str) -> list[dict[str, Any]]:
    """The pods of one app (label app.kubernetes.io/name) in `namespace`."""
    selector = f"app.kubernetes.io/name={app}"
    listing = kube.kubectl(root, "get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return json.loads(listing.stdout)["items"]


def pod_ready(pod: dict[str, Any]) -> bool:
    """Running, every container ready, and not being deleted (pure)."""
    status = pod.get("status", {})
    containers = status.get("containerStatuses") or []
    return (
        status.get("phase") == "Running"
        and not pod["metadata"].get("deletionTimestamp")
        and bool(containers)
        and all(c.get("ready") for c in containers)
    )


def wait_pods(root: Path, namespace: str, app: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """Wait until exactly `count` pods of `app` exist and are ready (0: until none is left); returns them."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while True:
        last = pods(root, namespace, app)
        if len(last) == count and all(pod_ready(p) for p in last):
            return last
        if time.monotonic() > deadline:
            summary = [(p["metadata"]["name"], p.get("status", {}).get("phase")) for p in last]
            raise kube.KubeError(f"{app} in {namespace}: wanted {count} ready pods within {timeout:.0f} s, {summary}")
        time.sleep(0.5)


def scale(root: Path, namespace: str, deployment: str, replicas: int) -> None:
    kube.kubectl(root, "scale", f"deployment/{deployment}", "-n", namespace, f"--replicas={replicas}")


def mirror_namespace_running(root: Path, namespace: str) -> bool:
    """A MirrorMaker pod of the program's Deployment runs in `namespace`."""
    return any(pod_ready(p) for p in pods(root, namespace, kafka_mirror.NAME))


def job_finished(job: dict[str, Any]) -> str | None:
    """ "Complete" or "Failed" once the Job has that condition, else None (pure)."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def run_cronjob(root: Path, namespace: str, cronjob: str, job: str, timeout: float = 300) -> dict[str, Any]:
    """`kubectl create job JOB --from=cronjob/CRONJOB` and wait until it completes; returns the finished Job.

    A failed Job raises KubeError with the last lines of each of its pods' containers' logs.
    """
    kube.kubectl(root, "create", "job", job, f"--from=cronjob/{cronjob}", "-n", namespace)
    return wait_job(root, namespace, job, timeout)


def wait_job(root: Path, namespace: str, job: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        document = get(root, "job", job, namespace)
        state = job_finished(document) if document else None
        if state == "Complete":
            assert document is not None
            return document
        if state == "Failed" or time.monotonic() > deadline:
            why = state or f"not complete within {timeout:.0f} s"
            raise kube.KubeError(f"job {job} in {namespace}: {why}; {job_logs(root, namespace, job)}")
        time.sleep(1)


def job_logs(root: Path, namespace: str, job: str) -> str:
    """The last log lines of every container of the Job's pods (init containers too), for an error message."""
    proc = kube.kubectl(
        root, "logs", f"job/{job}", "-n", namespace, "--all-containers", "--tail=5", "--prefix", check=False
    )
    return (proc.stdout + proc.stderr).strip()[-1500:] or "no logs"


# ---- the service stand-in, one Deployment per stack ----------------------------------------------------------------
SERVICE_APP = "interface-exception-collector"
SERVICE_CONFIG = f"{SERVICE_APP}-config"
SERVICE_UID = 10002  # lab/kube/images/service.Containerfile
# The Secret holding the API's bearer token (key `token`): the stand-in reads it as SERVICE_API_TOKEN (lab/aws.py keeps
# it in Secrets Manager, a declared Secret of the lab's drtopo:secrets).
SERVICE_TOKEN_SECRET = aws.SERVICE_TOKEN_KUBERNETES_SECRET
service_token = aws.service_token


def service_objects(
    namespace: str,
    image: str,
    host: str,
    port: int,
    database: dict[str, str],
    secret: str,
    endpoints_config_map: str | None = None,
    kafka_alias: str | None = None,
) -> list[dict[str, Any]]:
    """The stand-in's ConfigMap (where it listens, which database), Deployment and what routes to it (pure).

    hostNetwork on the node's address, so scripts reach it at `http://host:port`; the database through the bridge;
    the password from the stack's database Secret, the API token from SERVICE_TOKEN_SECRET. No `replicas`: a drill's
    `kubectl scale` survives a re-apply. `Recreate`: the old pod frees the port before the new one binds it.
    With `endpoints_config_map` (the program's, components/application.py) its variables come in too: the collector
    consumes the Kafka cluster KAFKA_BOOTSTRAP_SERVERS names as KAFKA_CONSUMER_GROUP. `kafka_alias` (the region's
    own cluster) goes in the pod template's annotation that `restore kafka-failover` sets to the cluster it switched
    to: re-applying the lab's objects (after a drill) switches the ConfigMap back and rolls the pod with it.
    """
    labels = {**LAB_LABELS, "app.kubernetes.io/name": SERVICE_APP, "app.kubernetes.io/component": "service"}
    config = {
        "SERVICE_HOST": host,
        "SERVICE_PORT": str(port),
        "DB_HOST": database["host"],
        "DB_PORT": database["port"],
        "DB_NAME": database["dbname"],
        "DB_USER": database["user"],
    }
    conninfo = "host=$(DB_HOST) port=$(DB_PORT) dbname=$(DB_NAME) user=$(DB_USER) connect_timeout=3"
    container = {
        "name": "service",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", "lab.service", "--host", "$(SERVICE_HOST)", "--port", "$(SERVICE_PORT)"],
        "args": ["--conninfo", conninfo],
        "envFrom": [
            {"configMapRef": {"name": SERVICE_CONFIG}},
            *([{"configMapRef": {"name": endpoints_config_map}}] if endpoints_config_map else []),
        ],
        "env": [
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
            {
                "name": "SERVICE_API_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": SERVICE_TOKEN_SECRET, "key": "token"}},
            },
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVICE_UID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": SERVICE_CONFIG, "namespace": namespace, "labels": labels},
            "data": config,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": SERVICE_APP, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": SERVICE_APP}},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {
                        "labels": labels,
                        **({"annotations": {app_switch.SWITCH_ANNOTATION: kafka_alias}} if kafka_alias else {}),
                    },
                    "spec": {
                        "hostNetwork": True,
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 2,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": SERVICE_UID,
                            "runAsGroup": SERVICE_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                    },
                },
            },
        },
        *service_routing(namespace, port, labels),
    ]


def service_routing(namespace: str, port: int, labels: dict[str, str]) -> list[dict[str, Any]]:
    """What the application's chart declares around its Deployment: a Service, an Ingress to it, an autoscaler and
    a disruption budget (pure). The lab routes nothing through them (no kube-proxy, no ingress controller, no
    metrics server: the autoscaler never acts, and a pilot light at 0 replicas disables it); they are there so that
    a namespace rebuilt from its export has them back, in their order."""
    meta = {"name": SERVICE_APP, "namespace": namespace, "labels": labels}
    selector = {"app.kubernetes.io/name": SERVICE_APP}
    backend = {"service": {"name": SERVICE_APP, "port": {"number": 80}}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": port}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE_APP},
                "minReplicas": 1,
                "maxReplicas": 2,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        },
    ]
