"""The lab's single-node Kubernetes (lab/kube.py) on real servers, in a lab root of its own: the node is Ready on its
lab-made address, a hostNetwork pod runs through containerd and runc, Kubernetes alone restarts its container after
`kill -9`, and `stop` leaves no process, mount, namespace or link behind. On it, the program's own prod objects
(lab/kube_objects.py) go in by server-side apply, and each job's service account may do what the job does and no more:
asked with `kubectl auth can-i`, and proven by running the configuration export as that account."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.backup_jobs import EXPORT_RULES
from components.kafka_mirror import NAME as MIRROR_APP
from drtopo.backup import config as config_backup
from drtopo.backup import kube_export
from drtopo.backup import secrets as secret_store
from drtopo.backup.store import s3_client
from drtopo.outputs import load_outputs
from drtopo.settings import Role, load_settings
from lab import kafka, kube, kube_build, kube_objects, kube_workloads, process
from lab.core import Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab's Kubernetes needs root (network namespaces, mounts)"),
    pytest.mark.skipif(not kube_build.pause_archive().is_file(), reason="Kubernetes is not built; run `make kube`"),
]


def probe_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "pause", "image": kube_build.PAUSE_IMAGE, "imagePullPolicy": "Never"}],
        },
    }


def apply(root: Path, document: dict[str, Any]) -> None:
    kube.kubectl(root, "apply", "-f", "-", stdin=json.dumps(document))


def container_status(root: Path, pod: str) -> dict[str, Any]:
    document = json.loads(kube.kubectl(root, "get", "pod", pod, "-o", "json").stdout)
    statuses = document.get("status", {}).get("containerStatuses") or [{}]
    return statuses[0]


def wait_container(root: Path, pod: str, restarts: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = container_status(root, pod)
        if last.get("ready") and last.get("restartCount") == restarts:
            return last
        time.sleep(0.5)
    raise AssertionError(f"pod {pod} not ready with {restarts} restarts within {timeout:.0f} s: {last}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("lab-kube")
    try:
        kube.start(root)
        yield root
    finally:
        kube.stop(root)


def test_node_is_ready_on_its_lab_made_address(cluster: Path) -> None:
    status = kube.status(cluster)
    assert status["up"], status
    assert status["node"] == {"name": kube.NODE_NAME, "ready": True, "ip": status["node"]["ip"]}
    network = kube.cluster_network(cluster)
    assert status["node"]["ip"] == network.node_ip
    assert ipaddress.ip_address(network.node_ip) in kube.LINK_BLOCK
    assert status["server"] == f"https://{network.node_ip}:{kube.KubePorts().apiserver}"


def test_host_network_pod_is_restarted_after_kill_9(cluster: Path) -> None:
    apply(cluster, probe_pod("probe"))
    first = wait_container(cluster, "probe", restarts=0)
    pid = kube.container_pid(cluster, first["containerID"])
    os.kill(pid, signal.SIGKILL)
    second = wait_container(cluster, "probe", restarts=1)
    assert second["containerID"] != first["containerID"]
    assert kube.status(cluster)["pods"]["default"]["probe"] == {"phase": "Running", "restarts": 1}


@pytest.fixture(scope="module")
def prod_objects(cluster: Path) -> list[dict[str, Any]]:
    # The application's replica patch lands on the chart's Deployment, which this bare cluster has not got (on the
    # lab it is the stand-in's: test_the_service_runs_as_a_deployment_per_region_on_the_node).
    objects = [o for o in kube_objects.program_objects(load_settings("prod")) if not kube_objects.patch_manager(o)]
    kube_objects.apply(cluster, objects)
    return objects


def test_the_programs_prod_objects_are_accepted_by_server_side_apply(
    cluster: Path, prod_objects: list[dict[str, Any]]
) -> None:
    namespace = load_settings("prod").kubernetes.namespace
    listed = json.loads(
        kube.kubectl(cluster, "get", "sa,cm,deploy,role,rolebinding,cronjob", "-n", namespace, "-o", "json").stdout
    )
    live = {(item["kind"], item["metadata"]["name"]) for item in listed["items"]}
    assert {(o["kind"], o["metadata"]["name"]) for o in prod_objects} <= live


# The kinds the export account is granted (components/backup_jobs.py), as kubectl names them.
EXPORT_KINDS = tuple(f"{r}.{g}" if g else r for g, resources in EXPORT_RULES for r in resources)


def test_the_config_export_account_may_read_what_the_export_reads(
    prod_objects: list[dict[str, Any]], cluster: Path
) -> None:
    namespace = load_settings("prod").kubernetes.namespace
    account = "config-export"
    assert kube_objects.can_i(cluster, namespace, account, "get", f"namespaces/{namespace}")
    served = set(kube.kubectl(cluster, "api-resources", "--namespaced=true", "-o", "name").stdout.split())
    # can-i answers no for a kind the cluster does not serve (the snapshot and monitoring APIs here).
    for kind in served & set(EXPORT_KINDS):
        assert kube_objects.can_i(cluster, namespace, account, "list", kind), kind
        assert kube_objects.can_i(cluster, namespace, account, "get", kind), kind


def test_no_job_account_may_read_secrets_change_or_delete_anything(
    prod_objects: list[dict[str, Any]], cluster: Path
) -> None:
    namespace = load_settings("prod").kubernetes.namespace
    for account in ("config-export", "pg-dump", "mirror-maker-2"):
        for verb, resource in [("get", "secrets"), ("list", "secrets"), ("watch", "secrets")]:
            assert not kube_objects.can_i(cluster, namespace, account, verb, resource), (account, verb, resource)
        for kind in (*EXPORT_KINDS, "secrets", "namespaces"):
            for verb in ("delete", "deletecollection", "create", "update", "patch"):
                assert not kube_objects.can_i(cluster, namespace, account, verb, kind), (account, verb, kind)
        assert not kube_objects.can_i(
            cluster, namespace, account, "get", "namespaces/kube-system", in_namespace="kube-system"
        )
    for account in ("pg-dump", "mirror-maker-2"):  # neither talks to the Kubernetes API at all
        assert not kube_objects.can_i(cluster, namespace, account, "list", "configmaps")


def as_account(cluster: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account: str, context: str) -> None:
    """kubectl (on PATH) talks to `cluster` as `account`'s token, through a context named as the stack's."""
    namespace = load_settings("prod").kubernetes.namespace
    token = kube.kubectl(cluster, "create", "token", account, "-n", namespace).stdout.strip()
    document = yaml.safe_load((cluster / "kubeconfig").read_text())
    document["users"][0]["user"] = {"token": token}
    document["contexts"][0]["name"] = context
    document["current-context"] = "no-such-context"  # the export must name the stack's context itself
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("PATH", f"{kube_build.bin_dir()}:{os.environ['PATH']}")


def test_the_export_runs_as_its_account_reads_every_kind_and_strips_server_fields(
    prod_objects: list[dict[str, Any]], cluster: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings("prod")
    namespace = settings.kubernetes.namespace
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "export-probe", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    apply(cluster, claim)
    as_account(cluster, tmp_path, monkeypatch, "config-export", settings.kubernetes.context)
    files, outcome, note = config_backup.kubernetes_objects(namespace, settings)
    assert outcome == "pass", note
    assert "cannot read" not in note and "Secrets: not read; inventory from drtopo:secrets" in note
    exported = {f.name: yaml.safe_load(f.content) for f in files if f.name.endswith(".yaml")}
    kinds = {Path(name).stem for name in exported}
    assert {"namespace", "persistentvolumeclaims", "configmaps", "deployments.apps", "cronjobs.batch"} <= kinds
    assert not kinds & {"events", "endpoints", "secrets", "replicasets.apps", "leases.coordination.k8s.io"}
    names = {(item["kind"], item["metadata"]["name"]) for doc in exported.values() for item in doc["items"]}
    assert {(o["kind"], o["metadata"]["name"]) for o in prod_objects} <= names
    assert ("Namespace", namespace) in names and ("PersistentVolumeClaim", "export-probe") in names
    assert ("ServiceAccount", "default") not in names and ("ConfigMap", "kube-root-ca.crt") not in names
    for doc in exported.values():
        for item in doc["items"]:
            assert not set(kube_export.SERVER_FIELDS) & set(item["metadata"]), item["metadata"]
            assert "status" not in item
    inventory = json.loads(next(f.content for f in files if f.name.endswith("/secret-inventory.json")))
    assert set(inventory["secrets"]) == {s.kubernetes_secret for s in settings.secrets}


def test_an_account_that_may_not_read_the_kinds_fails_the_export_naming_them(
    prod_objects: list[dict[str, Any]], cluster: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings("prod")
    namespace = settings.kubernetes.namespace
    # pg-dump may not even get its namespace: the export fails (the cluster answered), it is no skip.
    as_account(cluster, tmp_path, monkeypatch, "pg-dump", settings.kubernetes.context)
    files, outcome, note = config_backup.kubernetes_objects(namespace, settings)
    assert outcome == "fail" and not [f.name for f in files if f.name.endswith(".yaml")], note
    assert "cannot read: namespace" in note and "forbidden" in note
    # config-export with one kind taken away: every other kind is exported, that one fails by name.
    rules = json.loads(kube.kubectl(cluster, "get", "role", "config-export", "-n", namespace, "-o", "json").stdout)
    narrowed = [{**r, "resources": [k for k in r["resources"] if k != "ingresses"]} for r in rules["rules"]]
    patch = json.dumps([{"op": "replace", "path": "/rules", "value": narrowed}])
    kube.kubectl(cluster, "patch", "role", "config-export", "-n", namespace, "--type=json", "-p", patch)
    try:
        as_account(cluster, tmp_path, monkeypatch, "config-export", settings.kubernetes.context)
        files, outcome, note = config_backup.kubernetes_objects(namespace, settings)
        assert outcome == "fail", note
        assert "; cannot read: ingresses.networking.k8s.io (" in note and note.count("Forbidden") == 1, note
        assert any(f.name.endswith("/configmaps.yaml") for f in files)
    finally:
        kube_objects.apply(cluster, prod_objects)
    assert kube_objects.can_i(cluster, namespace, "config-export", "list", "ingresses.networking.k8s.io")


def test_lab_up_runs_the_cluster_and_points_kubeconfig_at_it(lab: Lab) -> None:
    status = lab.status()
    assert status["kubernetes"]["node"]["ready"] is True
    assert all(status["servers"][kube.process_name(c)]["running"] for c in kube.PROCESSES)
    kubeconfig = Path(lab.env()["KUBECONFIG"])
    assert kubeconfig == lab.root / "kubeconfig" and kubeconfig.is_file()
    assert (
        kube.kubectl(lab.root, "get", "node", kube.NODE_NAME, "-o", "name").stdout.strip() == f"node/{kube.NODE_NAME}"
    )


def netns_files() -> set[str]:
    return {p.name for p in kube.NETNS_DIR.glob("cni-*")}


def test_stop_leaves_nothing_behind(cluster: Path) -> None:
    """The module's own cluster, after the tests above have used it, stopped here (its fixture's stop is then a
    no-op): the last test of the module on it, so the module starts one cluster, not two."""
    before = netns_files()
    apply(cluster, probe_pod("left-behind"))
    # A pod on the pod network: the CRI gives its sandbox a network namespace file of its own.
    on_pod_network = probe_pod("own-netns")
    on_pod_network["spec"]["hostNetwork"] = False
    apply(cluster, on_pod_network)
    wait_container(cluster, "left-behind", restarts=0)
    wait_container(cluster, "own-netns", restarts=0)
    made = netns_files() - before
    assert made, "the pod-network pod got no network namespace file"
    network = kube.cluster_network(cluster)
    pids = [process.read_pid(cluster, kube.process_name(c)) for c in kube.PROCESSES]
    kube.stop(cluster)
    assert not [pid for pid in pids if pid is not None and process.alive(pid)]
    assert not network.netns_path.exists()
    assert not made & netns_files(), f"pod network namespaces left behind: {sorted(made & netns_files())}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30, check=True).stdout
    assert network.host_veth not in links
    assert not kube.mounts_under(Path("/proc/self/mountinfo").read_text(), cluster)
    assert not kube.is_up(cluster)


# ---- the lab's workloads: the program's objects of both stacks, as their pods see the lab -------------------------
def test_mirrormaker_runs_as_the_standby_stacks_deployment_with_the_rendered_properties(fresh_pg: Lab) -> None:
    # From the baseline roles: a promote earlier in the session (the fault matrix, the incident tests) leaves the lab's
    # project copy naming dr primary, and the expected text is rendered from it.
    lab = fresh_pg
    standby, primary = lab.dr.namespace, lab.prod.namespace
    (pod,) = kube_workloads.pods(lab.root, standby, MIRROR_APP)
    assert kube_workloads.pod_ready(pod)
    assert pod["spec"]["containers"][0]["image"] == lab.image("mirrormaker")
    assert not kube_workloads.pods(lab.root, primary, MIRROR_APP)  # the primary's Deployment has no replica
    config = kube_workloads.get(lab.root, "configmap", MIRROR_APP, standby)
    assert config is not None and config["data"] == {"mm2.properties": lab.mirrormaker_properties("dr")}
    assert f"{lab.node_ip}:" in config["data"]["mm2.properties"]
    assert not process.running(lab.root, kafka.MIRRORMAKER)  # no MirrorMaker of the lab's own


def test_the_service_runs_as_a_deployment_per_region_on_the_node(lab: Lab) -> None:
    """One Deployment per region; its count is the program's patch's, under drtopo's field manager: the primary's
    pod runs, the standby's Deployment is at 0 (pilot light) until promote scales it."""
    lab.apply_application()  # the counts of the roles now, as `pulumi up` of both stacks would apply them
    dr = kube_workloads.get(lab.root, "deployment", kube_workloads.SERVICE_APP, lab.dr.namespace)
    if lab.dr.settings.role is Role.STANDBY:
        assert lab.dr.service.declared_replicas() == 0 and lab.dr.service.pod() is None
    assert dr is not None and dr["spec"]["replicas"] == lab.dr.service.declared_replicas()
    name, namespace = kube_workloads.SERVICE_APP, lab.dr.namespace
    args = ("get", "deployment", name, "-n", namespace, "-o", "json", "--show-managed-fields")
    fields = json.loads(kube.kubectl(lab.root, *args).stdout)["metadata"]["managedFields"]
    owners = [m["manager"] for m in fields if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {})]
    assert owners == ["drtopo"], fields
    lab.dr.service.start()  # as a warm standby would run it
    for stack in ("prod", "dr"):
        pod = lab.region(stack).service.pod()
        assert pod is not None and kube_workloads.pod_ready(pod), stack
        assert pod["spec"]["hostNetwork"] is True
        assert lab.region(stack).service.url.startswith(f"http://{lab.node_ip}:")
        with urllib.request.urlopen(f"{lab.region(stack).service.url}/actuator/health", timeout=5) as answer:
            assert answer.status == 200


def dumps_since(lab: Lab, since: datetime) -> list[str]:
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    s3 = s3_client(outputs)
    listed = s3.list_objects_v2(Bucket=outputs.dump_bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed if o["LastModified"] >= since and o["Key"].endswith(".dump"))


def test_the_dump_cronjob_runs_now_and_its_dump_lands_in_the_emulators_bucket_and_verifies(lab: Lab) -> None:
    namespace = lab.prod.namespace
    since = datetime.now(UTC).replace(microsecond=0)
    job = kube_workloads.run_cronjob(lab.root, namespace, "pg-dump", "pg-dump-now", timeout=300)
    assert job["status"]["succeeded"] == 1
    logs = kube_workloads.job_logs(lab.root, namespace, "pg-dump-now")
    assert "[pod/pg-dump-now-" in logs and "OK: 4/4 checks passed" in logs  # the verify container's report
    assert any(key.startswith("daily/") for key in dumps_since(lab, since))
    template = job["spec"]["template"]["spec"]
    assert template["initContainers"][0]["image"] == lab.image("backup")
    assert template["securityContext"]["runAsUser"] == 10001


def test_the_config_export_cronjob_runs_as_its_account_and_exports_the_namespace_and_the_declared_inventory(
    lab: Lab,
) -> None:
    namespace, settings = lab.prod.namespace, lab.prod.settings
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "export-probe", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    kube.kubectl(lab.root, "apply", "-f", "-", stdin=json.dumps(claim))
    since = datetime.now(UTC).replace(microsecond=0)
    try:
        job = kube_workloads.run_cronjob(lab.root, namespace, "config-export", "config-export-now", timeout=300)
    except kube.KubeError as exc:
        args = ("logs", "job/config-export-now", "-n", namespace, "--all-containers")
        raise AssertionError(f"{exc}\n{kube.kubectl(lab.root, *args, check=False).stdout}") from exc
    finally:
        kube.kubectl(lab.root, "delete", "pvc", "export-probe", "-n", namespace, "--wait=false")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "config-export"
    logs = kube.kubectl(lab.root, "logs", "job/config-export-now", "-n", namespace, "--all-containers").stdout
    assert job["status"]["succeeded"] == 1, logs
    assert re.search(r"OK: (\d+)/\1 checks passed\s*$", logs, re.MULTILINE), logs  # no fail, no skip
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    s3 = s3_client(outputs)
    prefix = config_backup.latest_prefix(s3, outputs.config_bucket, "prod")

    def read(name: str) -> bytes:
        return bytes(s3.get_object(Bucket=outputs.config_bucket, Key=prefix + name)["Body"].read())

    manifest = json.loads(read(config_backup.MANIFEST))
    assert datetime.fromisoformat(manifest["taken_at"]) >= since, (manifest["taken_at"], since)
    kinds = {
        Path(n).stem for n in manifest["files"] if n.startswith(f"kubernetes/{namespace}/") and n.endswith(".yaml")
    }
    assert {"namespace", "persistentvolumeclaims", "configmaps", "deployments.apps", "cronjobs.batch"} <= kinds, kinds
    (ns_object,) = yaml.safe_load(read(f"kubernetes/{namespace}/namespace.yaml"))["items"]
    assert (ns_object["kind"], ns_object["metadata"]["name"]) == ("Namespace", namespace)
    claims = yaml.safe_load(read(f"kubernetes/{namespace}/persistentvolumeclaims.yaml"))["items"]
    assert "export-probe" in {c["metadata"]["name"] for c in claims}
    inventory = json.loads(read(f"kubernetes/{namespace}/{secret_store.INVENTORY_FILE}"))
    assert inventory == secret_store.inventory(settings.secrets) and inventory["secrets"], inventory
    assert settings.kubernetes.database_secret in inventory["secrets"]


def test_the_dump_cronjob_runs_on_its_schedule(lab: Lab) -> None:
    namespace = lab.prod.namespace
    patch = json.dumps({"spec": {"schedule": "* * * * *"}})
    kube.kubectl(lab.root, "patch", "cronjob", "pg-dump", "-n", namespace, "--type=merge", "-p", patch)
    try:
        deadline = time.monotonic() + 150
        finished: list[str] = []
        while not finished and time.monotonic() < deadline:
            listing = json.loads(kube.kubectl(lab.root, "get", "jobs", "-n", namespace, "-o", "json").stdout)
            scheduled = [
                j
                for j in listing["items"]
                if any(o.get("kind") == "CronJob" for o in j["metadata"].get("ownerReferences", []))
                and j["metadata"].get("annotations", {}).get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            ]
            finished = [j["metadata"]["name"] for j in scheduled if kube_workloads.job_finished(j) == "Complete"]
            failed = [j["metadata"]["name"] for j in scheduled if kube_workloads.job_finished(j) == "Failed"]
            assert not failed, kube_workloads.job_logs(lab.root, namespace, failed[0])
            time.sleep(2)
        assert finished, "no scheduled pg-dump job completed within 150 s"
    finally:
        lab.apply_workloads()  # the declared schedule again, as `pulumi up` would put it back
    live = kube_workloads.get(lab.root, "cronjob", "pg-dump", namespace)
    assert live is not None and live["spec"]["schedule"] == lab.prod.settings.kubernetes.dump_schedule
