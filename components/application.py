"""The application's DR state: its replica count per role and the endpoints it must use in its region.

The application's own chart owns its Deployment; drtopo owns only what DR needs of it. The replica count is a
server-side-apply patch (`DeploymentPatch`) under drtopo's own field manager, so the chart keeps every other field
and a role switch changes only this count: the primary runs `application.primaryReplicas`, the standby
`application.standbyReplicas` (0, pilot light, by default; N, warm standby). The endpoints ConfigMap names the
database writer and the Kafka bootstrap of this region, the ones the application must use here: in the standby
region the writer is the replica that promote makes writable. The chart points the Deployment at the ConfigMap
(`envFrom`); drtopo never edits the pod template, so a patch never rolls the pods.
Every object inherits this stack's own Kubernetes provider (drtopo:kubernetes.context) from the component's options.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.apps.v1 import DeploymentPatch
from pulumi_kubernetes.core.v1 import ConfigMap

from components.pod_security import labels
from drtopo.application.deployment import FIELD_MANAGER, application_namespace
from drtopo.kafka.app_switch import endpoints_data as kafka_endpoints
from drtopo.settings import Role, Settings

# drtopo's own field manager for the patch (the Kubernetes provider's annotation; promote's application step applies
# under the same one): the chart's manager keeps its fields, and `kubectl get deployment --show-managed-fields` names
# who set the replica count.
FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"
# The role decides the count, over a chart that still sets one: the patch takes the field over.
FORCE_ANNOTATION = "pulumi.com/patchForce"
ROLE_ANNOTATION = "drtopo.io/role"


def replicas_for(settings: Settings, role: Role | None = None) -> int:
    """The application's replicas for `role` (default the stack's): primary's count, or the standby's (0: pilot
    light)."""
    return settings.application.replicas(role or settings.role)


def endpoints_data(settings: Settings, db_address: str, db_port: int | float) -> dict[str, str]:
    """The ConfigMap's data: this region's database writer and Kafka bootstrap, and the peer's cluster as the backup
    a Kafka cluster failover switches to (`restore kafka-failover`, drtopo/kafka/app_switch.py) (pure)."""
    return {
        "DRTOPO_REGION": settings.region,
        "DATABASE_WRITER_HOST": db_address,
        "DATABASE_WRITER_PORT": str(int(db_port)),
        "DATABASE_NAME": settings.database.name,
        **kafka_endpoints(settings),
        "KAFKA_CONSUMER_GROUP": settings.kafka.consumer_group,
    }


@dataclass(frozen=True)
class ApplicationArgs:
    """What the application's DR state is built from: settings, and this region's database writer."""

    settings: Settings
    db_address: pulumi.Input[str]
    db_port: pulumi.Input[int]


class Application(pulumi.ComponentResource):
    """The application's replica count for this stack's role, and its endpoints ConfigMap."""

    def __init__(self, name: str, args: ApplicationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:application:Application", name, None, opts)
        settings = args.settings
        app = settings.application
        namespace = application_namespace(settings)
        child = pulumi.ResourceOptions(parent=self)
        self.replicas = replicas_for(settings)
        self.config_map = ConfigMap(
            f"{name}-endpoints",
            metadata={
                "name": app.endpoints_config_map,
                "namespace": namespace,
                "labels": labels(app.endpoints_config_map, "application"),
            },
            data=pulumi.Output.all(args.db_address, args.db_port).apply(
                lambda parts: endpoints_data(settings, parts[0], parts[1])
            ),
            opts=child,
        )
        self.patch = DeploymentPatch(
            f"{name}-replicas",
            metadata={
                "name": app.deployment,
                "namespace": namespace,
                "annotations": {
                    FIELD_MANAGER_ANNOTATION: FIELD_MANAGER,
                    FORCE_ANNOTATION: "true",
                    ROLE_ANNOTATION: settings.role.value,
                },
            },
            spec={"replicas": self.replicas},
            opts=child,
        )
        self.register_outputs(
            {
                "namespace": namespace,
                "deployment": app.deployment,
                "replicas": self.replicas,
                "mode": "pilot light" if app.pilot_light else "warm standby",
                "endpointsConfigMap": app.endpoints_config_map,
            }
        )
