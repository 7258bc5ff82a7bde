"""Management locks (Microsoft.Authorization/locks) against `control-plane serve`, on both backends.

The installed azure-mgmt-resource (26.x) no longer ships `azure.mgmt.resource.locks` (it moved to
azure-mgmt-resource-locks), so the SDK's requests are sent raw, exactly as its ManagementLockClient builds them —
api-version 2020-05-01 (azure-mgmt-resource-locks) and 2016-09-01 (azure-mgmt-resource 24, what az 2.91 uses),
including the resource-level URL's `//` where a resource has no parent. The az tests drive the real client.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from azure.identity import ClientSecretCredential

from tests.conftest import Arm, assert_arm_error, unique_registry_name
from tests.support.az import logged_in

SDK_VERSION = "2020-05-01"
AZ_VERSION = "2016-09-01"
ROLES = {"Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
         "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
         "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"}
ACR_VERSION = "2025-11-01"
GROUP_VERSION = "2024-11-01"


def lock_path(scope: str, name: str = "") -> str:
    return f"{scope}/providers/Microsoft.Authorization/locks" + (f"/{name}" if name else "")


def put_lock(arm: Arm, scope: str, name: str, level: str, notes: str | None = None,
             version: str = SDK_VERSION) -> requests.Response:
    properties = {"level": level} if notes is None else {"level": level, "notes": notes}
    return arm.request("PUT", lock_path(scope, name), params={"api-version": version}, json={"properties": properties})


def delete_lock(arm: Arm, scope: str, name: str) -> requests.Response:
    return arm.request("DELETE", lock_path(scope, name), params={"api-version": SDK_VERSION})


def list_locks(arm: Arm, scope: str, at_scope: bool = False) -> list[str]:
    """Every page (the test service pages by 2)."""
    params = {"api-version": AZ_VERSION, **({"$filter": "atScope()"} if at_scope else {})}
    response = arm.request("GET", lock_path(scope), params=params)
    ids = []
    while True:
        assert response.status_code == 200, response.text
        ids += [lock["id"] for lock in response.json()["value"]]
        if not response.json().get("nextLink"):
            return ids
        response = arm.request("GET", response.json()["nextLink"])


@pytest.fixture
def registry(arm, group):
    """A registry (admin user on) in the test's group: its ARM path."""
    path = arm.registry_path(group, unique_registry_name("lock"))
    created = arm.request("PUT", path, params={"api-version": ACR_VERSION},
                          json={"location": "eastus", "sku": {"name": "Basic"},
                                "properties": {"adminUserEnabled": True}})
    assert created.status_code in (200, 201), created.text
    return path


@pytest.fixture
def locks(arm):
    """Locks the test makes, removed afterwards whatever happened (a forgotten lock would block other tests)."""
    made: list[tuple[str, str]] = []

    def make(scope: str, name: str, level: str, notes: str | None = None, version: str = SDK_VERSION):
        response = put_lock(arm, scope, name, level, notes, version)
        assert response.status_code in (200, 201), response.text
        made.append((scope, name))
        return response

    yield make
    for scope, name in made:
        delete_lock(arm, scope, name)


def call(arm: Arm, method: str, path: str, version: str = ACR_VERSION, **kwargs) -> requests.Response:
    return arm.request(method, path, params={"api-version": version}, **kwargs)


def assert_scope_locked(response: requests.Response, scope: str, operation: str, locked_scope: str) -> None:
    error = assert_arm_error(response, 409, "ScopeLocked")
    assert error["message"] == (f"The scope '{scope}' cannot perform {operation} operation because following scope(s) "
                                f"are locked: '{locked_scope}'. Please remove the lock and try again.")


def test_create_read_list_delete_at_every_scope(arm, service, group, registry, locks):
    subscription = f"/subscriptions/{service.subscription_id}"
    group_scope = f"{subscription}/resourceGroups/{group}"
    created = locks(registry, "keep", "CanNotDelete", "do not delete")
    assert created.status_code == 201
    assert created.json() == {"properties": {"level": "CanNotDelete", "notes": "do not delete"},
                              "id": lock_path(registry, "keep"), "type": "Microsoft.Authorization/locks",
                              "name": "keep"}
    # A second PUT (another api-version, any casing of the name) updates the same lock.
    updated = put_lock(arm, registry, "KEEP", "readonly", "now read-only", AZ_VERSION)
    assert updated.status_code == 200, updated.text
    assert updated.json()["properties"] == {"level": "ReadOnly", "notes": "now read-only"}
    assert updated.json()["name"] == "keep"
    assert locks(group_scope, "group-lock", "CanNotDelete").json() == {
        "properties": {"level": "CanNotDelete"}, "id": lock_path(group_scope, "group-lock"),
        "type": "Microsoft.Authorization/locks", "name": "group-lock"}
    sub_lock = f"sub-{uuid.uuid4().hex[:8]}"
    locks(subscription, sub_lock, "CanNotDelete")

    # The SDK's resource-level URL: `resourcegroups`, and `//` for the empty parent resource path.
    group_name, registry_name = registry.split("/")[4], registry.rsplit("/", 1)[1]
    sdk_path = (f"{subscription}/resourcegroups/{group_name}/providers/Microsoft.ContainerRegistry//registries/"
                f"{registry_name}/providers/Microsoft.Authorization/locks/keep")
    got = arm.request("GET", sdk_path, params={"api-version": AZ_VERSION})
    assert got.status_code == 200, got.text
    assert got.json()["id"] == lock_path(registry, "keep")

    ids = {"registry": lock_path(registry, "keep"), "group": lock_path(group_scope, "group-lock"),
           "subscription": lock_path(subscription, sub_lock)}
    assert set(ids.values()) <= set(list_locks(arm, subscription))
    assert set(list_locks(arm, group_scope)) >= {ids["group"], ids["registry"], ids["subscription"]}
    at_group = set(list_locks(arm, group_scope, at_scope=True))
    assert {ids["group"], ids["subscription"]} <= at_group and ids["registry"] not in at_group
    assert set(list_locks(arm, registry, at_scope=True)) >= set(ids.values())

    for scope, name in ((registry, "keep"), (group_scope, "group-lock"), (subscription, sub_lock)):
        assert delete_lock(arm, scope, name).status_code == 200
        assert delete_lock(arm, scope, name).status_code == 204
        assert_arm_error(arm.request("GET", lock_path(scope, name), params={"api-version": SDK_VERSION}), 404,
                         "LockNotFound")


def test_can_not_delete_refuses_deletes_but_not_updates(arm, service, group, registry, locks):
    group_scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    locks(registry, "no-delete", "CanNotDelete")
    assert call(arm, "PATCH", registry, json={"tags": {"updated": "yes"}}).status_code in (200, 201)
    assert call(arm, "POST", f"{registry}/listCredentials").status_code == 200
    assert_scope_locked(call(arm, "DELETE", registry), registry, "delete", registry)
    # Deleting the group would cascade into the locked registry: refused whole, nothing deleted.
    assert_scope_locked(call(arm, "DELETE", group_scope, GROUP_VERSION), group_scope, "delete", registry)
    assert call(arm, "GET", registry).status_code == 200
    assert call(arm, "GET", group_scope, GROUP_VERSION).json()["properties"]["provisioningState"] == "Succeeded"

    locks(group_scope, "group-no-delete", "CanNotDelete")
    assert_scope_locked(call(arm, "DELETE", group_scope, GROUP_VERSION), group_scope, "delete",
                        f"{group_scope},{registry}")
    assert call(arm, "PATCH", group_scope, GROUP_VERSION, json={"tags": {"a": "b"}}).status_code == 200

    assert delete_lock(arm, registry, "no-delete").status_code == 200
    assert_scope_locked(call(arm, "DELETE", registry), registry, "delete", group_scope)
    assert delete_lock(arm, group_scope, "group-no-delete").status_code == 200
    assert call(arm, "DELETE", registry).status_code in (200, 202)


def test_read_only_refuses_writes_deletes_and_credential_actions(arm, service, group, registry, locks):
    group_scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    locks(registry, "frozen", "ReadOnly", "change freeze")
    refused = {
        "PATCH": call(arm, "PATCH", registry, json={"tags": {"x": "y"}}),
        "PUT": call(arm, "PUT", registry, json={"location": "eastus", "sku": {"name": "Basic"}}),
        "listCredentials": call(arm, "POST", f"{registry}/listCredentials"),
        "regenerateCredential": call(arm, "POST", f"{registry}/regenerateCredential", json={"name": "password"}),
    }
    for response in refused.values():
        assert_scope_locked(response, registry, "write", registry)
    assert_scope_locked(call(arm, "DELETE", registry), registry, "delete", registry)
    assignment = arm.request("PUT", f"{registry}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                             params={"api-version": "2022-04-01"},
                             json={"properties": {"roleDefinitionId": ROLES["Reader"],
                                                  "principalId": str(uuid.uuid4()),
                                                  "principalType": "ServicePrincipal"}})
    assert_arm_error(assignment, 409, "ScopeLocked")
    # Reads go on; the group above the lock is still writable.
    assert call(arm, "GET", registry).json()["tags"] == {}
    assert call(arm, "GET", f"{registry}/listUsages").status_code == 200
    assert call(arm, "PATCH", group_scope, GROUP_VERSION, json={"tags": {"a": "b"}}).status_code == 200

    # A ReadOnly group refuses a new registry in it.
    assert delete_lock(arm, registry, "frozen").status_code == 200
    locks(group_scope, "frozen-group", "ReadOnly")
    new_registry = arm.registry_path(group, unique_registry_name("lockro"))
    assert_scope_locked(call(arm, "PUT", new_registry, json={"location": "eastus", "sku": {"name": "Basic"}}),
                        new_registry, "write", group_scope)
    assert_scope_locked(call(arm, "PATCH", group_scope, GROUP_VERSION, json={"tags": {}}), group_scope, "write",
                        group_scope)

    # Removing the lock restores every operation.
    assert delete_lock(arm, group_scope, "frozen-group").status_code == 200
    assert call(arm, "PATCH", registry, json={"tags": {"x": "y"}}).status_code in (200, 201)
    assert call(arm, "POST", f"{registry}/listCredentials").status_code == 200
    assert call(arm, "POST", f"{registry}/regenerateCredential", json={"name": "password"}).status_code == 200
    assert call(arm, "DELETE", registry).status_code in (200, 202)


def _principal(service, arm: Arm, role: str | None, scope: str) -> tuple[Arm, dict]:
    sp = service.cli_json("sp", "create", "--name", f"lock-{uuid.uuid4().hex[:8]}")
    if role is not None:
        assigned = arm.request("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                               params={"api-version": "2022-04-01"},
                               json={"properties": {"roleDefinitionId": ROLES[role], "principalId": sp["id"],
                                                    "principalType": "ServicePrincipal"}})
        assert assigned.status_code == 201, assigned.text
    credential = ClientSecretCredential(sp["tenant"], sp["appId"], sp["password"], authority=service.url,
                                        disable_instance_discovery=True, connection_verify=service.ca)
    return Arm(service, credential.get_token("https://management.azure.com/.default").token), sp


@pytest.mark.parametrize("role", ["Reader", "AcrPush", "Contributor"])
def test_only_lock_holders_manage_locks(arm, service, group, registry, locks, role):
    """Owner and User Access Administrator hold Microsoft.Authorization/locks/*; Contributor's notActions exclude
    Microsoft.Authorization writes and deletes; Reader may read; AcrPush may not even read."""
    caller, sp = _principal(service, arm, role, f"/subscriptions/{service.subscription_id}")
    refused = assert_arm_error(put_lock(caller, registry, "theirs", "CanNotDelete"), 403, "AuthorizationFailed")
    assert "'Microsoft.Authorization/locks/write'" in refused["message"] and sp["id"] in refused["message"]
    locks(registry, "ours", "CanNotDelete")
    refused = assert_arm_error(delete_lock(caller, registry, "ours"), 403, "AuthorizationFailed")
    assert "'Microsoft.Authorization/locks/delete'" in refused["message"]
    read = caller.request("GET", lock_path(registry, "ours"), params={"api-version": SDK_VERSION})
    if role == "AcrPush":
        assert_arm_error(read, 403, "AuthorizationFailed")
    else:
        assert read.status_code == 200, read.text
        assert lock_path(registry, "ours") in list_locks(caller, f"/subscriptions/{service.subscription_id}")


def test_user_access_administrator_manages_locks(arm, service, group, registry):
    caller, _ = _principal(service, arm, "User Access Administrator", registry)
    assert put_lock(caller, registry, "uaa", "ReadOnly").status_code == 201
    assert delete_lock(caller, registry, "uaa").status_code == 200
    # Granted on the registry only: the group's locks are not theirs to make.
    group_scope = registry.split("/providers/")[0]
    assert_arm_error(put_lock(caller, group_scope, "uaa", "ReadOnly"), 403, "AuthorizationFailed")


@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("bad-level", {"properties": {"level": "Frozen"}}, 400, "InvalidRequestContent"),
    ("not-specified", {"properties": {"level": "NotSpecified"}}, 400, "InvalidRequestContent"),
    ("no-level", {"properties": {"notes": "x"}}, 400, "InvalidRequestContent"),
    ("no-properties", {"level": "ReadOnly"}, 400, "InvalidRequestContent"),
    ("level-type", {"properties": {"level": 1}}, 400, "InvalidRequestContent"),
    ("long-notes", {"properties": {"level": "ReadOnly", "notes": "n" * 513}}, 400, "InvalidRequestContent"),
    ("owners-type", {"properties": {"level": "ReadOnly", "owners": "me"}}, 400, "InvalidRequestContent"),
    ("x" * 261, {"properties": {"level": "ReadOnly"}}, 400, "InvalidResourceName"),
    ("a<b", {"properties": {"level": "ReadOnly"}}, 400, "InvalidResourceName"),
    ("a:b", {"properties": {"level": "ReadOnly"}}, 400, "InvalidResourceName"),
    ("a%25b", {"properties": {"level": "ReadOnly"}}, 400, "InvalidResourceName"),
])
def test_bad_lock_requests_get_arm_codes(arm, registry, name, body, status, code):
    response = arm.request("PUT", lock_path(registry, name), params={"api-version": SDK_VERSION}, json=body)
    assert_arm_error(response, status, code)
    assert list_locks(arm, registry) == []


def test_lock_limits_and_scopes(arm, service, group, registry, locks):
    longest = "x" * 260
    assert locks(registry, longest, "ReadOnly", "n" * 512).json()["properties"]["notes"] == "n" * 512
    owners = {"properties": {"level": "CanNotDelete", "owners": [{"applicationId": "app-1"}]}}
    created = arm.request("PUT", lock_path(registry, "owned"), params={"api-version": SDK_VERSION}, json=owners)
    assert created.status_code == 201 and created.json()["properties"]["owners"] == [{"applicationId": "app-1"}]
    assert delete_lock(arm, registry, "owned").status_code == 200

    subscription = f"/subscriptions/{service.subscription_id}"
    assert_arm_error(put_lock(arm, f"{subscription}/resourceGroups/missing-{uuid.uuid4().hex[:6]}", "l", "ReadOnly"),
                     404, "ResourceGroupNotFound")
    assert_arm_error(put_lock(arm, arm.registry_path(group, "missingregistry1"), "l", "ReadOnly"), 404,
                     "ResourceNotFound")
    assert_arm_error(put_lock(arm, f"{subscription}/resourceGroups/{group}/providers/Microsoft.Storage/"
                                   "storageAccounts/acct", "l", "ReadOnly"), 404, "InvalidResourceType")
    assert_arm_error(arm.request("GET", lock_path(registry), params={"api-version": SDK_VERSION,
                                                                      "$filter": "level eq 'ReadOnly'"}),
                     400, "UnsupportedQuery")
    assert_arm_error(arm.request("GET", lock_path(registry), params={"api-version": "2022-04-01"}), 400,
                     "InvalidApiVersionParameter")


# -- az -------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def az(service, tmp_path_factory):
    return logged_in(service, tmp_path_factory.mktemp("az-locks"), "ControlPlaneLocks")


@pytest.mark.az
def test_az_lock_create_list_show_delete(az, arm, service, group, registry):
    registry_name = registry.rsplit("/", 1)[1]
    resource = ["--resource", registry_name, "--resource-type", "Microsoft.ContainerRegistry/registries"]
    created = az.json("lock", "create", "-n", "az-registry-lock", "-g", group, "--lock-type", "CanNotDelete",
                      "--notes", "from az", *resource)
    assert created["level"] == "CanNotDelete" and created["notes"] == "from az"
    assert created["id"] == lock_path(registry, "az-registry-lock")
    group_lock = az.json("lock", "create", "-n", "az-group-lock", "-g", group, "--lock-type", "ReadOnly")
    assert group_lock["id"].endswith(f"/resourceGroups/{group}/providers/Microsoft.Authorization/locks/az-group-lock")
    try:
        shown = az.json("lock", "show", "-n", "az-registry-lock", "-g", group, *resource)
        assert shown["id"] == created["id"]
        assert {lock["name"] for lock in az.json("lock", "list", "-g", group)} >= {"az-registry-lock",
                                                                                   "az-group-lock"}
        assert "az-group-lock" in {lock["name"] for lock in az.json("lock", "list")}
        refused = az.fail("acr", "update", "-n", registry_name, "-g", group, "--tags", "k=v")
        assert "ScopeLocked" in refused
        az.json("lock", "delete", "-n", "az-group-lock", "-g", group)
        refused = az.fail("acr", "delete", "-n", registry_name, "-g", group, "--yes")
        assert "ScopeLocked" in refused and "cannot perform delete operation" in refused
    finally:
        az.run("lock", "delete", "-n", "az-group-lock", "-g", group)
        az.json("lock", "delete", "-n", "az-registry-lock", "-g", group, *resource)
    assert az.json("lock", "list", "-g", group) == []
    az.json("acr", "delete", "-n", registry_name, "-g", group, "--yes")


@pytest.mark.az
def test_az_subscription_lock(az, service):
    name = f"az-sub-{uuid.uuid4().hex[:8]}"
    created = az.json("lock", "create", "-n", name, "--lock-type", "CanNotDelete")
    try:
        assert created["id"] == lock_path(f"/subscriptions/{service.subscription_id}", name)
        assert az.json("lock", "show", "-n", name)["level"] == "CanNotDelete"
    finally:
        az.json("lock", "delete", "-n", name)
    assert name not in {lock["name"] for lock in az.json("lock", "list")}
