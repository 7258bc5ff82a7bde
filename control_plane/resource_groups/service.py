"""Resource groups: create-or-update, read, list, delete (with everything inside), and the generic resource index.

Resource groups know nothing of registries. A resource package registers two hooks at start-up: one that deletes
what it keeps in a group (called by the group-delete operation), and one that lists its resources for
`GET /subscriptions/{sub}/resources`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import BadRequest, Conflict, ResourceGroupNotFound
from control_plane.arm.paging import PageRequest
from control_plane.authorization import scopes
from control_plane.authorization import service as authorization
from control_plane.db import insert_unless_duplicate
from control_plane.locks import service as locks
from control_plane.operations import service as operations
from control_plane.resource_groups.models import ResourceGroup

GROUP_NAME = re.compile(r"^[-\w._()]+$")
DELETE_KIND = "resourceGroups/delete"

# Hooks the resource packages register: (services, session, group) -> None, and a lister of generic resources.
GroupCascade = Callable[[Any, ResourceGroup], None]
ResourceLister = Callable[[Session, str, str | None, int], list[dict]]
CASCADES: list[GroupCascade] = []
RESOURCE_LISTERS: dict[str, ResourceLister] = {}


def register_cascade(cascade: GroupCascade) -> None:
    CASCADES.append(cascade)


def register_resource_lister(resource_type: str, lister: ResourceLister) -> None:
    RESOURCE_LISTERS[resource_type.lower()] = lister


def validate_name(name: str) -> str:
    # fullmatch: `$` alone would also match before a trailing newline. The lower-cased key must fit too: a few
    # letters (such as 'İ') grow when lower-cased, and name_key holds 90 characters.
    if not 1 <= len(name.lower()) <= 90 or not GROUP_NAME.fullmatch(name) or name.endswith("."):
        raise BadRequest(f"The provided resource group name '{name[:100]}' has these invalid characters or length. "
                         "The name can only be a letter, digit, '-', '.', '(', ')' or '_', at most 90 characters, "
                         "and may not end with '.'.", code="InvalidResourceGroup", target="resourceGroupName")
    return name


def find(session: Session, subscription_id: str, name: str) -> ResourceGroup | None:
    return session.scalar(sa.select(ResourceGroup).where(
        ResourceGroup.subscription_id == subscription_id, ResourceGroup.name_key == name.lower()))


def get(session: Session, subscription_id: str, name: str) -> ResourceGroup:
    group = find(session, subscription_id, name)
    if group is None:
        raise ResourceGroupNotFound(name)
    return group


def get_writable(session: Session, subscription_id: str, name: str) -> ResourceGroup:
    """The group, refusing changes inside it while it is being deleted."""
    group = get(session, subscription_id, name)
    if group.provisioning_state == "Deleting":
        raise Conflict(f"The resource group '{group.name}' is in deprovisioning state and cannot perform this "
                       "operation.", code="ResourceGroupBeingDeleted")
    return group


def create_or_update(session: Session, subscription_id: str, name: str, location: str, tags: dict,
                     managed_by: str | None) -> tuple[ResourceGroup, bool]:
    """Returns (group, created). The unique index decides a race between two creates of one name."""
    validate_name(name)
    locks.refuse_if_locked(session, f"/subscriptions/{subscription_id}/resourceGroups/{name}", locks.WRITE)
    group = find(session, subscription_id, name)
    if group is None:
        group = ResourceGroup(id=str(uuid.uuid4()), subscription_id=subscription_id, name=name,
                              name_key=name.lower(), location=location, tags=tags, managed_by=managed_by)
        if insert_unless_duplicate(session, group):
            return group, True
        group = get(session, subscription_id, name)
    get_writable(session, subscription_id, name)  # refuses a group being deleted
    if group.location != location:
        raise BadRequest(f"Invalid resource group location '{location}'. The Resource group already exists in "
                         f"location '{group.location}'.", code="InvalidResourceGroupLocation", target="location")
    group.tags = tags
    group.managed_by = managed_by
    session.flush()
    return group, False


def update(session: Session, group: ResourceGroup, tags: dict | None, managed_by: str | None) -> ResourceGroup:
    locks.refuse_if_locked(session, group.arm_id, locks.WRITE)
    if tags is not None:
        group.tags = tags
    if managed_by is not None:
        group.managed_by = managed_by
    session.flush()
    return group


def list_page(session: Session, subscription_id: str, page: PageRequest,
              visible_names: set[str] | None = None) -> tuple[list[ResourceGroup], tuple | None]:
    """Groups in name order; `visible_names` (lower-cased) narrows the list to what a caller may read."""
    query = sa.select(ResourceGroup).where(ResourceGroup.subscription_id == subscription_id)
    if visible_names is not None:
        query = query.where(ResourceGroup.name_key.in_(sorted(visible_names)))
    if page.after:
        query = query.where(ResourceGroup.name_key > page.after[0])
    groups = list(session.scalars(query.order_by(ResourceGroup.name_key).limit(page.size + 1)))
    more = len(groups) > page.size
    groups = groups[: page.size]
    return groups, ((groups[-1].name_key,) if more else None)


def begin_delete(session: Session, group: ResourceGroup) -> operations.Operation:
    locks.refuse_if_locked(session, group.arm_id, locks.DELETE)  # locks beneath it too: no cascade into them
    group.provisioning_state = "Deleting"
    return operations.start(session, DELETE_KIND, group.subscription_id, group.arm_id, prefix="rg",
                            payload={"groupId": group.id})


def run_delete(services: Any, operation: operations.Operation) -> None:
    """The group-delete operation: every registered cascade, then the group itself and its role assignments."""
    with services.db.session() as session:
        group = session.get(ResourceGroup, operation.payload["groupId"])
    if group is None:
        return
    for cascade in CASCADES:
        cascade(services, group)
    with services.db.session() as session:
        session.execute(sa.delete(ResourceGroup).where(ResourceGroup.id == group.id))
        authorization.remove_at_or_below(session, group.arm_id)


def restore_after_failed_delete(services: Any, operation: operations.Operation, _message: str) -> None:
    with services.db.session() as session:
        group = session.get(ResourceGroup, operation.payload["groupId"])
        if group is not None:
            group.provisioning_state = "Succeeded"


def _scope_of(session: Session, subscription_id: str, name: str) -> str:
    return get(session, subscription_id, name).arm_id


def register() -> None:
    operations.register_handler(DELETE_KIND, run_delete, on_failure=restore_after_failed_delete)
    scopes.register_group_resolver(_scope_of)


def list_resources(session: Session, subscription_id: str, resource_type: str | None,
                   page: PageRequest, group_name: str | None = None) -> tuple[list[dict], tuple | None]:
    """Generic resources of a subscription or of one group, optionally of one type (what `az acr ... -n` looks up).

    Each lister returns its resources ordered by lower-cased id after the page's key; merging them keeps the
    keyset order across types. A group's ids share a prefix, so they are one run in that order, starting after it.
    """
    if resource_type is None:
        listers = list(RESOURCE_LISTERS.values())
    else:
        lister = RESOURCE_LISTERS.get(resource_type.lower())
        listers = [lister] if lister else []
    after = page.after[0] if page.after else None
    prefix = f"/subscriptions/{subscription_id}/resourcegroups/{group_name}/".lower() if group_name else ""
    if prefix and (after is None or after < prefix):
        after = prefix
    merged = sorted((r for lister in listers for r in lister(session, subscription_id, after, page.size + 1)
                     if r["id"].lower().startswith(prefix)), key=lambda r: r["id"].lower())
    more = len(merged) > page.size
    merged = merged[: page.size]
    return merged, ((merged[-1]["id"].lower(),) if more else None)
