"""Real-world container-registry templates deployed unmodified against `control-plane serve`, on both backends.

The fixtures in tests/deployments/ are written in the style of Azure's quick-start templates
(quickstarts/microsoft.containerregistry/{container-registry, container-registry-geo-replication,
container-registry-with-policies-and-diagnostics}) and of the Azure Verified Modules registry module
(avm/res/container-registry/registry/main.json): the same constructs, functions, parameter shapes, conditions, copy
loops, nested deployments and outputs. Each is deployed through the REST API or the SDK; the registries are checked
through the REST API, and a redeploy's what-if must be all NoChange. Resource types this service does not host fail
with ARM's NoRegisteredProviderFound only when their condition is true.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import Arm, assert_arm_error, unique_registry_name
from tests.support.az import logged_in
from tests.test_deployments import (
    ACR_VERSION,
    ROLES,
    VERSION,
    deploy_client,
    deployment_path,
    params,
    put,
    registry,
    validate,
    wait,
)

__all__ = ["deploy_client"]  # the SDK client fixture, shared with tests/test_deployments.py

FIXTURES = Path(__file__).parent / "deployments"
LOCKS_VERSION = "2020-05-01"


def template(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def deploy(deploy_client, group: str, name: str, body: dict, values: dict):
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties

    properties = DeploymentProperties(mode="Incremental", template=body, parameters=values)
    return deploy_client.deployments.begin_create_or_update(group, name, Deployment(properties=properties)).result()


def assert_redeploy_changes_nothing(deploy_client, arm: Arm, group: str, name: str, body: dict, values: dict,
                                    registry_name: str) -> None:
    """What-if of the same template and parameters is all NoChange, and deploying it again writes nothing."""
    from azure.mgmt.resource.deployments.models import DeploymentProperties, DeploymentWhatIf

    before = registry(arm, group, registry_name).json()
    preview = deploy_client.deployments.begin_what_if(group, name, DeploymentWhatIf(properties=DeploymentProperties(
        mode="Incremental", template=body, parameters=values))).result()
    assert preview.status == "Succeeded", preview.error
    assert preview.changes, "what-if listed no resources"
    assert {c.change_type for c in preview.changes} == {"NoChange"}, [(c.resource_id, c.change_type, c.delta)
                                                                      for c in preview.changes]
    again = deploy(deploy_client, group, name, body, values)
    assert again.properties.provisioning_state == "Succeeded", again.properties.error
    assert registry(arm, group, registry_name).json()["etag"] == before["etag"]


def group_location(arm: Arm, service, group: str) -> str:
    return arm.request("GET", f"/subscriptions/{service.subscription_id}/resourceGroups/{group}",
                       params={"api-version": "2024-11-01"}).json()["location"]


def list_all(arm: Arm, path: str, query: dict) -> list[dict]:
    """Every page of an ARM list (the service pages small lists too)."""
    items: list[dict] = []
    response = arm.request("GET", path, params=query)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        if not body.get("nextLink"):
            return items
        response = arm.request("GET", body["nextLink"])


def locks_on(arm: Arm, group: str, registry_name: str) -> list[dict]:
    return list_all(arm, f"{arm.registry_path(group, registry_name)}/providers/Microsoft.Authorization/locks",
                    {"api-version": LOCKS_VERSION})


def remove_locks(arm: Arm, group: str, registry_name: str) -> None:
    """The group fixture cannot delete a group with a CanNotDelete lock in it."""
    for lock in locks_on(arm, group, registry_name):
        assert arm.request("DELETE", lock["id"], params={"api-version": LOCKS_VERSION}).status_code == 200


def assert_not_hosted(response, resource_type: str) -> dict:
    """Preflight refuses the whole deployment: InvalidTemplateDeployment with NoRegisteredProviderFound naming the
    type, before anything is written (as ARM's preflight does)."""
    error = assert_arm_error(response, 400, "InvalidTemplateDeployment")
    details = error.get("details") or []
    assert [d["code"] for d in details] == ["NoRegisteredProviderFound"], error
    namespace, _, short = resource_type.partition("/")
    assert f"type '{short}' of namespace '{namespace}'" in details[0]["message"], details
    return error


# --- container-registry ---------------------------------------------------------------------------------------


def test_quickstart_registry_deploys_with_its_outputs_and_redeploys_unchanged(deploy_client, arm, service, group):
    body = template("registry-quickstart.json")
    name = unique_registry_name("qs")
    values = params(registryName=name, adminEnabled=True, tier="Standard")
    result = deploy(deploy_client, group, "quickstart", body, values)
    assert result.properties.provisioning_state == "Succeeded", result.properties.error
    assert result.properties.outputs == {"loginServer": {"type": "String",
                                                         "value": f"{name}.{service.login_server_suffix}"}}

    created = registry(arm, group, name)
    assert created.status_code == 200, created.text
    made = created.json()
    assert made["location"] == group_location(arm, service, group)  # the default: resourceGroup().location
    assert made["sku"]["name"] == "Standard"
    assert made["tags"] == {"displayName": "Registry from a quick start", "registry.name": name}
    assert made["properties"]["adminUserEnabled"] is True
    assert made["properties"]["loginServer"] == f"{name}.{service.login_server_suffix}"
    assert_redeploy_changes_nothing(deploy_client, arm, group, "quickstart", body, values, name)


@pytest.mark.parametrize(("values", "points_at"), [
    ({"registryName": {"value": "abc"}}, "registryName"),  # minLength 5
    ({"registryName": {"value": "a" * 51}}, "registryName"),  # maxLength 50
    ({"registryName": {"value": "abcdef"}, "tier": {"value": "Classic"}}, "tier"),  # not in allowedValues
    ({}, "registryName"),  # required
])
def test_quickstart_parameter_bounds_are_refused_before_anything_is_written(arm, service, group, values, points_at):
    body = template("registry-quickstart.json")
    error = assert_arm_error(validate(arm, service, group, body, values), 400, "InvalidTemplate")
    assert points_at in error["message"], error
    assert_arm_error(put(arm, service, group, "bounds", body, values), 400, "InvalidTemplate")
    assert arm.request("GET", deployment_path(service, group, "bounds"), params={"api-version": VERSION}
                       ).status_code == 404


# --- container-registry-geo-replication -----------------------------------------------------------------------


def test_geo_replication_fails_cleanly_on_the_replication_and_writes_nothing(arm, service, group):
    """registries/replications is not hosted (until the registry-features issue): preflight refuses the whole
    deployment with the replication named, so the home registry (named from uniqueString) is not created either —
    ARM's preflight leaves nothing behind. The same template without the replication deploys."""
    from control_plane.deployments.template.hashing import unique_string

    body = template("registry-geo-replicated.json")
    values = {"replicaLocation": {"value": "westus"}}
    group_id = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    expected_name = f"geo{unique_string(group_id)}"

    error = assert_not_hosted(validate(arm, service, group, body, values),
                              "Microsoft.ContainerRegistry/registries/replications")
    assert error["details"][0]["target"].endswith(f"/registries/{expected_name}/replications/westus"), error
    assert_not_hosted(put(arm, service, group, "geo", body, values),
                      "Microsoft.ContainerRegistry/registries/replications")
    assert arm.request("GET", deployment_path(service, group, "geo"), params={"api-version": VERSION}
                       ).status_code == 404
    assert registry(arm, group, expected_name).status_code == 404
    listed = list_all(arm, f"{group_id}/resources", {"api-version": "2024-11-01"})
    assert listed == []

    home_only = {**body, "resources": body["resources"][:1]}
    response = put(arm, service, group, "geo", home_only, values)
    assert response.status_code == 201, response.text
    ended = wait(arm, service, group, "geo")
    assert ended["properties"]["provisioningState"] == "Succeeded", ended["properties"].get("error")
    assert ended["properties"]["outputs"]["loginServer"]["value"] == f"{expected_name}.{service.login_server_suffix}"
    made = registry(arm, group, expected_name).json()
    assert (made["sku"]["name"], made["tags"]["registry.name"]) == ("Premium", expected_name)


# --- container-registry-with-policies-and-diagnostics ---------------------------------------------------------


def test_policies_template_with_defaults_skips_its_conditional_extensions(deploy_client, arm, service, group):
    body = template("registry-policies-diagnostics.json")
    name = unique_registry_name("pol")
    values = params(registryName=name)
    result = deploy(deploy_client, group, "policies", body, values)
    assert result.properties.provisioning_state == "Succeeded", result.properties.error
    registry_id = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/" \
                  f"Microsoft.ContainerRegistry/registries/{name}"
    assert {k: v["value"] for k, v in result.properties.outputs.items()} == {
        "name": name, "id": registry_id, "loginServer": f"{name}.{service.login_server_suffix}"}

    made = registry(arm, group, name).json()
    assert made["sku"]["name"] == "Basic"
    assert "identity" not in made  # identity: null() is treated as absent
    properties = made["properties"]
    assert (properties["publicNetworkAccess"], properties["networkRuleBypassOptions"],
            properties["zoneRedundancy"], properties["adminUserEnabled"]) == ("Enabled", "None", "Disabled", False)
    assert properties["networkRuleSet"]["ipRules"] == []
    assert locks_on(arm, group, name) == []  # condition false: neither the lock nor the diagnostics were tried
    operations = list(deploy_client.deployment_operations.list(group, "policies"))
    assert {o.properties.target_resource.resource_type for o in operations} == {
        "Microsoft.ContainerRegistry/registries"}
    assert_redeploy_changes_nothing(deploy_client, arm, group, "policies", body, values, name)


def test_policies_template_with_identity_firewall_policies_and_lock(deploy_client, arm, service, group):
    body = template("registry-policies-diagnostics.json")
    name = unique_registry_name("plk")
    values = params(registryName=name, tier="Premium", systemIdentity=True, deleteLock=True, bypass="AzureServices",
                    firewall={"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "203.0.113.0/24"}]},
                    policies={"retentionPolicy": {"status": "enabled", "days": 9},
                              "quarantinePolicy": {"status": "enabled"}})
    try:
        result = deploy(deploy_client, group, "locked", body, values)
        assert result.properties.provisioning_state == "Succeeded", result.properties.error
        made = registry(arm, group, name).json()
        assert made["identity"]["type"] == "SystemAssigned" and made["identity"]["principalId"]
        properties = made["properties"]
        assert properties["networkRuleSet"]["defaultAction"] == "Deny"
        assert [r["value"] for r in properties["networkRuleSet"]["ipRules"]] == ["203.0.113.0/24"]
        assert properties["networkRuleBypassOptions"] == "AzureServices"
        assert (properties["policies"]["retentionPolicy"]["days"],
                properties["policies"]["retentionPolicy"]["status"]) == (9, "enabled")
        assert properties["policies"]["quarantinePolicy"]["status"] == "enabled"
        locks = locks_on(arm, group, name)
        assert [(lock["name"], lock["properties"]["level"]) for lock in locks] == [(f"{name}-lock", "CanNotDelete")]
        # The lock is enforced: the registry cannot be deleted beneath it.
        assert_arm_error(arm.request("DELETE", arm.registry_path(group, name), params={"api-version": ACR_VERSION}),
                         409, "ScopeLocked")
        assert_redeploy_changes_nothing(deploy_client, arm, group, "locked", body, values, name)
    finally:
        remove_locks(arm, group, name)


def test_policies_template_with_diagnostics_enabled_fails_cleanly(arm, service, group):
    """Microsoft.Insights/diagnosticSettings is not hosted: with its condition true the deployment is refused by
    preflight, naming the diagnostic setting, and the registry it would have sat on is not written."""
    body = template("registry-policies-diagnostics.json")
    name = unique_registry_name("dia")
    values = params(registryName=name, diagnostics=True, workspaceId=f"/subscriptions/{service.subscription_id}/"
                    f"resourceGroups/{group}/providers/Microsoft.OperationalInsights/workspaces/logs")
    error = assert_not_hosted(put(arm, service, group, "diag", body, values), "Microsoft.Insights/diagnosticSettings")
    assert error["details"][0]["target"].endswith(
        f"/registries/{name}/providers/Microsoft.Insights/diagnosticSettings/{name}-diag"), error
    assert registry(arm, group, name).status_code == 404
    assert arm.request("GET", deployment_path(service, group, "diag"), params={"api-version": VERSION}
                       ).status_code == 404


# --- Azure Verified Modules: avm/res/container-registry/registry ----------------------------------------------


def test_avm_module_with_default_parameters(deploy_client, arm, service, group):
    body = template("registry-avm-module.json")
    name = unique_registry_name("avm")
    values = params(name=name)
    result = deploy(deploy_client, group, "avm", body, values)
    assert result.properties.provisioning_state == "Succeeded", result.properties.error
    location = group_location(arm, service, group)
    registry_id = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/" \
                  f"Microsoft.ContainerRegistry/registries/{name}"
    outputs = {k: v["value"] for k, v in result.properties.outputs.items()}
    assert outputs == {"name": name, "loginServer": f"{name}.{service.login_server_suffix}",
                       "resourceGroupName": group, "resourceId": registry_id, "systemAssignedMIPrincipalId": None,
                       "location": location, "webhookResourceIds": [], "privateEndpoints": [],
                       "credentialSetsResourceIds": []}

    made = registry(arm, group, name).json()
    assert (made["sku"]["name"], made["location"]) == ("Premium", location)
    assert "identity" not in made  # variables('identity') is null() without managedIdentities
    properties = made["properties"]
    assert properties["zoneRedundancy"] == "Enabled"
    assert properties["networkRuleBypassOptions"] == "AzureServices"
    assert properties["networkRuleSet"]["ipRules"] == []
    assert (properties["anonymousPullEnabled"], properties["adminUserEnabled"],
            properties["dataEndpointEnabled"]) == (False, False, False)
    policies = properties["policies"]
    assert (policies["retentionPolicy"]["status"], policies["retentionPolicy"]["days"]) == ("enabled", 15)
    assert policies["trustPolicy"]["status"] == policies["quarantinePolicy"]["status"] == "disabled"
    assert policies["exportPolicy"]["status"] == "disabled"

    # The telemetry module is a nested deployment with no resources, deployed (and kept) beside the registry.
    telemetry = [o.properties.target_resource for o in deploy_client.deployment_operations.list(group, "avm")
                 if o.properties.target_resource.resource_type == "Microsoft.Resources/deployments"]
    assert len(telemetry) == 1 and telemetry[0].resource_name.startswith("46d3xbcp.res.containerregistry-registry.")
    nested = wait(arm, service, group, telemetry[0].resource_name)
    assert nested["properties"]["provisioningState"] == "Succeeded"
    assert nested["properties"]["outputs"]["telemetry"]["value"] == "Usage telemetry for the module."
    assert locks_on(arm, group, name) == []
    assert_redeploy_changes_nothing(deploy_client, arm, group, "avm", body, values, name)


def test_exports_disabled_without_naming_public_access_is_accepted_as_the_avm_defaults_send_it(arm, group):
    """The AVM defaults PUT a Premium registry with exportPolicy disabled and no publicNetworkAccess; ACR takes
    it. Naming publicNetworkAccess Enabled beside disabled exports is still refused."""
    policies = {"exportPolicy": {"status": "disabled"}}
    name = unique_registry_name("exp")
    refused = arm.request("PUT", arm.registry_path(group, name), params={"api-version": ACR_VERSION}, json={
        "location": "eastus", "sku": {"name": "Premium"},
        "properties": {"policies": policies, "publicNetworkAccess": "Enabled"}})
    assert assert_arm_error(refused, 400, "InvalidParameter")["target"] == "properties.policies.exportPolicy"
    assert registry(arm, group, name).status_code == 404
    accepted = arm.request("PUT", arm.registry_path(group, name), params={"api-version": ACR_VERSION}, json={
        "location": "eastus", "sku": {"name": "Premium"}, "properties": {"policies": policies}})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["properties"]["policies"]["exportPolicy"] == {"status": "disabled"}


def test_avm_module_with_identity_role_assignments_lock_and_tags(deploy_client, arm, service, group):
    from control_plane.deployments.template.hashing import guid

    body = template("registry-avm-module.json")
    name = unique_registry_name("avr")
    principal = service.cli_json("sp", "create", "--name", f"avm-{uuid.uuid4().hex[:8]}")["id"]
    reader_id = f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/" \
                f"{ROLES['Reader']}"
    values = params(name=name, acrSku="Standard", enableTelemetry=False, tags={"team": "platform"},
                    managedIdentities={"systemAssigned": True},
                    lock={"kind": "CanNotDelete", "name": "keep"},
                    roleAssignments=[{"roleDefinitionIdOrName": "AcrPull", "principalId": principal,
                                      "principalType": "ServicePrincipal"},
                                     {"roleDefinitionIdOrName": reader_id, "principalId": principal,
                                      "description": "read the registry"}])
    try:
        result = deploy(deploy_client, group, "avm-full", body, values)
        assert result.properties.provisioning_state == "Succeeded", result.properties.error
        made = registry(arm, group, name).json()
        assert (made["sku"]["name"], made["tags"]) == ("Standard", {"team": "platform"})
        assert made["identity"]["type"] == "SystemAssigned"
        assert result.properties.outputs["systemAssignedMIPrincipalId"]["value"] == made["identity"]["principalId"]
        assert made["properties"]["zoneRedundancy"] == "Disabled"  # only set on Premium

        registry_id = made["id"]
        assigned = list_all(arm, f"{registry_id}/providers/Microsoft.Authorization/roleAssignments",
                            {"api-version": "2022-04-01", "$filter": "atScope()"})
        ours = {a["name"]: a["properties"] for a in assigned if a["properties"]["principalId"] == principal}
        acr_pull_id = f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/" \
                      f"{ROLES['AcrPull']}"
        assert set(ours) == {guid(registry_id, principal, acr_pull_id), guid(registry_id, principal, reader_id)}
        assert {p["roleDefinitionId"] for p in ours.values()} == {acr_pull_id, reader_id}
        assert ours[guid(registry_id, principal, reader_id)].get("description") == "read the registry"
        assert [(lock["name"], lock["properties"]["level"], lock["properties"].get("notes"))
                for lock in locks_on(arm, group, name)] == [
            ("keep", "CanNotDelete", "Cannot delete resource or child resources.")]
        assert_redeploy_changes_nothing(deploy_client, arm, group, "avm-full", body, values, name)
    finally:
        remove_locks(arm, group, name)


@pytest.mark.parametrize(("extra", "resource_type"), [
    ({"diagnosticSettings": [{"workspaceResourceId": "/subscriptions/x/resourceGroups/y/providers/"
                                                     "Microsoft.OperationalInsights/workspaces/z"}]},
     "Microsoft.Insights/diagnosticSettings"),
    ({"replications": [{"name": "westus", "location": "westus"}]},
     "Microsoft.ContainerRegistry/registries/replications"),
    ({"webhooks": [{"serviceUri": "https://hooks.example.com/acr"}]},
     "Microsoft.ContainerRegistry/registries/webhooks"),
    ({"scopeMaps": [{"actions": ["repositories/app/content/read"]}]},
     "Microsoft.ContainerRegistry/registries/scopeMaps"),
    ({"cacheRules": [{"sourceRepository": "docker.io/library/alpine"}]},
     "Microsoft.ContainerRegistry/registries/cacheRules"),
    ({"credentialSets": [{"name": "hub", "loginServer": "docker.io", "authCredentials": [
        {"name": "Credential1", "usernameSecretIdentifier": "https://kv.vault.azure.net/secrets/user",
         "passwordSecretIdentifier": "https://kv.vault.azure.net/secrets/pass"}]}]},
     "Microsoft.ContainerRegistry/registries/credentialSets"),
    ({"privateEndpoints": [{"subnetResourceId": "/subscriptions/SUB/resourceGroups/GROUP/providers/"
                                                "Microsoft.Network/virtualNetworks/vnet/subnets/default",
                            "location": "eastus"}]},
     "Microsoft.Network/privateEndpoints"),
])
def test_avm_module_optional_children_this_service_does_not_host_fail_cleanly(arm, service, group, extra,
                                                                              resource_type):
    body = template("registry-avm-module.json")
    name = unique_registry_name("avx")
    extra = json.loads(json.dumps(extra).replace("SUB", service.subscription_id).replace("GROUP", group))
    values = params(name=name, enableTelemetry=False, **extra)
    error = assert_not_hosted(put(arm, service, group, "avm-x", body, values), resource_type)
    assert name in error["details"][0]["target"], error
    assert registry(arm, group, name).status_code == 404
    assert arm.request("GET", deployment_path(service, group, "avm-x"), params={"api-version": VERSION}
                       ).status_code == 404


# --- az -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az(service, tmp_path_factory):
    return logged_in(service, tmp_path_factory.mktemp("az-real-world"), "RealWorldTemplates")


@pytest.mark.az
def test_az_deploys_the_avm_module_file_as_is(az, arm, service, group):
    name = unique_registry_name("aza")
    path = str(FIXTURES / "registry-avm-module.json")
    args = ["-g", group, "--template-file", path, "--parameters", f"name={name}"]
    created = az.json("deployment", "group", "create", "-n", "avm-az", *args)
    assert created["properties"]["provisioningState"] == "Succeeded"
    assert created["properties"]["outputs"]["loginServer"]["value"] == f"{name}.{service.login_server_suffix}"
    assert registry(arm, group, name).json()["sku"]["name"] == "Premium"
    what_if = az.run("deployment", "group", "what-if", "-n", "avm-az", *args, "--no-pretty-print")
    assert what_if.returncode == 0, what_if.stderr
    assert {c["changeType"] for c in json.loads(what_if.stdout)["changes"]} == {"NoChange"}


def test_avm_private_endpoint_without_location_fails_when_it_reads_the_virtual_network(arm, service, group):
    """Without a location the private-endpoint module reads it with reference() from the subnet's virtual network,
    so preflight cannot see inside that module (ARM skips it too): the deployment is accepted, the registry is
    deployed, and the module fails when reference() finds no Microsoft.Network provider. ARM leaves exactly that:
    the registry, and a failed deployment naming the module."""
    body = template("registry-avm-module.json")
    name = unique_registry_name("ave")
    subnet = (f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/Microsoft.Network/"
              "virtualNetworks/vnet/subnets/default")
    values = params(name=name, enableTelemetry=False, publicNetworkAccess="Disabled",
                    privateEndpoints=[{"subnetResourceId": subnet}])
    response = put(arm, service, group, "avm-pe", body, values)
    assert response.status_code == 201, response.text
    ended = wait(arm, service, group, "avm-pe")
    assert ended["properties"]["provisioningState"] == "Failed"
    error = ended["properties"]["error"]
    assert error["code"] == "DeploymentFailed", error
    [detail] = error["details"]
    assert detail["code"] == "NoRegisteredProviderFound", error
    assert "Microsoft.Network/virtualNetworks" in detail["message"], error
    assert detail["target"].endswith("-registry-PrivateEndpoint-0"), error
    made = registry(arm, group, name).json()
    assert made["properties"]["publicNetworkAccess"] == "Disabled"


@pytest.mark.az
def test_az_deploys_the_quickstarts_with_their_parameter_files(az, arm, service, group):
    """az reads a deploymentParameters.json file and merges --parameters overrides itself; the geo-replication
    quick start is refused at validation with the replication named, and nothing is left behind."""
    name = unique_registry_name("azq")
    created = az.json("deployment", "group", "create", "-g", group, "-n", "quickstart", "--template-file",
                      str(FIXTURES / "registry-quickstart.json"), "--parameters",
                      f"@{FIXTURES / 'registry-quickstart.parameters.json'}", "--parameters", f"registryName={name}")
    assert created["properties"]["provisioningState"] == "Succeeded"
    assert created["properties"]["outputs"]["loginServer"]["value"] == f"{name}.{service.login_server_suffix}"
    assert registry(arm, group, name).json()["properties"]["adminUserEnabled"] is True

    geo = ["-g", group, "--template-file", str(FIXTURES / "registry-geo-replicated.json"), "--parameters",
           f"@{FIXTURES / 'registry-geo-replicated.parameters.json'}"]
    refused = az.fail("deployment", "group", "validate", *geo)
    assert "NoRegisteredProviderFound" in refused and "replications" in refused, refused
    refused = az.fail("deployment", "group", "create", "-n", "geo", *geo)
    assert "NoRegisteredProviderFound" in refused, refused
    assert "DeploymentNotFound" in az.fail("deployment", "group", "show", "-g", group, "-n", "geo")
    listed = list_all(arm, f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/resources",
                      {"api-version": "2024-11-01"})
    assert [r["name"] for r in listed] == [name]
