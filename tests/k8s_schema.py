"""Validates Kubernetes manifests offline and strictly against the schemas `kubernetes-validate` ships.

The program's Kubernetes objects are checked as they reach the provider (the inputs the mocks record): unknown
fields, wrong types and missing required fields are errors. One Kubernetes version is pinned so that a package
upgrade cannot silently change what passes.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate

# The cluster version the manifests are written for (EKS standard support); the package ships its schemas.
KUBERNETES_VERSION = "1.33.0"


class ManifestError(ValueError):
    """A manifest the Kubernetes API would reject; the message names the object, the field and the reason."""


def _describe(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{metadata.get('name', '?')} ({obj.get('apiVersion', '?')})"


def validate_manifest(obj: dict[str, Any]) -> None:
    """Raise ManifestError unless `obj` is a valid Kubernetes object of the pinned version, with no unknown field."""
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        raise ManifestError(f"manifest {obj!r:.120} has no apiVersion/kind; expected a Kubernetes object")
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestError(f"{_describe(obj)}: {exc.message}") from None
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "<root>"
        raise ManifestError(
            f"{_describe(obj)} at {path}: {exc.message} (Kubernetes {exc.version} schema, strict)"
        ) from None
