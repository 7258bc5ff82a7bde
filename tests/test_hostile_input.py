"""Injection and traversal attempts get a 4xx in the ARM envelope and change nothing else."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import storage_containers, unique_registry_name

API = "api-version=2025-11-01"
VALID_GROUP_NAME = re.compile(r"^[-\w._()]{1,90}(?<!\.)$")
HOSTILE = [
    "a' OR '1'='1",
    "x; DROP TABLE registries;--",
    "..",
    "../../etc",
    "%2F..%2F..",
    "name%00null",
    "n\u0000ul",
    "\u202eevil",
    "ünïcödé",
    "a" * 5000,
    "%252e%252e",
    "${jndi:ldap://x}",
]


def _assert_arm_4xx(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code != 405 and response.content:
        error = response.json()["error"]
        assert error["code"] and error["message"]
    assert "Traceback" not in response.text


@pytest.fixture
def bystander(acr, group, service):
    """A registry that must come through every attack unchanged."""
    from azure.mgmt.containerregistry.models import Registry, Sku

    name = unique_registry_name("bystander")
    registry = acr.registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Basic"))).result()
    return registry, storage_containers(service)


def _unchanged(acr, group, bystander, service):
    registry, containers = bystander
    assert acr.registries.get(group, registry.name).as_dict() == registry.as_dict()
    assert containers <= storage_containers(service)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_registry_and_group_names(arm, acr, group, service, bystander, value):
    sub = service.subscription_id
    body = {"location": "eastus", "sku": {"name": "Basic"}}
    for method in ("PUT", "GET", "DELETE", "PATCH"):
        response = arm.request(method, f"/subscriptions/{sub}/resourceGroups/{group}/providers/"
                               f"Microsoft.ContainerRegistry/registries/{value}?{API}", json=body)
        if method == "DELETE" and response.status_code == 204:
            continue  # a name that cannot exist: DELETE of nothing is 204, as ARM answers
        _assert_arm_4xx(response)
        if not VALID_GROUP_NAME.match(value):  # Unicode letters are legal in group names, as in ARM
            _assert_arm_4xx(arm.request(method, f"/subscriptions/{sub}/resourcegroups/{value}"
                                        "?api-version=2025-04-01", json={"location": "eastus"}))
    _unchanged(acr, group, bystander, service)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_query_parameters(arm, acr, group, service, bystander, value):
    sub = service.subscription_id
    for path in (f"/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries",
                 f"/subscriptions/{sub}/resourcegroups", f"/subscriptions/{sub}/resources"):
        version = "2025-11-01" if "Registry" in path else "2025-04-01"
        baseline = arm.request("GET", path, params={"api-version": version}).json()
        for param in ("$skipToken", "$filter", "$top"):
            response = arm.request("GET", path, params={"api-version": version, param: value})
            if param == "$filter" and "ContainerRegistry" in path and response.status_code == 200:
                # the registries list takes no $filter (as in Azure): ignored, so it must change nothing
                assert response.json() == baseline
                continue
            _assert_arm_4xx(response)
    _unchanged(acr, group, bystander, service)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_json_fields(arm, acr, group, service, bystander, value):
    name = unique_registry_name("hostile")
    path = arm.registry_path(group, name) + "?" + API
    for body in ({"location": value, "sku": {"name": "Basic"}},
                 {"location": "eastus", "sku": {"name": value}},
                 {"location": "eastus", "sku": {"name": "Basic"}, "properties": {"publicNetworkAccess": value}},
                 {"location": "eastus", "sku": {"name": "Basic"}, "tags": {value: "v", "k/": value}}):
        _assert_arm_4xx(arm.request("PUT", path, json=body))
    _assert_arm_4xx(arm.request("POST", f"/subscriptions/{service.subscription_id}/providers/"
                                f"Microsoft.ContainerRegistry/checkNameAvailability?{API}",
                                json={"name": value, "type": value}))
    assert arm.request("GET", path).status_code == 404
    _unchanged(acr, group, bystander, service)


def test_hostile_tag_values_are_stored_verbatim_not_interpreted(arm, acr, group, service, bystander):
    name = unique_registry_name("verbatim")
    path = arm.registry_path(group, name) + "?" + API
    tags = {f"t{i}": v[:256] for i, v in enumerate(HOSTILE) if "\u0000" not in v}
    created = arm.request("PUT", path, json={"location": "eastus", "sku": {"name": "Basic"}, "tags": tags})
    assert created.status_code == 201, created.text
    assert arm.request("GET", path).json()["tags"] == tags
    _unchanged(acr, group, bystander, service)


def test_role_assignment_fields_too_long_for_their_columns_are_400(arm, service, group):
    """Found by the fuzzer: a long conditionVersion reached PostgreSQL's varchar(16) and came back as a 500."""
    scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?api-version=2022-04-01"
    base = {"roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "principalId": service.init["objectId"]}
    for extra in ({"conditionVersion": "पन्ह " * 20}, {"conditionVersion": "1.0"},
                  {"delegatedManagedIdentityResourceId": "x" * 5000}):
        _assert_arm_4xx(arm.request("PUT", path, json={"properties": {**base, **extra}}))
    assert arm.request("GET", path).status_code == 404
