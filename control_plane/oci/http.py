"""The registry app's HTTP plumbing: request ids, the headers ACR puts on every data-plane response, and the OCI
error body (`{"errors":[{"code","message","detail"}]}`) for every failure — content errors, refused credentials,
storage and database outages, unknown routes — so no data-plane request ever sees the ARM envelope.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import ClientDisconnected, HTTPException

from control_plane.content.errors import ContentError
from control_plane.storage import StorageError

log = logging.getLogger("control_plane.oci")

API_VERSION = "registry/2.0"
EXPOSED_HEADERS = "Docker-Content-Digest, WWW-Authenticate, Link, X-Ms-Correlation-Request-Id"
RETRY_AFTER_STORAGE = "10"
RETRY_AFTER_DATABASE = "5"
# An unread body makes the server reset the connection, which can destroy an error before the client reads it;
# bodies up to this size are read and dropped first (larger ones are cut off, as they must be).
DRAIN_MAX_BYTES = 16 * 1024 * 1024


class OciError(Exception):
    """An error the routes raise themselves (not the content service's): code, status, message, detail, headers."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}


def install(app: Flask) -> None:
    app.before_request(_assign_request_ids)
    app.after_request(_add_headers)
    app.register_error_handler(ContentError, _render_content_error)
    app.register_error_handler(OciError, _render_oci_error)
    app.register_error_handler(StorageError, _render_storage_error)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)


def _assign_request_ids() -> None:
    g.request_id = str(uuid.uuid4())
    value = request.headers.get("x-ms-correlation-request-id")
    ok = value and len(value) <= 64 and all(c.isalnum() or c == "-" for c in value)
    g.correlation_id = value if ok else str(uuid.uuid4())


def _add_headers(response: Response) -> Response:
    headers = response.headers
    headers["Docker-Distribution-Api-Version"] = API_VERSION
    headers["X-Ms-Correlation-Request-Id"] = getattr(g, "correlation_id", None) or str(uuid.uuid4())
    headers["X-Ms-Request-Id"] = getattr(g, "request_id", None) or str(uuid.uuid4())
    headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def error_response(status: int, code: str, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}, separators=(",", ":"))
    response = Response(body, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status >= 400 and request.method in ("PUT", "PATCH", "POST"):
        drain_body()
    return response


def drain_body() -> None:
    """Read (and drop) what is left of the request body, so the answer reaches a client still sending."""
    stream, left = request.environ.get("wsgi.input"), DRAIN_MAX_BYTES
    if stream is None or request.environ.get("control_plane.body_drained"):
        return
    request.environ["control_plane.body_drained"] = True
    if not request.content_length and not request.environ.get("wsgi.input_terminated"):
        return
    try:
        while left > 0 and (chunk := stream.read(min(left, 65536))):
            left -= len(chunk)
    except (OSError, ValueError, ClientDisconnected):
        pass


def _render_content_error(error: ContentError) -> Response:
    headers = {"Retry-After": RETRY_AFTER_STORAGE} if error.status == 503 else None
    if error.status >= 500:
        log.warning("data-plane request failed: %s %s -> %s %s", request.method, request.path, error.status,
                    error.code)
    return error_response(error.status, error.code, error.message, error.detail, headers)


def _render_oci_error(error: OciError) -> Response:
    return error_response(error.status, error.code, error.message, error.detail, error.headers)


def _render_storage_error(error: StorageError) -> Response:
    log.warning("storage unavailable: %s %s: %s", request.method, request.path, error)
    return error_response(503, "UNAVAILABLE", "The registry's storage is unavailable. Retry later.",
                          headers={"Retry-After": RETRY_AFTER_STORAGE})


def body_timed_out(error: BaseException) -> bool:
    """The slow-client guard (control_plane/guarded_worker.py) cut a body read short: werkzeug turns every read
    error into ClientDisconnected, keeping the timeout as the exception's context."""
    return isinstance(error, TimeoutError) or (
        isinstance(error, ClientDisconnected) and isinstance(error.__context__, TimeoutError))


def _timed_out() -> Response:
    return error_response(408, "BLOB_UPLOAD_INVALID", "The request body was not received within the time allowed. "
                          "Send it without pausing and retry.")


def _render_http_exception(error: HTTPException) -> Response:
    if body_timed_out(error):
        return _timed_out()
    if isinstance(error, ClientDisconnected):
        return error_response(400, "BLOB_UPLOAD_INVALID", "The request body ended before its announced length.")
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() not in ("content-type", "content-length")}
    if status == 404:
        return error_response(404, "NAME_UNKNOWN" if request.path.startswith("/v2/") else "NOT_FOUND",
                              f"No route matches '{request.method} {request.path[:200]}'.")
    if status == 405:
        return error_response(405, "UNSUPPORTED", f"The method '{request.method}' is not supported here.",
                              headers=headers)
    if status == 413:
        return error_response(413, "SIZE_INVALID", "The request body is too large.")
    if status == 416:
        return error_response(416, "RANGE_INVALID", "The requested range cannot be satisfied.", headers=headers)
    return error_response(status, "UNSUPPORTED" if status < 500 else "UNKNOWN", error.description or error.name,
                          headers=headers)


def _render_unexpected(error: Exception) -> Response:
    if body_timed_out(error):
        return _timed_out()
    if isinstance(error, DataError):
        log.warning("database refused a value: %s", type(error.orig).__name__)
        return error_response(400, "UNSUPPORTED", "A value in the request is too long or out of range.")
    if isinstance(error, (OperationalError, PoolTimeout)):
        log.error("database unavailable: %s", type(error).__name__)
        return error_response(503, "UNAVAILABLE", "The registry is temporarily unable to reach its database. "
                              "Retry later.", headers={"Retry-After": RETRY_AFTER_DATABASE})
    log.exception("unexpected data-plane error, correlation id %s", getattr(g, "correlation_id", "-"))
    return error_response(500, "UNKNOWN", "The registry encountered an internal error. Retry the request; if it "
                          f"persists, report correlation id {getattr(g, 'correlation_id', '-')}.")
