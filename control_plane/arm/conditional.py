"""Conditional requests (If-Match / If-None-Match) as the ARM resource-provider contract describes them."""

from __future__ import annotations

from flask import request

from control_plane.arm.errors import PreconditionFailed


def _tags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def check_preconditions(current_etag: str | None) -> None:
    """412 PreconditionFailed unless the request's conditions hold for the resource (None: it does not exist)."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        tags = _tags(if_match)
        if current_etag is None or ("*" not in tags and current_etag not in tags):
            raise PreconditionFailed(f"The condition specified by If-Match '{if_match[:100]}' was not met: the "
                                     "resource does not exist or has been changed.")
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and current_etag is not None:
        tags = _tags(if_none_match)
        if "*" in tags or current_etag in tags:
            raise PreconditionFailed(f"The condition specified by If-None-Match '{if_none_match[:100]}' was not met: "
                                     "the resource exists.")
