"""The Azure portal's batching (`POST /batch?api-version=2020-06-01`): parse the batch, then run each request through
the management app's whole WSGI stack, so each is authenticated, authorised, throttled, logged and answered exactly
as the same call made directly.

Body: `{"requests": [{"httpMethod", "url" (or "relativeUrl"), "content"?, "name"?, "requestHeaderDetails"?}]}`;
answer: `{"responses": [{"name"?, "httpStatusCode", "headers", "content", "contentLength"}]}`, in request order.

- At most 20 requests; a malformed batch (not an object, no `requests` array, a request without a known method or a
  Resource Manager URL, more than 20) is refused whole with 400 InvalidRequestContent and runs nothing, so a typo
  never leaves half a batch of writes applied.
- A request's own failures (401, 403, 404, 400, 429...) are its response inside the 200 batch, not the batch's.
- Only Resource Manager URLs are batched (first segment `subscriptions`, `providers` or `tenants`), never another
  `/batch`, the token endpoints, Graph or the data plane. An absolute URL's scheme and host are ignored: like ARM's,
  this batch only ever calls this service.
- Each request carries the batch's Authorization, User-Agent, Accept-Language and correlation id (so its activity
  log entry and log line tie back to the batch), and the batch's client address and proxy headers. The portal's
  `requestHeaderDetails.commandName` is telemetry and is not forwarded.
- Requests run one after another, in order: a PUT and a later GET of the same resource see each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import current_app, g, request
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder, run_wsgi_app

from control_plane.arm.errors import InvalidRequestContent

MAX_REQUESTS = 20
METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"})
BODY_METHODS = frozenset({"PUT", "PATCH", "POST"})
# The first path segment of every Resource Manager URL this service serves (role assignments and locks at a
# `{scope}` start with one of these too).
ARM_ROOTS = frozenset({"subscriptions", "providers", "tenants"})
FORWARDED_HEADERS = ("Authorization", "User-Agent", "Accept-Language", "X-Forwarded-For", "X-Forwarded-Proto",
                     "X-Forwarded-Host", "X-Forwarded-Port")
# Where the batch came from, before ProxyFix (when installed) rewrote it: each request passes through it again.
TRANSPORT_KEYS = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR")


@dataclass(frozen=True)
class BatchRequest:
    name: str | None
    method: str
    url: str  # path and query string
    content: Any  # None: no body


def parse(body: dict[str, Any]) -> list[BatchRequest]:
    """The batch's requests, or InvalidRequestContent naming the first thing wrong."""
    items = body.get("requests")
    if not isinstance(items, list):
        raise _invalid("The batch must have a 'requests' array.", "requests")
    if len(items) > MAX_REQUESTS:
        raise _invalid(f"The batch has {len(items)} requests; at most {MAX_REQUESTS} are allowed in one batch.",
                       "requests")
    return [_parse_request(index, item) for index, item in enumerate(items)]


def _parse_request(index: int, item: object) -> BatchRequest:
    where = f"requests[{index}]"
    if not isinstance(item, dict):
        raise _invalid(f"{where} must be an object.", where)
    method = item.get("httpMethod")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _invalid(f"{where}.httpMethod must be one of {', '.join(sorted(METHODS))}.", f"{where}.httpMethod")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise _invalid(f"{where}.name must be a string.", f"{where}.name")
    url = item.get("url") or item.get("relativeUrl")
    if not isinstance(url, str):
        raise _invalid(f"{where}.url must be a Resource Manager URL, relative or absolute.", f"{where}.url")
    return BatchRequest(name, method.upper(), _local_url(url, f"{where}.url"), item.get("content"))


def _local_url(url: str, where: str) -> str:
    """The path and query to run here; a relative or absolute Resource Manager URL, nothing else."""
    try:
        if not url.isprintable():  # control characters and lone surrogates: no HTTP request line holds them
            raise ValueError(url)
        parts = urlsplit(url)
    except ValueError:  # that, or e.g. an unclosed IPv6 bracket in the host
        raise _invalid(f"{where} is not a URL.", where) from None
    if (parts.scheme or parts.netloc) and (parts.scheme.lower() not in ("http", "https") or not parts.netloc):
        raise _invalid(f"{where} '{url[:200]}' is neither a relative URL nor an http(s) URL.", where)
    segments = unquote(parts.path).split("/")
    if len(segments) < 2 or segments[0] != "" or segments[1].lower() not in ARM_ROOTS:
        raise _invalid(f"{where} '{url[:200]}' is not a Resource Manager URL: only URLs under /subscriptions, "
                       "/providers and /tenants can be batched.", where)
    if any(segment in (".", "..") for segment in segments):
        raise _invalid(f"{where} '{url[:200]}' has a '.' or '..' segment.", where)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _invalid(message: str, target: str) -> InvalidRequestContent:
    return InvalidRequestContent(f"The batch request is invalid: {message}", target=target)


def run(item: BatchRequest) -> dict[str, Any]:
    """One request through the app's outermost WSGI entry, as if it had come in on the batch's connection.

    Under its own app context: Flask reuses the current one for a nested request of the same app, and the request
    would then share `g` (caller, ids, throttling headers) with the batch and the requests before it."""
    environ = _environ(item)
    with current_app.app_context():
        app_iter, status, headers = run_wsgi_app(current_app.wsgi_app, environ, buffered=True)
    body = b"".join(app_iter)
    answer: dict[str, Any] = {} if item.name is None else {"name": item.name}
    answer.update(httpStatusCode=int(status.split(" ", 1)[0]), headers=_header_map(headers),
                  content=_content(body, headers.get("Content-Type", "")), contentLength=len(body))
    return answer


def _environ(item: BatchRequest) -> dict[str, Any]:
    headers = Headers({"Accept": "application/json", "x-ms-correlation-request-id": g.correlation_id})
    for name in FORWARDED_HEADERS:
        if name in request.headers:
            headers[name] = request.headers[name]
    data = None
    if item.method in BODY_METHODS and item.content is not None:
        data = json.dumps(item.content, separators=(",", ":"))
        headers["Content-Type"] = "application/json"
    environ = EnvironBuilder(path=item.url, method=item.method, headers=headers, data=data).get_environ()
    source = request.environ
    original = source.get("werkzeug.proxy_fix.orig", {})
    for key in TRANSPORT_KEYS:
        value = original.get(key, source.get(key))
        if value is not None:
            environ[key] = value
    return environ


def _header_map(headers: Headers) -> dict[str, str]:
    """Headers as one JSON object; a header sent more than once is joined with commas, as HTTP allows."""
    merged: dict[str, str] = {}
    for name, value in headers.items():
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


def _content(body: bytes, content_type: str) -> Any:
    """A JSON body as JSON, any other body as text, no body as null."""
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type.lower():
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
