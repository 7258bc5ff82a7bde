"""Records one activity-log entry for every mutating ARM call, once its response is made.

`install(app)` adds an after_request hook. It acts only where `requires()` ran (it leaves `g.caller` and `g.action`),
so a request refused before that, or with 401 (no caller to name), is not logged; refusals after it (403, 400, 500)
are, as Azure logs failed writes too. It reads no body but an error response's `code`, so no secret reaches the
log, and a failure to write is logged and swallowed: the log never turns a response into an error. Each entry's
transaction also prunes a bounded batch of entries older than the retention.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, g, request

from control_plane.activity import service
from control_plane.context import app_context

log = logging.getLogger("control_plane.activity")

MUTATING_METHODS = frozenset({"PUT", "PATCH", "DELETE", "POST"})
# 401: no caller to name. 503: the database is what failed; writing to it would only wait on it a second time.
SKIPPED_STATUSES = frozenset({401, 503})
ARM_PATH_PREFIXES = ("/subscriptions", "/providers")
ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")


def install(app: Flask) -> None:
    app.after_request(_record)


def _record(response: Response) -> Response:
    try:
        call = call_of(response)
        if call is not None:
            ctx = app_context()
            service.record(ctx.db, call, ctx.settings.activity_log_retention_days)
    except Exception as exc:
        log.warning("activity log entry not written (correlation id %s): %s",
                    getattr(g, "correlation_id", "-"), type(exc).__name__)
    return response


def call_of(response: Response) -> service.Call | None:
    """The call to log, or None: reads and probes (even a POST like checkNameAvailability) are not logged."""
    caller, action = getattr(g, "caller", None), getattr(g, "action", None)
    if caller is None or action is None or response.status_code in SKIPPED_STATUSES:
        return None
    if request.method not in MUTATING_METHODS or action.name.lower().endswith("/read"):
        return None
    if not request.path.lower().startswith(ARM_PATH_PREFIXES):
        return None
    return service.Call(
        tenant_id=caller.tenant_id,
        caller_object_id=caller.object_id,
        caller_app_id=caller.app_id,
        caller_name=caller.display_name,
        action=action,
        method=request.method,
        path=request.path,
        http_status=response.status_code,
        correlation_id=getattr(g, "correlation_id", ""),
        request_id=getattr(g, "request_id", ""),
        client_request_id=_matching(CLIENT_REQUEST_ID, request.headers.get("x-ms-client-request-id")),
        client_ip=request.remote_addr,
        error_code=_error_code(response),
        caller_type=caller.principal_type,
    )


def _error_code(response: Response) -> str | None:
    """Only the `code` of an ARM error envelope: its message may echo what the caller sent."""
    if response.status_code < 400 or response.is_streamed or not response.is_json:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return _matching(ERROR_CODE, error.get("code") if isinstance(error, dict) else None)


def _matching(pattern: re.Pattern, value: object) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None
