"""Which api-version values each family of routes accepts, and the gate that enforces it."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import request

from control_plane.arm.errors import InvalidApiVersionParameter, MissingApiVersionParameter

CONTAINER_REGISTRY = (
    "2026-09-01-preview",
    "2026-01-01-preview",
    "2025-11-01",
    "2025-06-01-preview",
    "2025-05-01-preview",
    "2025-04-01",
    "2025-03-01-preview",
    "2024-11-01-preview",
    "2023-11-01-preview",
    "2023-08-01-preview",
    "2023-07-01",
    "2023-06-01-preview",
    "2023-01-01-preview",
    "2022-12-01",
    "2022-02-01-preview",
    "2021-12-01-preview",
    "2021-09-01",
    "2021-08-01-preview",
    "2021-06-01-preview",
    "2019-05-01",
    "2017-10-01",
)

RESOURCES = (
    "2025-04-01",
    "2025-03-01",
    "2024-11-01",
    "2024-07-01",
    "2024-03-01",
    "2023-07-01",
    "2022-09-01",
    "2021-04-01",
    "2021-01-01",
    "2020-10-01",
    "2020-06-01",
    "2019-10-01",
    "2019-08-01",
    "2019-07-01",
    "2019-05-10",
    "2018-05-01",
    "2018-02-01",
    "2017-05-10",
    "2016-09-01",
    "2016-02-01",
)

SUBSCRIPTIONS = (
    "2024-11-01",
    "2022-12-01",
    "2022-09-01",
    "2021-01-01",
    "2020-01-01",
    "2019-11-01",
    "2019-06-01",
    "2018-06-01",
    "2016-06-01",
    "2015-01-01",
)

METADATA = ("2022-09-01", "2020-06-01", "2019-05-01", "2018-01-01", "2015-01-01")

AUTHORIZATION = (
    "2022-05-01-preview",
    "2022-04-01",
    "2022-01-01-preview",
    "2021-04-01-preview",
    "2020-10-01-preview",
    "2020-04-01-preview",
    "2018-09-01-preview",
    "2018-07-01",
    "2018-01-01-preview",
    "2017-05-01",
    "2015-07-01",
)

# Microsoft.Authorization/locks: az 2.91 (azure-mgmt-resource 24) sends 2016-09-01; azure-mgmt-resource-locks,
# 2020-05-01.
LOCKS = ("2020-05-01", "2017-04-01", "2016-09-01", "2015-01-01")

# Microsoft.ManagedIdentity/userAssignedIdentities: az 2.91 (azure-mgmt-msi 7.x) sends 2024-11-30; templates commonly
# name 2023-01-31 or 2018-11-30.
MANAGED_IDENTITY = (
    "2025-05-31-preview",
    "2025-01-31-preview",
    "2024-11-30",
    "2023-07-31-preview",
    "2023-01-31",
    "2022-01-31-preview",
    "2021-09-30-preview",
    "2018-11-30",
    "2015-08-31-preview",
)

# Microsoft.Insights/eventtypes/management/values (the activity log): what az and azure-mgmt-monitor send.
ACTIVITY_LOG = ("2015-04-01",)


def require_api_version(supported: tuple[str, ...]) -> Callable:
    """Route decorator: 400 MissingApiVersionParameter / InvalidApiVersionParameter before anything else."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            check_api_version(request.args.get("api-version"), supported)
            return view(*args, **kwargs)

        wrapper.api_versions = supported
        return wrapper

    return decorator


def check_api_version(value: str | None, supported: tuple[str, ...]) -> str:
    if value is None or value == "":
        raise MissingApiVersionParameter()
    if value not in supported:
        raise InvalidApiVersionParameter(value, supported)
    return value
