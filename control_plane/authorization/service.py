"""Role assignments: creation and the clean-up when what they point at goes away."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.authorization.models import RoleAssignment


def scope_key(scope: str) -> str:
    return "/" + scope.strip("/").lower()


def assign(session: Session, tenant_id: str, scope: str, role_definition_id: str, principal_id: str,
           created_by: str | None = None) -> RoleAssignment:
    assignment = RoleAssignment(name=str(uuid.uuid4()), tenant_id=tenant_id, scope="/" + scope.strip("/"),
                                scope_key=scope_key(scope), role_definition_id=role_definition_id,
                                principal_id=principal_id, created_by=created_by, updated_by=created_by)
    session.add(assignment)
    session.flush()
    return assignment


def remove_at_or_below(session: Session, scope: str) -> None:
    """Deleting a resource or group removes the assignments that pointed at it or anything inside it."""
    key = scope_key(scope)
    session.execute(sa.delete(RoleAssignment).where(
        sa.or_(RoleAssignment.scope_key == key, RoleAssignment.scope_key.startswith(key + "/", autoescape=True))
    ))
