"""MirrorMaker 2 on Kubernetes: a ServiceAccount, the rendered `mm2.properties` in a ConfigMap and a Deployment.

The Deployment runs Apache Kafka's dedicated MirrorMaker 2 with exactly `render_mm2_properties(settings)`. It runs
one replica while the stack is the standby (mirroring the peer region into this one) and none while it is the
primary; a role switch changes only that count and the properties, never a name, so it updates in place. The pod
template carries a checksum of the properties so that any change to them rolls the pod.
Every object inherits this stack's own Kubernetes provider (drtopo:kubernetes.context) from the component's
options (components/topology.py); policy rule k8s-stack-provider checks it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pulumi
from pulumi_kubernetes.apps.v1 import Deployment
from pulumi_kubernetes.core.v1 import ConfigMap, ServiceAccount

from components.pod_security import Resources, container_security, labels, pod_security, scratch_volume
from drtopo.mm2_properties import mirror_flow, render_mm2_properties
from drtopo.settings import Settings

NAME = "mirror-maker-2"
CONFIG_DIR = "/etc/mm2"
PROPERTIES_FILE = "mm2.properties"
LAUNCHER = "/opt/kafka/bin/connect-mirror-maker.sh"
MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"
# The apache/kafka image runs as `appuser`, uid 1000.
KAFKA_UID = 1000
CHECKSUM_ANNOTATION = "drtopo.io/mm2-properties-sha256"


def properties_checksum(properties: str) -> str:
    return hashlib.sha256(properties.encode()).hexdigest()


def mirror_replicas(settings: Settings) -> int:
    """One MirrorMaker while this stack is the standby, none while it is the primary."""
    return 0 if settings.is_primary else 1


@dataclass(frozen=True)
class KafkaMirrorArgs:
    """What the MirrorMaker 2 Deployment is built from; resources default to a 1 GiB container with a 768 MiB heap."""

    settings: Settings
    resources: Resources = field(
        default_factory=lambda: Resources(cpu_request="500m", memory_request="1Gi", cpu_limit="2", memory_limit="1Gi")
    )
    heap_options: str = "-Xms768m -Xmx768m"


class KafkaMirror(pulumi.ComponentResource):
    """MirrorMaker 2 (dedicated mode) mirroring the peer region's topics and group offsets into this region."""

    def __init__(self, name: str, args: KafkaMirrorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:kafka:KafkaMirror", name, None, opts)
        settings = args.settings
        namespace = settings.kubernetes.namespace
        properties = render_mm2_properties(settings)
        checksum = properties_checksum(properties)
        match = labels(NAME, "kafka-mirror")
        child = pulumi.ResourceOptions(parent=self)
        source, target = mirror_flow(settings)

        self.service_account = ServiceAccount(
            f"{name}-sa",
            metadata={"name": NAME, "namespace": namespace, "labels": match},
            automount_service_account_token=False,
            opts=child,
        )
        self.config_map = ConfigMap(
            f"{name}-config",
            metadata={"name": NAME, "namespace": namespace, "labels": match},
            data={PROPERTIES_FILE: properties},
            opts=child,
        )
        container = {
            "name": NAME,
            "image": settings.kubernetes.mirror_maker_image,
            "image_pull_policy": "IfNotPresent",
            "command": [LAUNCHER, f"{CONFIG_DIR}/{PROPERTIES_FILE}"],
            "env": [
                {"name": "KAFKA_HEAP_OPTS", "value": args.heap_options},
                # kafka-run-class.sh writes its logs under LOG_DIR; the root filesystem is read-only.
                {"name": "LOG_DIR", "value": "/tmp/kafka-logs"},
            ],
            "resources": args.resources.spec(),
            "security_context": container_security(KAFKA_UID),
            "volume_mounts": [
                {"name": "config", "mount_path": CONFIG_DIR, "read_only": True},
                {"name": "tmp", "mount_path": "/tmp"},
            ],
            # Dedicated MirrorMaker exposes no health endpoint (its REST server is off); the probe restarts the pod
            # when PID 1 is no longer the MirrorMaker JVM. Replication lag is watched by scripts.validate.
            "liveness_probe": {
                "exec_": {"command": ["/bin/sh", "-c", f"grep -q {MAIN_CLASS} /proc/1/cmdline"]},
                "initial_delay_seconds": 30,
                "period_seconds": 30,
                "timeout_seconds": 5,
                "failure_threshold": 3,
            },
        }
        self.deployment = Deployment(
            f"{name}-deployment",
            metadata={
                "name": NAME,
                "namespace": namespace,
                "labels": match,
            },
            spec={
                "replicas": mirror_replicas(settings),
                "selector": {"match_labels": match},
                # Never two MirrorMakers for one flow at once: stop the old pod before starting the new one.
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": match, "annotations": {CHECKSUM_ANNOTATION: checksum}},
                    "spec": {
                        "service_account_name": NAME,
                        "automount_service_account_token": False,
                        "security_context": pod_security(KAFKA_UID),
                        "termination_grace_period_seconds": 60,
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "config_map": {"name": NAME}},
                            scratch_volume("tmp", "1Gi"),
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config_map, self.service_account]),
        )
        self.properties_sha256 = checksum
        self.replicas = mirror_replicas(settings)
        self.register_outputs(
            {
                "namespace": namespace,
                "deployment": NAME,
                "flow": f"{source}->{target}",
                "replicas": self.replicas,
                "propertiesSha256": checksum,
            }
        )
