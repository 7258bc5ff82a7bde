"""Role assignment and role definition bodies, and their `$filter` expressions."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from control_plane.arm.errors import BadRequest
from control_plane.authorization import roles
from control_plane.authorization.models import RoleAssignment
from control_plane.authorization.service import PRINCIPAL_TYPES


def _timestamp(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AssignmentProperties(Schema):
    class Meta:
        unknown = EXCLUDE

    roleDefinitionId = fields.String(required=True)
    principalId = fields.String(required=True)
    principalType = fields.String(load_default=None, validate=validate.OneOf(PRINCIPAL_TYPES))
    description = fields.String(load_default=None, allow_none=True)
    condition = fields.String(load_default=None, allow_none=True)
    conditionVersion = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("2.0",)))
    delegatedManagedIdentityResourceId = fields.String(load_default=None, allow_none=True,
                                                       validate=validate.Length(max=1024))


class AssignmentCreate(Schema):
    class Meta:
        unknown = EXCLUDE

    properties = fields.Nested(AssignmentProperties, required=True)


def role_definition_prefix(scope: str) -> str:
    """Azure names role definitions under the subscription of the scope they are read at, or the tenant root."""
    parts = scope.strip("/").split("/")
    return f"/subscriptions/{parts[1]}" if len(parts) >= 2 and parts[0].lower() == "subscriptions" else ""


def definition_to_arm(role: roles.RoleDefinition, scope: str) -> dict[str, Any]:
    return {
        "id": f"{role_definition_prefix(scope)}/providers/Microsoft.Authorization/roleDefinitions/{role.id}",
        "name": role.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name,
            "type": "BuiltInRole",
            "description": role.description,
            "assignableScopes": list(role.assignable_scopes),
            "permissions": [{"actions": list(role.actions), "notActions": list(role.not_actions),
                             "dataActions": list(role.data_actions), "notDataActions": list(role.not_data_actions)}],
            "createdOn": "2015-02-02T21:55:09.8806423Z",
            "updatedOn": "2024-01-01T00:00:00.0000000Z",
            "createdBy": None,
            "updatedBy": None,
        },
    }


def assignment_to_arm(assignment: RoleAssignment) -> dict[str, Any]:
    prefix = role_definition_prefix(assignment.scope)
    return {
        "id": f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.name}",
        "name": assignment.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/"
                                f"{assignment.role_definition_id}",
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "scope": assignment.scope,
            "condition": assignment.condition,
            "conditionVersion": assignment.condition_version,
            "createdOn": _timestamp(assignment.created_on),
            "updatedOn": _timestamp(assignment.updated_on),
            "createdBy": assignment.created_by,
            "updatedBy": assignment.updated_by,
            "delegatedManagedIdentityResourceId": assignment.delegated_managed_identity_resource_id,
            "description": assignment.description,
        },
    }


_QUOTED = r"'([^']{0,256})'"
_DEFINITION_CLAUSES = {
    "roleName": re.compile(rf"^roleName\s+eq\s+{_QUOTED}$", re.IGNORECASE),
    "type": re.compile(rf"^type\s+eq\s+{_QUOTED}$", re.IGNORECASE),
}
_AT_SCOPE = re.compile(r"^atScope\(\)$", re.IGNORECASE)
_PRINCIPAL = re.compile(rf"^(?:principalId\s+eq\s+{_QUOTED}|assignedTo\({_QUOTED}\))$", re.IGNORECASE)


def _clauses(raw: str | None) -> list[str]:
    return [c.strip() for c in re.split(r"\s+and\s+", raw.strip(), flags=re.IGNORECASE)] if raw else []


def _bad_filter(raw: str) -> BadRequest:
    return BadRequest(f"The filter '{raw[:200]}' is not supported.", code="UnsupportedQuery", target="$filter")


def definition_filter(raw: str | None) -> dict[str, str]:
    """`roleName eq 'AcrPull'`, `type eq 'BuiltInRole'`, joined with `and`."""
    found: dict[str, str] = {}
    for clause in _clauses(raw):
        for key, pattern in _DEFINITION_CLAUSES.items():
            if match := pattern.match(clause):
                found[key] = match.group(1)
                break
        else:
            raise _bad_filter(raw or "")
    return found


def assignment_filter(raw: str | None) -> tuple[bool, str | None]:
    """(atScope(), principal id) from `atScope()`, `principalId eq '<id>'`, `assignedTo('<id>')`."""
    at_scope, principal = False, None
    for clause in _clauses(raw):
        if _AT_SCOPE.match(clause):
            at_scope = True
        elif match := _PRINCIPAL.match(clause):
            principal = match.group(1) or match.group(2)
        else:
            raise _bad_filter(raw or "")
    return at_scope, principal
