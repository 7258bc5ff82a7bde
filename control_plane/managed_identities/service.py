"""User-assigned identities (create, update, read, list, delete) and the `identity` block other resources carry.

Every identity is a service principal in the directory of its subscription's tenant: made with the resource (or
when a resource's identity type gains SystemAssigned), removed with it (or when the type drops it), and given roles
like any principal. A principal's role assignments go with it (identity's principal cleanups).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import BadRequest, Forbidden, ResourceNotFound
from control_plane.arm.paging import PageRequest
from control_plane.authorization import scopes
from control_plane.authorization import service as authorization
from control_plane.db import insert_unless_duplicate, utcnow
from control_plane.identity import service as directory
from control_plane.identity.models import ServicePrincipal
from control_plane.identity.tokens import Caller
from control_plane.locks import service as locks
from control_plane.managed_identities.models import RESOURCE_TYPE, UserAssignedIdentity
from control_plane.managed_identities.schemas import BOTH, NONE, SYSTEM, USER
from control_plane.resource_groups import service as resource_groups
from control_plane.resource_groups.models import ResourceGroup

# ARM's rule for userAssignedIdentities names: 3-128 characters, letters, digits, '-' and '_', a letter or digit first.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")
ASSIGN_ACTION = f"{RESOURCE_TYPE}/assign/action"
IDENTITY_ID = re.compile(r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ManagedIdentity/"
                         r"userAssignedIdentities/([^/]+)", re.IGNORECASE)


def validate_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadRequest(f"The resource name '{name[:200]}' is invalid. A user assigned identity name is 3 to 128 "
                         "characters: letters, digits, '-' and '_', starting with a letter or digit.",
                         code="InvalidResourceName", target="resourceName")
    return name


def _caller_fields(caller: Caller) -> tuple[str, str]:
    """systemData's createdBy/createdByType, as registries show them."""
    if caller.principal_type == "User":
        return caller.client_name, "User"
    return caller.app_id or caller.object_id, "Application"


# --- principals ----------------------------------------------------------------------------------------------------


def _new_principal(session: Session, tenant_id: str, display_name: str) -> ServicePrincipal:
    """A managed identity's service principal: no application and no secret (nothing can sign in as it here), a
    fresh appId as its client id."""
    principal = ServicePrincipal(object_id=str(uuid.uuid4()), app_id=str(uuid.uuid4()), tenant_id=tenant_id,
                                 display_name=display_name[:256])
    session.add(principal)
    session.flush()
    return principal


def _release_principal(session: Session, principal_id: str | None) -> None:
    """The principal and its role assignments; one already gone (deleted through Graph) is left alone."""
    principal = directory.principal_by_object_id(session, principal_id) if principal_id else None
    if principal is not None:
        directory.delete_service_principal(session, principal.tenant_id, principal.object_id)


# --- userAssignedIdentities ------------------------------------------------------------------------------------------


def find(session: Session, group: ResourceGroup, name: str) -> UserAssignedIdentity | None:
    return session.scalar(sa.select(UserAssignedIdentity).where(UserAssignedIdentity.resource_group_id == group.id,
                                                                UserAssignedIdentity.name_key == name.lower()))


def get(session: Session, group: ResourceGroup, name: str) -> UserAssignedIdentity:
    identity = find(session, group, name)
    if identity is None:
        raise ResourceNotFound(RESOURCE_TYPE, name, group.name)
    return identity


def create_or_update(session: Session, group: ResourceGroup, name: str, location: str, tags: dict,
                     caller: Caller, tenant_id: str) -> tuple[UserAssignedIdentity, bool]:
    """PUT: (identity, created). A new one gets its principal; the unique index decides a race of two creates."""
    validate_name(name)
    locks.refuse_if_locked(session, f"{group.arm_id}/providers/{RESOURCE_TYPE}/{name}", locks.WRITE)
    by, by_type = _caller_fields(caller)
    identity = find(session, group, name)
    if identity is None:
        identity = UserAssignedIdentity(
            id=str(uuid.uuid4()), subscription_id=group.subscription_id, resource_group_id=group.id,
            resource_group_name=group.name, name=name, name_key=name.lower(), location=location, tags=tags,
            tenant_id=tenant_id, principal_id=str(uuid.uuid4()), client_id=str(uuid.uuid4()), created_by=by,
            created_by_type=by_type, modified_by=by, modified_by_type=by_type)
        if insert_unless_duplicate(session, identity):
            principal = ServicePrincipal(object_id=identity.principal_id, app_id=identity.client_id,
                                         tenant_id=tenant_id, display_name=name)
            session.add(principal)
            session.flush()
            return identity, True
        identity = get(session, group, name)
    if identity.location != location:
        raise BadRequest(f"The resource '{identity.name}' already exists in location '{identity.location}' in "
                         f"resource group '{group.name}'. A resource with the same name cannot be created in "
                         f"location '{location}'. Please select a new resource name.",
                         code="InvalidResourceLocation", target="location")
    identity.tags = tags
    _touch(identity, caller)
    session.flush()
    return identity, False


def update(session: Session, identity: UserAssignedIdentity, tags: dict | None, location: Any,
           caller: Caller) -> UserAssignedIdentity:
    """PATCH: tags replace the whole map; the location never changes."""
    locks.refuse_if_locked(session, identity.arm_id, locks.WRITE)
    if location is not None and (not isinstance(location, str) or
                                 "".join(location.split()).lower() != identity.location):
        raise BadRequest("The property 'location' cannot be changed.", code="InvalidParameter", target="location")
    if tags is not None:
        identity.tags = tags
    _touch(identity, caller)
    session.flush()
    return identity


def _touch(identity: UserAssignedIdentity, caller: Caller) -> None:
    identity.modified_by, identity.modified_by_type = _caller_fields(caller)
    identity.modified_at = utcnow()


def delete(session: Session, identity: UserAssignedIdentity) -> None:
    """The identity, its principal, its principal's role assignments and those scoped to it. Resources that still
    name it keep the entry (ARM does not check): their identity lists a principal that no longer exists."""
    locks.refuse_if_locked(session, identity.arm_id, locks.DELETE)
    _remove(session, identity)


def _remove(session: Session, identity: UserAssignedIdentity) -> None:
    _release_principal(session, identity.principal_id)
    authorization.remove_at_or_below(session, identity.arm_id)
    session.delete(identity)
    session.flush()


def list_page(session: Session, page: PageRequest, subscription_id: str, group: ResourceGroup | None,
              visible: list[str] | None) -> tuple[list[UserAssignedIdentity], tuple | None]:
    """Identities in (group, name) order, a keyset page at a time; `visible` as for registries (None: everything)."""
    query = sa.select(UserAssignedIdentity).where(UserAssignedIdentity.subscription_id == subscription_id) \
        if group is None else sa.select(UserAssignedIdentity).where(UserAssignedIdentity.resource_group_id == group.id)
    found = [i for i in session.scalars(query)
             if visible is None or any(_is_within(i.arm_id.lower(), key) for key in visible)]
    found.sort(key=lambda i: i.arm_id.lower())
    if page.after:
        found = [i for i in found if i.arm_id.lower() > page.after[0]]
    more = len(found) > page.size
    found = found[: page.size]
    return found, ((found[-1].arm_id.lower(),) if more else None)


def _is_within(resource_key: str, scope_key: str) -> bool:
    return resource_key == scope_key or resource_key.startswith(scope_key.rstrip("/") + "/")


def by_resource_id(session: Session, resource_id: str) -> UserAssignedIdentity | None:
    match = IDENTITY_ID.fullmatch(resource_id)
    if match is None:
        return None
    subscription_id, group_name, name = match.groups()
    return session.scalar(
        sa.select(UserAssignedIdentity).join(ResourceGroup, ResourceGroup.id == UserAssignedIdentity.resource_group_id)
        .where(UserAssignedIdentity.subscription_id == subscription_id.lower(),
               ResourceGroup.name_key == group_name.lower(), UserAssignedIdentity.name_key == name.lower()))


# --- the identity block of other resources ---------------------------------------------------------------------------


def _checked_id(key: str) -> str:
    if not IDENTITY_ID.fullmatch(key):
        raise BadRequest(f"Property id '{key[:300]}' at path 'identity.userAssignedIdentities' is invalid. Expect "
                         f"fully qualified resource Id that start with '/subscriptions/{{subscriptionId}}' and "
                         f"name a resource of type '{RESOURCE_TYPE}'.", code="LinkedInvalidPropertyId",
                         target="identity.userAssignedIdentities")
    return key


def _user_assigned(session: Session, requested: list[str], tenant_id: str, owner_id: str
                   ) -> dict[str, dict[str, str]]:
    """The requested map's keys, each an existing identity of this tenant, keyed by its canonical id."""
    result: dict[str, dict[str, str]] = {}
    for key in requested:
        identity = by_resource_id(session, _checked_id(key))
        if identity is None or identity.tenant_id != tenant_id:
            raise BadRequest(f"Identity operation for resource '{owner_id}' failed with error 'Failed to perform "
                             f"resource identity operation. Status: 'NotFound'. Response: 'The user assigned identity "
                             f"'{key[:300]}' was not found.''.", code="FailedIdentityOperation",
                             target="identity.userAssignedIdentities")
        result[identity.arm_id] = {"principalId": identity.principal_id, "clientId": identity.client_id}
    return result


def check(session: Session, requested: dict[str, Any] | None, tenant_id: str, owner_id: str) -> None:
    """A new resource's identity refused before the resource is inserted (reads only): what resource_identity would
    refuse, so a refused create leaves no row (SQLite commits a released savepoint that began the transaction)."""
    _planned(session, requested, {}, tenant_id, owner_id, patch=False)


def _planned(session: Session, requested: dict[str, Any] | None, previous: dict[str, Any], tenant_id: str,
             owner_id: str, *, patch: bool) -> tuple[str, dict[str, dict[str, str]]]:
    """(type, user-assigned identities by canonical id) the request asks for, or ARM's refusal; reads only."""
    kind = requested["type"] if requested else NONE
    sent = (requested or {}).get("userAssignedIdentities") or {}
    if sent and USER not in kind and any(value is not None for value in sent.values()):
        raise BadRequest(f"The identity type '{kind}' cannot have user assigned identities; use '{USER}' or '{BOTH}'.",
                         code="InvalidIdentityType", target="identity.type")
    wanted: list[str] = []
    if USER in kind:
        wanted = list(previous.get("userAssignedIdentities") or {}) if patch else []
        for key, value in sent.items():
            wanted = [k for k in wanted if k.lower() != key.lower()]
            if value is not None:
                wanted.append(key)
        if not wanted:
            raise BadRequest(f"The identity ids must not be null or empty for '{kind}' identity type.",
                             code="InvalidIdentityType", target="identity.userAssignedIdentities")
    return kind, _user_assigned(session, wanted, tenant_id, owner_id)


def resource_identity(session: Session, requested: dict[str, Any] | None, previous: dict[str, Any] | None,
                      tenant_id: str, owner_id: str, owner_name: str, *, patch: bool) -> dict[str, Any] | None:
    """The identity block a resource keeps after a PUT (`patch=False`: the map sent is the whole set) or a PATCH
    (the map sent is merged: an entry set to null removes that identity). Makes the system-assigned principal when
    the type gains SystemAssigned and removes it when the type drops it; None when the type is None."""
    previous = previous or {}
    kind, user_assigned = _planned(session, requested, previous, tenant_id, owner_id, patch=patch)
    system_id = previous.get("principalId") if SYSTEM in (previous.get("type") or "") else None
    if SYSTEM not in kind:
        _release_principal(session, system_id)
        system_id = None
    elif system_id is None or directory.principal_by_object_id(session, system_id) is None:
        system_id = _new_principal(session, tenant_id, owner_name).object_id
    if kind == NONE:
        return None
    result: dict[str, Any] = {"type": kind}
    if system_id:
        result.update(principalId=system_id, tenantId=tenant_id)
    if user_assigned:
        result["userAssignedIdentities"] = user_assigned
    return result


def assigned_identities(requested: dict[str, Any] | None) -> list[str]:
    """The user-assigned identities a request names (not those it removes): each needs the caller's
    `userAssignedIdentities/assign/action` on it, as ARM checks (LinkedAuthorizationFailed). A key that is no
    identity id is refused first (LinkedInvalidPropertyId), as the write itself would."""
    sent = requested.get("userAssignedIdentities") if isinstance(requested, dict) else None
    if not isinstance(sent, dict):
        return []
    return [_checked_id(key) for key, value in sent.items() if value is not None and isinstance(key, str)]


def linked_authorization_failed(caller_name: str, object_id: str, action: str, scope: str,
                                denied: list[str]) -> Forbidden:
    """ARM's refusal of a write whose caller may write the resource but not assign the identities it names."""
    return Forbidden(f"The client '{caller_name}' with object id '{object_id}' has permission to perform action "
                     f"'{action}' on scope '{scope}'; however, it does not have permission to perform action(s) "
                     f"'{ASSIGN_ACTION}' on the linked scope(s) '{','.join(denied)}' (respectively) or the linked "
                     "scope(s) are invalid.", code="LinkedAuthorizationFailed")


def release(session: Session, identity: dict[str, Any] | None) -> None:
    """A resource is deleted: its system-assigned principal goes with it (user-assigned identities stay)."""
    if identity and SYSTEM in (identity.get("type") or ""):
        _release_principal(session, identity.get("principalId"))


# --- registration -----------------------------------------------------------------------------------------------------


def delete_all_in_group(services: Any, group: ResourceGroup) -> None:
    """Group delete: every identity in it, with its principal."""
    with services.db.session() as session:
        for identity in list(session.scalars(sa.select(UserAssignedIdentity)
                                             .where(UserAssignedIdentity.resource_group_id == group.id))):
            _remove(session, identity)


def generic_resources(session: Session, subscription_id: str, after: str | None, limit: int) -> list[dict]:
    """Identities as generic ARM resources, for `GET /subscriptions/{sub}/resources`."""
    query = sa.select(UserAssignedIdentity).where(UserAssignedIdentity.subscription_id == subscription_id)
    items = [{"id": i.arm_id, "name": i.name, "type": RESOURCE_TYPE, "location": i.location, "tags": i.tags or {}}
             for i in session.scalars(query)]
    items = sorted((i for i in items if after is None or i["id"].lower() > after), key=lambda i: i["id"].lower())
    return items[:limit]


def _scope_of(session: Session, subscription_id: str, group_name: str, name: str) -> str:
    return get(session, resource_groups.get(session, subscription_id, group_name), name).arm_id


def register() -> None:
    scopes.register_resource_resolver(RESOURCE_TYPE, _scope_of)
    resource_groups.register_cascade(delete_all_in_group)
    resource_groups.register_resource_lister(RESOURCE_TYPE, generic_resources)
