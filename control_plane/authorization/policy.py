"""The decision: may this principal perform this action on this scope?

A principal (service principal or user) is allowed when one of its role assignments, or one of a group it belongs
to directly or through nested groups, at the scope or any parent of it, has a role that grants the action. Scopes
are compared case-insensitively as `/`-separated paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.authorization import roles
from control_plane.authorization.models import RoleAssignment
from control_plane.identity.directory import transitive_groups


def scope_key(scope: str) -> str:
    return "/" + scope.strip("/").lower()


def is_at_or_above(assignment_scope_key: str, target_key: str) -> bool:
    return (assignment_scope_key == "/" or target_key == assignment_scope_key
            or target_key.startswith(assignment_scope_key + "/"))


def subscription_scope(subscription_id: str) -> str:
    return f"/subscriptions/{subscription_id}"


def group_scope(subscription_id: str, group_name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group_name}"


def registry_scope(subscription_id: str, group_name: str, registry_name: str) -> str:
    return (f"/subscriptions/{subscription_id}/resourceGroups/{group_name}"
            f"/providers/Microsoft.ContainerRegistry/registries/{registry_name}")


@dataclass(frozen=True)
class Grant:
    scope_key: str
    role: roles.RoleDefinition


class Permissions:
    """One principal's grants, loaded once per request and asked as often as a list needs."""

    def __init__(self, grants: Iterable[Grant]):
        self.grants = tuple(grants)

    def allows(self, action: str, scope: str) -> bool:
        target = scope_key(scope)
        return any(is_at_or_above(g.scope_key, target) and g.role.grants(action) for g in self.grants)

    def allowed_below(self, action: str, scope: str) -> list[str] | None:
        """None when the action is allowed on the whole scope; else the scope keys inside it where it is."""
        if self.allows(action, scope):
            return None
        target = scope_key(scope)
        return sorted({g.scope_key for g in self.grants
                       if g.scope_key.startswith(target + "/") and g.role.grants(action)})

    def touches(self, scope: str) -> bool:
        """Any grant at, above or below the scope: what makes a subscription visible in `GET /subscriptions`."""
        target = scope_key(scope)
        return any(is_at_or_above(g.scope_key, target) or g.scope_key.startswith(target + "/") for g in self.grants)


# Built once: every authenticated request whose access is not cached runs it. One round trip: the principal's own
# assignments and those of its groups, found by a recursive query.
_GROUPS_OF = transitive_groups(sa.bindparam("principal_id"))
_ASSIGNMENTS_OF = (sa.select(RoleAssignment.scope_key, RoleAssignment.role_definition_id)
                   .where(sa.or_(RoleAssignment.principal_id == sa.bindparam("principal_id"),
                                 RoleAssignment.principal_id.in_(sa.select(_GROUPS_OF.c.group_id))),
                          RoleAssignment.tenant_id == sa.bindparam("tenant_id")))


def permissions_of(session: Session, principal_id: str, tenant_id: str) -> Permissions:
    assignments = session.execute(_ASSIGNMENTS_OF, {"principal_id": principal_id, "tenant_id": tenant_id}).all()
    return Permissions(Grant(row.scope_key, role) for row in assignments
                       if (role := roles.find(row.role_definition_id)) is not None)


def denial_message(app_id: str, object_id: str, action: str, scope: str) -> str:
    return (f"The client '{app_id or object_id}' with object id '{object_id}' does not have authorization to perform "
            f"action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
            "please refresh your credentials.")
