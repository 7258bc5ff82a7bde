"""CORS, so a browser portal on another origin can call the service: `install(app, settings)` on any Flask app.

The origins are CONTROL_PLANE_CORS_ORIGINS, matched exactly; with none configured nothing is installed. Choices:

- No response ever carries `Access-Control-Allow-Credentials`: every API here authenticates with an Authorization
  header that the page's script sets, never with cookies. That is also why `*` (alone) may allow every origin: it
  is answered as `Access-Control-Allow-Origin: *`, and no browser sends ambient credentials with it.
- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered by this hook, before the view:
  no token, api-version, throttling budget or activity-log entry. An allowed origin gets 204 with the allowed
  methods, the headers it asked for and a Max-Age; any other origin gets 403 with no CORS header (the browser then
  refuses the call, and the page learns nothing else).
- Every other response to an allowed origin (errors too, so a page can read a 401 or a 403) carries
  `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`; a refused origin's gets no CORS header, and the
  server answers it as usual (CORS is enforced by browsers, not here). `Vary: Origin` goes on every response while
  origins are listed one by one, so a cache never serves one origin's answer to another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Flask, Response, request

from control_plane.config import Settings

# What ARM's clients read from responses: the ids, the long-running operation headers, the throttling budget.
ARM_EXPOSE_HEADERS = (
    "x-ms-request-id", "x-ms-correlation-request-id", "x-ms-client-request-id", "Location", "Azure-AsyncOperation",
    "Retry-After", "ETag", "WWW-Authenticate",
    "x-ms-ratelimit-remaining-subscription-reads", "x-ms-ratelimit-remaining-subscription-writes",
    "x-ms-ratelimit-remaining-subscription-deletes", "x-ms-ratelimit-remaining-tenant-reads",
    "x-ms-ratelimit-remaining-tenant-writes", "x-ms-ratelimit-remaining-tenant-deletes",
)
# What registry clients read from the data plane's responses (OCI distribution and the ACR API).
REGISTRY_EXPOSE_HEADERS = (
    "Docker-Content-Digest", "WWW-Authenticate", "Link", "Location", "Range", "Docker-Upload-UUID", "OCI-Subject",
    "X-Ms-Correlation-Request-Id",
)
ALLOW_METHODS = "GET, HEAD, PUT, PATCH, POST, DELETE"
# Chromium caps a cached preflight at two hours; longer would only be ignored.
MAX_AGE_SECONDS = "7200"
# Access-Control-Request-Headers: header names (RFC 9110 tokens) separated by commas; anything else is not echoed.
HEADER_LIST = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")
MAX_HEADER_LIST_CHARS = 1024


def install(app: Flask, settings: Settings, expose_headers: Iterable[str] = ARM_EXPOSE_HEADERS) -> None:
    """Answer preflights and mark responses for the configured origins. Install it after the hooks that must run
    first (the access log's clock, request ids): its preflight answer ends the request's before_request hooks."""
    if not settings.cors_origins:
        return
    policy = _Policy(frozenset(settings.cors_origins), ", ".join(expose_headers))
    app.before_request(policy.answer_preflight)
    app.after_request(policy.mark_response)


class _Policy:
    def __init__(self, origins: frozenset[str], expose_headers: str):
        self.any_origin = "*" in origins
        self.origins = origins
        self.expose_headers = expose_headers

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def allow_origin(self, origin: str) -> str:
        return "*" if self.any_origin else origin

    def answer_preflight(self) -> Response | None:
        if not _is_preflight():
            return None
        origin = request.headers["Origin"]
        if not self.allows(origin):
            return _empty(403)
        response = _empty(204)
        response.headers["Access-Control-Allow-Origin"] = self.allow_origin(origin)
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        asked = request.headers.get("Access-Control-Request-Headers", "").strip()
        if asked and len(asked) <= MAX_HEADER_LIST_CHARS and HEADER_LIST.fullmatch(asked):
            response.headers["Access-Control-Allow-Headers"] = asked
        response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        response.vary.update(("Access-Control-Request-Method", "Access-Control-Request-Headers"))
        return response

    def mark_response(self, response: Response) -> Response:
        if not self.any_origin:
            response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is None or _is_preflight() or not self.allows(origin):
            return response
        response.headers["Access-Control-Allow-Origin"] = self.allow_origin(origin)
        response.headers["Access-Control-Expose-Headers"] = self.expose_headers
        return response


def _empty(status: int) -> Response:
    response = Response(status=status)
    del response.headers["Content-Type"]  # no body, so no media type (Flask would say text/html)
    return response


def _is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)
