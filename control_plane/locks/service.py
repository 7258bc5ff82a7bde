"""Management locks: create, read, list, delete — and `refuse_if_locked`, the one check every write and delete of
every resource service makes before it changes anything.

A lock applies to its scope and everything beneath it. CanNotDelete refuses deletes; ReadOnly refuses deletes and
every write, POST actions such as listCredentials included (ARM counts them as writes). Deleting a scope is also
refused while anything beneath it is locked (a group delete never cascades into a locked resource). Locks
themselves are exempt, or a ReadOnly lock could never be removed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import BadRequest, Conflict, NotFound
from control_plane.authorization import scopes
from control_plane.authorization.policy import is_at_or_above, scope_key
from control_plane.db import insert_unless_duplicate, utcnow
from control_plane.locks.models import ManagementLock

CAN_NOT_DELETE, READ_ONLY = "CanNotDelete", "ReadOnly"
LEVELS = (CAN_NOT_DELETE, READ_ONLY)
MAX_NAME = 260
MAX_NOTES = 512
# The characters ARM refuses in a lock name (besides control characters).
NAME_FORBIDDEN = re.compile(r"[<>%&:\\?/\x00-\x1f\x7f]")

Operation = Literal["write", "delete"]
WRITE: Operation = "write"
DELETE: Operation = "delete"


@dataclass(frozen=True)
class LockRequest:
    level: str
    notes: str | None
    owners: list[dict]


class ScopeLocked(Conflict):
    code = "ScopeLocked"

    def __init__(self, scope: str, operation: Operation, locked: list[str]):
        super().__init__(f"The scope '{scope}' cannot perform {operation} operation because following scope(s) are "
                         f"locked: '{','.join(locked)}'. Please remove the lock and try again.")


class LockNotFound(NotFound):
    code = "LockNotFound"

    def __init__(self, name: str):
        super().__init__(f"The lock '{name[:MAX_NAME]}' could not be found.")


def normalise_scope(scope: str) -> str:
    """`/`-led, without empty segments: the SDK's resource-level URLs hold `//` where a resource has no parent."""
    return "/" + "/".join(part for part in scope.split("/") if part)


def validate_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME or NAME_FORBIDDEN.search(name) or len(name.lower()) > MAX_NAME:
        raise BadRequest(f"The lock name '{name[:MAX_NAME]}' is invalid. A lock name is 1 to {MAX_NAME} characters "
                         "and cannot contain <, >, %, &, :, \\, ?, / or control characters.",
                         code="InvalidResourceName", target="lockName")
    return name


def resolve_scope(session: Session, scope: str) -> tuple[str, str]:
    """(scope in its resource's own casing, subscription id) of an existing subscription, group or registry."""
    parts = scope.strip("/").split("/")
    if len(parts) not in (2, 4, 8) or parts[0].lower() != "subscriptions":
        raise BadRequest(f"The scope '{scope[:300]}' is not valid for a lock: it must be a subscription, a resource "
                         "group or a resource id.", code="InvalidScope", target="scope")
    if len(parts) == 8 and f"{parts[5]}/{parts[6]}".lower() not in scopes.RESOURCE_RESOLVERS:
        raise NotFound(f"The resource type '{parts[5]}/{parts[6]}' of the lock's scope is not hosted by this "
                       "service.", code="InvalidResourceType")
    return scopes.resolve(session, scope)


def find(session: Session, scope: str, name: str) -> ManagementLock | None:
    return session.scalar(sa.select(ManagementLock).where(ManagementLock.scope_key == scope_key(scope),
                                                          ManagementLock.name_key == name.lower()))


def get(session: Session, scope: str, name: str) -> ManagementLock:
    lock = find(session, scope, name)
    if lock is None:
        raise LockNotFound(name)
    return lock


def create_or_update(session: Session, scope: str, name: str, request: LockRequest,
                     caller_object_id: str) -> tuple[ManagementLock, bool]:
    """PUT: (lock, created). The unique index decides a race between two creates of one name."""
    validate_name(name)
    canonical, subscription_id = resolve_scope(session, scope)
    lock = find(session, canonical, name)
    if lock is None:
        lock = ManagementLock(id=str(uuid.uuid4()), subscription_id=subscription_id, scope=canonical,
                              scope_key=scope_key(canonical), name=name, name_key=name.lower(), level=request.level,
                              notes=request.notes, owners=request.owners, created_by=caller_object_id,
                              updated_by=caller_object_id)
        if insert_unless_duplicate(session, lock):
            return lock, True
        lock = get(session, canonical, name)
    lock.level, lock.notes, lock.owners = request.level, request.notes, request.owners
    lock.updated_by, lock.updated_at = caller_object_id, utcnow()
    session.flush()
    return lock, False


def delete(session: Session, lock: ManagementLock) -> None:
    session.delete(lock)
    session.flush()


def list_for_scope(session: Session, scope: str, at_scope_only: bool) -> list[ManagementLock]:
    """Locks that apply at the scope (at it or above it) and, unless atScope(), those beneath it; in id order."""
    target = scope_key(scope)
    subscription = "/".join(target.split("/")[:3])
    query = sa.select(ManagementLock).where(sa.or_(
        ManagementLock.scope_key == subscription,
        ManagementLock.scope_key.startswith(subscription + "/", autoescape=True)))
    found = [lock for lock in session.scalars(query)
             if is_at_or_above(lock.scope_key, target)
             or (not at_scope_only and lock.scope_key.startswith(target + "/"))]
    return sorted(found, key=lambda lock: lock.arm_id.lower())


def _ancestors(key: str) -> list[str]:
    """`/a/b/c` -> `/a`, `/a/b`, `/a/b/c`: every scope a lock on which covers `key`."""
    parts = key.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def refuse_if_locked(session: Session, scope: str, operation: Operation) -> None:
    """409 ScopeLocked when a lock at or above `scope` forbids the operation, or, for a delete, any lock beneath it.

    Every service function that writes or deletes an ARM resource calls this first (the REST routes and the
    deployments applier alike), so no path around it exists.
    """
    key = scope_key(scope)
    covering = ManagementLock.scope_key.in_(_ancestors(key))
    if operation == DELETE:
        condition = sa.or_(covering, ManagementLock.scope_key.startswith(key + "/", autoescape=True))
    else:
        condition = sa.and_(covering, ManagementLock.level == READ_ONLY)
    locked = sorted(set(session.scalars(sa.select(ManagementLock.scope).where(condition))), key=str.lower)
    if locked:
        raise ScopeLocked(scope, operation, locked)

