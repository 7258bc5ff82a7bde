"""Built-in role definitions, by their real Azure GUIDs and permissions, and the action-matching rule.

A role grants an action when one of its `actions` patterns matches it and none of its `notActions` does. Patterns
compare case-insensitively and `*` matches any run of characters (so `*/read` covers every read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
ACR_DELETE = "c2f4ef07-c644-48eb-af81-4b1b4947fb11"
ACR_IMAGE_SIGNER = "6cef56e8-d556-48e5-a04f-b8e64114680f"
ACR_QUARANTINE_READER = "cdda3590-29a3-44f6-95f2-9f980659eb04"
ACR_QUARANTINE_WRITER = "c8d4ff99-41c3-41a8-9f60-21dfdad59608"
MANAGED_IDENTITY_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"

ACR = "Microsoft.ContainerRegistry/registries"
MI = "Microsoft.ManagedIdentity/userAssignedIdentities"


@dataclass(frozen=True)
class RoleDefinition:
    id: str
    name: str
    description: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    assignable_scopes: tuple[str, ...] = field(default=("/",))

    def grants(self, action: str) -> bool:
        return any(_matches(p, action) for p in self.actions) and not any(
            _matches(p, action) for p in self.not_actions)


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern:
    # A `/*/` segment may also be empty: Managed Identity Operator's `userAssignedIdentities/*/assign/action` is
    # what lets it perform `userAssignedIdentities/assign/action` in Azure.
    text = ".*".join(re.escape(part) for part in pattern.split("*")).replace("/.*/", "/(?:.*/)?")
    return re.compile("^" + text + "$", re.IGNORECASE)


def _matches(pattern: str, action: str) -> bool:
    return bool(_pattern(pattern).match(action))


BUILT_IN_ROLES: tuple[RoleDefinition, ...] = (
    RoleDefinition(OWNER, "Owner", "Grants full access to manage all resources, including the ability to assign "
                   "roles in Azure RBAC.", ("*",)),
    RoleDefinition(CONTRIBUTOR, "Contributor", "Grants full access to manage all resources, but does not allow you "
                   "to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
                   ("*",), (
                       "Microsoft.Authorization/*/Delete",
                       "Microsoft.Authorization/*/Write",
                       "Microsoft.Authorization/elevateAccess/Action",
                       "Microsoft.Blueprint/blueprintAssignments/write",
                       "Microsoft.Blueprint/blueprintAssignments/delete",
                       "Microsoft.Compute/galleries/share/action",
                       "Microsoft.Purview/consents/write",
                       "Microsoft.Purview/consents/delete",
                       "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                       "Microsoft.Subscription/cancel/action",
                       "Microsoft.Subscription/enable/action",
                   )),
    RoleDefinition(READER, "Reader", "View all resources, but does not allow you to make any changes.", ("*/read",)),
    RoleDefinition(USER_ACCESS_ADMINISTRATOR, "User Access Administrator",
                   "Lets you manage user access to Azure resources.",
                   ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")),
    RoleDefinition(ACR_PULL, "AcrPull", "acr pull", (f"{ACR}/pull/read",)),
    RoleDefinition(ACR_PUSH, "AcrPush", "acr push", (f"{ACR}/pull/read", f"{ACR}/push/write")),
    RoleDefinition(ACR_DELETE, "AcrDelete", "acr delete", (f"{ACR}/artifacts/delete",)),
    RoleDefinition(ACR_IMAGE_SIGNER, "AcrImageSigner", "acr image signer", (f"{ACR}/sign/write",),
                   data_actions=(f"{ACR}/trustedCollections/write",)),
    RoleDefinition(ACR_QUARANTINE_READER, "AcrQuarantineReader", "acr quarantine data reader",
                   (f"{ACR}/quarantine/read",), data_actions=(f"{ACR}/quarantinedArtifacts/read",)),
    RoleDefinition(ACR_QUARANTINE_WRITER, "AcrQuarantineWriter", "acr quarantine data writer",
                   (f"{ACR}/quarantine/read", f"{ACR}/quarantine/write"),
                   data_actions=(f"{ACR}/quarantinedArtifacts/read", f"{ACR}/quarantinedArtifacts/write")),
    RoleDefinition(MANAGED_IDENTITY_CONTRIBUTOR, "Managed Identity Contributor",
                   "Create, Read, Update, and Delete User Assigned Identity",
                   (f"{MI}/read", f"{MI}/write", f"{MI}/delete", "Microsoft.Authorization/*/read",
                    "Microsoft.Insights/alertRules/*", "Microsoft.Resources/subscriptions/resourceGroups/read",
                    "Microsoft.Resources/deployments/*", "Microsoft.Support/*")),
    RoleDefinition(MANAGED_IDENTITY_OPERATOR, "Managed Identity Operator", "Read and Assign User Assigned Identity",
                   (f"{MI}/*/read", f"{MI}/*/assign/action", "Microsoft.Authorization/*/read",
                    "Microsoft.Insights/alertRules/*", "Microsoft.Resources/subscriptions/resourceGroups/read",
                    "Microsoft.Resources/deployments/*", "Microsoft.Support/*")),
)

BY_ID = {role.id: role for role in BUILT_IN_ROLES}
BY_NAME = {role.name.lower(): role for role in BUILT_IN_ROLES}


def find(role_definition_id: str) -> RoleDefinition | None:
    """A role by its GUID, or by any id form that ends in the GUID (`/subscriptions/…/roleDefinitions/<guid>`)."""
    return BY_ID.get(role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower())
