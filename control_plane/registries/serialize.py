"""The Registry JSON clients read: the stored properties plus the read-only fields ARM fills in."""

from __future__ import annotations

import hashlib
from typing import Any

from control_plane.registries.models import Registry, RegistryView
from control_plane.registries.schemas import REGISTRY_TYPE


def _timestamp(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def login_server(registry: Registry | RegistryView, suffix: str) -> str:
    return f"{registry.name_key}.{suffix}"


def etag(registry: Registry | RegistryView) -> str:
    """Changes whenever the resource a client reads changes: a write (modified_at) or provisioning progress."""
    version = f"{registry.id}|{registry.modified_at.isoformat()}|{registry.provisioning_state}"
    return '"' + hashlib.sha256(version.encode()).hexdigest()[:32] + '"'


def to_arm(registry: Registry | RegistryView, login_server_suffix: str) -> dict[str, Any]:
    # Copies only the path it fills in (deepcopy was a tenth of a GET); the body is serialised, never mutated.
    properties = dict(registry.properties)
    policies = properties["policies"] = dict(properties["policies"])
    policies["retentionPolicy"] = {**policies["retentionPolicy"], "lastUpdatedTime": _timestamp(registry.modified_at)}
    properties.update({
        "loginServer": login_server(registry, login_server_suffix),
        "creationDate": _timestamp(registry.created_at),
        "provisioningState": registry.provisioning_state,
        "status": None,
        "dataEndpointHostNames": (
            [f"{registry.name_key}.{registry.location}.data.{login_server_suffix}"]
            if properties.get("dataEndpointEnabled") else []
        ),
        "privateEndpointConnections": [],
    })
    body: dict[str, Any] = {
        "id": registry.arm_id,
        "name": registry.name,
        "type": REGISTRY_TYPE,
        "etag": etag(registry),
        "location": registry.location,
        "tags": registry.tags or {},
        "sku": {"name": registry.sku, "tier": registry.sku},
        "systemData": {
            "createdBy": registry.created_by,
            "createdByType": registry.created_by_type,
            "createdAt": _timestamp(registry.created_at),
            "lastModifiedBy": registry.modified_by,
            "lastModifiedByType": registry.modified_by_type,
            "lastModifiedAt": _timestamp(registry.modified_at),
        },
        "properties": properties,
    }
    if registry.identity:
        body["identity"] = registry.identity
    return body
