"""Lock bodies (what a PUT may carry, what a client reads back) and the list's `$filter`."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from control_plane.arm.errors import BadRequest
from control_plane.locks.models import ManagementLock
from control_plane.locks.service import LEVELS, MAX_NOTES

LOCK_TYPE = "Microsoft.Authorization/locks"


def _no_nul(value: str) -> None:
    """PostgreSQL text cannot hold NUL, and no note or application id needs one."""
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")


class LockLevel(fields.String):
    """ARM reads enums case-insensitively and answers in their own spelling; NotSpecified is no level to lock with."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        for level in LEVELS:
            if text.lower() == level.lower():
                return level
        raise ValidationError(f"The lock level '{text[:64]}' is not valid. Valid levels: {', '.join(LEVELS)}.")


class Owner(Schema):
    class Meta:
        unknown = EXCLUDE

    applicationId = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=256), _no_nul])


class LockProperties(Schema):
    class Meta:
        unknown = EXCLUDE

    level = LockLevel(required=True)
    notes = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=MAX_NOTES), _no_nul])
    owners = fields.List(fields.Nested(Owner), load_default=None, allow_none=True)


class LockPut(Schema):
    class Meta:
        unknown = EXCLUDE

    properties = fields.Nested(LockProperties, required=True)


def to_arm(lock: ManagementLock) -> dict[str, Any]:
    """ARM's shape: `notes` and `owners` only when set."""
    properties: dict[str, Any] = {"level": lock.level}
    if lock.notes:
        properties["notes"] = lock.notes
    if lock.owners:
        properties["owners"] = lock.owners
    return {"properties": properties, "id": lock.arm_id, "type": LOCK_TYPE, "name": lock.name}


_AT_SCOPE = re.compile(r"^\s*atScope\(\)\s*$", re.IGNORECASE)


def at_scope_filter(raw: str | None) -> bool:
    """True for `atScope()` (locks at the scope and above it only), False without a filter."""
    if not raw:
        return False
    if not _AT_SCOPE.match(raw):
        raise BadRequest(f"The filter '{raw[:200]}' is not supported. Supported: atScope().",
                         code="UnsupportedQuery", target="$filter")
    return True
