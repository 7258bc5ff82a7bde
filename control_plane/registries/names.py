"""The registry name rule, in one place: 5-50 ASCII letters and digits, globally unique case-insensitively."""

from __future__ import annotations

import re

from control_plane.arm.errors import InvalidResourceName

REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")
NAME_RULE = "Registry names may contain only alpha numeric characters and must be between 5 and 50 characters."


def name_problem(name: str) -> str | None:
    """Why a name is not a valid registry name, or None."""
    # fullmatch: `$` alone would also match before a trailing newline.
    if not isinstance(name, str) or not REGISTRY_NAME.fullmatch(name):
        return f"The specified resource name '{str(name)[:100]}' is invalid. {NAME_RULE}"
    return None


def validate_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise InvalidResourceName(problem, target="registryName")
    return name


def taken_message(name: str, login_server_suffix: str) -> str:
    return (f"The registry DNS name {name.lower()}.{login_server_suffix} is already in use. You can check if the "
            "name is already claimed using following API: "
            "https://docs.microsoft.com/en-us/rest/api/containerregistry/registries/checknameavailability")
