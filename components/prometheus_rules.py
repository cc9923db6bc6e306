"""drtopo's own alerts as one PrometheusRule in the service's namespace, where the cluster serves the kind
(`drtopo:kubernetes.prometheusRules`); the rules and their metrics are drtopo/alert_rules.py's. Being in the
namespace, it is exported and rebuilt with the rest."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource

from components.pod_security import labels
from drtopo.alert_rules import alert_rules
from drtopo.settings import Settings

NAME = "drtopo-alerts"


@dataclass(frozen=True)
class DrtopoAlertsArgs:
    settings: Settings


class DrtopoAlerts(pulumi.ComponentResource):
    def __init__(self, name: str, args: DrtopoAlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:monitoring:DrtopoAlerts", name, None, opts)
        settings = args.settings
        self.rule = CustomResource(
            name,
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": NAME, "namespace": settings.kubernetes.namespace, "labels": labels(NAME, "monitoring")},
            spec={"groups": [{"name": "drtopo", "rules": alert_rules(settings)}]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
