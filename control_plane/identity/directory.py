"""Users and security groups of the built-in directory, and group membership (users, service principals and
nested groups as members).

Every function is scoped to one tenant: another tenant's object is "not found". Callers check the caller's
privileges (only the tenant administrator changes the directory); these functions keep it consistent. What they
change — users, groups, memberships — is watched by the access-generation triggers (migration 0007), so removing a
member or disabling a user applies to the very next request on every replica.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.db import insert_unless_duplicate, is_unique_violation
from control_plane.identity import passwords
from control_plane.identity import service as principals
from control_plane.identity.errors import GraphBadRequest, GraphConflict, GraphNotFound
from control_plane.identity.models import DirectoryGroup, GroupMember, ServicePrincipal, Tenant, User
from control_plane.identity.service import DirectoryClause, PrincipalView, is_guid

USER, GROUP, SERVICE_PRINCIPAL = "user", "group", principals.SERVICE_PRINCIPAL
MAX_LOCAL_PART = 64
MAX_NICKNAME = 64
MAX_DESCRIPTION = 1024
# Entra's UPN local part: letters, digits and ' _ ! # ^ ~ - , dot-separated (no leading, trailing or double dot).
_LOCAL_PART = re.compile(r"[A-Za-z0-9'_!#^~-]+(?:\.[A-Za-z0-9'_!#^~-]+)*")

DirectoryObject = User | DirectoryGroup | PrincipalView


@dataclass(frozen=True)
class NewUser:
    user: User
    password: str  # shown once


# -- membership, transitively -------------------------------------------------------------------------------------


def transitive_groups(member_id: Any) -> sa.CTE:
    """The ids of the groups `member_id` (a value or bind parameter) belongs to, directly or through nested groups.

    One recursive query; UNION (not UNION ALL) drops rows already found, so a cycle ends the recursion.
    """
    found = (sa.select(GroupMember.group_id).where(GroupMember.member_id == member_id)
             .cte("memberships", recursive=True))
    return found.union(sa.select(GroupMember.group_id).join(found, GroupMember.member_id == found.c.group_id))


def _groups_of(session: Session, member_id: str) -> set[str]:
    groups = transitive_groups(member_id)
    return set(session.scalars(sa.select(groups.c.group_id)))


# -- look-ups -----------------------------------------------------------------------------------------------------


def tenant_domain(session: Session, tenant_id: str) -> str:
    domain = session.scalar(sa.select(Tenant.default_domain).where(Tenant.id == tenant_id))
    if domain is None:
        raise GraphNotFound(tenant_id)
    return domain


def user_principal_name(session: Session, tenant_id: str, name: str) -> str:
    """`alice` -> `alice@<the tenant's domain>`; a full UPN must use that domain (Entra: a verified domain)."""
    domain = tenant_domain(session, tenant_id)
    local, at, given_domain = name.strip().partition("@")
    if at and given_domain.lower() != domain:
        raise GraphBadRequest(f"The domain portion of the userPrincipalName property is invalid. You must use one "
                              f"of the verified domain names in your organization: {domain}.")
    if not _LOCAL_PART.fullmatch(local) or len(local) > MAX_LOCAL_PART:
        raise GraphBadRequest(f"Invalid value specified for property 'userPrincipalName' of resource 'User': "
                              f"'{name[:100]}'. The part before '@' must be 1 to {MAX_LOCAL_PART} letters, digits "
                              "or ' _ ! # ^ ~ - . (no leading, trailing or double dot).")
    return f"{local}@{domain}"


def find_user(session: Session, tenant_id: str, id_or_upn: str) -> User | None:
    """By object id or by UPN (any case)."""
    if is_guid(id_or_upn.lower()):
        user = session.get(User, id_or_upn.lower())
    else:
        user = session.scalar(sa.select(User).where(User.upn_key == id_or_upn.lower()))
    return user if user is not None and user.tenant_id == tenant_id else None


def get_user(session: Session, tenant_id: str, id_or_upn: str) -> User:
    user = find_user(session, tenant_id, id_or_upn)
    if user is None:
        raise GraphNotFound(id_or_upn)
    return user


def get_group(session: Session, tenant_id: str, object_id: str) -> DirectoryGroup:
    group = session.get(DirectoryGroup, object_id.lower()) if is_guid(object_id.lower()) else None
    if group is None or group.tenant_id != tenant_id:
        raise GraphNotFound(object_id)
    return group


def directory_object(session: Session, tenant_id: str, object_id: str) -> tuple[str, DirectoryObject]:
    """Any object that can be a member or be asked about its groups: (Graph type, object)."""
    key = object_id.lower()
    if is_guid(key):
        for kind, model in ((USER, User), (GROUP, DirectoryGroup), (SERVICE_PRINCIPAL, ServicePrincipal)):
            found = session.get(model, key)
            if found is not None and found.tenant_id == tenant_id:
                if kind == SERVICE_PRINCIPAL:
                    return kind, principals.get_service_principal(session, tenant_id, key)
                return kind, found
    raise GraphNotFound(object_id)


def active_user(session: Session, object_id: str) -> User | None:
    """The user a token names, if it may still act: it exists and its account is enabled."""
    user = session.get(User, object_id)
    return user if user is not None and user.account_enabled else None


# -- users ----------------------------------------------------------------------------------------------------------


def _checked_password(password: str | None) -> str:
    if password is None:
        return passwords.generate_password()
    if problem := passwords.complexity_problem(password):
        raise GraphBadRequest(problem)
    return password


def _nickname(value: str) -> str:
    nickname = re.sub(r"[^A-Za-z0-9._-]", "", value)[:MAX_NICKNAME]
    return nickname or "user"


def create_user(session: Session, tenant_id: str, name: str, display_name: str | None = None,
                password: str | None = None, mail_nickname: str | None = None,
                account_enabled: bool = True) -> NewUser:
    """A user `name@<domain>` (or the full UPN given); a password is generated when none is given."""
    upn = user_principal_name(session, tenant_id, name)
    password = _checked_password(password)
    user = User(object_id=str(uuid.uuid4()), tenant_id=tenant_id, user_principal_name=upn, upn_key=upn.lower(),
                display_name=display_name or upn.split("@")[0], mail_nickname=mail_nickname or _nickname(upn),
                password_hash=passwords.hash_password(password), account_enabled=account_enabled,
                security_stamp=secrets.token_hex(16))
    if not insert_unless_duplicate(session, user):
        raise GraphConflict("Another object with the same value for property userPrincipalName already exists.")
    return NewUser(user, password)


def _user_properties(user: User) -> dict[str, Any]:
    return {"id": user.object_id, "displayName": user.display_name, "userPrincipalName": user.user_principal_name,
            "mailNickname": user.mail_nickname}


def _page(query: sa.Select, key: Any, clauses: list[DirectoryClause], properties, after: str | None,
          limit: int, session: Session) -> tuple[list, bool]:
    """One page of rows matching every clause (SQL narrows; `clause_holds` decides), by key after `after`."""
    if after:
        query = query.where(key > after)
    found: list = []
    for row in session.scalars(query.order_by(key)):
        if all(principals.clause_holds(c, properties(row)) for c in clauses):
            found.append(row)
            if len(found) > limit:
                break
    return found[:limit], len(found) > limit


def list_users(session: Session, tenant_id: str, clauses: list[DirectoryClause], after: str | None,
               limit: int) -> tuple[list[User], bool]:
    query = sa.select(User).where(User.tenant_id == tenant_id)
    for clause in clauses:
        if clause.property == "userPrincipalName" and clause.operator == "eq":
            query = query.where(User.upn_key == clause.value.lower())
        elif clause.property == "id" and clause.operator == "eq":
            query = query.where(User.object_id == clause.value.lower())
    return _page(query, User.object_id, clauses, _user_properties, after, limit, session)


def update_user(session: Session, tenant_id: str, id_or_upn: str, changes: dict[str, Any]) -> User:
    """changes: any of display_name, mail_nickname, account_enabled, password, user_principal_name (validated
    shapes). A new password or disabling the account revokes the user's refresh tokens."""
    user = get_user(session, tenant_id, id_or_upn)
    if "user_principal_name" in changes:
        upn = user_principal_name(session, tenant_id, changes["user_principal_name"])
        user.user_principal_name, user.upn_key = upn, upn.lower()
    for name in ("display_name", "mail_nickname"):
        if name in changes:
            setattr(user, name, changes[name])
    if "password" in changes:
        user.password_hash = passwords.hash_password(_checked_password(changes["password"]))
        user.security_stamp = secrets.token_hex(16)
    if "account_enabled" in changes and changes["account_enabled"] != user.account_enabled:
        user.account_enabled = changes["account_enabled"]
        user.security_stamp = secrets.token_hex(16)
    try:
        session.flush()
    except IntegrityError as exc:  # the UPN is taken: the whole change is refused (and rolled back)
        if not is_unique_violation(exc):
            raise
        raise GraphConflict("Another object with the same value for property userPrincipalName already "
                            "exists.") from None
    return user


def reset_password(session: Session, tenant_id: str, id_or_upn: str, password: str | None = None
                   ) -> tuple[User, str]:
    """A new password (generated when none is given, shown once); the old one and its refresh tokens stop working."""
    password = _checked_password(password)
    return update_user(session, tenant_id, id_or_upn, {"password": password}), password


def _forget_member(session: Session, object_id: str) -> None:
    """What goes with a deleted object: its memberships and (through the cleanups) its role assignments."""
    session.execute(sa.delete(GroupMember).where(GroupMember.member_id == object_id))
    for cleanup in principals.PRINCIPAL_CLEANUPS:
        cleanup(session, object_id)


def delete_user(session: Session, tenant_id: str, id_or_upn: str) -> User:
    user = get_user(session, tenant_id, id_or_upn)
    _forget_member(session, user.object_id)
    session.delete(user)
    session.flush()
    return user


def users_of_tenant(session: Session, tenant_id: str) -> list[User]:
    return list(session.scalars(sa.select(User).where(User.tenant_id == tenant_id)
                                .order_by(User.upn_key)))


# -- groups ---------------------------------------------------------------------------------------------------------


def _group_properties(group: DirectoryGroup) -> dict[str, Any]:
    return {"id": group.object_id, "displayName": group.display_name, "mailNickname": group.mail_nickname}


def create_group(session: Session, tenant_id: str, display_name: str, mail_nickname: str | None = None,
                 description: str | None = None) -> DirectoryGroup:
    """A security group. As in Entra, display names need not be unique."""
    group = DirectoryGroup(object_id=str(uuid.uuid4()), tenant_id=tenant_id, display_name=display_name,
                           mail_nickname=mail_nickname or _nickname(display_name), description=description)
    session.add(group)
    session.flush()
    return group


def list_groups(session: Session, tenant_id: str, clauses: list[DirectoryClause], after: str | None,
                limit: int) -> tuple[list[DirectoryGroup], bool]:
    query = sa.select(DirectoryGroup).where(DirectoryGroup.tenant_id == tenant_id)
    for clause in clauses:
        if clause.property == "id" and clause.operator == "eq":
            query = query.where(DirectoryGroup.object_id == clause.value.lower())
    return _page(query, DirectoryGroup.object_id, clauses, _group_properties, after, limit, session)


def groups_named(session: Session, tenant_id: str, display_name: str) -> list[DirectoryGroup]:
    """Groups whose display name is exactly this, in any case."""
    groups, _ = list_groups(session, tenant_id, [DirectoryClause("displayName", "eq", display_name)], None, 1000)
    return groups


def delete_group(session: Session, tenant_id: str, object_id: str) -> DirectoryGroup:
    """The group, its member list, its own memberships and its role assignments: its members lose what it gave."""
    group = get_group(session, tenant_id, object_id)
    session.execute(sa.delete(GroupMember).where(GroupMember.group_id == group.object_id))
    _forget_member(session, group.object_id)
    session.delete(group)
    session.flush()
    return group


def add_member(session: Session, tenant_id: str, group_id: str, member_id: str) -> None:
    group = get_group(session, tenant_id, group_id)
    kind, _ = directory_object(session, tenant_id, member_id)
    member_key = member_id.lower()
    if kind == GROUP and (member_key == group.object_id or member_key in _groups_of(session, group.object_id)):
        raise GraphBadRequest(f"The group '{member_id}' cannot be added to '{group.display_name}': it contains that "
                              "group already, directly or through nested groups, or is that group.")
    if not insert_unless_duplicate(session, GroupMember(group_id=group.object_id, member_id=member_key,
                                                        member_type=kind)):
        raise GraphBadRequest("One or more added object references already exist for the following modified "
                              "properties: 'members'.")


def remove_member(session: Session, tenant_id: str, group_id: str, member_id: str) -> None:
    group = get_group(session, tenant_id, group_id)
    removed = session.execute(sa.delete(GroupMember).where(
        GroupMember.group_id == group.object_id, GroupMember.member_id == member_id.lower())).rowcount
    if not removed:
        raise GraphNotFound(member_id)


def list_members(session: Session, tenant_id: str, group_id: str, after: str | None, limit: int
                 ) -> tuple[list[tuple[str, DirectoryObject]], str | None]:
    """One page of the group's direct members by object id, and the last one's id when more follow."""
    group = get_group(session, tenant_id, group_id)
    query = sa.select(GroupMember.member_id).where(GroupMember.group_id == group.object_id)
    if after:
        query = query.where(GroupMember.member_id > after)
    ids = list(session.scalars(query.order_by(GroupMember.member_id).limit(limit + 1)))
    return _objects(session, tenant_id, ids[:limit]), ids[limit - 1] if len(ids) > limit else None


def member_groups(session: Session, tenant_id: str, object_id: str) -> list[str]:
    """getMemberGroups: every group the object belongs to, directly or through nested groups."""
    directory_object(session, tenant_id, object_id)  # 404 for an unknown object, as Graph answers
    return sorted(_groups_of(session, object_id.lower()))


def check_member_groups(session: Session, tenant_id: str, object_id: str, group_ids: Iterable[str]) -> list[str]:
    """checkMemberGroups: those of `group_ids` the object belongs to (transitively), in the order asked."""
    groups = set(member_groups(session, tenant_id, object_id))
    return [g for g in dict.fromkeys(group_ids) if g.lower() in groups]


# -- directory objects of any type ----------------------------------------------------------------------------------


def _objects(session: Session, tenant_id: str, ids: list[str]) -> list[tuple[str, DirectoryObject]]:
    """The tenant's users, groups and service principals among `ids`, in that order; unknown ids are left out."""
    found: dict[str, tuple[str, DirectoryObject]] = {}
    if ids:
        for user in session.scalars(sa.select(User).where(User.object_id.in_(ids), User.tenant_id == tenant_id)):
            found[user.object_id] = (USER, user)
        for group in session.scalars(sa.select(DirectoryGroup).where(DirectoryGroup.object_id.in_(ids),
                                                                     DirectoryGroup.tenant_id == tenant_id)):
            found[group.object_id] = (GROUP, group)
        for view in principals.directory_objects(session, tenant_id, ids, {SERVICE_PRINCIPAL.lower()}):
            found[view.principal.object_id] = (SERVICE_PRINCIPAL, view)
    return [found[i] for i in ids if i in found]


def objects_by_ids(session: Session, tenant_id: str, ids: list[str], types: set[str]
                   ) -> list[tuple[str, Any]]:
    """getByIds over every type: users, groups, service principals and applications (types lower-cased)."""
    wanted = list(dict.fromkeys(i.lower() for i in ids if is_guid(i.lower())))
    found = {_object_id(kind, obj): (kind, obj) for kind, obj in _objects(session, tenant_id, wanted)
             if kind.lower() in types}
    if principals.APPLICATION.lower() in types:
        for view in principals.directory_objects(session, tenant_id, wanted, {principals.APPLICATION.lower()}):
            found[view.application.object_id] = (principals.APPLICATION, view)
    return [found[i] for i in wanted if i in found]


def _object_id(kind: str, obj: Any) -> str:
    return obj.principal.object_id if kind == SERVICE_PRINCIPAL else obj.object_id
