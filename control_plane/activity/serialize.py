"""An activity-log entry as the Azure Activity Log's event JSON (docs/real-clients.md §13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from control_plane.activity.service import LEVEL_OF_STATUS, USER_CALLER
from control_plane.authorization.actions import ALL_ACTIONS
from control_plane.authorization.models import ActivityLogEntry

DOTNET_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
CATEGORY = {"value": "Administrative", "localizedValue": "Administrative"}
END_REQUEST = {"value": "EndRequest", "localizedValue": "End request"}
OPERATION_TITLES = {action.name: action.operation for action in ALL_ACTIONS}


def _value(value: str, localized: str | None = None) -> dict[str, str]:
    return {"value": value, "localizedValue": localized or value}


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ticks(moment: datetime) -> int:
    """.NET ticks (100 ns since 0001-01-01), the last segment of an event's id in Azure."""
    delta = moment - DOTNET_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _status_code(http_status: int) -> str:
    """200 -> `OK`, 201 -> `Created`, 400 -> `BadRequest`: the names Azure uses in `subStatus`."""
    try:
        phrase = HTTPStatus(http_status).phrase
    except ValueError:
        return str(http_status)
    return "OK" if http_status == 200 else "".join(word[:1].upper() + word[1:] for word in phrase.split())


def to_event(entry: ActivityLogEntry, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    stored = entry.properties or {}
    status_code = _status_code(entry.http_status)
    # Azure names a person by UPN and an application by its appId.
    is_user = stored.get("callerType") == USER_CALLER
    caller = (entry.caller_name if is_user else entry.caller_app_id) or entry.caller_object_id
    properties: dict[str, Any] = {
        "statusCode": status_code,
        "serviceRequestId": stored.get("serviceRequestId"),
        "eventCategory": "Administrative",
        "entity": entry.resource_id,
        "message": entry.operation_name,
        "hierarchy": f"{entry.tenant_id}/{entry.subscription_id}" if entry.subscription_id else entry.tenant_id,
    }
    if stored.get("errorCode"):
        # Only the code: an error's message can repeat what the caller sent.
        properties["statusMessage"] = json.dumps({"error": {"code": stored["errorCode"]}})
    event: dict[str, Any] = {
        "authorization": {"action": entry.operation_name, "scope": entry.resource_id},
        "caller": caller,
        "channels": "Operation",
        "claims": {
            "appid": entry.caller_app_id or "",
            "http://schemas.microsoft.com/identity/claims/objectidentifier": entry.caller_object_id,
            "http://schemas.microsoft.com/identity/claims/tenantid": entry.tenant_id,
            "name": entry.caller_name or "",
            "idtyp": "user" if is_user else "app",
            **({"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": entry.caller_name or ""}
               if is_user else {}),
        },
        "correlationId": entry.correlation_id,
        "description": "",
        "eventDataId": entry.event_data_id,
        "eventName": END_REQUEST,
        "category": CATEGORY,
        "eventTimestamp": _time(entry.event_timestamp),
        "httpRequest": {
            "clientRequestId": stored.get("clientRequestId", ""),
            "clientIpAddress": stored.get("clientIpAddress", ""),
            "method": stored.get("httpMethod", ""),
        },
        "id": f"{entry.resource_id}/events/{entry.event_data_id}/ticks/{_ticks(entry.event_timestamp)}",
        "level": LEVEL_OF_STATUS.get(entry.status, "Informational"),
        "operationId": entry.operation_id,
        "operationName": _value(entry.operation_name, OPERATION_TITLES.get(entry.operation_name)),
        "properties": properties,
        "resourceGroupName": entry.resource_group_name,
        "resourceProviderName": _value(entry.resource_provider),
        "resourceType": _value(entry.resource_type),
        "resourceId": entry.resource_id,
        "status": _value(entry.status),
        "subStatus": _value(status_code, f"{status_code} (HTTP Status Code: {entry.http_status})"),
        "submissionTimestamp": _time(entry.event_timestamp),
        "subscriptionId": entry.subscription_id,
        "tenantId": entry.tenant_id,
        "relatedEvents": [],
    }
    return event if select is None else {name: event[name] for name in select if name in event}
