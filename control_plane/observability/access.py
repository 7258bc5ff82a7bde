"""One log line and the request metrics for every request, written when its response is ready.

The line names the request (request and correlation ids), the caller (object and app id, once authenticated), the
operation (the route's ARM action, else its Flask endpoint), method, path, status and duration. It never holds a
query string (skip tokens and filters can be long, registry token requests carry credentials in it), a header or
a body: the token endpoint's form, the Authorization header and credentials responses never reach the log.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request

from control_plane.observability import metrics

log = logging.getLogger("control_plane.request")

# Probes and scrapes come every few seconds from the orchestrator: their lines only at DEBUG.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
TOKEN_ENDPOINTS = frozenset({"identity.token", "dataplane.token_get", "dataplane.token_post", "dataplane.exchange"})
RATELIMIT_HEADER = "x-ms-ratelimit-remaining-"
MAX_PATH_CHARS = 1024


def install(app: Flask) -> None:
    """Install before any other hook: the clock then starts first and (after_request hooks run in reverse) the
    line is written last, with the final status and headers."""
    app.before_request(_start_clock)
    app.after_request(_observe)


def _start_clock() -> None:
    g.started_at = time.perf_counter()


def operation_of(endpoint: str | None) -> str:
    """The route's ARM action (what RBAC checks) where it has one, else its endpoint; 'unmatched' for a 404."""
    if endpoint is None:
        return "unmatched"
    view = current_app.view_functions.get(endpoint)
    action = getattr(view, "required_action", None)
    return action.name if action is not None else endpoint


def _observe(response: Response) -> Response:
    try:
        _record(response)
    except Exception:  # observing must never turn an answer into an error
        log.exception("request not recorded")
    return response


def _record(response: Response) -> None:
    started = getattr(g, "started_at", None)
    duration = time.perf_counter() - started if started is not None else 0.0
    endpoint = request.url_rule.endpoint if request.url_rule is not None else None
    operation = operation_of(endpoint)
    method = metrics.method_label(request.method)
    status = response.status_code
    metrics.REQUESTS.labels(operation, method, str(status)).inc()
    metrics.LATENCY.labels(operation, method).observe(duration)
    if endpoint in TOKEN_ENDPOINTS:
        metrics.TOKENS.labels(endpoint, _token_outcome(response)).inc()
    if status == 429:
        _count_throttled(response)

    caller = getattr(g, "caller", None)
    path = request.path[:MAX_PATH_CHARS]
    fields = {
        "requestId": getattr(g, "request_id", None) or response.headers.get("x-ms-request-id"),
        "correlationId": getattr(g, "correlation_id", None) or response.headers.get("x-ms-correlation-request-id"),
        "callerObjectId": getattr(caller, "object_id", None),
        "callerAppId": getattr(caller, "app_id", None),
        "operation": operation,
        "method": method,
        "path": path,
        "status": status,
        "durationMs": round(duration * 1000, 2),
    }
    level = logging.ERROR if status >= 500 else logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    log.log(level, "%s %s %s %.1fms", method, path, status, duration * 1000, extra={"fields": fields})


def _token_outcome(response: Response) -> str:
    """'issued', else the error code the endpoint answered with (never anything else from the body)."""
    if response.status_code == 200:
        return "issued"
    body = response.get_json(silent=True) if response.is_json and not response.is_streamed else None
    code = None
    if isinstance(body, dict):
        error, errors = body.get("error"), body.get("errors")
        if isinstance(error, str):
            code = error
        elif isinstance(error, dict):
            code = error.get("code")
        elif isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
    return metrics.code_label(code, f"http_{response.status_code}")


def _count_throttled(response: Response) -> None:
    """Throttling answers carry `x-ms-ratelimit-remaining-{scope}-{kind}: 0`; the header names the bucket."""
    for name, _value in response.headers.items():
        lowered = name.lower()
        if lowered.startswith(RATELIMIT_HEADER):
            scope, _, kind = lowered[len(RATELIMIT_HEADER):].partition("-")
            metrics.THROTTLED.labels(metrics.code_label(scope, "other"), metrics.code_label(kind, "other")).inc()
            return
    metrics.THROTTLED.labels("other", "other").inc()
