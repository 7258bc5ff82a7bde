"""The action each ARM route needs: one table, also the source of the provider's `operations` list."""

from __future__ import annotations

from dataclasses import dataclass

ACR = "Microsoft.ContainerRegistry"


@dataclass(frozen=True)
class Action:
    name: str
    operation: str
    description: str
    resource: str
    provider: str = ACR
    is_data_action: bool = False
    origin: str = "user,system"


REGISTER = Action(f"{ACR}/register/action", "Register Resource Provider",
                  "Registers the subscription for the container registry resource provider.",
                  "Resource Provider")
CHECK_NAME = Action(f"{ACR}/checkNameAvailability/read", "Check Registry Name Availability",
                    "Checks whether the container registry name is available for use.", "Registry Name")
OPERATIONS_READ = Action(f"{ACR}/operations/read", "List Operations",
                         "Lists all of the available operations of the container registry provider.",
                         "Operations")
REGISTRY_READ = Action(f"{ACR}/registries/read", "Get or List Container Registries",
                       "Gets the properties of the specified container registry or lists all the container "
                       "registries under the specified resource group or subscription.", "Registry")
REGISTRY_WRITE = Action(f"{ACR}/registries/write", "Create or Update Container Registry",
                        "Creates or updates a container registry with the specified parameters.", "Registry")
REGISTRY_DELETE = Action(f"{ACR}/registries/delete", "Delete Container Registry",
                         "Deletes a container registry.", "Registry")
LIST_CREDENTIALS = Action(f"{ACR}/registries/listCredentials/action", "List Container Registry Login Credentials",
                          "Lists the login credentials for the specified container registry.", "Registry")
REGENERATE_CREDENTIAL = Action(f"{ACR}/registries/regenerateCredential/action",
                               "Regenerate Container Registry Login Credentials",
                               "Regenerates one of the login credentials for the specified container registry.",
                               "Registry")
LIST_USAGES = Action(f"{ACR}/registries/listUsages/read", "List Container Registry Usages",
                     "Lists the quota usages for the specified container registry.", "Registry")
REGISTRY_OPERATION_STATUS = Action(f"{ACR}/registries/operationStatuses/read",
                                   "Get Container Registry Operation Status",
                                   "Gets the status of a long-running container registry operation.", "Registry")
PULL = Action(f"{ACR}/registries/pull/read", "Pull Image", "Pull or Get images from a container registry.",
              "Registry")
PUSH = Action(f"{ACR}/registries/push/write", "Push Image", "Push or Write images to a container registry.",
              "Registry")
ARTIFACTS_DELETE = Action(f"{ACR}/registries/artifacts/delete", "Delete Artifact",
                          "Delete artifact in a container registry.", "Registry")

RESOURCES = "Microsoft.Resources"
GROUP_READ = Action(f"{RESOURCES}/subscriptions/resourceGroups/read", "Get Resource Group",
                    "Gets or lists resource groups.", "Resource Groups", RESOURCES)
GROUP_WRITE = Action(f"{RESOURCES}/subscriptions/resourceGroups/write", "Create Resource Group",
                     "Creates or updates a resource group.", "Resource Groups", RESOURCES)
GROUP_DELETE = Action(f"{RESOURCES}/subscriptions/resourceGroups/delete", "Delete Resource Group",
                      "Deletes a resource group and all its resources.", "Resource Groups", RESOURCES)
GROUP_OPERATION_RESULT = Action(f"{RESOURCES}/subscriptions/operationresults/read",
                                "Get Subscription Operation Results",
                                "Gets the results of a long-running subscription operation.", "Subscription",
                                RESOURCES)
RESOURCES_READ = Action(f"{RESOURCES}/subscriptions/resources/read", "Get Subscription Resources",
                        "Gets resources of a subscription.", "Subscription", RESOURCES)
SUBSCRIPTION_READ = Action(f"{RESOURCES}/subscriptions/read", "Get Subscriptions",
                           "Gets the list of subscriptions.", "Subscription", RESOURCES)
PROVIDER_READ = Action(f"{RESOURCES}/subscriptions/providers/read", "Get Resource Providers",
                       "Gets or lists resource providers.", "Resource Providers", RESOURCES)
# Only authenticated, never checked against a scope: each request in a batch is authorised as itself.
BATCH = Action(f"{RESOURCES}/batch/action", "Batch Requests",
               "Runs up to 20 Resource Manager requests in one call, each authorised as itself.", "Batch", RESOURCES)
DEPLOYMENT_READ = Action(f"{RESOURCES}/deployments/read", "Get Deployment", "Gets or lists deployments.",
                         "Deployment", RESOURCES)
DEPLOYMENT_WRITE = Action(f"{RESOURCES}/deployments/write", "Create Deployment", "Creates or updates a deployment.",
                          "Deployment", RESOURCES)
DEPLOYMENT_DELETE = Action(f"{RESOURCES}/deployments/delete", "Delete Deployment", "Deletes a deployment.",
                           "Deployment", RESOURCES)
DEPLOYMENT_CANCEL = Action(f"{RESOURCES}/deployments/cancel/action", "Cancel Deployment", "Cancels a deployment.",
                           "Deployment", RESOURCES)
DEPLOYMENT_VALIDATE = Action(f"{RESOURCES}/deployments/validate/action", "Validate Deployment",
                             "Validates a deployment.", "Deployment", RESOURCES)
DEPLOYMENT_WHAT_IF = Action(f"{RESOURCES}/deployments/whatIf/action", "Predict Deployment Changes",
                            "Predicts template deployment changes.", "Deployment", RESOURCES)
DEPLOYMENT_EXPORT = Action(f"{RESOURCES}/deployments/exportTemplate/action", "Export Deployment Template",
                           "Export template for a deployment.", "Deployment", RESOURCES)
DEPLOYMENT_OPERATIONS_READ = Action(f"{RESOURCES}/deployments/operations/read", "Get Deployment Operation",
                                    "Gets or lists deployment operations.", "Deployment Operation", RESOURCES)
DEPLOYMENT_OPERATION_STATUS = Action(f"{RESOURCES}/deployments/operationstatuses/read",
                                     "Get Deployment Operation Status", "Reads the status of a deployment's "
                                     "asynchronous operation.", "Deployment Operation Status", RESOURCES)

AUTHORIZATION = "Microsoft.Authorization"
ROLE_ASSIGNMENT_READ = Action(f"{AUTHORIZATION}/roleAssignments/read", "Get role assignment",
                              "Get information about a role assignment.", "Role Assignment", AUTHORIZATION)
ROLE_ASSIGNMENT_WRITE = Action(f"{AUTHORIZATION}/roleAssignments/write", "Create role assignment",
                               "Create a role assignment at the specified scope.", "Role Assignment", AUTHORIZATION)
ROLE_ASSIGNMENT_DELETE = Action(f"{AUTHORIZATION}/roleAssignments/delete", "Delete role assignment",
                                "Delete a role assignment at the specified scope.", "Role Assignment", AUTHORIZATION)
ROLE_DEFINITION_READ = Action(f"{AUTHORIZATION}/roleDefinitions/read", "Get role definition",
                              "Get information about a role definition.", "Role Definition", AUTHORIZATION)
LOCK_READ = Action(f"{AUTHORIZATION}/locks/read", "Get management locks", "Gets locks at the specified scope.",
                   "Management locks", AUTHORIZATION)
LOCK_WRITE = Action(f"{AUTHORIZATION}/locks/write", "Add management locks",
                    "Add locks at the specified scope.", "Management locks", AUTHORIZATION)
LOCK_DELETE = Action(f"{AUTHORIZATION}/locks/delete", "Delete management locks",
                     "Delete locks at the specified scope.", "Management locks", AUTHORIZATION)

MANAGED_IDENTITY = "Microsoft.ManagedIdentity"
MI_REGISTER = Action(f"{MANAGED_IDENTITY}/register/action", "Register Resource Provider",
                     "Registers the subscription for the managed identity resource provider.", "Resource Provider",
                     MANAGED_IDENTITY)
MI_OPERATIONS_READ = Action(f"{MANAGED_IDENTITY}/operations/read", "List Operations",
                            "Lists operations available on Microsoft.ManagedIdentity resource provider.",
                            "Operations", MANAGED_IDENTITY)
IDENTITY_READ = Action(f"{MANAGED_IDENTITY}/userAssignedIdentities/read", "Get User Assigned Identity",
                       "Gets an existing user assigned identity.", "User Assigned Identity", MANAGED_IDENTITY)
IDENTITY_WRITE = Action(f"{MANAGED_IDENTITY}/userAssignedIdentities/write", "Create/Update User Assigned Identity",
                        "Creates a new user assigned identity or updates the tags associated with an existing user "
                        "assigned identity.", "User Assigned Identity", MANAGED_IDENTITY)
IDENTITY_DELETE = Action(f"{MANAGED_IDENTITY}/userAssignedIdentities/delete", "Delete User Assigned Identity",
                         "Deletes an existing user assigned identity.", "User Assigned Identity", MANAGED_IDENTITY)
IDENTITY_ASSIGN = Action(f"{MANAGED_IDENTITY}/userAssignedIdentities/assign/action",
                         "Assign User Assigned Identity", "Assigns an existing user assigned identity to a resource.",
                         "User Assigned Identity", MANAGED_IDENTITY)

INSIGHTS = "Microsoft.Insights"
EVENTS_READ = Action(f"{INSIGHTS}/eventtypes/values/read", "Read management event type values",
                     "Reads the activity log: the management events of a subscription.", "Event Type Values",
                     INSIGHTS)

ALL_ACTIONS: tuple[Action, ...] = (
    REGISTER, CHECK_NAME, OPERATIONS_READ, REGISTRY_READ, REGISTRY_WRITE, REGISTRY_DELETE, LIST_CREDENTIALS,
    REGENERATE_CREDENTIAL, LIST_USAGES, REGISTRY_OPERATION_STATUS, PULL, PUSH, ARTIFACTS_DELETE,
    GROUP_READ, GROUP_WRITE, GROUP_DELETE, GROUP_OPERATION_RESULT, RESOURCES_READ, SUBSCRIPTION_READ,
    PROVIDER_READ, ROLE_ASSIGNMENT_READ, ROLE_ASSIGNMENT_WRITE, ROLE_ASSIGNMENT_DELETE, ROLE_DEFINITION_READ,
    LOCK_READ, LOCK_WRITE, LOCK_DELETE, EVENTS_READ, DEPLOYMENT_READ, DEPLOYMENT_WRITE, DEPLOYMENT_DELETE,
    DEPLOYMENT_CANCEL, DEPLOYMENT_VALIDATE, DEPLOYMENT_WHAT_IF, DEPLOYMENT_EXPORT, DEPLOYMENT_OPERATIONS_READ,
    DEPLOYMENT_OPERATION_STATUS, MI_REGISTER, MI_OPERATIONS_READ, IDENTITY_READ, IDENTITY_WRITE, IDENTITY_DELETE,
    IDENTITY_ASSIGN,
    BATCH,
)


def provider_operations(provider: str) -> list[Action]:
    return [a for a in ALL_ACTIONS if a.provider == provider]
