"""The strict offline Kubernetes validator rejects what the API server would: unknown fields, wrong types, no kind."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.k8s_schema import ManifestError, validate_manifest


def deployment(**spec_overrides: Any) -> dict[str, Any]:
    labels = {"app": "x"}
    spec = {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "x", "image": "x:1"}]}},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": spec | spec_overrides}


def test_a_valid_deployment_passes() -> None:
    validate_manifest(deployment())


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (deployment(replica=1), "'replica' was unexpected"),
        (deployment(replicas="1"), "spec.replicas"),
        (deployment(selector=None) | {"spec": {}}, "'selector' is a required property"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}, "'dta' was unexpected"),
        ({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}, "Couldn't find schema"),
        ({"metadata": {"name": "x"}}, "no apiVersion/kind"),
    ],
)
def test_invalid_manifests_are_rejected_with_a_readable_message(manifest: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(message)) as caught:
        validate_manifest(manifest)
    assert "\n" not in str(caught.value)
