"""What the signed-in person may do at a scope, so a page offers only the actions they can take.

The service has no `Microsoft.Authorization/permissions` API, so the portal computes the caller's effective
permissions from the public API, as ARM does: the role assignments at or above the scope (`$filter=atScope()`)
held by the person or by any group they are in (Graph's getMemberGroups, nested groups included), and their role
definitions' actions and notActions with ARM's wildcard matching. The service still decides every call; this only
hides what it would refuse (a direct POST is refused by ARM, and its message shown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from control_plane.portal.api import ApiError, Service

RESOURCE_GROUPS = "Microsoft.Resources/subscriptions/resourceGroups"
REGISTRIES = "Microsoft.ContainerRegistry/registries"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"


@lru_cache(maxsize=512)
def _pattern(action: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in action.split("*")), re.IGNORECASE)


def _matches(patterns: list[str], action: str) -> bool:
    return any(_pattern(p).fullmatch(action) for p in patterns)


@dataclass(frozen=True)
class Permissions:
    """(actions, notActions) of each role the person holds at the scope."""

    grants: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = field(default_factory=tuple)

    def allows(self, action: str) -> bool:
        return any(_matches(list(actions), action) and not _matches(list(not_actions), action)
                   for actions, not_actions in self.grants)

    def can(self, resource_type: str, verb: str) -> bool:
        """`can(REGISTRIES, "write")`, `can(REGISTRIES, "listCredentials/action")`."""
        return self.allows(f"{resource_type}/{verb}")


NONE = Permissions()


def effective(service: Service, scope: str, object_id: str) -> Permissions:
    """The person's permissions at `scope` (a subscription, group or resource id); none when they may not even
    read the role assignments there."""
    try:
        # Someone an external authority vouched for is in none of the directory's groups.
        groups = [] if service.config.external_authority else service.graph(
            "POST", f"/directoryObjects/{object_id}/getMemberGroups", {"securityEnabledOnly": False}).get("value", [])
        assignments = service.arm_list(f"{scope}/providers/Microsoft.Authorization/roleAssignments", "authorization",
                                       params={"$filter": "atScope()"})
    except ApiError as exc:
        if exc.status in (401, 403, 404):
            return NONE
        raise
    holders = {object_id.lower(), *(g.lower() for g in groups)}
    role_ids = {a["properties"]["roleDefinitionId"].rsplit("/", 1)[-1].lower() for a in assignments
                if a.get("properties", {}).get("principalId", "").lower() in holders}
    if not role_ids:
        return NONE
    definitions = {d["name"].lower(): d for d in service.arm_list(
        f"{scope}/providers/Microsoft.Authorization/roleDefinitions", "authorization")}
    grants = []
    for role_id in sorted(role_ids):
        for permission in definitions.get(role_id, {}).get("properties", {}).get("permissions", []):
            grants.append((tuple(permission.get("actions", [])), tuple(permission.get("notActions", []))))
    return Permissions(tuple(grants))
