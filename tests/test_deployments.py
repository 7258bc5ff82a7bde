"""Template deployments (Microsoft.Resources/deployments) against `control-plane serve`, on both backends.

The SDK is azure-mgmt-resource-deployments (azure-mgmt-resource 26 no longer has a deployments client); az 2.91
drives the same API with its own pinned 1.0.0b1 and sends the template as raw JSONC. Resulting resources are
checked through the REST API and the registries' blob containers.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest

from tests.conftest import Arm, assert_arm_error, client_kwargs, storage_containers, unique_registry_name
from tests.support.az import logged_in

VERSION = "2025-04-01"
ACR_VERSION = "2025-11-01"
ROLES = {"Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
         "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c"}
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"

# copy, condition, dependsOn, a role assignment named with guid(), outputs with reference() and listCredentials().
REGISTRIES = {
    "$schema": SCHEMA,
    "contentVersion": "1.0.0.0",
    "parameters": {
        "prefix": {"type": "string"},
        "count": {"type": "int", "defaultValue": 2, "minValue": 1, "maxValue": 5},
        "sku": {"type": "string", "defaultValue": "Basic", "allowedValues": ["Basic", "Standard", "Premium"]},
        "withExtra": {"type": "bool", "defaultValue": False},
        "principalId": {"type": "string"},
        "adminPassword": {"type": "securestring", "defaultValue": ""},
    },
    "variables": {"first": "[format('{0}0', parameters('prefix'))]"},
    "resources": [
        {"type": "Microsoft.ContainerRegistry/registries", "apiVersion": ACR_VERSION,
         "name": "[format('{0}{1}', parameters('prefix'), copyIndex())]", "location": "[resourceGroup().location]",
         "sku": {"name": "[parameters('sku')]"}, "tags": {"index": "[string(copyIndex())]"},
         "properties": {"adminUserEnabled": True}, "copy": {"name": "regs", "count": "[parameters('count')]"}},
        {"condition": "[parameters('withExtra')]", "type": "Microsoft.ContainerRegistry/registries",
         "apiVersion": ACR_VERSION, "name": "[format('{0}x', parameters('prefix'))]",
         "location": "[resourceGroup().location]", "sku": {"name": "Basic"}},
        {"condition": "[parameters('withExtra')]", "type": "Microsoft.Insights/diagnosticSettings",
         "apiVersion": "2021-05-01-preview", "name": "diag",
         "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', variables('first'))]", "properties": {}},
        {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01",
         "name": "[guid(resourceId('Microsoft.ContainerRegistry/registries', variables('first')), "
                 "parameters('principalId'), 'acrpull')]",
         "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', variables('first'))]",
         "dependsOn": ["regs"],
         "properties": {"roleDefinitionId": "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                                            "'7f951dda-4ed3-4680-a7ca-43fe172d538d')]",
                        "principalId": "[parameters('principalId')]", "principalType": "ServicePrincipal"}},
    ],
    "outputs": {
        "loginServer": {"type": "string", "value": "[reference(resourceId('Microsoft.ContainerRegistry/registries', "
                                                   "variables('first')), '2025-11-01').loginServer]"},
        "username": {"type": "string", "value": "[listCredentials(resourceId('Microsoft.ContainerRegistry/"
                                                "registries', variables('first')), '2025-11-01').username]"},
        "names": {"type": "array", "copy": {"count": "[parameters('count')]",
                                            "input": "[format('{0}{1}', parameters('prefix'), copyIndex())]"}},
    },
}


def params(**values) -> dict:
    return {name: {"value": value} for name, value in values.items()}


@pytest.fixture(scope="session")
def deploy_client(service, credential):
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient

    return DeploymentsMgmtClient(credential, service.subscription_id, **client_kwargs(service))


def deployment_path(service, group: str | None, name: str = "") -> str:
    scope = f"/subscriptions/{service.subscription_id}" + (f"/resourceGroups/{group}" if group else "")
    return f"{scope}/providers/Microsoft.Resources/deployments" + (f"/{name}" if name else "/")


def wait(arm: Arm, service, group: str | None, name: str) -> dict:
    for _ in range(300):
        body = arm.request("GET", deployment_path(service, group, name), params={"api-version": VERSION}).json()
        if body["properties"]["provisioningState"] not in ("Accepted", "Running"):
            return body
        time.sleep(0.2)
    raise AssertionError("deployment did not finish")


def registry(arm: Arm, group: str, name: str):
    return arm.request("GET", arm.registry_path(group, name), params={"api-version": ACR_VERSION})


def test_sdk_deploys_copy_condition_role_assignment_outputs_and_redeploys_unchanged(deploy_client, arm, service,
                                                                                     group):
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties, DeploymentWhatIf

    prefix = unique_registry_name("dep")
    values = params(prefix=prefix, principalId=service.init["objectId"], adminPassword="s3cret-value-never-stored")
    properties = DeploymentProperties(mode="Incremental", template=REGISTRIES, parameters=values)
    validated = deploy_client.deployments.begin_validate(group, "regs", Deployment(properties=properties)).result()
    assert {r.id.rsplit("/", 1)[-1] for r in validated.properties.validated_resources} >= {f"{prefix}0", f"{prefix}1"}

    result = deploy_client.deployments.begin_create_or_update(group, "regs", Deployment(properties=properties)).result()
    assert result.properties.provisioning_state == "Succeeded"
    outputs = result.properties.outputs
    assert outputs["loginServer"]["value"] == f"{prefix}0.{service.login_server_suffix}"
    assert outputs["username"]["value"] == f"{prefix}0"
    assert outputs["names"]["value"] == [f"{prefix}0", f"{prefix}1"]
    assert result.properties.parameters["adminPassword"] == {"type": "SecureString"}

    for index in range(2):
        created = registry(arm, group, f"{prefix}{index}")
        assert created.status_code == 200, created.text
        body = created.json()
        assert (body["sku"]["name"], body["tags"], body["properties"]["adminUserEnabled"]) == (
            "Basic", {"index": str(index)}, True)
        assert body["properties"]["provisioningState"] == "Succeeded"
    assert registry(arm, group, f"{prefix}x").status_code == 404  # condition false
    containers = storage_containers(service)
    assert {c.split("-")[0] for c in containers} >= {f"{prefix}0", f"{prefix}1"}
    assigned = arm.request("GET", f"{arm.registry_path(group, f'{prefix}0')}/providers/Microsoft.Authorization/"
                                  "roleAssignments", params={"api-version": "2022-04-01"}).json()["value"]
    assert any(a["properties"]["roleDefinitionId"].endswith(ROLES["AcrPull"]) for a in assigned)

    operations = list(deploy_client.deployment_operations.list(group, "regs"))
    assert {o.properties.target_resource.resource_type for o in operations} == {
        "Microsoft.ContainerRegistry/registries", "Microsoft.Authorization/roleAssignments"}
    assert all(o.properties.provisioning_state == "Succeeded" for o in operations)
    listed = list(deploy_client.deployments.list_by_resource_group(group, filter="provisioningState eq 'Succeeded'"))
    assert [d.name for d in listed] == ["regs"]
    assert list(deploy_client.deployments.list_by_resource_group(group, filter="provisioningState eq 'Failed'")) == []

    before = registry(arm, group, f"{prefix}0").json()
    preview = deploy_client.deployments.begin_what_if(group, "regs", DeploymentWhatIf(properties=properties)).result()
    assert preview.status == "Succeeded"
    assert {c.change_type for c in preview.changes} == {"NoChange"}, [(c.resource_id, c.delta) for c in
                                                                      preview.changes]
    again = deploy_client.deployments.begin_create_or_update(group, "regs", Deployment(properties=properties)).result()
    assert again.properties.provisioning_state == "Succeeded"
    assert registry(arm, group, f"{prefix}0").json()["etag"] == before["etag"]  # nothing was written

    exported = deploy_client.deployments.export_template(group, "regs")
    assert exported.template["resources"][0]["type"] == "Microsoft.ContainerRegistry/registries"
    stored = arm.request("GET", deployment_path(service, group, "regs"), params={"api-version": VERSION}).text
    assert "s3cret-value-never-stored" not in stored
    assert "s3cret-value-never-stored" not in (service.data_dir / f"serve-{service.url.rsplit(':', 1)[1]}.log"
                                               ).read_text(errors="replace")


def _principal_id(arm: Arm, service) -> str:
    sp = service.cli_json("sp", "create", "--name", f"dep-{uuid.uuid4().hex[:8]}")
    return sp["id"]


def test_what_if_shows_modify_and_complete_mode_deletes_what_the_template_drops(deploy_client, arm, service, group):
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties, DeploymentWhatIf

    prefix = unique_registry_name("cmp")
    template = {**REGISTRIES, "resources": REGISTRIES["resources"][:1], "outputs": {}}
    values = params(prefix=prefix, principalId=str(uuid.uuid4()))
    deploy_client.deployments.begin_create_or_update(group, "two", Deployment(properties=DeploymentProperties(
        mode="Incremental", template=template, parameters=values))).result()

    changed = params(prefix=prefix, principalId=str(uuid.uuid4()), count=1, sku="Standard")
    what_if = deploy_client.deployments.begin_what_if(group, "one", DeploymentWhatIf(properties=DeploymentProperties(
        mode="Complete", template=template, parameters=changed))).result()
    by_name = {c.resource_id.rsplit("/", 1)[-1]: c for c in what_if.changes}
    assert by_name[f"{prefix}0"].change_type == "Modify"
    assert [(d.path, d.before, d.after) for d in by_name[f"{prefix}0"].delta] == [("sku.name", "Basic", "Standard")]
    assert by_name[f"{prefix}1"].change_type == "Delete"

    result = deploy_client.deployments.begin_create_or_update(group, "one", Deployment(properties=DeploymentProperties(
        mode="Complete", template=template, parameters=changed))).result()
    assert result.properties.provisioning_state == "Succeeded"
    assert registry(arm, group, f"{prefix}0").json()["sku"]["name"] == "Standard"
    assert registry(arm, group, f"{prefix}1").status_code == 404
    operations = list(deploy_client.deployment_operations.list(group, "one"))
    assert "Delete" in {o.properties.provisioning_operation for o in operations}


def test_subscription_deployment_creates_groups_and_nested_deployments(deploy_client, arm, service):
    from azure.mgmt.resource.deployments.models import DeploymentProperties, ScopedDeployment

    group_name = f"rg-sub-{uuid.uuid4().hex[:8]}"
    registry_name = unique_registry_name("sub")
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2024-11-01", "name": group_name,
             "location": "westeurope", "tags": {"made": "by-template"}},
            {"type": "Microsoft.Resources/deployments", "apiVersion": "2025-04-01", "name": "inner",
             "resourceGroup": group_name, "dependsOn": [f"[resourceId('Microsoft.Resources/resourceGroups', "
                                                        f"'{group_name}')]"],
             "properties": {"mode": "Incremental", "expressionEvaluationOptions": {"scope": "inner"},
                            "parameters": {"name": {"value": registry_name}},
                            "template": {"$schema": SCHEMA, "contentVersion": "1.0.0.0",
                                         "parameters": {"name": {"type": "string"}},
                                         "resources": [{"type": "Microsoft.ContainerRegistry/registries",
                                                        "apiVersion": ACR_VERSION, "name": "[parameters('name')]",
                                                        "location": "[resourceGroup().location]",
                                                        "sku": {"name": "Basic"}}],
                                         "outputs": {"server": {"type": "string", "value": "[reference(parameters("
                                                                "'name')).loginServer]"}}}}},
        ],
        "outputs": {"server": {"type": "string",
                               "value": "[reference('inner').outputs.server.value]"}},
    }
    try:
        result = deploy_client.deployments.begin_create_or_update_at_subscription_scope(
            "subdep", ScopedDeployment(location="westeurope", properties=DeploymentProperties(
                mode="Incremental", template=template))).result()
        assert result.properties.provisioning_state == "Succeeded", result.properties.error
        assert result.properties.outputs["server"]["value"] == f"{registry_name}.{service.login_server_suffix}"
        made = arm.request("GET", f"/subscriptions/{service.subscription_id}/resourceGroups/{group_name}",
                           params={"api-version": "2024-11-01"}).json()
        assert (made["location"], made["tags"]) == ("westeurope", {"made": "by-template"})
        assert registry(arm, group_name, registry_name).json()["location"] == "westeurope"
        inner = arm.request("GET", deployment_path(service, group_name, "inner"), params={"api-version": VERSION})
        assert inner.json()["properties"]["provisioningState"] == "Succeeded"
    finally:
        arm.request("DELETE", f"/subscriptions/{service.subscription_id}/resourceGroups/{group_name}",
                    params={"api-version": "2024-11-01"})


def put(arm: Arm, service, group: str, name: str, template, parameters=None, mode="Incremental", raw=None):
    body = raw if raw is not None else json.dumps({"properties": {"mode": mode, "template": template,
                                                                  "parameters": parameters or {}}})
    return arm.request("PUT", deployment_path(service, group, name), params={"api-version": VERSION}, data=body,
                       headers={"Content-Type": "application/json"})


def test_put_answers_like_arm_and_a_failed_resource_is_in_details(arm, service, group):
    """201 Accepted + Azure-AsyncOperation; one registry fails (its name is another group's), the independent one
    is deployed (ARM does not roll back), the dependent one is never attempted."""
    taken = unique_registry_name("tkn")
    elsewhere = f"rg-{uuid.uuid4().hex[:8]}"
    arm.request("PUT", f"/subscriptions/{service.subscription_id}/resourceGroups/{elsewhere}",
                params={"api-version": "2024-11-01"}, json={"location": "eastus"})
    assert registry_put(arm, elsewhere, taken).status_code in (200, 201)
    good, after = unique_registry_name("ok"), unique_registry_name("aft")
    template = {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": [
        {"type": "Microsoft.ContainerRegistry/registries", "apiVersion": ACR_VERSION, "name": name,
         "location": "eastus", "sku": {"name": "Basic"}, **extra}
        for name, extra in ((taken, {}), (good, {}), (after, {"dependsOn": [taken]}))]}
    try:
        response = put(arm, service, group, "partial", template)
        assert response.status_code == 201, response.text
        assert response.json()["properties"]["provisioningState"] == "Accepted"
        status_url = response.headers["Azure-AsyncOperation"]
        assert "/operationStatuses/" in status_url
        ended = wait(arm, service, group, "partial")
        assert ended["properties"]["provisioningState"] == "Failed"
        error = ended["properties"]["error"]
        assert error["code"] == "DeploymentFailed"
        assert [(d["code"], d["target"].rsplit("/", 1)[-1]) for d in error["details"]] == [("AlreadyInUse", taken)]
        status = arm.request("GET", status_url).json()
        assert status["status"] == "Failed" and status["error"]["details"][0]["code"] == "AlreadyInUse"
        assert registry(arm, group, good).status_code == 200
        assert registry(arm, group, after).status_code == 404
        assert_arm_error(put(arm, service, group, "partial", template, raw="{}"), 400, "InvalidRequestContent")
    finally:
        arm.request("DELETE", f"/subscriptions/{service.subscription_id}/resourceGroups/{elsewhere}",
                    params={"api-version": "2024-11-01"})


def registry_put(arm: Arm, group: str, name: str):
    return arm.request("PUT", arm.registry_path(group, name), params={"api-version": ACR_VERSION},
                       json={"location": "eastus", "sku": {"name": "Basic"}})


def validate(arm: Arm, service, group: str, template, parameters=None, raw=None):
    body = raw if raw is not None else json.dumps({"properties": {"mode": "Incremental", "template": template,
                                                                  "parameters": parameters or {}}})
    return arm.request("POST", deployment_path(service, group, "bad") + "/validate", params={"api-version": VERSION},
                       data=body, headers={"Content-Type": "application/json"})


BASE = {"$schema": SCHEMA, "contentVersion": "1.0.0.0"}
REG = {"type": "Microsoft.ContainerRegistry/registries", "apiVersion": ACR_VERSION, "location": "eastus",
       "sku": {"name": "Basic"}}


@pytest.mark.parametrize(("template", "parameters", "code", "points_at"), [
    ({**BASE, "resources": [{**REG, "name": "[concat('a', ]"}]}, None, "InvalidTemplate", "concat"),
    ({**BASE, "resources": [{**REG, "name": "[nosuchfunction('a')]"}]}, None, "InvalidTemplate", "nosuchfunction"),
    ({**BASE, "parameters": {"p": {"type": "string"}}, "resources": []}, None, "InvalidTemplate", "'p'"),
    ({**BASE, "parameters": {"p": {"type": "string", "allowedValues": ["a"]}}, "resources": []}, {"p": {"value": "b"}},
     "InvalidTemplate", "allowed value"),
    ({**BASE, "resources": [{**REG, "name": "aaaaa1", "dependsOn": ["aaaaa2"]},
                            {**REG, "name": "aaaaa2", "dependsOn": ["aaaaa1"]}]}, None, "InvalidTemplate", "aaaaa"),
    ({**BASE, "resources": [{**REG, "name": "aaaaa1", "copy": {"name": "c", "count": 801}}]}, None,
     "InvalidTemplate", "800"),
    ({**BASE, "resources": [{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "site",
                             "location": "eastus"}]}, None, "InvalidTemplateDeployment", "NoRegisteredProviderFound"),
])
def test_bad_templates_get_arm_codes_pointing_at_the_problem(arm, service, group, template, parameters, code,
                                                             points_at):
    error = assert_arm_error(validate(arm, service, group, template, parameters), 400, code)
    assert points_at.lower() in json.dumps(error).lower(), error
    # A PUT of the same is refused before anything is written.
    assert_arm_error(put(arm, service, group, "bad", template, parameters), 400, code)
    assert arm.request("GET", deployment_path(service, group, "bad"), params={"api-version": VERSION}
                       ).status_code == 404


def test_malformed_jsonc_points_at_line_and_position(arm, service, group):
    raw = ('{"properties": {"mode": "Incremental", "parameters": {}}, template:{\n  // a comment\n'
           '  "$schema": "x",\n  "resources": [ {"type": }\n  ]\n}\n}')
    error = assert_arm_error(validate(arm, service, group, None, raw=raw), 400, "InvalidTemplate")
    assert "line 4" in error["message"], error


def test_reader_and_contributor_get_authorization_failed_naming_the_resource(arm, service, group):
    reader, _ = _caller(service, arm, "Reader", f"/subscriptions/{service.subscription_id}/resourceGroups/{group}")
    template = {**BASE, "resources": [{**REG, "name": unique_registry_name("rdr")}]}
    refused = assert_arm_error(put(reader, service, group, "r", template), 403, "AuthorizationFailed")
    assert "Microsoft.Resources/deployments/write" in refused["message"]
    contributor, _ = _caller(service, arm, "Contributor",
                             f"/subscriptions/{service.subscription_id}/resourceGroups/{group}")
    name = unique_registry_name("ctb")
    assignment = {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01",
                  "name": "[guid('x')]", "properties": {"roleDefinitionId": ROLES["AcrPull"],
                                                        "principalId": str(uuid.uuid4()),
                                                        "principalType": "ServicePrincipal"}}
    template = {**BASE, "resources": [{**REG, "name": name}, assignment]}
    refused = assert_arm_error(put(contributor, service, group, "c", template), 403, "AuthorizationFailed")
    assert "Microsoft.Authorization/roleAssignments/write" in refused["message"]
    assert "/providers/Microsoft.Authorization/roleAssignments/" in refused["message"]
    assert registry(arm, group, name).status_code == 404  # nothing half-deployed


def _caller(service, arm: Arm, role: str, scope: str) -> tuple[Arm, dict]:
    from azure.identity import ClientSecretCredential

    sp = service.cli_json("sp", "create", "--name", f"dep-{uuid.uuid4().hex[:8]}")
    assigned = arm.request("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                           params={"api-version": "2022-04-01"},
                           json={"properties": {"roleDefinitionId": ROLES[role], "principalId": sp["id"],
                                                "principalType": "ServicePrincipal"}})
    assert assigned.status_code == 201, assigned.text
    credential = ClientSecretCredential(sp["tenant"], sp["appId"], sp["password"], authority=service.url,
                                        disable_instance_discovery=True, connection_verify=service.ca)
    return Arm(service, credential.get_token("https://management.azure.com/.default").token), sp


def test_history_cancel_delete_and_not_found(arm, service, group):
    missing = arm.request("GET", deployment_path(service, group, "nope"), params={"api-version": VERSION})
    assert assert_arm_error(missing, 404, "DeploymentNotFound")["message"] == "Deployment 'nope' could not be found."
    template = {**BASE, "resources": [{**REG, "name": unique_registry_name("del")}]}
    assert put(arm, service, group, "d1", template).status_code == 201
    wait(arm, service, group, "d1")
    assert_arm_error(arm.request("POST", deployment_path(service, group, "d1") + "/cancel",
                                 params={"api-version": VERSION}), 409, "DeploymentCannotBeCanceled")
    deleted = arm.request("DELETE", deployment_path(service, group, "d1"), params={"api-version": VERSION})
    assert deleted.status_code == 202
    assert arm.request("GET", deleted.headers["Location"]).status_code == 204
    assert arm.request("GET", deployment_path(service, group, "d1"), params={"api-version": VERSION}
                       ).status_code == 404
    assert arm.request("DELETE", deployment_path(service, group, "d1"), params={"api-version": VERSION}
                       ).status_code == 204
    assert_arm_error(put(arm, service, group, "x" * 65, template), 400, "DeploymentNameLengthLimitExceeded")
    assert_arm_error(put(arm, service, group, "a$b", template), 400, "DeploymentNameInvalidCharacters")


def test_history_is_trimmed_as_arm_trims_it(tmp_path):
    """Past 700 deployments in a scope the oldest go until 600 remain (run on the service layer: 700 PUTs over
    HTTP would take minutes)."""
    from cryptography.fernet import Fernet

    from control_plane import migrate
    from control_plane.crypto import Cipher
    from control_plane.db import Database, utcnow
    from control_plane.deployments import service as deployments
    from control_plane.identity import service as identity
    from control_plane.identity.tokens import Caller
    from control_plane.resource_groups import service as resource_groups

    db = Database(f"sqlite:///{tmp_path / 'history.db'}")
    migrate.upgrade(db.engine)
    cipher = Cipher([Fernet.generate_key()])
    with db.session() as session:
        tenant = identity.create_tenant(session, "t")
        subscription = identity.create_subscription(session, tenant.id, "s")
        group, _ = resource_groups.create_or_update(session, subscription.id, "g", "eastus", {}, None)
        target = deployments.Target(subscription.id, tenant.id, group)
        caller = Caller(tenant.id, str(uuid.uuid4()), str(uuid.uuid4()), "x")
        start = utcnow()
        for index in range(deployments.TRIM_ABOVE + 1):
            request = deployments.DeploymentRequest("Incremental", None, {}, {}, {}, {}, {}, [], [], None, "c",
                                                    start + timedelta(seconds=index))
            deployment, _ = deployments.record(session, cipher, target, f"d{index}", request, caller)
            deployment.provisioning_state = deployments.SUCCEEDED
            session.flush()
        names = {d.name for d in session.scalars(deployments.sa.select(deployments.Deployment))}
    assert len(names) == deployments.TRIM_TO
    assert f"d{deployments.TRIM_ABOVE}" in names and "d0" not in names and f"d{deployments.TRIM_ABOVE - 1}" in names


# --- az -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az(service, tmp_path_factory):
    return logged_in(service, tmp_path_factory.mktemp("az-deploy"), "DeployTest")


@pytest.mark.az
def test_az_deployment_group_commands(az, arm, service, group, tmp_path):
    prefix = unique_registry_name("az")
    template_file = tmp_path / "registries.json"
    # az sends this file's text as is: comments and all (docs/iac-deployments.md §2.2).
    text = json.dumps({**REGISTRIES, "outputs": {}}, indent=2)
    template_file.write_text("// registries for the az test\n" + text)
    principal = _principal_id(arm, service)
    args = ["-g", group, "--template-file", str(template_file), "--parameters", f"prefix={prefix}",
            f"principalId={principal}"]
    validated = az.json("deployment", "group", "validate", *args)
    assert validated["properties"]["provisioningState"] == "Succeeded"
    created = az.json("deployment", "group", "create", "-n", "azdep", *args)
    assert created["properties"]["provisioningState"] == "Succeeded"
    assert registry(arm, group, f"{prefix}1").status_code == 200
    shown = az.json("deployment", "group", "show", "-g", group, "-n", "azdep")
    assert shown["properties"]["parameters"]["prefix"]["value"] == prefix
    assert [d["name"] for d in az.json("deployment", "group", "list", "-g", group)] == ["azdep"]
    operations = az.json("deployment", "operation", "group", "list", "-g", group, "-n", "azdep")
    assert len(operations) == 3
    what_if = az.run("deployment", "group", "what-if", "-n", "azdep", *args, "--no-pretty-print")
    assert what_if.returncode == 0, what_if.stderr
    assert {c["changeType"] for c in json.loads(what_if.stdout)["changes"]} == {"NoChange"}
    assert "Microsoft.Resources/deployments/write" not in az.fail(
        "deployment", "group", "cancel", "-g", group, "-n", "azdep")
    bad = tmp_path / "bad.json"  # az refuses malformed JSON itself; a malformed expression is the server's to find
    bad.write_text(json.dumps({**BASE, "resources": [{**REG, "name": "[concat('a', ]"}]}))
    refused = az.fail("deployment", "group", "create", "-g", group, "--template-file", str(bad))
    assert "InvalidTemplate" in refused and "concat" in refused
    assert az.json("deployment", "group", "delete", "-g", group, "-n", "azdep") is None
    assert "DeploymentNotFound" in az.fail("deployment", "group", "show", "-g", group, "-n", "azdep")


@pytest.mark.az
def test_az_deployment_sub_create_makes_a_group(az, arm, service, tmp_path):
    name = f"rg-azsub-{uuid.uuid4().hex[:8]}"
    template_file = tmp_path / "group.json"
    template_file.write_text(json.dumps({
        "$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
        "contentVersion": "1.0.0.0", "parameters": {"name": {"type": "string"}},
        "resources": [{"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2024-11-01",
                       "name": "[parameters('name')]", "location": "eastus"}]}))
    try:
        created = az.json("deployment", "sub", "create", "-l", "eastus", "-n", f"sub-{name}", "--template-file",
                          str(template_file), "--parameters", f"name={name}")
        assert created["properties"]["provisioningState"] == "Succeeded"
        assert az.json("group", "show", "-n", name)["location"] == "eastus"
    finally:
        az.run("group", "delete", "-n", name, "--yes")
