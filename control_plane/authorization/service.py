"""Role assignments: create, read, list, delete, and the clean-up when what they point at goes away."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import BadRequest, Conflict, NotFound
from control_plane.authorization import roles
from control_plane.authorization.models import RoleAssignment
from control_plane.authorization.policy import is_at_or_above, scope_key
from control_plane.db import insert_unless_duplicate, utcnow
from control_plane.identity import service as identity
from control_plane.identity.models import DirectoryGroup, ServicePrincipal, User
from control_plane.locks import service as locks

PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


@dataclass(frozen=True)
class AssignmentRequest:
    role_definition_id: str
    principal_id: str
    principal_type: str | None
    description: str | None
    condition: str | None
    condition_version: str | None
    delegated_managed_identity_resource_id: str | None


def assign(session: Session, tenant_id: str, scope: str, role_definition_id: str, principal_id: str,
           created_by: str | None = None, name: str | None = None,
           principal_type: str = "ServicePrincipal") -> RoleAssignment:
    assignment = RoleAssignment(name=name or str(uuid.uuid4()), tenant_id=tenant_id, scope="/" + scope.strip("/"),
                                scope_key=scope_key(scope), role_definition_id=role_definition_id,
                                principal_id=principal_id, principal_type=principal_type, created_by=created_by,
                                updated_by=created_by)
    session.add(assignment)
    session.flush()
    return assignment


def validate_name(name: str) -> str:
    if not identity.is_guid(name):
        raise BadRequest(f"The role assignment ID '{name[:100]}' is not valid. The role assignment ID must be a GUID.",
                         code="InvalidRoleAssignmentId")
    return name.lower()


def role_definition(role_definition_id: Any) -> roles.RoleDefinition:
    role = roles.find(role_definition_id) if isinstance(role_definition_id, str) and role_definition_id else None
    if role is None:
        raise BadRequest(f"The specified role definition with ID '{str(role_definition_id)[:200]}' does not exist.",
                         code="RoleDefinitionDoesNotExist", target="roleDefinitionId")
    return role


def _directory_object_type(session: Session, tenant_id: str, object_id: str) -> str | None:
    """ServicePrincipal, User or Group: what the object id is in this tenant's directory (None if nothing)."""
    for model, principal_type in ((ServicePrincipal, "ServicePrincipal"), (User, "User"),
                                  (DirectoryGroup, "Group")):
        found = session.get(model, object_id)
        if found is not None and found.tenant_id == tenant_id:
            return principal_type
    return None


def create(session: Session, tenant_id: str, scope: str, name: str, request: AssignmentRequest,
           caller_object_id: str) -> tuple[RoleAssignment, bool]:
    """PUT: 201 new, 200 for an identical re-PUT, 409 when the same grant exists under another name."""
    name = validate_name(name)
    locks.refuse_if_locked(session, _assignment_id(scope, name), locks.WRITE)
    role = role_definition(request.role_definition_id)
    if not identity.is_guid(request.principal_id):
        raise BadRequest(f"The Principal ID '{request.principal_id[:100]}' is not valid. Principal ID must be a GUID.",
                         code="InvalidPrincipalId", target="principalId")
    principal_id = request.principal_id.lower()
    found_type = _directory_object_type(session, tenant_id, principal_id)
    if found_type is None and request.principal_type is None:
        raise BadRequest(
            f"Principal {principal_id} does not exist in the directory {tenant_id}. Check that you have the correct "
            "principal ID. If you are creating this principal and then immediately assigning a role, this error "
            "might be related to a replication delay. In this case, set the role assignment principalType property "
            "to a value, such as ServicePrincipal, User, or Group. See https://aka.ms/docs-principaltype",
            code="PrincipalNotFound", target="principalId")
    principal_type = request.principal_type or found_type

    existing = session.get(RoleAssignment, name)
    if existing is not None:
        return _same_or_refuse(existing, tenant_id, scope, role, principal_id, request, caller_object_id), False
    assignment = RoleAssignment(
        name=name, tenant_id=tenant_id, scope=scope, scope_key=scope_key(scope), role_definition_id=role.id,
        principal_id=principal_id, principal_type=principal_type, description=request.description,
        condition=request.condition, condition_version=request.condition_version,
        delegated_managed_identity_resource_id=request.delegated_managed_identity_resource_id,
        created_by=caller_object_id, updated_by=caller_object_id)
    if insert_unless_duplicate(session, assignment):
        return assignment, True
    existing = session.get(RoleAssignment, name)
    if existing is not None:  # the same name, created by a concurrent PUT
        return _same_or_refuse(existing, tenant_id, scope, role, principal_id, request, caller_object_id), False
    raise Conflict("The role assignment already exists.", code="RoleAssignmentExists")


def _same_or_refuse(existing: RoleAssignment, tenant_id: str, scope: str, role: roles.RoleDefinition,
                    principal_id: str, request: AssignmentRequest, caller_object_id: str) -> RoleAssignment:
    if (existing.tenant_id, existing.scope_key, existing.principal_id, existing.role_definition_id) != \
            (tenant_id, scope_key(scope), principal_id, role.id):
        raise BadRequest("Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                         code="RoleAssignmentUpdateNotPermitted")
    existing.description = request.description
    existing.condition, existing.condition_version = request.condition, request.condition_version
    existing.updated_by, existing.updated_on = caller_object_id, utcnow()
    return existing


def get(session: Session, tenant_id: str, scope: str, name: str) -> RoleAssignment:
    assignment = find(session, tenant_id, scope, name)
    if assignment is None:
        raise NotFound(f"The role assignment '{name[:100]}' is not found.", code="RoleAssignmentNotFound")
    return assignment


def find(session: Session, tenant_id: str, scope: str, name: str) -> RoleAssignment | None:
    assignment = session.get(RoleAssignment, name.lower()) if identity.is_guid(name) else None
    if assignment is None or assignment.tenant_id != tenant_id or assignment.scope_key != scope_key(scope):
        return None
    return assignment


def _assignment_id(scope: str, name: str) -> str:
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"


def delete(session: Session, assignment: RoleAssignment) -> None:
    locks.refuse_if_locked(session, _assignment_id(assignment.scope, assignment.name), locks.DELETE)
    session.delete(assignment)
    session.flush()


def list_for_scope(session: Session, tenant_id: str, scope: str, at_scope_only: bool,
                   principal_id: str | None) -> list[RoleAssignment]:
    """atScope(): at the scope or above it. Otherwise at, above and below; principalId narrows to one principal."""
    target = scope_key(scope)
    subscription = "/".join(target.split("/")[:3])
    query = sa.select(RoleAssignment).where(RoleAssignment.tenant_id == tenant_id,
                                            sa.or_(RoleAssignment.scope_key == "/",
                                                   RoleAssignment.scope_key == subscription,
                                                   RoleAssignment.scope_key.startswith(subscription + "/",
                                                                                       autoescape=True)))
    if principal_id is not None:
        query = query.where(RoleAssignment.principal_id == principal_id.lower())
    found = []
    for assignment in session.scalars(query.order_by(RoleAssignment.name)):
        above = is_at_or_above(assignment.scope_key, target)
        below = assignment.scope_key.startswith(target + "/")
        if above or (below and not at_scope_only):
            found.append(assignment)
    return found


def remove_at_or_below(session: Session, scope: str) -> None:
    """Deleting a resource or group removes the assignments that pointed at it or anything inside it."""
    key = scope_key(scope)
    session.execute(sa.delete(RoleAssignment).where(
        sa.or_(RoleAssignment.scope_key == key, RoleAssignment.scope_key.startswith(key + "/", autoescape=True))
    ))


def remove_for_principal(session: Session, principal_id: str) -> None:
    """Deleting a principal removes its assignments."""
    session.execute(sa.delete(RoleAssignment).where(RoleAssignment.principal_id == principal_id))


# identity deletes principals (Graph, `control-plane sp delete`) but may not import authorization: it calls this.
identity.register_principal_cleanup(remove_for_principal)
