"""Resource group bodies: what a PUT/PATCH may carry, and the JSON a client reads back."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from control_plane.resource_groups.models import ResourceGroup

# The column's width: a longer managedBy (a resource id) is a bad request, not a database error.
MAX_MANAGED_BY = 1024


def _no_control_characters(value: str) -> None:
    """managedBy is a resource id, which holds none (and PostgreSQL text cannot hold NUL)."""
    if any(c < " " or c == "\x7f" for c in value):
        raise ValidationError("must not contain control characters")


class ResourceGroupPut(Schema):
    class Meta:
        unknown = EXCLUDE

    location = fields.Raw(load_default=None)
    tags = fields.Raw(load_default=None)
    managed_by = fields.String(data_key="managedBy", load_default=None, allow_none=True,
                               validate=[validate.Length(max=MAX_MANAGED_BY), _no_control_characters])
    properties = fields.Dict(load_default=None, allow_none=True)


class ResourceGroupPatch(Schema):
    class Meta:
        unknown = EXCLUDE

    tags = fields.Raw(load_default=None)
    managed_by = fields.String(data_key="managedBy", load_default=None, allow_none=True,
                               validate=[validate.Length(max=MAX_MANAGED_BY), _no_control_characters])
    name = fields.String(load_default=None, allow_none=True)
    properties = fields.Dict(load_default=None, allow_none=True)


def to_arm(group: ResourceGroup) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": group.arm_id,
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "tags": group.tags or {},
        "properties": {"provisioningState": group.provisioning_state},
    }
    if group.managed_by:
        body["managedBy"] = group.managed_by
    return body
