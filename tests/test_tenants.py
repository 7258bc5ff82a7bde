"""Tenant isolation: `control-plane tenant create`, and what one tenant's principals can see of another's."""

from __future__ import annotations

import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.resource.resources import ResourceManagementClient

from tests.conftest import client_kwargs

ARM = "https://management.azure.com/.default"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.fixture(scope="module")
def second(service) -> dict:
    created = service.cli_json("tenant", "create", "--name", "Fabrikam")
    created["credential"] = ClientSecretCredential(
        created["tenantId"], created["clientId"], created["clientSecret"], authority=created["authority"],
        disable_instance_discovery=True, connection_verify=service.ca)
    return created


def subscriptions(service, credential) -> list[dict]:
    response = requests.get(f"{service.url}/subscriptions", params={"api-version": "2022-12-01"}, timeout=30,
                            headers={"Authorization": f"Bearer {credential.get_token(ARM).token}"},
                            verify=service.ca)
    assert response.status_code == 200, response.text
    return response.json()["value"]


def refused(call, status: int, code: str) -> None:
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert (raised.value.status_code, raised.value.error.code) == (status, code), raised.value


def test_tenant_create_prints_what_a_client_needs(service, second):
    assert {"tenantId", "subscriptionId", "clientId", "clientSecret", "objectId", "authority",
            "resourceManagerEndpoint", "caBundle"} <= set(second)
    assert second["tenantId"] != service.tenant_id and second["subscriptionId"] != service.subscription_id
    assert second["clientSecret"] and second["authority"] == service.init["authority"]
    another = service.cli_json("tenant", "create", "--name", "Fabrikam")  # not idempotent: a new tenant each time
    assert another["tenantId"] not in (second["tenantId"], service.tenant_id)
    failed = service.cli("tenant", "create", "--name", " ", check=False)
    assert failed.returncode == 1 and "tenant name" in failed.stderr


def test_tenant_admin_owns_its_subscription_and_only_that(service, second):
    own = ResourceManagementClient(second["credential"], second["subscriptionId"], **client_kwargs(service))
    group = f"rg-tenant-{uuid.uuid4().hex[:8]}"
    assert own.resource_groups.create_or_update(group, {"location": "eastus"}).name == group
    own.resource_groups.begin_delete(group).result()

    foreign = ResourceManagementClient(second["credential"], service.subscription_id, **client_kwargs(service))
    refused(lambda: list(foreign.resource_groups.list()), 401, "InvalidAuthenticationTokenTenant")
    refused(lambda: foreign.resource_groups.create_or_update(group, {"location": "eastus"}), 401,
            "InvalidAuthenticationTokenTenant")


def test_each_tenant_lists_only_its_own_subscriptions(service, credential, second):
    first = subscriptions(service, credential)
    assert service.subscription_id in {s["subscriptionId"] for s in first}
    assert {s["tenantId"] for s in first} == {service.tenant_id}
    assert [(s["subscriptionId"], s["tenantId"]) for s in subscriptions(service, second["credential"])] == [
        (second["subscriptionId"], second["tenantId"])]


def test_a_role_assignment_cannot_reach_into_another_tenant(service, credential, arm, second):
    scope = f"/subscriptions/{service.subscription_id}"
    reader = f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?api-version=2022-04-01"
    # Another tenant's principal is not in this directory: without principalType, PrincipalNotFound.
    response = arm.request("PUT", path, json={"properties": {"roleDefinitionId": reader,
                                                             "principalId": second["objectId"]}})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "PrincipalNotFound"), response.text

    # With principalType it is accepted (as Azure does), yet the grant opens nothing: the token's tenant still
    # does not match the subscription's.
    authz = AuthorizationManagementClient(credential, service.subscription_id, **client_kwargs(service))
    name = str(uuid.uuid4())
    authz.role_assignments.create(scope, name, RoleAssignmentCreateParameters(
        role_definition_id=reader, principal_id=second["objectId"], principal_type="ServicePrincipal"))
    try:
        foreign = ResourceManagementClient(second["credential"], service.subscription_id, **client_kwargs(service))
        refused(lambda: list(foreign.resource_groups.list()), 401, "InvalidAuthenticationTokenTenant")
        assert service.subscription_id not in {s["subscriptionId"] for s in subscriptions(service,
                                                                                          second["credential"])}
    finally:
        authz.role_assignments.delete(scope, name)

    # Nor can the second tenant's admin assign anything on the first tenant's subscription.
    foreign_authz = AuthorizationManagementClient(second["credential"], service.subscription_id,
                                                  **client_kwargs(service))
    refused(lambda: foreign_authz.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=reader, principal_id=second["objectId"], principal_type="ServicePrincipal")), 401,
        "InvalidAuthenticationTokenTenant")
