"""The real az CLI (azure-cli 2.91.0) against the service: custom cloud, service-principal login, groups, registries.

One az profile per backend: the cloud is registered with endpoint discovery (GET /metadata/endpoints), then az logs in
with the bootstrap service principal, exactly as docs/real-clients.md §9.1 describes.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import unique_registry_name
from tests.support import tools
from tests.support.az import Az, az_env, login, register_cloud

pytestmark = pytest.mark.az

# An LRO step that waits for the clients' default poll interval (30 s) means a Retry-After went missing.
LRO_SECONDS = 25
CLOUD = "ControlPlaneTest"


@pytest.fixture(scope="module")
def az_profile(service, tmp_path_factory):
    """A profile whose cloud was registered against the service, before anyone logged in."""
    az = Az(tools.az_cli(), az_env(tmp_path_factory.mktemp("az-config"), service.ca))
    register_cloud(az, service.url, CLOUD)
    return az


@pytest.fixture(scope="module")
def az(az_profile, service):
    init = service.init
    accounts = login(az_profile, init["clientId"], init["clientSecret"], init["tenantId"])
    az_profile.login_output = accounts
    return az_profile


@pytest.fixture(scope="module")
def az_group(az):
    """A resource group created with az for the registry tests, deleted (with its registries) at the end."""
    name = f"rg-az-{uuid.uuid4().hex[:10]}"
    az.json("group", "create", "-n", name, "-l", "eastus")
    yield name
    az.json("group", "delete", "-n", name, "--yes")


@pytest.fixture(scope="module")
def az_registry(az, az_group):
    """What `az acr create` printed for the registry the read-only tests share, and how long it took."""
    created = az.json("acr", "create", "-g", az_group, "-n", unique_registry_name("az"), "--sku", "Basic")
    return {**created, "seconds": az.seconds}


def test_cloud_register_discovers_endpoints_and_login_selects_the_subscription(az, service):
    cloud = az.json("cloud", "show", "--name", CLOUD)
    assert cloud["isActive"] is True
    endpoints = cloud["endpoints"]
    assert endpoints["resourceManager"] == f"{service.url}/"
    assert endpoints["activeDirectory"] == service.url
    assert endpoints["activeDirectoryResourceId"] == "https://management.core.windows.net/"
    assert endpoints["microsoftGraphResourceId"] == f"{service.url}/"
    # Only /metadata/endpoints names the gallery and portal: they prove discovery ran.
    assert endpoints["gallery"] == f"{service.url}/"
    assert endpoints["portal"] == f"{service.url}/"
    assert cloud["suffixes"]["acrLoginServerEndpoint"] == f".{service.login_server_suffix}"

    [account] = [a for a in az.login_output if a["id"] == service.subscription_id]
    assert account["tenantId"] == service.tenant_id
    assert account["state"] == "Enabled"
    assert account["cloudName"] == CLOUD
    assert account["user"] == {"name": service.init["clientId"], "type": "servicePrincipal"}
    current = az.json("account", "show")
    assert (current["id"], current["tenantId"], current["isDefault"]) == (service.subscription_id,
                                                                         service.tenant_id, True)


def test_group_create_show_delete(az, service):
    name = f"rg-az-{uuid.uuid4().hex[:10]}"
    created = az.json("group", "create", "-n", name, "-l", "westeurope", "--tags", "team=platform")
    try:
        assert created["name"] == name
        assert created["id"] == f"/subscriptions/{service.subscription_id}/resourceGroups/{name}"
        assert created["location"] == "westeurope"
        assert created["tags"] == {"team": "platform"}
        assert created["properties"]["provisioningState"] == "Succeeded"
        shown = az.json("group", "show", "-n", name.upper())
        assert (shown["name"], shown["location"], shown["tags"]) == (name, "westeurope", {"team": "platform"})
    finally:
        assert az.json("group", "delete", "-n", name, "--yes") is None
    assert "ResourceGroupNotFound" in az.fail("group", "show", "-n", name)


def test_acr_check_name_create_list_show(az, az_group, az_registry, service):
    name = az_registry["name"]
    assert az_registry["id"] == (f"/subscriptions/{service.subscription_id}/resourceGroups/{az_group}"
                                 f"/providers/Microsoft.ContainerRegistry/registries/{name}")
    assert az_registry["location"] == "eastus"
    assert az_registry["loginServer"] == f"{name}.{service.login_server_suffix}"
    assert az_registry["provisioningState"] == "Succeeded"
    assert az_registry["sku"] == {"name": "Basic", "tier": "Basic"}
    assert az_registry["adminUserEnabled"] is False
    assert az_registry["resourceGroup"] == az_group
    assert az_registry["seconds"] < LRO_SECONDS

    taken = az.json("acr", "check-name", "-n", name)
    assert (taken["nameAvailable"], taken["reason"]) == (False, "AlreadyExists")
    free = az.json("acr", "check-name", "-n", unique_registry_name("az"))
    assert free["nameAvailable"] is True

    listed = {r["name"]: r for r in az.json("acr", "list")}
    assert listed[name]["loginServer"] == az_registry["loginServer"]
    assert listed[name]["resourceGroup"] == az_group

    shown = az.json("acr", "show", "-n", name)
    assert shown["id"] == az_registry["id"]
    assert shown["loginServer"] == az_registry["loginServer"]
    assert shown["provisioningState"] == "Succeeded"


def test_acr_create_refuses_a_name_in_use(az, az_registry):
    other = f"rg-az-{uuid.uuid4().hex[:10]}"
    az.json("group", "create", "-n", other, "-l", "westeurope")
    try:
        output = az.fail("acr", "create", "-g", other, "-n", az_registry["name"], "--sku", "Basic")
        assert "AlreadyInUse" in output
        assert az.json("acr", "list", "-g", other) == []
    finally:
        az.run("group", "delete", "-n", other, "--yes")


def test_acr_admin_credentials_show_and_renew(az, az_group):
    name = unique_registry_name("azadm")
    az.json("acr", "create", "-g", az_group, "-n", name, "--sku", "Basic")
    # az reads adminUserEnabled from the registry GET and refuses before asking for credentials.
    refused = az.fail("acr", "credential", "show", "-n", name)
    assert f"az acr update -n {name} --admin-enabled true" in refused

    updated = az.json("acr", "update", "-n", name, "--admin-enabled", "true")
    assert az.seconds < LRO_SECONDS
    assert updated["adminUserEnabled"] is True
    assert updated["provisioningState"] == "Succeeded"
    assert updated["sku"]["name"] == "Basic"

    credentials = az.json("acr", "credential", "show", "-n", name)
    assert credentials["username"] == name
    before = {p["name"]: p["value"] for p in credentials["passwords"]}
    assert set(before) == {"password", "password2"}
    assert all(before.values())

    renewed = az.json("acr", "credential", "renew", "-n", name, "--password-name", "password2")
    after = {p["name"]: p["value"] for p in renewed["passwords"]}
    assert after["password"] == before["password"]
    assert after["password2"] != before["password2"]
    assert az.json("acr", "credential", "show", "-n", name)["passwords"] == renewed["passwords"]


def test_acr_show_usage(az, az_registry):
    usages = {u["name"]: u for u in az.json("acr", "show-usage", "-n", az_registry["name"])["value"]}
    assert usages["Size"]["unit"] == "Bytes"
    assert usages["Size"]["limit"] == 10 * 1024 ** 3
    assert usages["Size"]["currentValue"] == 0
    assert usages["Webhooks"]["limit"] == 2
    assert usages["Webhooks"]["currentValue"] == 0


def test_acr_delete(az, az_group):
    name = unique_registry_name("azdel")
    az.json("acr", "create", "-g", az_group, "-n", name, "--sku", "Basic")
    assert az.json("acr", "delete", "-n", name, "--yes") is None
    assert az.seconds < LRO_SECONDS
    assert name not in {r["name"] for r in az.json("acr", "list", "-g", az_group)}
    assert "could not be found" in az.fail("acr", "show", "-n", name)
    assert az.json("acr", "check-name", "-n", name)["nameAvailable"] is True
