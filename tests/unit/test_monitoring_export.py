"""Monitoring configuration comes back with the rest: settings name the namespaces exported beside the service's
(kubernetes.exportNamespaces), the export reads each of them, and the export's account may read them (a Role and a
RoleBinding there for the service namespace's config-export account, never Secrets)."""

from __future__ import annotations

from typing import Any

import pytest

from drtopo.backup import config as config_backup
from drtopo.backup import kube_export
from drtopo.backup.kube_export import Export, KindResult
from drtopo.report import FAIL, PASS
from drtopo.settings import SettingsError, load_settings
from evaluation.mock_program import evaluate


def _settings(**kubernetes: Any) -> Any:
    base = load_settings("prod").kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
    return load_settings("prod", overrides={"kubernetes": {**base, **kubernetes}})


def test_extra_namespaces_are_checked_and_follow_the_services() -> None:
    settings = _settings(exportNamespaces=["monitoring"])
    assert settings.kubernetes.exported_namespaces == ("biopro-prod", "monitoring")
    for bad in (["biopro-prod"], ["monitoring", "monitoring"], ["Monitoring"]):
        with pytest.raises(SettingsError):
            _settings(exportNamespaces=bad)


def test_the_export_reads_every_named_namespace_and_fails_when_one_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []

    def export(namespace: str, context: str | None) -> Export:
        read.append(namespace)
        name = kube_export.file_name(namespace, "configmaps")
        outcome = FAIL if namespace == "monitoring" else PASS
        return Export(files={name: b"items: []\n"}, kinds=(KindResult("configmaps", outcome, "x", 1),))

    monkeypatch.setattr(kube_export, "export", export)
    settings = _settings(exportNamespaces=["monitoring"])
    files, outcome, detail = config_backup.kubernetes_objects("biopro-prod", settings)
    assert read == ["biopro-prod", "monitoring"]
    names = {f.name for f in files}
    assert {"kubernetes/biopro-prod/configmaps.yaml", "kubernetes/monitoring/configmaps.yaml"} <= names
    assert outcome == FAIL and "from namespace monitoring" in detail


def test_the_export_account_may_read_the_monitoring_namespace_but_not_its_secrets() -> None:
    ev = evaluate(_settings(exportNamespaces=["monitoring"]))
    rbac = "kubernetes:rbac.authorization.k8s.io/v1"
    roles = [r for r in ev.of_type(f"{rbac}:Role") if r.inputs["metadata"]["namespace"] == "monitoring"]
    (role,) = roles
    resources = {res for rule in role.inputs["rules"] for res in rule["resources"]}
    assert "secrets" not in resources and {"configmaps", "prometheusrules"} <= resources
    (binding,) = [b for b in ev.of_type(f"{rbac}:RoleBinding") if b.inputs["metadata"]["namespace"] == "monitoring"]
    assert binding.inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": "config-export", "namespace": "biopro-prod"}
    ]


def test_drtopos_alerts_are_one_prometheus_rule_where_the_cluster_serves_the_kind() -> None:
    crd = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
    assert evaluate(_settings()).of_type(crd) == []
    ev = evaluate(_settings(prometheusRules=True))
    (rule,) = ev.of_type(crd)
    assert rule.inputs["metadata"]["namespace"] == "biopro-prod"
    (group,) = rule.inputs["spec"]["groups"]
    alerts = {a["alert"]: a["expr"] for a in group["rules"]}
    rpo = ev.settings.objectives.region_failure.rpo_seconds
    assert alerts["DrtopoReplicaLagNearRpo"] == f"max(pg_replication_lag) > {0.8 * rpo:g}"
    assert "kube_cronjob_status_last_successful_time" in alerts["DrtopoNewestDumpOlderThanADay"]
    assert {"DrtopoWalArchiveStale", "DrtopoMirrorMakerLagNearRpo"} <= set(alerts)
    assert alerts["DrtopoWalArchiveBacklog"] == f"max(pg_stat_archiver_lag_bytes) > {8 * 16 * 1024 * 1024}"
