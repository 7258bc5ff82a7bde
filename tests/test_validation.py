"""Input validation of registry and resource-group writes over raw HTTPS.

Each rejected write is checked three ways: status and ARM code, no registry row (GET 404, name still free), and
no blob container for the name (checked once the worker has had time to act on a wrongly accepted write).
"""

from __future__ import annotations

import copy
import time
import uuid

import pytest
import requests

from tests.conftest import assert_arm_error, storage_containers, unique_registry_name

VERSION = "2025-11-01"
RESOURCES_VERSION = "2021-04-01"
PREMIUM_ONLY = {
    "networkRuleSet": {"defaultAction": "Deny", "ipRules": []},
    "zoneRedundancy": "Enabled",
    "publicNetworkAccess": "Disabled",
}


def body(location="eastus", sku="Basic", **extra) -> dict:
    return {"location": location, "sku": {"name": sku}, **extra}


def url(arm, group: str, name: str) -> str:
    return f"{arm.registry_path(group, name)}?api-version={VERSION}"


def name_available(arm, name: str) -> bool:
    response = arm.request("POST", f"/subscriptions/{arm.service.subscription_id}/providers/"
                                   f"Microsoft.ContainerRegistry/checkNameAvailability?api-version={VERSION}",
                           json={"name": name, "type": "Microsoft.ContainerRegistry/registries"})
    assert response.status_code == 200, response.text
    return response.json()["nameAvailable"]


@pytest.fixture
def rejected(arm, service):
    """Call with (group, name) after each refused registry PUT; asserts nothing of the name was kept."""
    names: list[str] = []

    def check(group: str, name: str) -> None:
        assert arm.request("GET", url(arm, group, name)).status_code in (400, 404)
        if name.isascii() and name.isalnum() and 5 <= len(name) <= 50:
            assert name_available(arm, name), f"{name} was kept after a refused PUT"
        names.append(name.lower())

    yield check
    if names:
        time.sleep(1.5)  # a wrongly accepted PUT would have its container made by now
        leaked = [c for c in storage_containers(service) if c.startswith(tuple(f"{n}-" for n in names))]
        assert not leaked, leaked


def wait_succeeded(arm, group: str, name: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        registry = arm.request("GET", url(arm, group, name)).json()
        if registry["properties"]["provisioningState"] == "Succeeded":
            return registry
        time.sleep(0.2)
    raise AssertionError(f"{name} did not reach Succeeded")


def create(arm, group: str, name: str, **kwargs) -> dict:
    response = arm.request("PUT", url(arm, group, name), json=body(**kwargs))
    assert response.status_code == 201, response.text
    return wait_succeeded(arm, group, name)


def assert_subset(sent, got, where: str = "") -> None:
    """Every value sent comes back exactly (read-only extras may be added around it)."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), f"{where}: {got!r}"
        for key, value in sent.items():
            assert key in got, f"{where}.{key} missing from {got!r}"
            assert_subset(value, got[key], f"{where}.{key}")
    else:
        assert sent == got and type(sent) is type(got), f"{where}: sent {sent!r}, got {got!r}"


# -- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abcd", "a" * 51, "my-registry", "my_registry", "régistry1", "registry\uff11",
                                  "reg.istry", "reg istry", "validname\n"],
                         ids=["short", "long", "hyphen", "underscore", "unicode", "fullwidth-digit", "dot", "space",
                              "trailing-newline"])
def test_invalid_registry_name(arm, group, rejected, name):
    response = arm.request("PUT", url(arm, group, name.replace("\n", "%0A")), json=body())
    error = assert_arm_error(response, 400, "InvalidResourceName")
    assert error.get("target") == "registryName"
    rejected(group, name.strip())


def test_name_bounds_are_accepted(arm, group):
    for name in (unique_registry_name("")[:5], "A" + unique_registry_name("")[:12] + "z" * 37):
        assert arm.request("PUT", url(arm, group, name), json=body()).status_code == 201


# -- location ----------------------------------------------------------------------------------------------


def test_missing_location(arm, group, rejected):
    for payload in ({"sku": {"name": "Basic"}}, body(location=None), body(location=""), body(location="   ")):
        name = unique_registry_name()
        assert_arm_error(arm.request("PUT", url(arm, group, name), json=payload), 400, "LocationRequired")
        rejected(group, name)


def test_unknown_location(arm, group, rejected):
    for location in ("mars", "eastus3", "global", "a" * 300):
        name = unique_registry_name()
        error = assert_arm_error(arm.request("PUT", url(arm, group, name), json=body(location=location)), 400,
                                 "LocationNotAvailableForResourceType")
        assert "eastus" in error["message"]
        rejected(group, name)


def test_location_of_the_wrong_type(arm, group, rejected):
    for location in (5, ["eastus"], {"name": "eastus"}, True):
        name = unique_registry_name()
        assert_arm_error(arm.request("PUT", url(arm, group, name), json=body(location=location)), 400,
                         "InvalidRequestContent")
        rejected(group, name)


def test_display_name_location_is_normalised(arm, group):
    name = unique_registry_name()
    response = arm.request("PUT", url(arm, group, name), json=body(location="West US"))
    assert response.status_code == 201, response.text
    assert response.json()["location"] == "westus"
    assert wait_succeeded(arm, group, name)["location"] == "westus"
    again = arm.request("PUT", url(arm, group, name), json=body(location=" WESTUS "))
    assert again.status_code == 200 and again.json()["location"] == "westus"


# -- sku ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    {"location": "eastus"}, body(sku="Gold"), body(sku=""), body(sku=None), {"location": "eastus", "sku": "Basic"},
    {"location": "eastus", "sku": {}}, {"location": "eastus", "sku": None}, {"location": "eastus", "sku": ["Basic"]},
    body(sku=1),
], ids=["missing", "unknown", "empty", "null-name", "string", "no-name", "null", "list", "number"])
def test_bad_sku(arm, group, rejected, payload):
    name = unique_registry_name()
    assert_arm_error(arm.request("PUT", url(arm, group, name), json=payload), 400, "InvalidRequestContent")
    rejected(group, name)


def test_sku_names_are_matched_case_insensitively(arm, group):
    name = unique_registry_name()
    response = arm.request("PUT", url(arm, group, name), json=body(sku="standard"))
    assert response.status_code == 201, response.text
    assert response.json()["sku"] == {"name": "Standard", "tier": "Standard"}


def test_bad_sku_on_patch(arm, group):
    name = unique_registry_name()
    create(arm, group, name)
    for sku in ({"name": "Gold"}, "Basic", {}):
        assert_arm_error(arm.request("PATCH", url(arm, group, name), json={"sku": sku}), 400,
                         "InvalidRequestContent")
    assert arm.request("GET", url(arm, group, name)).json()["sku"]["name"] == "Basic"


# -- tags --------------------------------------------------------------------------------------------------


TAG_CASES = [
    ({f"t{i}": "v" for i in range(51)}, "InvalidTags"),
    ({"n" * 513: "v"}, "InvalidTagName"),
    ({"": "v"}, "InvalidTagName"),
    ({"   ": "v"}, "InvalidTagName"),
    ({"k": "v" * 257}, "InvalidTagValueLength"),
    ({"a/b": "v"}, "InvalidTagNameCharacters"),
    ({"a?b": "v"}, "InvalidTagNameCharacters"),
    ({"a<b": "v"}, "InvalidTagNameCharacters"),
    ({"a%b": "v"}, "InvalidTagNameCharacters"),
    ({"a\\b": "v"}, "InvalidTagNameCharacters"),
    ({"a\nb": "v"}, "InvalidTagNameCharacters"),
    (["a", "b"], "InvalidRequestContent"),
    ("a=b", "InvalidRequestContent"),
    ({"k": 5}, "InvalidRequestContent"),
    ({"k": None}, "InvalidRequestContent"),
    ({"k": {"nested": "v"}}, "InvalidRequestContent"),
]
TAG_IDS = ["51-tags", "long-name", "empty-name", "blank-name", "long-value", "slash", "question", "lt", "percent",
           "backslash", "control", "list", "string", "number-value", "null-value", "object-value"]


@pytest.mark.parametrize(("tags", "code"), TAG_CASES, ids=TAG_IDS)
def test_bad_tags_on_put(arm, group, rejected, tags, code):
    name = unique_registry_name()
    assert_arm_error(arm.request("PUT", url(arm, group, name), json=body(tags=tags)), 400, code)
    rejected(group, name)


def test_bad_tags_on_patch_and_on_groups(arm, service, group):
    name = unique_registry_name()
    create(arm, group, name, tags={"keep": "me"})
    group_url = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}?api-version={RESOURCES_VERSION}"
    for tags, code in TAG_CASES:
        assert_arm_error(arm.request("PATCH", url(arm, group, name), json={"tags": tags}), 400, code)
        assert_arm_error(arm.request("PUT", group_url, json={"location": "eastus", "tags": tags}), 400, code)
        assert_arm_error(arm.request("PATCH", group_url, json={"tags": tags}), 400, code)
    assert arm.request("GET", url(arm, group, name)).json()["tags"] == {"keep": "me"}
    assert arm.request("GET", group_url).json()["tags"] == {}


def test_tag_limits_are_inclusive(arm, group):
    name = unique_registry_name()
    tags = {f"t{i}": "v" for i in range(48)} | {"n" * 512: "v", "long": "v" * 256}
    response = arm.request("PUT", url(arm, group, name), json=body(tags=tags))
    assert response.status_code == 201, response.text
    assert response.json()["tags"] == tags


# -- property types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("properties", [
    {"adminUserEnabled": "yes"}, {"adminUserEnabled": 1}, {"dataEndpointEnabled": "true"},
    {"publicNetworkAccess": "Maybe"}, {"publicNetworkAccess": True}, {"networkRuleSet": "Deny"},
    {"networkRuleSet": {"defaultAction": "Block"}}, {"networkRuleSet": {"ipRules": [{"value": ""}]}},
    {"networkRuleSet": {"ipRules": "1.2.3.4"}}, {"policies": {"retentionPolicy": {"days": "7"}}},
    {"policies": {"retentionPolicy": {"days": 366}}}, {"policies": {"retentionPolicy": {"days": 7.5}}},
    {"policies": []}, {"zoneRedundancy": "On"}, [], "none",
], ids=["admin-yes", "admin-1", "data-endpoint-string", "pna-unknown", "pna-bool", "nrs-string",
        "nrs-unknown-action", "ip-rule-empty", "ip-rules-string", "days-string", "days-366", "days-float",
        "policies-list", "zone-unknown", "properties-list", "properties-string"])
def test_wrong_json_types_in_properties(arm, group, rejected, properties):
    name = unique_registry_name()
    assert_arm_error(arm.request("PUT", url(arm, group, name), json=body(properties=properties)), 400,
                     "InvalidRequestContent")
    rejected(group, name)


def test_wrong_identity_types(arm, group, rejected):
    for identity in ({"type": "Magic"}, "SystemAssigned", {"type": "UserAssigned", "userAssignedIdentities": []}):
        name = unique_registry_name()
        assert_arm_error(arm.request("PUT", url(arm, group, name), json=body(identity=identity)), 400,
                         "InvalidRequestContent")
        rejected(group, name)


# -- SKU-gated features ------------------------------------------------------------------------------------


@pytest.mark.parametrize("feature", sorted(PREMIUM_ONLY))
@pytest.mark.parametrize("sku", ["Basic", "Standard"])
def test_premium_only_settings_are_refused_below_premium(arm, group, rejected, feature, sku):
    name = unique_registry_name()
    payload = body(sku=sku, properties={feature: PREMIUM_ONLY[feature]})
    response = arm.request("PUT", url(arm, group, name), json=payload)
    error = assert_arm_error(response, 400, "FeatureNotSupportedForSku")
    assert error["target"].startswith(f"properties.{feature}")
    rejected(group, name)


def test_premium_only_settings_are_accepted_on_premium(arm, group):
    name = unique_registry_name()
    registry = create(arm, group, name, sku="Premium", properties=copy.deepcopy(PREMIUM_ONLY))
    assert_subset(PREMIUM_ONLY, registry["properties"], "properties")


def test_premium_only_settings_are_refused_on_patch(arm, group):
    name = unique_registry_name()
    create(arm, group, name)
    patches = [{"properties": {"networkRuleSet": {"defaultAction": "Deny"}}},
               {"properties": {"publicNetworkAccess": "Disabled"}}]
    for patch in patches:
        assert_arm_error(arm.request("PATCH", url(arm, group, name), json=patch), 400, "FeatureNotSupportedForSku")

    premium = unique_registry_name()
    create(arm, group, premium, sku="Premium", properties={"publicNetworkAccess": "Disabled"})
    assert_arm_error(arm.request("PATCH", url(arm, group, premium), json={"sku": {"name": "Basic"}}), 400,
                     "FeatureNotSupportedForSku")
    assert arm.request("GET", url(arm, group, premium)).json()["sku"]["name"] == "Premium"
    assert arm.request("GET", url(arm, group, name)).json()["properties"]["publicNetworkAccess"] == "Enabled"


# -- immutable properties ----------------------------------------------------------------------------------


def test_patch_cannot_change_location_or_zone_redundancy(arm, group):
    name = unique_registry_name()
    before = create(arm, group, name, sku="Premium")
    for patch in ({"location": "westeurope"}, {"location": 5}, {"properties": {"zoneRedundancy": "Enabled"}}):
        assert_arm_error(arm.request("PATCH", url(arm, group, name), json=patch), 400, "InvalidParameter")
    after = arm.request("GET", url(arm, group, name)).json()
    assert (after["location"], after["properties"]["zoneRedundancy"]) == ("eastus", "Disabled")
    assert after["systemData"]["lastModifiedAt"] == before["systemData"]["lastModifiedAt"]

    same = arm.request("PATCH", url(arm, group, name), json={"location": "East US",
                                                             "properties": {"zoneRedundancy": "Disabled"}})
    assert same.status_code in (200, 201), same.text


def test_put_cannot_change_location_or_zone_redundancy(arm, group):
    name = unique_registry_name()
    create(arm, group, name, sku="Premium", tags={"a": "1"})
    moved = arm.request("PUT", url(arm, group, name), json=body(location="westeurope", sku="Standard"))
    assert_arm_error(moved, 400, "InvalidResourceLocation")
    zoned = arm.request("PUT", url(arm, group, name), json=body(sku="Premium",
                                                                properties={"zoneRedundancy": "Enabled"}))
    assert_arm_error(zoned, 400, "InvalidParameter")
    after = arm.request("GET", url(arm, group, name)).json()
    assert (after["location"], after["sku"]["name"], after["tags"]) == ("eastus", "Premium", {"a": "1"})
    assert after["properties"]["provisioningState"] == "Succeeded"


def test_taken_name_from_another_group_is_409(arm, service, group, rmc):
    name = unique_registry_name()
    create(arm, group, name, tags={"owner": "first"})
    other = f"{group}-other"
    rmc.resource_groups.create_or_update(other, {"location": "eastus"})
    try:
        for taken in (name, name.upper()):
            assert_arm_error(arm.request("PUT", url(arm, other, taken), json=body()), 409, "AlreadyInUse")
            assert_arm_error(arm.request("GET", url(arm, other, taken)), 404, "ResourceNotFound")
    finally:
        rmc.resource_groups.begin_delete(other).result()
    kept = arm.request("GET", url(arm, group, name)).json()
    assert kept["tags"] == {"owner": "first"}
    assert sum(c.startswith(f"{name.lower()}-") for c in storage_containers(service)) == 1


# -- read-back fidelity ------------------------------------------------------------------------------------


def every_setting(arm, subscription_id: str, group: str) -> dict:
    """Every settable property; its user-assigned identity is made first (a registry may name only one that exists)."""
    identity_id = (f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/"
                   "Microsoft.ManagedIdentity/userAssignedIdentities/registry-identity")
    made = arm.request("PUT", f"{identity_id}?api-version=2023-01-31", json={"location": "westeurope"})
    assert made.status_code in (200, 201), made.text
    return {
        "location": "westeurope",
        "tags": {"team": "platform", "cost-center": "42", "empty": ""},
        "sku": {"name": "Premium"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}},
        "properties": {
            "adminUserEnabled": True,
            "networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "203.0.113.0/24"},
                                                                    {"action": "Allow", "value": "198.51.100.7"}]},
            "policies": {
                "quarantinePolicy": {"status": "enabled"},
                "trustPolicy": {"type": "Notary", "status": "enabled"},
                "retentionPolicy": {"days": 30, "status": "enabled"},
                "exportPolicy": {"status": "disabled"},
                "azureADAuthenticationAsArmPolicy": {"status": "disabled"},
            },
            "encryption": {"status": "enabled", "keyVaultProperties": {
                "keyIdentifier": "https://vault.example/keys/acr/0123456789abcdef", "identity": str(uuid.uuid4())}},
            "dataEndpointEnabled": True,
            "publicNetworkAccess": "Disabled",
            "networkRuleBypassOptions": "None",
            "networkRuleBypassAllowedForTasks": True,
            "zoneRedundancy": "Enabled",
            "anonymousPullEnabled": True,
            "roleAssignmentMode": "AbacRepositoryPermissions",
        },
    }


def test_every_settable_property_reads_back_exactly(arm, service, group):
    name = unique_registry_name("Full")
    sent = every_setting(arm, service.subscription_id, group)
    put = arm.request("PUT", url(arm, group, name), json=sent)
    assert put.status_code == 201, put.text
    registry = wait_succeeded(arm, group, name)
    for returned in (put.json(), registry):
        assert_subset(sent, returned)
        assert returned["name"] == name
        assert returned["sku"]["tier"] == "Premium"
        assert set(returned["tags"]) == set(sent["tags"])
    principals = registry["identity"]["userAssignedIdentities"]
    assert set(principals) == set(sent["identity"]["userAssignedIdentities"])
    assert all(p["principalId"] and p["clientId"] for p in principals.values())
    assert registry["properties"]["dataEndpointHostNames"] == [
        f"{name.lower()}.westeurope.data.{service.login_server_suffix}"]

    listed = arm.request("GET", f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/"
                                f"Microsoft.ContainerRegistry/registries?api-version={VERSION}").json()
    assert [r for r in listed["value"] if r["name"] == name] == [registry]


def test_put_again_resets_what_it_omits(arm, service, group):
    name = unique_registry_name()
    arm.request("PUT", url(arm, group, name), json=every_setting(arm, service.subscription_id, group))
    wait_succeeded(arm, group, name)
    replaced = arm.request("PUT", url(arm, group, name), json=body(location="westeurope", sku="Premium",
                                                                   properties={"zoneRedundancy": "Enabled"}))
    assert replaced.status_code == 200, replaced.text
    registry = wait_succeeded(arm, group, name)
    assert registry["tags"] == {} and "identity" not in registry
    assert registry["properties"]["adminUserEnabled"] is False
    assert registry["properties"]["networkRuleSet"] == {"defaultAction": "Allow", "ipRules": []}
    assert registry["properties"]["policies"]["exportPolicy"] == {"status": "enabled"}


# -- resource groups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad name", "ends.", "a" * 91, "semi;colon", "star*", "tab\t", "newline\n",
                                  "quote'", "İ" * 46],
                         ids=["space", "trailing-dot", "long", "semicolon", "star", "tab", "newline", "quote",
                              "expands-when-lowered"])
def test_invalid_resource_group_name(arm, service, name):
    path = f"/subscriptions/{service.subscription_id}/resourceGroups/{requests.utils.quote(name, safe='')}"
    response = arm.request("PUT", f"{path}?api-version={RESOURCES_VERSION}", json={"location": "eastus"})
    assert_arm_error(response, 400, "InvalidResourceGroup")
    assert_arm_error(arm.request("GET", f"{path}?api-version={RESOURCES_VERSION}"), 404, "ResourceGroupNotFound")


def test_valid_resource_group_names(arm, service):
    for name in (f"rg.{uuid.uuid4().hex[:6]}(x)_-", f"grüße-{uuid.uuid4().hex[:6]}", "g" * 90):
        path = (f"/subscriptions/{service.subscription_id}/resourceGroups/{requests.utils.quote(name, safe='')}"
                f"?api-version={RESOURCES_VERSION}")
        response = arm.request("PUT", path, json={"location": "West Europe"})
        assert response.status_code in (200, 201), response.text
        assert (response.json()["name"], response.json()["location"]) == (name, "westeurope")
        assert arm.request("DELETE", path).status_code == 202


def test_resource_group_body_errors(arm, service):
    path = f"/subscriptions/{service.subscription_id}/resourceGroups/rg-bad-{uuid.uuid4().hex[:8]}"
    cases = [({}, 400, "LocationRequired"), ({"location": "mars"}, 400, "LocationNotAvailableForResourceGroup"),
             ({"location": 5}, 400, "InvalidRequestContent"),
             ({"location": "eastus", "managedBy": 5}, 400, "InvalidRequestContent"),
             ({"location": "eastus", "managedBy": "x" * 2000}, 400, "InvalidRequestContent"),
             ({"location": "eastus", "managedBy": "/subscriptions/x\x00"}, 400, "InvalidRequestContent")]
    for payload, status, code in cases:
        assert_arm_error(arm.request("PUT", f"{path}?api-version={RESOURCES_VERSION}", json=payload), status, code)
        assert_arm_error(arm.request("GET", f"{path}?api-version={RESOURCES_VERSION}"), 404, "ResourceGroupNotFound")
