"""Managed identities against `control-plane serve`, on both backends: Microsoft.ManagedIdentity/
userAssignedIdentities through azure-mgmt-msi (its default api-version, 2024-11-30) and raw REST (2023-01-31), the
`identity` of registries through azure-mgmt-containerregistry, templates, and az (`az identity`, `az acr identity`).

Every identity is a service principal of the subscription's tenant: the tests see it exist by giving it a role
(201) and see it gone by the role assignment API's PrincipalNotFound.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.identity import ClientSecretCredential

from tests.conftest import Arm, assert_arm_error, client_kwargs, unique_registry_name
from tests.support.az import logged_in

MI_VERSION = "2023-01-31"
ACR_VERSION = "2025-11-01"
RA_VERSION = "2022-04-01"
MI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
ROLES = {"AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d", "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
         "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
         "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830"}


@pytest.fixture(scope="session")
def msi(service, credential):
    from azure.mgmt.msi import ManagedServiceIdentityClient

    return ManagedServiceIdentityClient(credential, service.subscription_id, **client_kwargs(service))


def identity_path(service, group: str, name: str = "") -> str:
    return (f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/{MI_TYPE}"
            + (f"/{name}" if name else ""))


def put_identity(arm: Arm, group: str, name: str, body: dict | None = None, version: str = MI_VERSION):
    return arm.request("PUT", identity_path(arm.service, group, name), params={"api-version": version},
                       json=body if body is not None else {"location": "eastus"})


def assign_role(arm: Arm, scope: str, principal_id: str, role: str = "AcrPull"):
    """Without principalType, so the directory is asked (with it, ARM takes the principal on trust)."""
    return arm.request("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                       params={"api-version": RA_VERSION},
                       json={"properties": {"roleDefinitionId": ROLES[role], "principalId": principal_id}})


def assert_principal_exists(arm: Arm, scope: str, principal_id: str) -> None:
    assigned = assign_role(arm, scope, principal_id)
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["properties"]["principalType"] == "ServicePrincipal"


def assert_principal_gone(arm: Arm, scope: str, principal_id: str) -> None:
    assert_arm_error(assign_role(arm, scope, principal_id), 400, "PrincipalNotFound")


def all_pages(arm: Arm, path: str, params: dict) -> list[dict]:
    """Every page (the test service pages by 2)."""
    response = arm.request("GET", path, params=params)
    items: list[dict] = []
    while True:
        assert response.status_code == 200, response.text
        items += response.json()["value"]
        if not response.json().get("nextLink"):
            return items
        response = arm.request("GET", response.json()["nextLink"])


def assignments_of(arm: Arm, principal_id: str) -> list[dict]:
    return all_pages(arm, f"/subscriptions/{arm.service.subscription_id}/providers/Microsoft.Authorization/"
                          "roleAssignments", {"api-version": RA_VERSION, "$filter": f"principalId eq '{principal_id}'"})


def put_registry(arm: Arm, group: str, name: str, identity: dict | None = None, method: str = "PUT"):
    body: dict = {"location": "eastus", "sku": {"name": "Basic"}} if method == "PUT" else {}
    if identity is not None:
        body["identity"] = identity
    return arm.request(method, arm.registry_path(group, name), params={"api-version": ACR_VERSION}, json=body)


def wait_gone(arm: Arm, path: str, version: str) -> None:
    for _ in range(200):
        if arm.request("GET", path, params={"api-version": version}).status_code == 404:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} still exists")


# -- userAssignedIdentities -------------------------------------------------------------------------------------------

def test_sdk_creates_reads_lists_updates_and_deletes_an_identity(msi, arm, service, group):
    from azure.mgmt.msi.models import Identity, IdentityUpdate

    created = msi.user_assigned_identities.create_or_update(group, "app-identity",
                                                            Identity(location="eastus", tags={"env": "test"}))
    assert created.id == identity_path(service, group, "app-identity")
    assert (created.type, created.location, created.tags) == (MI_TYPE, "eastus", {"env": "test"})
    assert created.tenant_id == service.tenant_id
    assert created.principal_id != created.client_id
    assert created.system_data.created_by == service.init["clientId"]
    assert_principal_exists(arm, created.id, created.principal_id)

    # A second PUT updates (200) and keeps the principal.
    again = put_identity(arm, group, "APP-identity", {"location": "East US", "tags": {"env": "prod"}})
    assert again.status_code == 200, again.text
    assert again.json()["name"] == "app-identity" and again.json()["tags"] == {"env": "prod"}
    assert again.json()["properties"]["principalId"] == created.principal_id

    shown = msi.user_assigned_identities.get(group, "app-identity")
    assert (shown.principal_id, shown.client_id) == (created.principal_id, created.client_id)
    patched = msi.user_assigned_identities.update(group, "app-identity", IdentityUpdate(tags={"patched": "yes"}))
    assert patched.tags == {"patched": "yes"}
    msi.user_assigned_identities.create_or_update(group, "second", Identity(location="westus"))
    assert [i.name for i in msi.user_assigned_identities.list_by_resource_group(group)] == ["app-identity", "second"]
    assert {f"{group}/app-identity", f"{group}/second"} <= {
        f"{i.id.split('/')[4]}/{i.name}" for i in msi.user_assigned_identities.list_by_subscription()}
    generic = arm.request("GET", f"/subscriptions/{service.subscription_id}/resources",
                          params={"api-version": "2021-04-01", "$filter": f"resourceType eq '{MI_TYPE}'"}).json()
    assert created.id in {r["id"] for r in generic["value"]}

    msi.user_assigned_identities.delete(group, "app-identity")
    assert_arm_error(arm.request("GET", created.id, params={"api-version": MI_VERSION}), 404, "ResourceNotFound")
    assert assignments_of(arm, created.principal_id) == []  # its role assignments went with it
    assert_principal_gone(arm, f"/subscriptions/{service.subscription_id}/resourceGroups/{group}",
                          created.principal_id)
    gone = arm.request("DELETE", created.id, params={"api-version": MI_VERSION})
    assert gone.status_code == 204

    provider = arm.request("GET", f"/subscriptions/{service.subscription_id}/providers/Microsoft.ManagedIdentity",
                           params={"api-version": "2021-04-01"}).json()
    assert provider["registrationState"] == "Registered"
    assert MI_VERSION in provider["resourceTypes"][0]["apiVersions"]
    operations = arm.request("GET", "/providers/Microsoft.ManagedIdentity/operations",
                             params={"api-version": MI_VERSION}).json()["value"]
    assert f"{MI_TYPE}/write" in {o["name"] for o in operations}


@pytest.mark.parametrize(("name", "body", "version", "status", "code"), [
    ("ab", {"location": "eastus"}, MI_VERSION, 400, "InvalidResourceName"),
    ("-leading-dash", {"location": "eastus"}, MI_VERSION, 400, "InvalidResourceName"),
    ("has.dot", {"location": "eastus"}, MI_VERSION, 400, "InvalidResourceName"),
    ("fine", {}, MI_VERSION, 400, "LocationRequired"),
    ("fine", {"location": "mars"}, MI_VERSION, 400, "LocationNotAvailableForResourceType"),
    ("fine", {"location": "eastus", "tags": ["x"]}, MI_VERSION, 400, "InvalidRequestContent"),
    ("fine", {"location": "eastus"}, "2099-01-01", 400, "InvalidApiVersionParameter"),
])
def test_bad_identity_requests_get_arm_codes(arm, service, group, name, body, version, status, code):
    assert_arm_error(put_identity(arm, group, name, body, version), status, code)
    assert arm.request("GET", identity_path(service, group), params={"api-version": MI_VERSION}).json()["value"] == []


def test_identity_location_is_fixed_and_group_must_exist(arm, service, group):
    assert put_identity(arm, group, "fixed").status_code == 201
    assert_arm_error(put_identity(arm, group, "fixed", {"location": "westus"}), 400, "InvalidResourceLocation")
    patched = arm.request("PATCH", identity_path(service, group, "fixed"), params={"api-version": MI_VERSION},
                          json={"location": "westus"})
    assert_arm_error(patched, 400, "InvalidParameter")
    assert_arm_error(put_identity(arm, f"missing-{group}", "xyz"), 404, "ResourceGroupNotFound")
    assert_arm_error(arm.request("GET", identity_path(service, group, "nothere"), params={"api-version": MI_VERSION}),
                     404, "ResourceNotFound")


def test_locks_activity_log_and_group_delete_apply_to_identities(arm, service, rmc):
    group = f"rg-{uuid.uuid4().hex[:10]}"
    rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    started = datetime.now(UTC) - timedelta(seconds=5)
    created = put_identity(arm, group, "locked").json()
    lock = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/Microsoft.Authorization/locks/k"
    assert arm.request("PUT", lock, params={"api-version": "2020-05-01"},
                       json={"properties": {"level": "CanNotDelete"}}).status_code == 201
    try:
        assert_arm_error(arm.request("DELETE", created["id"], params={"api-version": MI_VERSION}), 409, "ScopeLocked")
        assert put_identity(arm, group, "locked", {"location": "eastus", "tags": {"a": "b"}}).status_code == 200
        assert arm.request("PUT", lock, params={"api-version": "2020-05-01"},
                           json={"properties": {"level": "ReadOnly"}}).status_code == 200
        assert_arm_error(put_identity(arm, group, "locked"), 409, "ScopeLocked")
        assert_arm_error(put_identity(arm, group, "another"), 409, "ScopeLocked")
    finally:
        assert arm.request("DELETE", lock, params={"api-version": "2020-05-01"}).status_code == 200

    events = all_pages(arm, f"/subscriptions/{service.subscription_id}/providers/Microsoft.Insights/eventtypes/"
                            "management/values", {"api-version": "2015-04-01",
                                                  "$filter": f"eventTimestamp ge '{started.isoformat()}' and "
                                                             f"resourceId eq '{created['id']}'"})
    operations = {(e["operationName"]["value"], e["status"]["value"]) for e in events}
    assert (f"{MI_TYPE}/write", "Succeeded") in operations
    assert (f"{MI_TYPE}/delete", "Failed") in operations

    principal = created["properties"]["principalId"]
    assert_principal_exists(arm, created["id"], principal)
    registry = put_registry(arm, group, unique_registry_name("gone"), {"type": "SystemAssigned"})
    assert registry.status_code == 201, registry.text
    rmc.resource_groups.begin_delete(group).result()
    for gone in (principal, registry.json()["identity"]["principalId"]):
        assert_principal_gone(arm, f"/subscriptions/{service.subscription_id}", gone)


def test_only_callers_with_the_actions_manage_identities(arm, service, group):
    sp = service.cli_json("sp", "create", "--name", f"mi-{uuid.uuid4().hex[:8]}")
    group_scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    credential = ClientSecretCredential(sp["tenant"], sp["appId"], sp["password"], authority=service.url,
                                        disable_instance_discovery=True, connection_verify=service.ca)
    caller = Arm(service, credential.get_token("https://management.azure.com/.default").token)
    assert put_identity(arm, group, "theirs").status_code == 201
    assert assign_role(arm, group_scope, sp["id"], "Reader").status_code == 201
    refused = assert_arm_error(put_identity(caller, group, "mine"), 403, "AuthorizationFailed")
    assert f"'{MI_TYPE}/write'" in refused["message"]
    assert caller.request("GET", identity_path(service, group, "theirs"),
                          params={"api-version": MI_VERSION}).status_code == 200
    assert assign_role(arm, group_scope, sp["id"], "Managed Identity Contributor").status_code == 201
    # A new token: role changes reach the service at once, but this token's caller is the same principal.
    assert put_identity(caller, group, "mine").status_code == 201
    assert caller.request("DELETE", identity_path(service, group, "mine"),
                          params={"api-version": MI_VERSION}).status_code == 200


def test_assigning_an_identity_needs_its_assign_action(arm, service, group, rmc):
    """ARM's linked check: writing a registry that names a user-assigned identity needs
    `userAssignedIdentities/assign/action` on that identity (Managed Identity Operator grants it), through the REST
    API and through a template alike."""
    other = f"rg-{uuid.uuid4().hex[:10]}"
    rmc.resource_groups.create_or_update(other, {"location": "eastus"})
    try:
        identity = put_identity(arm, other, "elsewhere").json()
        sp = service.cli_json("sp", "create", "--name", f"link-{uuid.uuid4().hex[:8]}")
        group_scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
        assert arm.request("PUT", f"{group_scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                           params={"api-version": RA_VERSION},
                           json={"properties": {"roleDefinitionId": "b24988ac-6180-42a0-ab88-20f7382dd24c",
                                                "principalId": sp["id"]}}).status_code == 201
        credential = ClientSecretCredential(sp["tenant"], sp["appId"], sp["password"], authority=service.url,
                                            disable_instance_discovery=True, connection_verify=service.ca)
        caller = Arm(service, credential.get_token("https://management.azure.com/.default").token)
        name = unique_registry_name("link")
        wanted = {"type": "UserAssigned", "userAssignedIdentities": {identity["id"]: {}}}
        refused = assert_arm_error(put_registry(caller, group, name, wanted), 403, "LinkedAuthorizationFailed")
        assert f"'{MI_TYPE}/assign/action'" in refused["message"] and identity["id"] in refused["message"]
        assert caller.request("GET", arm.registry_path(group, name),
                              params={"api-version": ACR_VERSION}).status_code == 404

        from azure.mgmt.resource.deployments import DeploymentsMgmtClient
        from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties

        deployer = DeploymentsMgmtClient(credential, service.subscription_id, **client_kwargs(service))
        registry_only = {**TEMPLATE, "variables": {"identityId": identity["id"]},
                         "resources": [TEMPLATE["resources"][1] | {"dependsOn": [],
                                                                   "identity": {"type": "UserAssigned",
                                                                                "userAssignedIdentities": {
                                                                                    identity["id"]: {}}}}],
                         "outputs": {}}
        properties = DeploymentProperties(mode="Incremental", template=registry_only, parameters={
            "registryName": {"value": name}, "identityName": {"value": "unused"}})
        from azure.core.exceptions import HttpResponseError

        with pytest.raises(HttpResponseError) as failed:
            deployer.deployments.begin_create_or_update(group, "link", Deployment(properties=properties)).result()
        assert "LinkedAuthorizationFailed" in str(failed.value)

        operator = assign_role(arm, identity["id"], sp["id"], "Managed Identity Operator")
        assert operator.status_code == 201, operator.text
        assert put_registry(caller, group, name, wanted).status_code == 201
        done = deployer.deployments.begin_create_or_update(group, "link", Deployment(properties=properties)).result()
        assert done.properties.provisioning_state == "Succeeded"
    finally:
        rmc.resource_groups.begin_delete(other).result()


# -- identities of registries -----------------------------------------------------------------------------------------

def test_system_assigned_identity_of_a_registry_lives_and_dies_with_it(acr, arm, service, group):
    from azure.mgmt.containerregistry.models import IdentityProperties, Registry, RegistryUpdateParameters, Sku

    name = unique_registry_name("sys")
    created = acr.registries.begin_create(group, name, Registry(
        location="eastus", sku=Sku(name="Basic"), identity=IdentityProperties(type="SystemAssigned"))).result()
    first = created.identity.principal_id
    assert created.identity.type == "SystemAssigned" and created.identity.tenant_id == service.tenant_id
    assert acr.registries.get(group, name).identity.principal_id == first
    assert_principal_exists(arm, created.id, first)

    # The same type again keeps the principal; dropping it removes the principal and its role assignments.
    kept = acr.registries.begin_update(group, name, RegistryUpdateParameters(
        identity=IdentityProperties(type="SystemAssigned"), tags={"k": "v"})).result()
    assert kept.identity.principal_id == first
    dropped = acr.registries.begin_update(group, name, RegistryUpdateParameters(
        identity=IdentityProperties(type="None"))).result()
    assert dropped.identity is None
    assert assignments_of(arm, first) == []
    assert_principal_gone(arm, created.id, first)

    again = acr.registries.begin_update(group, name, RegistryUpdateParameters(
        identity=IdentityProperties(type="SystemAssigned"))).result()
    second = again.identity.principal_id
    assert second != first
    assert_principal_exists(arm, created.id, second)
    acr.registries.begin_delete(group, name).result()
    assert_principal_gone(arm, f"/subscriptions/{service.subscription_id}", second)


def test_user_assigned_identities_of_a_registry(acr, arm, service, group):
    from azure.mgmt.containerregistry.models import (
        IdentityProperties,
        Registry,
        RegistryUpdateParameters,
        Sku,
        UserIdentityProperties,
    )

    first = put_identity(arm, group, "first").json()
    second = put_identity(arm, group, "second").json()
    name = unique_registry_name("uai")
    # Ids in another casing (resourcegroups, lower-case names) name the same identity; the answer uses its own.
    sent = first["id"].replace("resourceGroups", "resourcegroups").replace("/first", "/FIRST")
    created = acr.registries.begin_create(group, name, Registry(
        location="eastus", sku=Sku(name="Basic"),
        identity=IdentityProperties(type="UserAssigned",
                                    user_assigned_identities={sent: UserIdentityProperties()}))).result()
    assert created.identity.type == "UserAssigned" and created.identity.principal_id is None
    assert {k: (v.principal_id, v.client_id) for k, v in created.identity.user_assigned_identities.items()} == {
        first["id"]: (first["properties"]["principalId"], first["properties"]["clientId"])}

    # PATCH merges: the second is added, the system identity made; an entry set to null removes one.
    both = put_registry(arm, group, name, {"type": "SystemAssigned, UserAssigned",
                                           "userAssignedIdentities": {second["id"]: {}}}, method="PATCH").json()
    assert set(both["identity"]["userAssignedIdentities"]) == {first["id"], second["id"]}
    assert both["identity"]["principalId"] and both["identity"]["tenantId"] == service.tenant_id
    removed = put_registry(arm, group, name, {"type": "SystemAssigned,UserAssigned",
                                              "userAssignedIdentities": {first["id"]: None}}, method="PATCH").json()
    assert list(removed["identity"]["userAssignedIdentities"]) == [second["id"]]
    assert removed["identity"]["principalId"] == both["identity"]["principalId"]

    # PUT replaces the set; a system identity dropped there goes too.
    replaced = acr.registries.begin_create(group, name, Registry(
        location="eastus", sku=Sku(name="Basic"),
        identity=IdentityProperties(type="UserAssigned",
                                    user_assigned_identities={first["id"]: UserIdentityProperties()}))).result()
    assert list(replaced.identity.user_assigned_identities) == [first["id"]]
    assert_principal_gone(arm, created.id, both["identity"]["principalId"])
    assert acr.registries.begin_update(group, name, RegistryUpdateParameters(
        identity=IdentityProperties(type="None"))).result().identity is None
    # User-assigned identities outlive the registries that used them.
    assert_principal_exists(arm, created.id, first["properties"]["principalId"])


def test_deleting_an_identity_in_use(acr, arm, service, group):
    """ARM lets an identity be deleted while resources name it: they keep the entry (its principal is gone), and a
    later write that still names it is refused until the resource stops naming it."""
    identity = put_identity(arm, group, "in-use").json()
    name = unique_registry_name("inuse")
    assert put_registry(arm, group, name, {"type": "UserAssigned",
                                           "userAssignedIdentities": {identity["id"]: {}}}).status_code == 201
    assert arm.request("DELETE", identity["id"], params={"api-version": MI_VERSION}).status_code == 200
    stale = arm.request("GET", arm.registry_path(group, name), params={"api-version": ACR_VERSION}).json()
    assert stale["identity"]["userAssignedIdentities"] == {identity["id"]: {
        "principalId": identity["properties"]["principalId"], "clientId": identity["properties"]["clientId"]}}
    assert_principal_gone(arm, stale["id"], identity["properties"]["principalId"])
    assert_arm_error(put_registry(arm, group, name, {"type": "SystemAssigned, UserAssigned"}, method="PATCH"),
                     400, "FailedIdentityOperation")
    healed = put_registry(arm, group, name, {"type": "SystemAssigned"})
    assert healed.status_code == 200 and "userAssignedIdentities" not in healed.json()["identity"]


@pytest.mark.parametrize(("identity", "status", "code"), [
    ({"type": "Both"}, 400, "InvalidRequestContent"),
    ({"type": 7}, 400, "InvalidRequestContent"),
    ({}, 400, "InvalidRequestContent"),
    ({"type": "UserAssigned"}, 400, "InvalidIdentityType"),
    ({"type": "UserAssigned", "userAssignedIdentities": {}}, 400, "InvalidIdentityType"),
    ({"type": "SystemAssigned", "userAssignedIdentities": {"{known}": {}}}, 400, "InvalidIdentityType"),
    ({"type": "UserAssigned", "userAssignedIdentities": {"not-an-id": {}}}, 400, "LinkedInvalidPropertyId"),
    ({"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/{sub}/resourceGroups/g/providers/"
                                                         "Microsoft.Storage/storageAccounts/x": {}}},
     400, "LinkedInvalidPropertyId"),
    ({"type": "UserAssigned", "userAssignedIdentities": {"{known}/extra": {}}}, 400, "LinkedInvalidPropertyId"),
    ({"type": "UserAssigned", "userAssignedIdentities": {"{known}": "yes"}}, 400, "InvalidRequestContent"),
    ({"type": "UserAssigned", "userAssignedIdentities": {"{unknown}": {}}}, 400, "FailedIdentityOperation"),
])
def test_bad_registry_identities_get_arm_codes_and_write_nothing(arm, service, group, identity, status, code):
    known = put_identity(arm, group, "known").json()["id"]
    values = {"{known}": known, "{unknown}": known.replace("/known", "/unknown"), "{sub}": service.subscription_id}

    def filled(value):
        if isinstance(value, dict):
            return {filled(k): filled(v) for k, v in value.items()}
        if isinstance(value, str):
            for placeholder, text in values.items():
                value = value.replace(placeholder, text)
        return value

    name = unique_registry_name("badid")
    principals = len(service.cli_json("sp", "list"))
    assert_arm_error(put_registry(arm, group, name, filled(identity)), status, code)
    assert arm.request("GET", arm.registry_path(group, name), params={"api-version": ACR_VERSION}).status_code == 404
    assert put_registry(arm, group, name).status_code == 201
    assert_arm_error(put_registry(arm, group, name, filled(identity), method="PATCH"), status, code)
    after = arm.request("GET", arm.registry_path(group, name), params={"api-version": ACR_VERSION}).json()
    assert "identity" not in after
    assert len(service.cli_json("sp", "list")) == principals  # no principal made by a refused request


# -- templates --------------------------------------------------------------------------------------------------------

TEMPLATE = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    "contentVersion": "1.0.0.0",
    "parameters": {"registryName": {"type": "string"}, "identityName": {"type": "string"}},
    "variables": {"acrPull": "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                             "'7f951dda-4ed3-4680-a7ca-43fe172d538d')]",
                  "identityId": "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', "
                                "parameters('identityName'))]"},
    "resources": [
        {"type": "Microsoft.ManagedIdentity/userAssignedIdentities", "apiVersion": "2023-01-31",
         "name": "[parameters('identityName')]", "location": "[resourceGroup().location]"},
        {"type": "Microsoft.ContainerRegistry/registries", "apiVersion": "2023-07-01",
         "name": "[parameters('registryName')]", "location": "[resourceGroup().location]",
         "sku": {"name": "Basic"}, "dependsOn": ["[variables('identityId')]"],
         "identity": {"type": "SystemAssigned, UserAssigned",
                      "userAssignedIdentities": {"[variables('identityId')]": {}}}},
        {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01",
         "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', parameters('registryName'))]",
         "name": "[guid(parameters('registryName'), parameters('identityName'), 'user')]",
         "dependsOn": ["[resourceId('Microsoft.ContainerRegistry/registries', parameters('registryName'))]"],
         "properties": {"roleDefinitionId": "[variables('acrPull')]", "principalType": "ServicePrincipal",
                        "principalId": "[reference(variables('identityId'), '2023-01-31').principalId]"}},
        {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01",
         "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', parameters('registryName'))]",
         "name": "[guid(parameters('registryName'), 'system')]",
         "dependsOn": ["[resourceId('Microsoft.ContainerRegistry/registries', parameters('registryName'))]"],
         "properties": {"roleDefinitionId": "[variables('acrPull')]", "principalType": "ServicePrincipal",
                        "principalId": "[reference(resourceId('Microsoft.ContainerRegistry/registries', "
                                       "parameters('registryName')), '2023-07-01', 'Full').identity.principalId]"}},
    ],
    "outputs": {"principalId": {"type": "string", "value": "[reference(variables('identityId')).principalId]"},
                "clientId": {"type": "string", "value": "[reference(variables('identityId')).clientId]"}},
}


def test_template_deploys_an_identity_a_registry_using_it_and_their_role_assignments(service, credential, arm,
                                                                                      group):
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties, DeploymentWhatIf

    client = DeploymentsMgmtClient(credential, service.subscription_id, **client_kwargs(service))
    name = unique_registry_name("tpl")
    parameters = {"registryName": {"value": name}, "identityName": {"value": "tpl-identity"}}
    properties = DeploymentProperties(mode="Incremental", template=TEMPLATE, parameters=parameters)
    preview = client.deployments.begin_what_if(group, "mi", DeploymentWhatIf(properties=properties)).result()
    assert {c.resource_id.split("/providers/")[-1].split("/")[0] + "/" + c.change_type for c in preview.changes
            if "roleAssignments" not in c.resource_id} == {"Microsoft.ManagedIdentity/Create",
                                                           "Microsoft.ContainerRegistry/Create"}

    result = client.deployments.begin_create_or_update(group, "mi", Deployment(properties=properties)).result()
    assert result.properties.provisioning_state == "Succeeded", result.properties.error
    identity = arm.request("GET", identity_path(service, group, "tpl-identity"),
                           params={"api-version": MI_VERSION}).json()
    assert result.properties.outputs["principalId"]["value"] == identity["properties"]["principalId"]
    assert result.properties.outputs["clientId"]["value"] == identity["properties"]["clientId"]
    registry = arm.request("GET", arm.registry_path(group, name), params={"api-version": ACR_VERSION}).json()
    assert registry["identity"]["type"] == "SystemAssigned, UserAssigned"
    assert list(registry["identity"]["userAssignedIdentities"]) == [identity["id"]]
    assigned = all_pages(arm, f"{registry['id']}/providers/Microsoft.Authorization/roleAssignments",
                         {"api-version": RA_VERSION})
    at_registry = {a["properties"]["principalId"] for a in assigned if a["properties"]["scope"] == registry["id"]}
    assert at_registry == {identity["properties"]["principalId"], registry["identity"]["principalId"]}

    again = client.deployments.begin_what_if(group, "mi", DeploymentWhatIf(properties=properties)).result()
    assert {c.change_type for c in again.changes} == {"NoChange"}, [(c.resource_id, c.delta) for c in again.changes]
    redeployed = client.deployments.begin_create_or_update(group, "mi", Deployment(properties=properties)).result()
    assert redeployed.properties.provisioning_state == "Succeeded"
    assert arm.request("GET", arm.registry_path(group, name),
                       params={"api-version": ACR_VERSION}).json()["identity"] == registry["identity"]


def test_template_naming_an_unknown_identity_fails_with_its_code(service, credential, arm, group):
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties

    client = DeploymentsMgmtClient(credential, service.subscription_id, **client_kwargs(service))
    template = {**TEMPLATE, "resources": [TEMPLATE["resources"][1] | {"dependsOn": []}], "outputs": {}}
    name = unique_registry_name("tplbad")
    properties = DeploymentProperties(mode="Incremental", template=template, parameters={
        "registryName": {"value": name}, "identityName": {"value": "never-made"}})
    with pytest.raises(HttpResponseError) as failed:
        client.deployments.begin_create_or_update(group, "bad", Deployment(properties=properties)).result()
    assert failed.value.error.code == "DeploymentFailed"
    assert "FailedIdentityOperation" in str(failed.value)
    assert arm.request("GET", arm.registry_path(group, name), params={"api-version": ACR_VERSION}).status_code == 404


def test_complete_mode_deletes_identities_the_template_drops(service, credential, arm, group):
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties, DeploymentWhatIf

    client = DeploymentsMgmtClient(credential, service.subscription_id, **client_kwargs(service))
    stray = put_identity(arm, group, "stray").json()
    kept = {**TEMPLATE, "resources": TEMPLATE["resources"][:1], "outputs": {}}
    parameters = {"registryName": {"value": unique_registry_name("cm")}, "identityName": {"value": "kept"}}
    for mode, expected in (("Incremental", "Ignore"), ("Complete", "Delete")):
        preview = client.deployments.begin_what_if(group, "cm", DeploymentWhatIf(properties=DeploymentProperties(
            mode=mode, template=kept, parameters=parameters))).result()
        changes = {c.resource_id.rsplit("/", 1)[-1]: c.change_type for c in preview.changes}
        assert changes == {"kept": "Create", "stray": expected}, changes
    done = client.deployments.begin_create_or_update(group, "cm", Deployment(properties=DeploymentProperties(
        mode="Complete", template=kept, parameters=parameters))).result()
    assert done.properties.provisioning_state == "Succeeded"
    names = [i["name"] for i in all_pages(arm, identity_path(service, group), {"api-version": MI_VERSION})]
    assert names == ["kept"]
    assert_principal_gone(arm, f"/subscriptions/{service.subscription_id}", stray["properties"]["principalId"])


# -- az ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def az(service, tmp_path_factory):
    return logged_in(service, tmp_path_factory.mktemp("az-identities"), "ControlPlaneIdentities")


@pytest.mark.az
def test_az_identity_and_acr_identity_commands(az, arm, service, group):
    created = az.json("identity", "create", "-g", group, "-n", "az-identity")
    assert created["type"] == MI_TYPE and created["location"] == "eastus"
    assert created["tenantId"] == service.tenant_id
    shown = az.json("identity", "show", "-g", group, "-n", "az-identity")
    assert (shown["principalId"], shown["clientId"]) == (created["principalId"], created["clientId"])
    assert [i["name"] for i in az.json("identity", "list", "-g", group)] == ["az-identity"]

    name = unique_registry_name("azmi")
    az.json("acr", "create", "-g", group, "-n", name, "--sku", "Basic")
    # assign and remove answer the whole registry; show answers its identity.
    system = az.json("acr", "identity", "assign", "-n", name, "--identities", "[system]")["identity"]
    assert system["type"] == "SystemAssigned" and system["tenantId"] == service.tenant_id
    both = az.json("acr", "identity", "assign", "-n", name, "-g", group, "--identities", "az-identity")["identity"]
    assert both["type"] == "SystemAssigned, UserAssigned"
    assert both["principalId"] == system["principalId"]
    assert {k.lower(): v["principalId"] for k, v in both["userAssignedIdentities"].items()} == {
        created["id"].lower(): created["principalId"]}
    assert az.json("acr", "identity", "show", "-n", name)["principalId"] == system["principalId"]
    registry_id = arm.registry_path(group, name)
    granted = az.json("role", "assignment", "create", "--assignee-object-id", system["principalId"],
                      "--assignee-principal-type", "ServicePrincipal", "--role", "AcrPull", "--scope", registry_id)
    assert granted["principalId"] == system["principalId"] and granted["scope"] == registry_id
    listed = az.json("role", "assignment", "list", "--scope", registry_id)
    assert system["principalId"] in {a["principalId"] for a in listed}

    user_only = az.json("acr", "identity", "remove", "-n", name, "--identities", "[system]")["identity"]
    assert user_only["type"] == "UserAssigned" and user_only.get("principalId") is None
    assert_principal_gone(arm, registry_id, system["principalId"])
    assert system["principalId"] not in {a["principalId"] for a in az.json("role", "assignment", "list",
                                                                            "--scope", registry_id)}
    assert az.json("acr", "identity", "remove", "-n", name, "--identities", created["id"])["identity"] is None
    assert az.json("acr", "identity", "show", "-n", name) is None
    failed = az.fail("acr", "identity", "assign", "-n", name, "--identities", created["id"].replace(
        "az-identity", "no-such-identity"))
    assert "FailedIdentityOperation" in failed

    az.run("identity", "delete", "-g", group, "-n", "az-identity")
    assert "ResourceNotFound" in az.fail("identity", "show", "-g", group, "-n", "az-identity")
    assert_principal_gone(arm, arm.registry_path(group, name), created["principalId"])
