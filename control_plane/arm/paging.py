"""Keyset paging: opaque, URL-safe skip tokens and absolute nextLink URLs.

A skip token carries the sort key of the last item served, so each page is one index range scan however deep
the walk goes (never OFFSET). Tokens are base64url so they survive the SDK's parse_qs/quote round trip.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from control_plane.arm.errors import BadRequest

SKIP_TOKEN_PARAMS = ("$skipToken", "$skiptoken")


class InvalidSkipToken(BadRequest):
    code = "InvalidSkipToken"


@dataclass(frozen=True)
class PageRequest:
    after: tuple[Any, ...] | None
    size: int


def encode_token(key: tuple[Any, ...]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, arity: int) -> tuple[Any, ...]:
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise InvalidSkipToken(f"The skip token '{token[:64]}' is not valid.") from None
    # NUL is in no sort key, and PostgreSQL text cannot even compare with one.
    if not isinstance(key, list) or len(key) != arity or not all(isinstance(k, str) and "\x00" not in k for k in key):
        raise InvalidSkipToken(f"The skip token '{token[:64]}' is not valid.")
    return tuple(key)


def page_request(args, arity: int, default_size: int) -> PageRequest:
    """Reads $skipToken and $top from the query string."""
    token = next((args.get(name) for name in SKIP_TOKEN_PARAMS if args.get(name)), None)
    size = default_size
    top = args.get("$top")
    if top is not None:
        if not (top.isascii() and top.isdigit()) or not 1 <= int(top) <= 1000:
            raise BadRequest(f"The value '{top[:32]}' of $top is not valid: it must be an integer from 1 to 1000.",
                             code="InvalidParameter", target="$top")
        size = int(top)
    return PageRequest(after=decode_token(token, arity) if token else None, size=size)


def next_link(base_url: str, path: str, args, last_key: tuple[Any, ...] | None) -> str | None:
    """The absolute URL of the next page, keeping the caller's other query parameters."""
    if last_key is None:
        return None
    query = [(k, v) for k, v in args.items(multi=True) if k not in SKIP_TOKEN_PARAMS]
    query.append(("$skipToken", encode_token(last_key)))
    return f"{base_url}{path}?{urlencode(query)}"


def page_body(items: list[dict], link: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"value": items}
    if link:
        body["nextLink"] = link
    return body
