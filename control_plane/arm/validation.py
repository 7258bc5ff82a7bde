"""Validation rules ARM applies to every tracked resource (tags, location) and marshmallow's bridge to ARM codes.

Each rule lives here once; resource schemas call these functions.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError

from control_plane.arm.errors import BadRequest, InvalidRequestContent
from control_plane.config import normalise_location

MAX_TAGS = 50
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256
TAG_NAME_FORBIDDEN = re.compile(r"[<>%&\\?/\x00-\x1f\x7f]")


def load(schema: Schema, data: dict[str, Any], **kwargs) -> dict[str, Any]:
    """Deserialises a body; type errors become 400 InvalidRequestContent naming the field."""
    try:
        return schema.load(data, **kwargs)
    except ValidationError as exc:
        field, message = _first_error(exc.messages)
        raise InvalidRequestContent(
            f"The request content was invalid and could not be deserialized: '{field}': {message}",
            target=field,
        ) from None


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        name = f"{prefix}.{key}" if prefix and key != "_schema" else (prefix or str(key))
        return _first_error(value, name)
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], prefix) if isinstance(messages[0], dict | list) else (prefix, str(messages[0]))
    return prefix, str(messages)


def validate_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequestContent("The request content was invalid and could not be deserialized: "
                                    "'tags' must be an object of string values.", target="tags")
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"Too many tags specified. Requested tag count - '{len(tags)}'. Maximum number of tags "
                         f"allowed - '{MAX_TAGS}'.", code="InvalidTags", target="tags")
    for name, value in tags.items():
        if not name.strip():
            raise BadRequest("The tag name must be non-null, non-empty and non-whitespace only. Please provide an "
                             "actual value.", code="InvalidTagName", target="tags")
        if len(name) > MAX_TAG_NAME:
            raise BadRequest(f"Tag key too large. Following tag name '{name[:64]}...' exceeded the maximum length. "
                             f"Maximum allowed length for tag name - '{MAX_TAG_NAME}' characters.",
                             code="InvalidTagName", target="tags")
        if TAG_NAME_FORBIDDEN.search(name):
            raise BadRequest(f"The tag names '{name[:64]}' have reserved characters '<,>,%,&,\\,?,/' or control "
                             "characters.", code="InvalidTagNameCharacters", target="tags")
        if len(value) > MAX_TAG_VALUE:
            raise BadRequest(f"Tag value too large. Following tag value '{value[:64]}...' exceeded the maximum "
                             f"length. Maximum allowed length for tag value - '{MAX_TAG_VALUE}' characters.",
                             code="InvalidTagValueLength", target="tags")
    return dict(tags)


def validate_location(value: Any, allowed: tuple[str, ...], resource_type: str, code: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRequest("The location property is required for this definition.", code="LocationRequired",
                         target="location")
    if not isinstance(value, str):
        raise InvalidRequestContent("The request content was invalid and could not be deserialized: "
                                    "'location' must be a string.", target="location")
    location = normalise_location(value)
    if location not in allowed:
        raise BadRequest(f"The provided location '{value[:64]}' is not available for {resource_type}. List of "
                         f"available regions is '{','.join(allowed)}'.", code=code, target="location")
    return location
