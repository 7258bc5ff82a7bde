"""Which scopes a role assignment may name, and checking that they exist.

Authorization knows no resource type: resource packages register a resolver for theirs at start-up, which
returns the scope in the casing the resource was created with, or raises the ARM not-found error.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from control_plane.arm.errors import BadRequest
from control_plane.identity import service as identity

# (session, subscription_id, group_name) -> canonical group scope
GroupResolver = Callable[[Session, str, str], str]
# (session, subscription_id, group_name, resource_name) -> canonical resource scope
ResourceResolver = Callable[[Session, str, str, str], str]

_group_resolver: list[GroupResolver] = []
RESOURCE_RESOLVERS: dict[str, ResourceResolver] = {}


def register_group_resolver(resolver: GroupResolver) -> None:
    _group_resolver[:] = [resolver]


def register_resource_resolver(provider_type: str, resolver: ResourceResolver) -> None:
    """provider_type: `Microsoft.ContainerRegistry/registries`."""
    RESOURCE_RESOLVERS[provider_type.lower()] = resolver


def invalid_scope(scope: str) -> BadRequest:
    return BadRequest(f"The scope '{scope[:300]}' is not valid. A role assignment scope is a subscription, a resource "
                      "group, or a resource id.", code="InvalidScope", target="scope")


def resolve(session: Session, scope: str) -> tuple[str, str]:
    """(canonical scope, subscription id) of an existing subscription, group or resource."""
    parts = scope.strip("/").split("/")
    if len(parts) < 2 or parts[0].lower() != "subscriptions" or len(parts) not in (2, 4, 8):
        raise invalid_scope(scope)
    subscription = identity.get_subscription(session, parts[1])
    canonical = f"/subscriptions/{subscription.id}"
    if len(parts) >= 4:
        if parts[2].lower() != "resourcegroups" or not _group_resolver:
            raise invalid_scope(scope)
        canonical = _group_resolver[0](session, subscription.id, parts[3])
    if len(parts) == 8:
        resolver = RESOURCE_RESOLVERS.get(f"{parts[5]}/{parts[6]}".lower())
        if parts[4].lower() != "providers" or resolver is None:
            raise invalid_scope(scope)
        canonical = resolver(session, subscription.id, parts[3], parts[7])
    return canonical, subscription.id
