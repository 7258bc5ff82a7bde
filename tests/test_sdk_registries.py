"""Registries driven with azure-mgmt-containerregistry 15, the way users provision them."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.containerregistry.models import (
    RegenerateCredentialParameters,
    Registry,
    RegistryNameCheckRequest,
    RegistryPropertiesUpdateParameters,
    RegistryUpdateParameters,
    Sku,
)

from tests.conftest import storage_containers, unique_registry_name


def create(acr, group, name, **kwargs):
    params = Registry(location=kwargs.pop("location", "eastus"), sku=Sku(name=kwargs.pop("sku", "Basic")), **kwargs)
    return acr.registries.begin_create(group, name, params).result()


def test_create_get_delete_round_trip(acr, group, service):
    name = unique_registry_name("Mixed")
    registry = create(acr, group, name, tags={"team": "platform"})

    assert registry.name == name
    assert registry.provisioning_state == "Succeeded"
    assert registry.login_server == f"{name.lower()}.{service.login_server_suffix}"
    assert registry.sku.name == registry.sku.tier == "Basic"
    assert registry.tags == {"team": "platform"}
    assert registry.admin_user_enabled is False
    assert registry.system_data.created_by == service.init["clientId"]
    assert registry.system_data.created_by_type == "Application"

    fetched = acr.registries.get(group, name.upper())
    assert fetched.as_dict() == registry.as_dict()
    container = f"{name.lower()}-"
    assert any(c.startswith(container) for c in storage_containers(service))

    acr.registries.begin_delete(group, name).result()
    with pytest.raises(ResourceNotFoundError):
        acr.registries.get(group, name)
    assert not any(c.startswith(container) for c in storage_containers(service))


def test_name_availability_and_global_uniqueness(acr, group, rmc):
    name = unique_registry_name()
    assert acr.registries.check_name_availability(
        RegistryNameCheckRequest(name=name, type="Microsoft.ContainerRegistry/registries")).name_available
    create(acr, group, name)

    taken = acr.registries.check_name_availability(
        RegistryNameCheckRequest(name=name.upper(), type="Microsoft.ContainerRegistry/registries"))
    assert (taken.name_available, taken.reason) == (False, "AlreadyExists")
    invalid = acr.registries.check_name_availability(
        RegistryNameCheckRequest(name="no-dashes", type="Microsoft.ContainerRegistry/registries"))
    assert (invalid.name_available, invalid.reason) == (False, "Invalid")

    other = group + "b"
    rmc.resource_groups.create_or_update(other, {"location": "eastus"})
    try:
        with pytest.raises(ResourceExistsError) as raised:
            create(acr, other, name.upper())
        assert raised.value.error.code == "AlreadyInUse"
    finally:
        rmc.resource_groups.begin_delete(other).result()


def test_put_again_replaces_and_answers_200(acr, group, arm):
    name = unique_registry_name()
    create(acr, group, name, tags={"a": "1"})
    path = arm.registry_path(group, name) + "?api-version=2025-11-01"
    response = arm.request("PUT", path, json={"location": "East US", "sku": {"name": "Standard"}})
    assert response.status_code == 200
    assert response.json()["properties"]["provisioningState"] == "Updating"
    assert response.headers["Retry-After"] == "1"
    registry = acr.registries.get(group, name)
    assert registry.sku.name == "Standard"
    assert registry.tags == {}


def test_update_merges_and_replaces_tags(acr, group):
    name = unique_registry_name()
    create(acr, group, name, tags={"a": "1", "b": "2"})
    updated = acr.registries.begin_update(group, name, RegistryUpdateParameters(
        tags={"c": "3"}, properties=RegistryPropertiesUpdateParameters(admin_user_enabled=True))).result()
    assert updated.tags == {"c": "3"}
    assert updated.admin_user_enabled is True
    assert updated.sku.name == "Basic"

    scaled = acr.registries.begin_update(group, name, RegistryUpdateParameters(sku=Sku(name="Premium"))).result()
    assert scaled.sku.name == "Premium"
    assert scaled.admin_user_enabled is True
    assert scaled.tags == {"c": "3"}


def test_admin_credentials(acr, group):
    name = unique_registry_name()
    create(acr, group, name)
    with pytest.raises(HttpResponseError) as raised:
        acr.registries.list_credentials(group, name)
    assert raised.value.status_code == 400
    assert raised.value.error.code == "UnAuthorizedForCredentialOperations"

    acr.registries.begin_update(group, name, RegistryUpdateParameters(
        properties=RegistryPropertiesUpdateParameters(admin_user_enabled=True))).result()
    first = acr.registries.list_credentials(group, name)
    assert first.username == name
    passwords = {p.name: p.value for p in first.passwords}
    assert set(passwords) == {"password", "password2"}
    assert all(len(v) == 32 for v in passwords.values())
    assert acr.registries.list_credentials(group, name).as_dict() == first.as_dict()

    renewed = acr.registries.regenerate_credential(group, name, RegenerateCredentialParameters(name="password2"))
    after = {p.name: p.value for p in renewed.passwords}
    assert after["password"] == passwords["password"]
    assert after["password2"] != passwords["password2"]


def test_usages_and_operations(acr, group):
    name = unique_registry_name()
    create(acr, group, name, sku="Standard")
    usages = {u.name: u for u in acr.registries.list_usages(group, name).value}
    assert usages["Size"].limit == 100 * 1024 ** 3 and usages["Size"].unit == "Bytes"
    assert usages["Webhooks"].limit == 10 and usages["Webhooks"].current_value == 0

    names = {op.name for op in acr.operations.list()}
    assert {"Microsoft.ContainerRegistry/registries/read", "Microsoft.ContainerRegistry/registries/write",
            "Microsoft.ContainerRegistry/registries/listCredentials/action",
            "Microsoft.ContainerRegistry/register/action"} <= names


def test_lists_follow_next_link_in_stable_order(acr, group, rmc):
    names = sorted(unique_registry_name(f"page{i}") for i in range(5))
    for name in names:
        create(acr, group, name)
    pages = acr.registries.list_by_resource_group(group).by_page()
    listed = [[r.name for r in page] for page in pages]
    assert [n for page in listed for n in page] == sorted(names, key=str.lower)
    everywhere = [r.name for r in acr.registries.list()]
    assert set(names) <= set(everywhere)
    assert everywhere == sorted(everywhere, key=str.lower)


def test_deleting_group_deletes_registries_and_containers(acr, rmc, service):
    group = f"rg-cascade-{unique_registry_name()}"
    rmc.resource_groups.create_or_update(group, {"location": "westeurope"})
    names = [unique_registry_name() for _ in range(2)]
    for name in names:
        create(acr, group, name, location="westeurope")
    assert sum(c.startswith(tuple(n.lower() for n in names)) for c in storage_containers(service)) == 2

    rmc.resource_groups.begin_delete(group).result()
    assert not rmc.resource_groups.check_existence(group)
    assert not any(c.startswith(tuple(n.lower() for n in names)) for c in storage_containers(service))
    for name in names:
        assert acr.registries.check_name_availability(
            RegistryNameCheckRequest(name=name, type="Microsoft.ContainerRegistry/registries")).name_available


def test_etags_and_conditional_requests(acr, group, arm):
    name = unique_registry_name()
    create(acr, group, name)
    path = arm.registry_path(group, name) + "?api-version=2025-11-01"
    got = arm.request("GET", path)
    tag = got.headers["ETag"]
    assert got.json()["etag"] == tag

    body = {"location": "eastus", "sku": {"name": "Basic"}}
    assert arm.request("PUT", path, json=body, headers={"If-None-Match": "*"}).json()["error"]["code"] == \
        "PreconditionFailed"
    stale = arm.request("PATCH", path, json={"tags": {"a": "1"}}, headers={"If-Match": '"not-the-etag"'})
    assert (stale.status_code, stale.json()["error"]["code"]) == (412, "PreconditionFailed")
    fresh = arm.request("PATCH", path, json={"tags": {"a": "1"}}, headers={"If-Match": tag})
    assert fresh.status_code == 201 and fresh.headers["ETag"] != tag
    assert arm.request("DELETE", path, headers={"If-Match": tag}).status_code == 412

    missing = arm.registry_path(group, unique_registry_name()) + "?api-version=2025-11-01"
    assert arm.request("PUT", missing, json=body, headers={"If-Match": "*"}).status_code == 412
    assert arm.request("DELETE", missing, headers={"If-Match": "*"}).status_code == 204
    created = arm.request("PUT", missing, json=body, headers={"If-None-Match": "*"})
    assert created.status_code == 201
    settled = acr.registries.get(group, name)
    final = arm.request("GET", path)
    assert settled.provisioning_state == "Succeeded"
    assert final.headers["ETag"] == final.json()["etag"] not in (tag, None)
