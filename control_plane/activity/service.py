"""Writing and reading activity-log entries. No Flask here: the recorder and the routes hand in plain values.

An entry is written from what a finished request looked like from outside (caller, action, path, status, ids) and
never from a request or response body, so no password, secret or token can reach it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.activity.filters import EventQuery
from control_plane.arm.paging import InvalidSkipToken
from control_plane.authorization.actions import Action
from control_plane.authorization.models import ActivityLogEntry
from control_plane.db import Database, utcnow

SUCCEEDED, FAILED = "Succeeded", "Failed"
USER_CALLER = "User"
# The level Azure gives each outcome; the `levels` filter selects by it.
LEVEL_OF_STATUS = {SUCCEEDED: "Informational", FAILED: "Error"}
# Expired entries pruned per entry written at most: the log shrinks by up to this much while growing by one.
PRUNE_BATCH = 100


@dataclass(frozen=True)
class Call:
    """What the recorder saw of one finished ARM request: who, which action, where, and how it ended."""

    tenant_id: str
    caller_object_id: str
    caller_app_id: str
    caller_name: str
    action: Action
    method: str
    path: str
    http_status: int
    correlation_id: str
    request_id: str
    client_request_id: str | None = None
    client_ip: str | None = None
    error_code: str | None = None
    # `User` for a person (the event's caller is then the UPN, `caller_name`), else a service principal.
    caller_type: str = "ServicePrincipal"


def resource_id_of(path: str) -> str:
    """The ARM id a request acts on: its path, minus a trailing action (`…/registries/r/listCredentials`).

    The path is read the way ARM reads it, keyword then name, with a namespace after `providers`; a keyword
    left without a name is an action on the resource before it.
    """
    segments = [s for s in path.strip("/").split("/") if s]
    index = 0
    while index < len(segments):
        if segments[index].lower() == "providers" and index + 1 < len(segments):
            index += 2
            continue
        if index + 1 >= len(segments):
            return "/" + "/".join(segments[:index])
        index += 2
    return "/" + "/".join(segments)


def _segment_after(segments: list[str], keyword: str) -> str | None:
    return segments[1] if len(segments) >= 2 and segments[0].lower() == keyword else None


def resource_type_of(action: Action) -> str:
    """`Microsoft.ContainerRegistry/registries/write` -> `Microsoft.ContainerRegistry/registries`."""
    parts = action.name.split("/")
    drop = 2 if parts[-1].lower() == "action" else 1
    return "/".join(parts[:-drop]) if len(parts) > drop else action.provider


def _clip(value: str | None, length: int) -> str | None:
    """Column lengths bound what a (possibly hostile) URL can put in a row; NUL is no text on PostgreSQL."""
    return None if value is None else value.replace("\x00", "")[:length]


def entry_for(call: Call, now: datetime, event_data_id: str) -> ActivityLogEntry:
    resource_id = resource_id_of(call.path)
    segments = resource_id.strip("/").split("/")
    subscription_id = _segment_after(segments, "subscriptions") or ""
    group = _segment_after(segments[2:], "resourcegroups") if subscription_id else None
    properties = {
        "httpMethod": call.method,
        "serviceRequestId": call.request_id,
        "clientRequestId": _clip(call.client_request_id, 64),
        "clientIpAddress": _clip(call.client_ip, 64),
        "errorCode": _clip(call.error_code, 64),
        "callerType": USER_CALLER if call.caller_type == USER_CALLER else None,
    }
    return ActivityLogEntry(
        event_data_id=event_data_id,
        tenant_id=_clip(call.tenant_id, 36),
        subscription_id=_clip(subscription_id.lower(), 36),
        resource_group_name=_clip(group, 90),
        resource_id=_clip(resource_id, 1024),
        resource_provider=_clip(call.action.provider, 128),
        resource_type=_clip(resource_type_of(call.action), 256),
        operation_name=_clip(call.action.name, 256),
        status=SUCCEEDED if call.http_status < 400 else FAILED,
        http_status=call.http_status,
        caller_object_id=_clip(call.caller_object_id, 256),
        caller_app_id=_clip(call.caller_app_id or None, 256),
        caller_name=_clip(call.caller_name or None, 256),
        correlation_id=_clip(call.correlation_id, 64),
        operation_id=_clip(call.request_id, 64),
        event_timestamp=now,
        properties={k: v for k, v in properties.items() if v},
    )


def record(db: Database, call: Call, retention_days: int | None = None) -> None:
    """One entry, in its own short transaction: the call's own work is already committed or rolled back. With a
    retention, the same transaction also deletes up to PRUNE_BATCH entries older than it (an index range scan on
    the timestamp): more than one per entry written, so the log never stays past the retention; bounded, so no write
    waits on a long delete."""
    with db.session() as session:
        session.add(entry_for(call, utcnow(), str(uuid.uuid4())))
        if retention_days is not None:
            old = (sa.select(ActivityLogEntry.event_data_id)
                   .where(ActivityLogEntry.event_timestamp < utcnow() - timedelta(days=retention_days))
                   .limit(PRUNE_BATCH).scalar_subquery())
            session.execute(sa.delete(ActivityLogEntry).where(ActivityLogEntry.event_data_id.in_(old))
                            .execution_options(synchronize_session=False))


def _like_prefix(scope_key: str) -> str:
    escaped = scope_key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


def decode_after(key: tuple[str, ...] | None) -> tuple[datetime, str] | None:
    """A skip token's key: the timestamp and event id of the last event served."""
    if key is None:
        return None
    try:
        moment = datetime.fromisoformat(key[0])
    except ValueError:
        raise InvalidSkipToken("The skip token is not valid.") from None
    if moment.tzinfo is None:
        raise InvalidSkipToken("The skip token is not valid.")
    return moment, key[1]


def list_page(session: Session, tenant_id: str, subscription_id: str, query: EventQuery,
              visible: list[str] | None, after: tuple[datetime, str] | None,
              size: int) -> tuple[list[ActivityLogEntry], tuple[str, str] | None]:
    """One page of a subscription's events, newest first, limited to the scopes in `visible` (None: all).

    Keyset paging on (timestamp, event id), so a deep page is one index range scan.
    """
    entry, lower = ActivityLogEntry, sa.func.lower
    stmt = sa.select(entry).where(entry.subscription_id == subscription_id.lower(), entry.tenant_id == tenant_id,
                                  entry.event_timestamp >= query.start, entry.event_timestamp <= query.end)
    for column, value in ((entry.resource_group_name, query.resource_group), (entry.resource_id, query.resource_id),
                          (entry.resource_provider, query.resource_provider), (entry.status, query.status),
                          (entry.correlation_id, query.correlation_id)):
        if value is not None:
            stmt = stmt.where(lower(column) == value.lower())
    if query.caller is not None:
        wanted = query.caller.lower()
        stmt = stmt.where(sa.or_(lower(entry.caller_app_id) == wanted, lower(entry.caller_object_id) == wanted,
                                 lower(entry.caller_name) == wanted))
    if query.levels is not None:
        stmt = stmt.where(entry.status.in_([s for s, level in LEVEL_OF_STATUS.items()
                                            if level.lower() in query.levels]))
    if visible is not None:
        stmt = stmt.where(sa.or_(sa.false(), *(
            sa.or_(lower(entry.resource_id) == key, lower(entry.resource_id).like(_like_prefix(key), escape="\\"))
            for key in visible)))
    if after is not None:
        moment, event_id = after
        stmt = stmt.where(sa.or_(entry.event_timestamp < moment,
                                 sa.and_(entry.event_timestamp == moment, entry.event_data_id < event_id)))
    stmt = stmt.order_by(entry.event_timestamp.desc(), entry.event_data_id.desc()).limit(size + 1)
    found = list(session.scalars(stmt))
    more = len(found) > size
    found = found[:size]
    last = (found[-1].event_timestamp.isoformat(), found[-1].event_data_id) if more else None
    return found, last
