"""What `control-plane user ...` and `control-plane group ...` do, on one tenant (the CLI passes `init`'s): the
same directory operations Graph offers, with names a person types (`alice`, a group's display name) accepted
wherever an object id is.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.identity import directory
from control_plane.identity import service as principals
from control_plane.identity.errors import GraphBadRequest, GraphNotFound
from control_plane.identity.models import DirectoryGroup, ServicePrincipal, User


def _user_json(user: User) -> dict[str, Any]:
    return {"userPrincipalName": user.user_principal_name, "id": user.object_id, "displayName": user.display_name,
            "accountEnabled": user.account_enabled}


def _group_json(group: DirectoryGroup) -> dict[str, Any]:
    return {"id": group.object_id, "displayName": group.display_name, "mailNickname": group.mail_nickname,
            "description": group.description}


def _user(session: Session, tenant_id: str, identifier: str) -> User:
    """By object id, UPN, or the name before the tenant's domain."""
    name = identifier if "@" in identifier or principals.is_guid(identifier.lower()) else \
        f"{identifier}@{directory.tenant_domain(session, tenant_id)}"
    return directory.get_user(session, tenant_id, name)


def create_user(session: Session, tenant_id: str, name: str, password: str | None,
                display_name: str | None) -> dict[str, Any]:
    new = directory.create_user(session, tenant_id, name, display_name, password)
    return {"userPrincipalName": new.user.user_principal_name, "id": new.user.object_id, "tenant": tenant_id,
            "displayName": new.user.display_name, "password": new.password}


def list_users(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    return [_user_json(u) for u in directory.users_of_tenant(session, tenant_id)]


def delete_user(session: Session, tenant_id: str, identifier: str) -> dict[str, Any]:
    user = _user(session, tenant_id, identifier)
    deleted = _user_json(user)
    directory.delete_user(session, tenant_id, user.object_id)
    return {**deleted, "deleted": True}


def reset_password(session: Session, tenant_id: str, identifier: str, password: str | None) -> dict[str, Any]:
    user, password = directory.reset_password(session, tenant_id, _user(session, tenant_id, identifier).object_id,
                                              password)
    return {"userPrincipalName": user.user_principal_name, "id": user.object_id, "tenant": tenant_id,
            "password": password}


def set_enabled(session: Session, tenant_id: str, identifier: str, enabled: bool) -> dict[str, Any]:
    user = directory.update_user(session, tenant_id, _user(session, tenant_id, identifier).object_id,
                                 {"account_enabled": enabled})
    return _user_json(user)


def _group(session: Session, tenant_id: str, identifier: str) -> DirectoryGroup:
    """By object id, or by display name when exactly one group has it."""
    if principals.is_guid(identifier.lower()):
        return directory.get_group(session, tenant_id, identifier)
    named = directory.groups_named(session, tenant_id, identifier)
    if len(named) > 1:
        raise GraphBadRequest(f"{len(named)} groups are named '{identifier}': use the object id of one of "
                              f"{', '.join(g.object_id for g in named)}.")
    if not named:
        raise GraphNotFound(identifier)
    return named[0]


def create_group(session: Session, tenant_id: str, name: str, description: str | None) -> dict[str, Any]:
    """Like `az ad group create`: an existing group of that name is returned rather than made twice."""
    named = directory.groups_named(session, tenant_id, name)
    group = named[0] if named else directory.create_group(session, tenant_id, name, description=description)
    return {**_group_json(group), "tenant": tenant_id}


def list_groups(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    groups = session.scalars(sa.select(DirectoryGroup).where(DirectoryGroup.tenant_id == tenant_id)
                             .order_by(DirectoryGroup.display_name, DirectoryGroup.object_id))
    return [_group_json(g) for g in groups]


def delete_group(session: Session, tenant_id: str, identifier: str) -> dict[str, Any]:
    group = _group(session, tenant_id, identifier)
    deleted = _group_json(group)
    directory.delete_group(session, tenant_id, group.object_id)
    return {**deleted, "deleted": True}


def _member_id(session: Session, tenant_id: str, identifier: str) -> str:
    """An object id (user, group, service principal), a service principal's appId, a user's UPN or name, or a
    group's display name — in that order."""
    key = identifier.lower()
    if principals.is_guid(key):
        principal = session.scalar(sa.select(ServicePrincipal).where(ServicePrincipal.app_id == key,
                                                                     ServicePrincipal.tenant_id == tenant_id))
        if principal is not None:
            return principal.object_id
        directory.directory_object(session, tenant_id, key)  # 404 unless it names an object of the tenant
        return key
    try:
        return _user(session, tenant_id, identifier).object_id
    except (GraphNotFound, GraphBadRequest):
        return _group(session, tenant_id, identifier).object_id


def _kind_and_name(kind: str, item: Any) -> dict[str, Any]:
    if kind == directory.USER:
        return {"type": "User", **_user_json(item)}
    if kind == directory.GROUP:
        return {"type": "Group", **_group_json(item)}
    return {"type": "ServicePrincipal", "id": item.principal.object_id, "appId": item.principal.app_id,
            "displayName": item.principal.display_name}


def add_member(session: Session, tenant_id: str, group: str, member: str) -> dict[str, Any]:
    target = _group(session, tenant_id, group)
    member_id = _member_id(session, tenant_id, member)
    directory.add_member(session, tenant_id, target.object_id, member_id)
    return {"group": target.object_id, "member": _kind_and_name(*directory.directory_object(session, tenant_id,
                                                                                              member_id))}


def remove_member(session: Session, tenant_id: str, group: str, member: str) -> dict[str, Any]:
    target = _group(session, tenant_id, group)
    member_id = _member_id(session, tenant_id, member)
    directory.remove_member(session, tenant_id, target.object_id, member_id)
    return {"group": target.object_id, "member": member_id, "removed": True}


def list_members(session: Session, tenant_id: str, group: str) -> list[dict[str, Any]]:
    target = _group(session, tenant_id, group)
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        members, after = directory.list_members(session, tenant_id, target.object_id, after, 1000)
        found += [_kind_and_name(kind, item) for kind, item in members]
        if after is None:
            return found
