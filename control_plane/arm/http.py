"""Flask plumbing of the ARM protocol: request ids, body checks, the error envelope, JSON responses.

`install(app)` wires it into an app; routes use `json_body()`, `base_url()`, `arm_json()` and
`async_operation_headers()`.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import ClientDisconnected, HTTPException

from control_plane.arm.errors import (
    ArmError,
    BadRequest,
    Conflict,
    InvalidRequestContent,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)

log = logging.getLogger("control_plane.http")

RETRY_AFTER_SECONDS = "1"


def install(app: Flask, max_body_bytes: int) -> None:
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.before_request(_assign_request_ids)
    app.before_request(_check_request_path)
    app.before_request(_check_request_body)
    app.after_request(_add_protocol_headers)
    app.register_error_handler(ArmError, _render_arm_error)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)


def _assign_request_ids() -> None:
    g.request_id = str(uuid.uuid4())
    g.correlation_id = _guid_header("x-ms-correlation-request-id") or str(uuid.uuid4())


def _guid_header(name: str) -> str | None:
    value = request.headers.get(name)
    if value and len(value) <= 64 and all(c.isalnum() or c == "-" for c in value):
        return value
    return None


def _check_request_path() -> None:
    """No name holds NUL (and PostgreSQL text cannot), so a path with one is refused before any look-up."""
    if "\x00" in request.path:
        raise BadRequest("The request URL is invalid: it contains a NUL character.")


# The OAuth endpoints and the issuer's pages take HTML forms; everything else is JSON.
FORM_PATHS = ("/token", "/oauth2/exchange", "/oauth2/v2.0/authorize", "/oauth2/v2.0/devicecode",
              "/oauth2/v2.0/logout", "/devicelogin")


def _check_request_body() -> None:
    if request.method not in ("PUT", "PATCH", "POST"):
        return
    length = request.content_length
    if length is not None and length > (request.max_content_length or length):
        raise RequestEntityTooLarge(
            f"The request content length {length} exceeds the maximum of {request.max_content_length} bytes."
        )
    if not length and request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return
    mimetype = request.mimetype
    if mimetype == "application/x-www-form-urlencoded" and (request.path.endswith(FORM_PATHS)
                                                             or request.path.startswith("/portal/")):
        return  # the portal's pages post HTML forms too (control_plane/portal/)
    if mimetype not in ("application/json", "text/json") and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"The content media type '{mimetype or 'none'}' is not supported. Only 'application/json' is supported."
        )


def json_body(required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; ARM's InvalidRequestContent for anything else."""
    raw = _request_body()
    if not raw.strip():
        if required:
            raise InvalidRequestContent("The request content was invalid and could not be deserialized: "
                                        "the request body is empty.")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestContent(
            f"The request content was invalid and could not be deserialized: {str(exc)[:200]}"
        ) from None
    except RecursionError:
        raise InvalidRequestContent("The request content was invalid and could not be deserialized: "
                                    "the JSON is nested too deeply.") from None
    if not isinstance(body, dict):
        raise InvalidRequestContent("The request content was invalid and could not be deserialized: "
                                    "the body must be a JSON object.")
    return body


def _request_body() -> bytes:
    """The body, refusing one over the limit: werkzeug stops a chunked body at the limit without saying so."""
    try:
        raw = request.get_data(cache=True)
    except (ClientDisconnected, TimeoutError) as exc:
        if _body_timed_out(exc):
            raise _request_timeout() from None
        raise
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge(f"The request content exceeds the maximum of {limit} bytes.")
    return raw


def _body_timed_out(error: BaseException) -> bool:
    """The server's socket timeout (control_plane/guarded_worker.py) cut a body read short. werkzeug turns every
    read error into ClientDisconnected (a 400), keeping the timeout only as the exception's context."""
    return isinstance(error, TimeoutError) or (
        isinstance(error, ClientDisconnected) and isinstance(error.__context__, TimeoutError))


def _request_timeout() -> ArmError:
    return ArmError("The request content was not received within the time allowed. Send the whole request "
                    "without pausing and retry.", status=408, code="RequestTimeout")


def base_url() -> str:
    """scheme://host[:port] as the client reached us (ProxyFix applies X-Forwarded-* when configured)."""
    return request.host_url.rstrip("/")


def arm_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    response = Response(status=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def async_operation_headers(status_url: str, location_url: str | None = None) -> dict[str, str]:
    headers = {"Azure-AsyncOperation": status_url, "Retry-After": RETRY_AFTER_SECONDS}
    if location_url:
        headers["Location"] = location_url
    return headers


def _add_protocol_headers(response: Response) -> Response:
    response.headers["x-ms-request-id"] = getattr(g, "request_id", None) or str(uuid.uuid4())
    response.headers["x-ms-correlation-request-id"] = getattr(g, "correlation_id", None) or str(uuid.uuid4())
    for name, value in getattr(g, "response_headers", {}).items():
        response.headers.setdefault(name, value)
    client_request_id = _guid_header("x-ms-client-request-id")
    if client_request_id:
        response.headers["x-ms-client-request-id"] = client_request_id
    return response


# An unread body makes the server close the connection with a TCP reset, which can destroy a 413 before the client
# reads it (clients send the whole body first); bodies up to this size are read and dropped instead.
DRAIN_MAX_BYTES = 16 * 1024 * 1024


def _drain_unread_body() -> None:
    stream, left = request.environ["wsgi.input"], DRAIN_MAX_BYTES
    try:
        while left > 0 and (chunk := stream.read(min(left, 65536))):
            left -= len(chunk)
    except OSError:  # the client stalled past the server's body time budget: the 413 goes out, then it is closed
        pass


def _render_arm_error(error: ArmError) -> Response:
    if error.status == 413:
        _drain_unread_body()
    if error.status >= 500:
        log.warning("request failed: %s %s -> %s %s", request.method, request.path, error.status, error.code)
    return arm_json(error.envelope(), error.status, error.headers)


_HTTP_ERRORS = {
    404: lambda: NotFound(
        f"No route matches '{request.method} {request.path}'. The resource type or path is not supported.",
        code="InvalidResourceType" if request.path.count("/providers/") else "NotFound",
    ),
    405: lambda: MethodNotAllowed(f"The HTTP method '{request.method}' is not supported for '{request.path}'."),
    413: lambda: RequestEntityTooLarge(
        f"The request content exceeds the maximum of {request.max_content_length} bytes."
    ),
}


def _render_http_exception(error: HTTPException) -> Response:
    if _body_timed_out(error):  # a body read outside json_body(), e.g. request.form at the token endpoints
        return _render_arm_error(_request_timeout())
    factory = _HTTP_ERRORS.get(error.code or 500)
    if factory is not None:
        return _render_arm_error(factory())
    status = error.code or 500
    code = "BadRequest" if status == 400 else (error.name or "Error").replace(" ", "")
    return _render_arm_error(ArmError(error.description or error.name, code=code, status=status))


def _render_unexpected(error: Exception) -> Response:
    if isinstance(error, DataError):
        # A value the database refuses (too long for its column, out of range): bad input that a schema missed.
        log.warning("database refused a value: %s", type(error.orig).__name__)
        return _render_arm_error(InvalidRequestContent(
            "The request content was invalid: a value is too long or out of range."))
    if isinstance(error, StaleDataError):
        return _render_arm_error(Conflict(
            "The resource was changed by another request at the same time. Read it again and retry.",
            code="Conflict"))
    if isinstance(error, (OperationalError, PoolTimeout)):
        log.error("database unavailable: %s", type(error).__name__)
        return _render_arm_error(ServiceUnavailable(
            "The service is temporarily unable to reach its database. Please retry.",
            headers={"Retry-After": "5"},
        ))
    log.exception("unexpected error, correlation id %s", getattr(g, "correlation_id", "-"))
    return _render_arm_error(ArmError(
        "The server encountered an internal error. Please retry the request; if it persists, report "
        f"correlation id {getattr(g, 'correlation_id', '-')}."
    ))
