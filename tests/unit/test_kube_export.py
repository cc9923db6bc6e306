"""What the namespace export keeps, leaves out and says: a kind that cannot be read fails the export by name, one the
cluster does not serve is skipped with its reason; what the cluster recreates is left out; server-owned fields go;
the restore applies in dependency order; the Secret inventory is the program's declaration, never a value; and
kubectl is pointed at the stack's own cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.backup_jobs import EXPORT_RULES
from drtopo.backup import kube_export, secrets
from drtopo.backup.kube_export import Export, KindResult
from drtopo.report import FAIL, PASS, SKIP
from drtopo.settings import SecretSource, SettingsError, load_settings

FORBIDDEN = (
    'Error from server (Forbidden): ingresses.networking.k8s.io is forbidden: User "system:serviceaccount:'
    'biopro-prod:config-export" cannot list resource "ingresses" in API group "networking.k8s.io" in the namespace '
    '"biopro-prod"\n'
)
NOT_SERVED = 'error: the server doesn\'t have a resource type "widgets"\n'


@pytest.mark.parametrize(
    ("returncode", "stderr", "outcome", "reason"),
    [
        (1, FORBIDDEN, FAIL, "cannot list resource"),
        (1, "Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout\n", FAIL, "i/o timeout"),
        (None, "", FAIL, "no answer"),
        (1, NOT_SERVED, SKIP, "not served by the cluster"),
        (1, "Error from server (NotFound): the server could not find the requested resource\n", SKIP, "not served"),
    ],
)
def test_a_kind_that_cannot_be_read_fails_and_one_not_served_is_skipped_with_its_reason(
    returncode: int | None, stderr: str, outcome: str, reason: str
) -> None:
    result = kube_export.read_failure("ingresses.networking.k8s.io", returncode, stderr)
    assert (result.resource, result.outcome) == ("ingresses.networking.k8s.io", outcome)
    assert reason in result.detail


def test_one_unreadable_kind_fails_the_export_and_the_summary_names_it() -> None:
    kinds = (
        KindResult("namespace", PASS, "exported", 1),
        KindResult("configmaps", PASS, "exported", 2),
        KindResult("podtemplates", PASS, "exported", 0),
        kube_export.read_failure("ingresses.networking.k8s.io", 1, FORBIDDEN),
        kube_export.read_failure("widgets.example.com", 1, NOT_SERVED),
    )
    export = Export(files={}, kinds=kinds)
    assert export.outcome == FAIL
    summary = export.summary("biopro-prod")
    assert summary.startswith("exported 3 objects of 2 kinds from namespace biopro-prod (namespace, configmaps)")
    assert "; cannot read: ingresses.networking.k8s.io (Error from server (Forbidden)" in summary
    assert "; skipped: widgets.example.com (not served by the cluster" in summary
    skipped_only = Export(files={}, kinds=(kinds[0], kinds[4]))
    assert skipped_only.outcome == PASS and "skipped: widgets.example.com" in skipped_only.summary("ns")
    assert Export(reachable=False, why_not="no kubectl on PATH").outcome == SKIP


@pytest.mark.parametrize(
    ("resource", "left_out"),
    [
        ("events", True),
        ("events.events.k8s.io", True),
        ("endpoints", True),
        ("endpointslices.discovery.k8s.io", True),
        ("replicasets.apps", True),
        ("controllerrevisions.apps", True),
        ("leases.coordination.k8s.io", True),
        ("secrets", True),
        ("pods.metrics.k8s.io", True),
        ("configmaps", False),
        ("persistentvolumeclaims", False),
        ("pods", False),
        ("jobs.batch", False),
        ("prometheusrules.monitoring.coreos.com", False),
    ],
)
def test_what_the_cluster_recreates_is_not_exported(resource: str, left_out: bool) -> None:
    assert (kube_export.not_exported(resource) is not None) is left_out


def test_objects_a_controller_or_the_cluster_makes_are_dropped_and_the_rest_kept() -> None:
    owned = {"controller": True, "kind": "ReplicaSet", "name": "app-5d9", "uid": "u1", "apiVersion": "apps/v1"}
    listing = {
        "items": [
            {"kind": "Pod", "metadata": {"name": "app-5d9-x", "ownerReferences": [owned]}},
            {"kind": "Pod", "metadata": {"name": "debug"}},
            {"kind": "ServiceAccount", "metadata": {"name": "default"}},
            {"kind": "ServiceAccount", "metadata": {"name": "config-export"}},
            {"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}},
            {"kind": "ConfigMap", "metadata": {"name": "app", "ownerReferences": [{**owned, "controller": False}]}},
        ]
    }
    kept = [(i["kind"], i["metadata"]["name"]) for i in kube_export.without_server_fields(listing)["items"]]
    assert kept == [("Pod", "debug"), ("ServiceAccount", "config-export"), ("ConfigMap", "app")]


def test_a_claim_loses_its_bound_volume_and_binding_annotations_and_keeps_its_request() -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "data",
            "namespace": "biopro-prod",
            "generation": 3,
            "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
                "team": "exceptions",
            },
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-1"},
        "status": {"phase": "Bound"},
    }
    assert kube_export.strip(claim) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "biopro-prod", "annotations": {"team": "exceptions"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


@pytest.mark.parametrize(
    ("stderr", "groups"),
    [
        (
            "error: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is "
            "currently unable to handle the request",
            ["metrics.k8s.io"],
        ),
        (
            "error: unable to retrieve the complete list of server APIs: external.metrics.k8s.io/v1beta1: x, "
            "monitoring.coreos.com/v1: y",
            ["external.metrics.k8s.io", "monitoring.coreos.com"],
        ),
        ("error: You must be logged in to the server (Unauthorized)", []),
    ],
)
def test_the_groups_discovery_could_not_read_are_named(stderr: str, groups: list[str]) -> None:
    assert kube_export.unavailable_groups(stderr) == groups


def test_restore_applies_what_others_refer_to_first() -> None:
    names = [
        f"kubernetes/ns/{r}.yaml"
        for r in (
            "services",
            "deployments.apps",
            "widgets.example.com",
            "horizontalpodautoscalers.autoscaling",
            "configmaps",
            "persistentvolumeclaims",
            "namespace",
            "rolebindings.rbac.authorization.k8s.io",
            "serviceaccounts",
            "roles.rbac.authorization.k8s.io",
            "ingresses.networking.k8s.io",
            "poddisruptionbudgets.policy",
        )
    ]
    ordered = [kube_export.apply_rank(n)[1] for n in sorted(names, key=kube_export.apply_rank)]
    assert ordered == [
        "namespace",
        "serviceaccounts",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "configmaps",
        "persistentvolumeclaims",
        "deployments.apps",
        "services",
        "ingresses.networking.k8s.io",
        "horizontalpodautoscalers.autoscaling",
        "poddisruptionbudgets.policy",
        "widgets.example.com",
    ]


def test_kubectl_names_the_stacks_context_except_inside_its_own_cluster(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert kube_export.context_args("biopro-us-east-1", {}) == ["--request-timeout=10s", "--context=biopro-us-east-1"]
    assert kube_export.context_args(None, {}) == ["--request-timeout=10s"]
    assert kube_export.in_cluster(pod, token)
    assert not kube_export.in_cluster({**pod, "KUBECONFIG": "/k"}, token)
    assert not kube_export.in_cluster(pod, tmp_path / "no-token")
    assert not kube_export.in_cluster({}, token)


def test_the_export_account_may_read_every_kind_the_export_keeps_and_no_secret() -> None:
    granted = {f"{r}.{g}" if g else r for g, resources in EXPORT_RULES for r in resources}
    assert not {r for r in granted if kube_export.not_exported(r)} - {"secrets"}
    assert "secrets" not in granted
    # The kinds the restore orders are the kinds the export may read.
    assert set(kube_export.APPLY_ORDER) - {kube_export.NAMESPACE_FILE} <= granted


SOURCES = (
    SecretSource(
        kubernetes_secret="exception-collector-db",
        key="password",
        secrets_manager_secret="drtopo/us-east-1/database/master",
        json_key="password",
    ),
    SecretSource(kubernetes_secret="exception-collector-db", key="token", secrets_manager_secret="app/token"),
    SecretSource(kubernetes_secret="grafana", key="admin", secrets_manager_secret="grafana/admin"),
)


def test_the_inventory_is_the_declaration_and_holds_no_value() -> None:
    name, body = secrets.inventory_file("biopro-prod", SOURCES)
    assert name == "kubernetes/biopro-prod/secret-inventory.json"
    assert json.loads(body)["secrets"] == {
        "exception-collector-db": {
            "password": {"secretsManagerSecret": "drtopo/us-east-1/database/master", "jsonKey": "password"},
            "token": {"secretsManagerSecret": "app/token", "jsonKey": None},
        },
        "grafana": {"admin": {"secretsManagerSecret": "grafana/admin", "jsonKey": None}},
    }
    assert secrets.inventory_note(SOURCES) == (
        "Secrets: not read; inventory from drtopo:secrets: exception-collector-db (password, token), grafana (admin)"
    )
    assert secrets.inventory_note(()) == "Secrets: not read, and drtopo:secrets declares none"


def test_one_secret_per_kubernetes_secret_with_each_declared_key() -> None:
    values = {
        ("exception-collector-db", "password"): "p",
        ("exception-collector-db", "token"): "t",
        ("grafana", "admin"): "a",
    }
    documents = secrets.secret_documents("biopro-prod", SOURCES, values)
    assert [(d["metadata"]["name"], d["stringData"]) for d in documents] == [
        ("exception-collector-db", {"password": "p", "token": "t"}),
        ("grafana", {"admin": "a"}),
    ]
    assert all(d["type"] == "Opaque" and d["metadata"]["namespace"] == "biopro-prod" for d in documents)


def test_a_value_is_the_whole_secret_string_or_one_field_of_its_json() -> None:
    master = json.dumps({"username": "exception_admin", "password": "s3cret", "port": 5432})
    assert secrets.value_of(master, SOURCES[0]) == "s3cret"
    assert secrets.value_of("raw-token", SOURCES[1]) == "raw-token"
    with pytest.raises(KeyError, match="no string field 'password'"):
        secrets.value_of(json.dumps({"port": 5432}), SOURCES[0])
    with pytest.raises(KeyError):
        secrets.value_of("not json", SOURCES[0])


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_the_shipped_stacks_declare_the_secret_their_workloads_read(stack: str) -> None:
    settings = load_settings(stack)
    declared = {(s.kubernetes_secret, s.key) for s in settings.secrets}
    assert (settings.kubernetes.database_secret, "password") in declared


def test_a_secret_key_declared_twice_is_refused() -> None:
    twice = [{"kubernetesSecret": "a", "key": "k", "secretsManagerSecret": s} for s in ("x", "y")]
    with pytest.raises(SettingsError, match="declares a Secret key twice"):
        load_settings("prod", overrides={"secrets": twice})


@pytest.mark.parametrize(
    ("cluster_ip", "kept"), [("10.96.0.12", {}), ("None", {"clusterIP": "None", "clusterIPs": ["None"]})]
)
def test_a_service_loses_its_allocated_address_and_a_headless_one_keeps_none(cluster_ip: str, kept: dict) -> None:
    service = {
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [{"port": 80}]},
    }
    assert kube_export.strip(service)["spec"] == {**kept, "ports": [{"port": 80}]}


def test_no_answer_is_a_skip_from_outside_the_cluster_and_a_failure_from_a_pod_inside_it() -> None:
    outside = kube_export.not_reached("dial tcp 10.0.0.1:443: connect: connection refused", inside=False)
    assert outside.outcome == SKIP
    assert (
        outside.summary("ns")
        == "not exported: no reachable cluster (dial tcp 10.0.0.1:443: connect: connection refused)"
    )
    inside = kube_export.not_reached("x509: certificate signed by unknown authority", inside=True)
    assert inside.outcome == FAIL
    assert "cannot read: namespace (the pod's own cluster did not answer: x509" in inside.summary("ns")
