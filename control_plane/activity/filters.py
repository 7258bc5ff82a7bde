"""The activity log's `$filter` and `$select`, in the forms az and the monitor SDK send.

az sends `eventTimestamp ge <t> and eventTimestamp le <t>` (unquoted; naive UTC or `+00:00`), then at most one of
`correlationId` / `resourceGroupName` / `resourceId` / `resourceProvider` and optionally `caller` and `status`, each
`eq '<value>'`. Azure refuses a filter without a start time, so this does too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from control_plane.arm.errors import BadRequest

CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z]+)\s+(?P<op>[A-Za-z]+)\s+(?P<value>'(?:[^']|'')*'|[^\s']+)\s*(?:(?P<and>and)\s+|$)",
    re.IGNORECASE,
)

TEXT_FIELDS = {
    "resourcegroupname": "resource_group",
    "resourceid": "resource_id",
    "resourceuri": "resource_id",
    "resourceprovider": "resource_provider",
    "caller": "caller",
    "status": "status",
    "correlationid": "correlation_id",
}
# Accepted for the older clients that send them; every event here is on the Operation channel.
IGNORED_FIELDS = {"eventchannels", "subscriptionid"}
ONE_TICK = timedelta(microseconds=1)

EVENT_FIELDS = (
    "authorization", "caller", "channels", "claims", "correlationId", "description", "eventDataId", "eventName",
    "category", "eventTimestamp", "httpRequest", "id", "level", "operationId", "operationName", "properties",
    "resourceGroupName", "resourceProviderName", "resourceType", "resourceId", "status", "subStatus",
    "submissionTimestamp", "subscriptionId", "tenantId", "relatedEvents",
)
_FIELD_BY_LOWER = {name.lower(): name for name in EVENT_FIELDS}


class InvalidFilter(BadRequest):
    """Azure Monitor answers a filter it cannot use with 400 BadRequest."""

    def __init__(self, detail: str):
        super().__init__(f"The $filter searching parameters are invalid: {detail}", code="BadRequest",
                         target="$filter")


@dataclass
class EventQuery:
    start: datetime
    end: datetime | None = None
    resource_group: str | None = None
    resource_id: str | None = None
    resource_provider: str | None = None
    caller: str | None = None
    status: str | None = None
    correlation_id: str | None = None
    levels: frozenset[str] | None = None


def parse_filter(text: str | None, now: datetime) -> EventQuery:
    """`$filter` -> EventQuery; InvalidFilter (400) for anything Azure would refuse or we cannot answer."""
    if not text or not text.strip():
        raise InvalidFilter("$filter is required and must give the start time (eventTimestamp ge <time>).")
    if "\x00" in text:
        raise InvalidFilter("it contains a NUL character.")
    found: dict[str, object] = {}
    position, expect_more = 0, True
    while expect_more:
        match = CLAUSE.match(text, position)
        if match is None:
            raise InvalidFilter(f"cannot read the filter from '{text[position:position + 60]}'.")
        position, expect_more = match.end(), match.group("and") is not None
        if expect_more and position >= len(text):
            raise InvalidFilter("it ends with 'and'.")
        _clause(found, match.group("field"), match.group("op").lower(), match.group("value"))
    if "start" not in found:
        raise InvalidFilter("the start time (eventTimestamp ge <time>) is required.")
    query = EventQuery(**found)  # type: ignore[arg-type]
    if query.end is None:
        query.end = max(now, query.start)  # a start in the future finds nothing yet; it is not an error
    if query.start > query.end:
        raise InvalidFilter("the start time is after the end time.")
    return query


def _clause(found: dict[str, object], field: str, op: str, raw: str) -> None:
    name = field.lower()
    if name == "eventtimestamp":
        if op not in ("ge", "gt", "le", "lt"):
            raise InvalidFilter(f"eventTimestamp supports ge, gt, le and lt, not '{op}'.")
        moment = _timestamp(_unquote(raw) if raw.startswith("'") else raw)
        key = "start" if op in ("ge", "gt") else "end"
        try:
            moment += ONE_TICK if op == "gt" else (-ONE_TICK if op == "lt" else timedelta(0))
        except OverflowError:
            raise InvalidFilter(f"the time '{raw[:64]}' is out of range.") from None
        _set(found, key, moment, f"eventTimestamp {op}")
        return
    if name in IGNORED_FIELDS:
        return
    if name not in TEXT_FIELDS and name != "levels":
        raise InvalidFilter(f"the field '{field[:64]}' is not supported.")
    if op != "eq":
        raise InvalidFilter(f"{field} supports only eq, not '{op}'.")
    if not raw.startswith("'"):
        raise InvalidFilter(f"the value of {field} must be in single quotes.")
    value = _unquote(raw)
    if name == "levels":
        _set(found, "levels", frozenset(v.strip().lower() for v in value.split(",") if v.strip()), field)
    else:
        _set(found, TEXT_FIELDS[name], value, field)


def _set(found: dict[str, object], key: str, value: object, label: str) -> None:
    if key in found:
        raise InvalidFilter(f"'{label}' is given more than once.")
    found[key] = value


def _unquote(raw: str) -> str:
    return raw[1:-1].replace("''", "'")


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidFilter(f"'{value[:64]}' is not an ISO 8601 time.") from None


def parse_select(text: str | None) -> tuple[str, ...] | None:
    """`eventTimestamp , operationName , status` -> the event fields to return (None: all). Unknown names are
    ignored, as Azure does."""
    if not text or not text.strip():
        return None
    wanted = (_FIELD_BY_LOWER.get(part.strip().lower()) for part in text.split(","))
    return tuple(dict.fromkeys(name for name in wanted if name))
