"""The resource kinds the portal lists, opens and deletes, in one table.

A kind names its ARM collection under its parent's id, its api-version, the columns of its list and the verbs
the permission check uses. Resource groups and registries are rows here; a registry's child resource (tokens,
webhooks, replications) is one more row with `parent="registries"`: it gets a tab on the registry page, a list
and delete with progress, from the generic views, and a form of its own only if it needs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from control_plane.portal.permissions import REGISTRIES, RESOURCE_GROUPS


@dataclass(frozen=True)
class Column:
    label: str
    path: str  # dotted path into the resource's JSON, e.g. "properties.loginServer"

    def value(self, resource: dict[str, Any]) -> Any:
        value: Any = resource
        for part in self.path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return "" if value is None else value


@dataclass(frozen=True)
class Kind:
    key: str
    title: str
    resource_type: str  # for permissions: `<type>/read`, `/write`, `/delete`
    collection: str  # appended to the parent's id
    api: str  # a key of api.ARM_VERSIONS
    columns: tuple[Column, ...]
    parent: str | None = None  # None: directly under the subscription

    def collection_path(self, parent_id: str) -> str:
        return f"{parent_id}{self.collection}"

    def owns(self, resource_id: str) -> bool:
        """Whether an ARM id is of this kind (a delete form names the id; the kind's shape must match)."""
        head, _, name = resource_id.rstrip("/").rpartition("/")
        return bool(name) and head.lower().endswith(self.collection.lower()) and head.count("/") >= 2


KINDS: dict[str, Kind] = {kind.key: kind for kind in (
    Kind("resourceGroups", "Resource groups", RESOURCE_GROUPS, "/resourcegroups", "resources",
         (Column("Name", "name"), Column("Location", "location"), Column("State", "properties.provisioningState"))),
    Kind("registries", "Registries", REGISTRIES, "/providers/Microsoft.ContainerRegistry/registries", "registries",
         (Column("Name", "name"), Column("Login server", "properties.loginServer"), Column("SKU", "sku.name"),
          Column("Location", "location"), Column("State", "properties.provisioningState")),
         parent="resourceGroups"),
)}


def children_of(parent: str) -> list[Kind]:
    """The kinds listed under a resource of kind `parent` (a registry's extra tabs, say)."""
    return [kind for kind in KINDS.values() if kind.parent == parent]
