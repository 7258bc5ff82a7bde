"""Request bodies of userAssignedIdentities and of the `identity` block resources carry, and the JSON clients read."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from control_plane.managed_identities.models import RESOURCE_TYPE, UserAssignedIdentity

NONE, SYSTEM, USER, BOTH = "None", "SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned"
IDENTITY_TYPES = (SYSTEM, USER, BOTH, NONE)


class IdentityType(fields.String):
    """ARM's identity types, matched case-insensitively and with or without the space after the comma (ARM reads
    `SystemAssigned,UserAssigned` too); stored in the canonical spelling."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        folded = {t.lower().replace(" ", ""): t for t in IDENTITY_TYPES}
        found = folded.get(text.lower().replace(" ", ""))
        if found is None:
            raise ValidationError(f"must be one of: {', '.join(IDENTITY_TYPES)}")
        return found


class Strict(Schema):
    class Meta:
        unknown = EXCLUDE


class ResourceIdentity(Strict):
    """`identity` of a resource: the map's values are `{}` or null (an echoed GET body's principalId/clientId are
    read-only and ignored); the service checks the keys."""

    type = IdentityType(required=True)
    userAssignedIdentities = fields.Dict(keys=fields.String(), values=fields.Dict(allow_none=True), allow_none=True)


class IdentityProperties(Strict):
    isolationScope = fields.String(allow_none=True)


class IdentityPut(Strict):
    location = fields.Raw(load_default=None)
    tags = fields.Raw(load_default=None)
    properties = fields.Nested(IdentityProperties, allow_none=True)


class IdentityPatch(Strict):
    location = fields.Raw()
    tags = fields.Raw()
    properties = fields.Nested(IdentityProperties, allow_none=True)


def _timestamp(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_arm(identity: UserAssignedIdentity) -> dict[str, Any]:
    return {
        "id": identity.arm_id,
        "name": identity.name,
        "type": RESOURCE_TYPE,
        "location": identity.location,
        "tags": identity.tags or {},
        "systemData": {
            "createdBy": identity.created_by, "createdByType": identity.created_by_type,
            "createdAt": _timestamp(identity.created_at), "lastModifiedBy": identity.modified_by,
            "lastModifiedByType": identity.modified_by_type, "lastModifiedAt": _timestamp(identity.modified_at),
        },
        "properties": {"tenantId": identity.tenant_id, "principalId": identity.principal_id,
                       "clientId": identity.client_id, "isolationScope": "None"},
    }
