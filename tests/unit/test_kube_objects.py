"""The program's Kubernetes objects as the lab applies them (lab/kube_objects.py): rendered under mocks, changed only
in what the lab must change (integers the mocks carry as floats, images never pulled, and through a pod view the
local images, the lab's files and the backup jobs' emulator env)."""

from __future__ import annotations

from components import kafka_mirror
from drtopo.settings import load_settings
from lab import kube_objects
from tests.evaluations import evaluation_of


def test_prod_objects_are_every_kubernetes_resource_the_program_declares() -> None:
    objects = kube_objects.program_objects(load_settings("prod"))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        # the readiness check's ServiceAccount, ConfigMap and CronJob (suspended on the primary), the application's
        # endpoints ConfigMap and its replica patch (a partial Deployment) among them
        ["ServiceAccount"] * 4 + ["ConfigMap"] * 4 + ["Deployment"] * 2 + ["Role", "RoleBinding"] + ["CronJob"] * 4
    )
    objects = [o for o in objects if kube_objects.patch_manager(o) is None]
    assert {o["metadata"]["namespace"] for o in objects} == {load_settings("prod").kubernetes.namespace}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert isinstance(deployment["spec"]["replicas"], int)
    for o in objects:
        if o["kind"] in kube_objects.POD_SPEC_PATHS:
            spec = o
            for key in kube_objects.POD_SPEC_PATHS[o["kind"]]:
                spec = spec[key]
            containers = spec.get("initContainers", []) + spec["containers"]
            assert containers and all(c["imagePullPolicy"] == "Never" for c in containers)


def test_the_application_patch_goes_last_under_its_own_field_manager() -> None:
    """The replica patch is applied after every whole object (the Deployment it patches must exist), under the
    field manager its annotation names (drtopo's, as promote's application step uses), with the role's count."""
    settings = load_settings("dr")
    evaluation = evaluation_of(settings)
    patches = [r for r in evaluation.resources if kube_objects.is_patch(r.type)]
    assert [r.type for r in patches] == ["kubernetes:apps/v1:DeploymentPatch"]
    objects = kube_objects.program_objects(settings)
    managers = [kube_objects.patch_manager(o) for o in objects]
    assert managers[-1] == "drtopo" and managers[:-1] == [None] * (len(objects) - 1)
    patch = objects[-1]
    assert (patch["kind"], patch["metadata"]["name"]) == ("Deployment", settings.application.deployment)
    assert patch["spec"] == {"replicas": 0} and isinstance(patch["spec"]["replicas"], int)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ConfigMap", settings.application.endpoints_config_map) in names


def test_integral_restores_whole_numbers_only() -> None:
    assert kube_objects.integral({"a": [1.0, 2.5, "3"], "b": {"c": 0.0}, "d": True}) == {
        "a": [1, 2.5, "3"],
        "b": {"c": 0},
        "d": True,
    }


def test_namespaces_of_the_namespaced_objects() -> None:
    objects = [
        {"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n2"}},
        {"kind": "Role", "metadata": {"name": "b", "namespace": "n1"}},
        {"kind": "ClusterRole", "metadata": {"name": "c"}},
    ]
    assert [n["metadata"]["name"] for n in kube_objects.namespaces_of(objects)] == ["n1", "n2"]


def lab_view() -> kube_objects.PodView:
    settings = load_settings("dr")
    return kube_objects.PodView(
        images={
            settings.kubernetes.backup_image: "drtopo.lab/backup:k1",
            settings.kubernetes.mirror_maker_image: "m:2",
        },
        mm2_properties="clusters = a, b\n",
        backup_files={"outputs.json": "{}", "Pulumi.dr.yaml": "config: {}\n"},
        job_env=({"name": "PGSSLMODE", "value": "disable"}, {"name": "AWS_ENDPOINT_URL", "value": "http://n:1"}),
        app_endpoints=(settings.application.endpoints_config_map, {"DATABASE_WRITER_HOST": "10.0.0.2"}),
    )


def test_a_pod_view_changes_only_images_the_lab_files_the_endpoints_and_the_jobs_env() -> None:
    settings = load_settings("dr")
    plain = {(o["kind"], o["metadata"]["name"]): o for o in kube_objects.program_objects(settings)}
    viewed = {(o["kind"], o["metadata"]["name"]): o for o in kube_objects.program_objects(settings, lab_view())}
    assert plain.keys() == viewed.keys()
    assert viewed[("ConfigMap", "mirror-maker-2")]["data"] == {"mm2.properties": "clusters = a, b\n"}
    assert viewed[("ConfigMap", "drtopo-backup-config")]["data"] == {
        "outputs.json": "{}",
        "Pulumi.dr.yaml": "config: {}\n",
    }
    endpoints = ("ConfigMap", settings.application.endpoints_config_map)
    assert viewed[endpoints]["data"] == {**plain[endpoints]["data"], "DATABASE_WRITER_HOST": "10.0.0.2"}
    assert plain[endpoints]["data"]["DATABASE_WRITER_HOST"] != "10.0.0.2"
    deployment = viewed[("Deployment", "mirror-maker-2")]
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "m:2"
    assert template["metadata"]["annotations"][kafka_mirror.CHECKSUM_ANNOTATION] == kafka_mirror.properties_checksum(
        "clusters = a, b\n"
    )
    dump = viewed[("CronJob", "pg-dump")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for container in dump["initContainers"] + dump["containers"]:
        assert container["image"] == "drtopo.lab/backup:k1"
        env = {e["name"]: e for e in container["env"]}
        assert env["PGSSLMODE"] == {"name": "PGSSLMODE", "value": "disable"}
        assert [e["name"] for e in container["env"]].count("PGSSLMODE") == 1
        assert env["AWS_ENDPOINT_URL"]["value"] == "http://n:1"
        assert "valueFrom" in env["PGPASSWORD"]  # still from the Secret
    for key in plain.keys() - {("ConfigMap", "mirror-maker-2"), ("ConfigMap", "drtopo-backup-config"), endpoints}:
        if key[0] not in kube_objects.POD_SPEC_PATHS:
            assert plain[key] == viewed[key], key


def test_with_env_replaces_by_name_and_appends_the_rest() -> None:
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert kube_objects.with_env(env, ({"name": "B", "value": "3"}, {"name": "C", "value": "4"})) == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
