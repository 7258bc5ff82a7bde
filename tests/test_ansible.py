"""Ansible's azure.azcollection 3.21.0 (shipped in PyPI's `ansible` 14.5.0) against the service as a custom cloud.

The collection resolves a custom cloud only through azure-cli-core's `ARM_CLOUD_METADATA_URL`, which must answer the
2019-05-01 list of clouds, and then picks the cloud whose resourceManager equals `AZURE_CLOUD_ENVIRONMENT`
(docs: iac-deployments.md §5). tests/ansible/ holds the playbooks; each runs twice and must report `changed`, then
`ok`. azure_rm_deployment is the exception the collection makes itself: it reports `changed` on every run (it never
compares), so for it the second run is checked through the REST API instead (same resources, no new ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import assert_arm_error, unique_registry_name
from tests.support import tools

PLAYBOOKS = Path(__file__).resolve().parent / "ansible"
ROLES = {"AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d", "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7"}
REGISTRY_API = "2021-09-01"  # what the collection's pinned azure-mgmt-containerregistry sends
DEPLOYMENT_TASK = "Template deployment"
PLAYBOOK_TIMEOUT = 600


@dataclass
class Run:
    returncode: int
    output: dict
    stderr: str
    seconds: float

    def tasks(self) -> dict[str, dict]:
        """Each task's result on localhost, by task name."""
        return {t["task"]["name"]: t["hosts"]["localhost"] for play in self.output["plays"] for t in play["tasks"]}

    def changed(self) -> dict[str, bool]:
        return {name: result.get("changed", False) for name, result in self.tasks().items()}

    @property
    def stats(self) -> dict:
        return self.output["stats"]["localhost"]


class Ansible:
    """ansible-playbook with an environment of its own: the service as the cloud, the bootstrap principal's secret."""

    def __init__(self, service, home: Path, secret: str | None = None):
        binary = tools.ansible_playbook()
        self.binary = binary
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AZURE_", "ANSIBLE_", "ARM_")) and k not in ("CURL_CA_BUNDLE",)}
        env.update({
            "HOME": str(home),  # no ~/.azure/credentials profile, no ~/.ansible of the machine's
            "AZURE_CONFIG_DIR": str(home / "azure"),
            "ARM_CLOUD_METADATA_URL": f"{service.url}/metadata/endpoints?api-version=2019-05-01",
            "AZURE_CLOUD_ENVIRONMENT": f"{service.url}/",
            "AZURE_CLIENT_ID": service.init["clientId"],
            "AZURE_SECRET": secret if secret is not None else service.init["clientSecret"],
            "AZURE_TENANT": service.tenant_id,
            "AZURE_SUBSCRIPTION_ID": service.subscription_id,
            "AZURE_DISABLE_INSTANCE_DISCOVERY": "true",
            # azure-core's requests transport (tokens and ARM) and urllib (the metadata fetch) trust the local CA.
            "REQUESTS_CA_BUNDLE": service.ca,
            "SSL_CERT_FILE": service.ca,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_PYTHON_INTERPRETER": str(binary.parent / "python"),
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_NOCOLOR": "true",
            "ANSIBLE_HOME": str(home / "ansible"),
            "ANSIBLE_LOCAL_TEMP": str(home / "ansible-tmp"),
        })
        self.env = env
        self.home = home

    def run(self, playbook: str, variables: dict) -> Run:
        path = self.home / f"variables-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(variables))
        started = time.monotonic()
        result = subprocess.run([str(self.binary), "-i", "localhost,", str(PLAYBOOKS / playbook), "-e", f"@{path}"],
                                env=self.env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, check=False)
        seconds = time.monotonic() - started
        try:
            output = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"ansible-playbook printed no JSON ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}") from None
        return Run(result.returncode, output, result.stderr, seconds)

    def twice(self, playbook: str, variables: dict) -> tuple[Run, Run]:
        first = self.run(playbook, variables)
        assert first.returncode == 0, _failures(first)
        second = self.run(playbook, variables)
        assert second.returncode == 0, _failures(second)
        return first, second


def _failures(run: Run) -> str:
    failed = {name: r.get("msg") for name, r in run.tasks().items() if r.get("failed")}
    return f"failed tasks: {failed}\n{run.stderr[-3000:]}"


@dataclass
class Scene:
    """What the playbooks work on: names, the principal the role assignments are for, and a REST session."""

    service: object
    ansible: Ansible
    variables: dict
    rest: requests.Session
    principal_id: str

    def url(self, path: str) -> str:
        return f"{self.service.url}{path}"

    def get(self, path: str, api_version: str, **kwargs) -> requests.Response:
        return self.rest.get(self.url(path), params={"api-version": api_version, **kwargs}, verify=self.service.ca,
                             timeout=30)

    @property
    def group_path(self) -> str:
        return f"/subscriptions/{self.service.subscription_id}/resourceGroups/{self.variables['group']}"

    def registry_path(self, name: str) -> str:
        return f"{self.group_path}/providers/Microsoft.ContainerRegistry/registries/{name}"

    def role_assignments(self) -> list[dict]:
        listed = self.get(f"/subscriptions/{self.service.subscription_id}/providers/Microsoft.Authorization/"
                          "roleAssignments", "2022-04-01", **{"$filter": f"principalId eq '{self.principal_id}'"})
        assert listed.status_code == 200, listed.text
        return listed.json()["value"]


@pytest.fixture(scope="module")
def scene(service, credential, tmp_path_factory):
    rest = requests.Session()
    rest.headers["Authorization"] = "Bearer " + credential.get_token(f"{service.url}/.default").token
    graph = {"verify": service.ca, "timeout": 30}
    application = rest.post(f"{service.url}/v1.0/applications", json={"displayName": "ansible-target"}, **graph)
    assert application.status_code == 201, application.text
    principal = rest.post(f"{service.url}/v1.0/servicePrincipals", json={"appId": application.json()["appId"]},
                          **graph)
    assert principal.status_code == 201, principal.text
    subscription = service.subscription_id
    role = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
    variables = {
        "group": f"rg-ansible-{uuid.uuid4().hex[:8]}", "location": "eastus", "subscription_id": subscription,
        "registry": unique_registry_name("ans"), "deployed_registry": unique_registry_name("ansdep"),
        "sku": "Basic", "admin_user_enabled": True, "registry_tags": {"env": "test"},
        "principal_id": principal.json()["id"], "acr_pull": role + ROLES["AcrPull"], "reader": role + ROLES["Reader"],
        "assignment_name": str(uuid.uuid4()),
    }
    yield Scene(service, Ansible(service, tmp_path_factory.mktemp("ansible-home")), variables, rest,
                principal.json()["id"])
    rest.delete(f"{service.url}/subscriptions/{subscription}/resourcegroups/{variables['group']}",
                params={"api-version": "2022-09-01"}, verify=service.ca, timeout=30)
    # Other modules of this process list the tenant's principals: leave none behind.
    rest.delete(f"{service.url}/v1.0/servicePrincipals/{principal.json()['id']}", **graph)
    rest.delete(f"{service.url}/v1.0/applications/{application.json()['id']}", **graph)


@pytest.fixture(scope="module")
def created(scene):
    return scene.ansible.twice("registry.yml", scene.variables)


@pytest.fixture(scope="module")
def updated(scene, created):
    # Admin goes from on to off: the module cannot turn it on for a registry that exists with it off (it lists the
    # credentials before it updates, and ACR refuses that with UnAuthorizedForCredentialOperations).
    scene.variables.update(sku="Standard", admin_user_enabled=False, registry_tags={"env": "prod", "team": "web"})
    return scene.ansible.twice("registry.yml", scene.variables)


def test_metadata_endpoint_answers_the_list_form_for_2019_05_01_and_2020_06_01_else_the_object(service):
    def metadata(api_version: str):
        response = requests.get(f"{service.url}/metadata/endpoints", params={"api-version": api_version},
                                verify=service.ca, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    [cloud] = metadata("2019-05-01")
    assert cloud["resourceManager"] == f"{service.url}/"
    assert cloud["authentication"]["loginEndpoint"] == service.url
    assert cloud["authentication"]["audiences"][0] == "https://management.core.windows.net/"
    assert isinstance(cloud["suffixes"], dict) and cloud["name"]
    assert metadata("2020-06-01") == [cloud]
    for api_version in ("2022-09-01", "2018-01-01", "2015-01-01"):
        assert metadata(api_version) == cloud
    unknown = requests.get(f"{service.url}/metadata/endpoints", params={"api-version": "2019-01-01"},
                           verify=service.ca, timeout=30)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_first_run_creates_everything_and_the_second_changes_nothing(scene, created):
    first, second = created
    changed = first.changed()
    assert changed == {
        "Resource group": True, "Registry": True, "Registry facts with the admin credentials": False,
        "Registries of the group": False, "AcrPull on the registry, found by scope, principal and role": True,
        "Reader on the group, by name": True, DEPLOYMENT_TASK: True,
    }
    assert second.changed() == {**{name: False for name in changed}, DEPLOYMENT_TASK: True}
    assert (first.stats["failures"], second.stats["failures"]) == (0, 0)
    assert second.stats["changed"] == 1  # the deployment alone

    v = scene.variables
    group = scene.get(scene.group_path, "2022-09-01")
    assert group.status_code == 200, group.text
    assert (group.json()["location"], group.json()["tags"]) == ("eastus", {"purpose": "ansible"})

    registry = scene.get(scene.registry_path(v["registry"]), REGISTRY_API)
    assert registry.status_code == 200, registry.text
    body = registry.json()
    assert body["sku"] == {"name": "Basic", "tier": "Basic"}
    assert body["properties"]["adminUserEnabled"] is True
    assert body["tags"] == {"env": "test"}
    credentials = scene.rest.post(scene.url(scene.registry_path(v["registry"]) + "/listCredentials"),
                                  params={"api-version": REGISTRY_API}, verify=scene.service.ca, timeout=30)
    assert credentials.status_code == 200, credentials.text
    passwords = [p["value"] for p in credentials.json()["passwords"]]
    for run in created:
        result = run.tasks()["Registry"]
        assert (result["id"], result["login_server"], result["sku"]) == (
            body["id"], body["properties"]["loginServer"], "Basic")
        assert result["credentials"] == {"password": passwords[0], "password2": passwords[1]}
        [info] = run.tasks()["Registry facts with the admin credentials"]["registries"]
        assert (info["id"], info["sku"], info["admin_user_enabled"]) == (body["id"], "basic", True)  # the tier
        assert info["credentials"] == {"username": credentials.json()["username"], "password": passwords[0],
                                       "password2": passwords[1]}
        assert (info["resource_group"], info["tags"]) == (v["group"], {"env": "test"})
    # The group list runs before the deployment: the deployed registry shows from the second run on.
    assert [r["name"] for r in first.tasks()["Registries of the group"]["registries"]] == [v["registry"]]
    listed = second.tasks()["Registries of the group"]["registries"]
    assert {r["name"] for r in listed} == {v["registry"], v["deployed_registry"]}

    assignments = {a["properties"]["scope"]: a for a in scene.role_assignments()}
    assert set(assignments) == {body["id"], scene.group_path}
    assert assignments[body["id"]]["properties"]["roleDefinitionId"].endswith(ROLES["AcrPull"])
    assert assignments[scene.group_path]["name"] == v["assignment_name"]
    assert assignments[scene.group_path]["properties"]["roleDefinitionId"].endswith(ROLES["Reader"])
    rerun = second.tasks()["AcrPull on the registry, found by scope, principal and role"]
    assert rerun["id"] == assignments[body["id"]]["id"]


def test_template_deployment_deploys_once_and_redeploys_in_place(scene, created):
    v = scene.variables
    deployed = scene.get(scene.registry_path(v["deployed_registry"]), REGISTRY_API)
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["tags"] == {"deployedBy": "ansible"}
    assert deployed.json()["sku"]["name"] == "Basic"
    for run in created:
        deployment = run.tasks()[DEPLOYMENT_TASK]["deployment"]
        assert deployment["outputs"]["loginServer"]["value"] == deployed.json()["properties"]["loginServer"]
        assert deployment["id"] == f"{scene.group_path}/providers/Microsoft.Resources/deployments/ansible-registry"
    record = scene.get(f"{scene.group_path}/providers/Microsoft.Resources/deployments/ansible-registry",
                       "2022-09-01")
    assert record.status_code == 200, record.text
    assert record.json()["properties"]["provisioningState"] == "Succeeded"
    history = scene.get(f"{scene.group_path}/providers/Microsoft.Resources/deployments", "2022-09-01")
    assert [d["name"] for d in history.json()["value"]] == ["ansible-registry"]
    # The second deployment replaced the record and left the registry as it was.
    registries = scene.get(f"{scene.group_path}/providers/Microsoft.ContainerRegistry/registries", REGISTRY_API)
    assert sorted(r["name"] for r in registries.json()["value"]) == sorted([v["registry"], v["deployed_registry"]])


def test_update_changes_sku_admin_user_and_tags_then_nothing(scene, updated):
    first, second = updated
    assert first.changed()["Registry"] is True
    assert {n for n, c in first.changed().items() if c} == {"Registry", DEPLOYMENT_TASK}
    assert {n for n, c in second.changed().items() if c} == {DEPLOYMENT_TASK}

    v = scene.variables
    registry = scene.get(scene.registry_path(v["registry"]), REGISTRY_API).json()
    assert registry["sku"] == {"name": "Standard", "tier": "Standard"}
    assert registry["properties"]["adminUserEnabled"] is False
    assert registry["tags"] == {"env": "prod", "team": "web"}
    refused = scene.rest.post(scene.url(scene.registry_path(v["registry"]) + "/listCredentials"),
                              params={"api-version": REGISTRY_API}, verify=scene.service.ca, timeout=30)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "UnAuthorizedForCredentialOperations"
    for run in updated:
        result = run.tasks()["Registry"]
        assert (result["sku"], result["admin_user_enabled"], result["credentials"]) == ("Standard", False, {})
        [info] = run.tasks()["Registry facts with the admin credentials"]["registries"]
        assert (info["sku"], info["admin_user_enabled"], info["credentials"]) == ("standard", False, {})
        assert info["tags"] == {"env": "prod", "team": "web"}


def test_turning_admin_on_for_an_existing_registry_fails_with_acrs_code(scene, updated):
    """As on Azure: the module lists the credentials of the registry as it is before updating it."""
    v = scene.variables
    run = scene.ansible.run("registry.yml", {**v, "registry": v["deployed_registry"], "sku": "Basic",
                                             "admin_user_enabled": True})
    assert run.returncode != 0
    failed = {name: r["msg"] for name, r in run.tasks().items() if r.get("failed")}
    assert list(failed) == ["Registry"], failed
    assert "UnAuthorizedForCredentialOperations" in failed["Registry"]
    deployed = scene.get(scene.registry_path(v["deployed_registry"]), REGISTRY_API).json()
    assert (deployed["sku"]["name"], deployed["properties"]["adminUserEnabled"]) == ("Basic", False)


def test_teardown_removes_the_registry_and_assignments_then_nothing(scene, updated):
    first, second = scene.ansible.twice("teardown.yml", scene.variables)
    assert first.changed() == {"AcrPull on the registry": True, "Reader on the group": True, "Registry": True}
    assert not any(second.changed().values())
    v = scene.variables
    assert scene.get(scene.registry_path(v["registry"]), REGISTRY_API).status_code == 404
    assert scene.role_assignments() == []
    assert scene.get(scene.registry_path(v["deployed_registry"]), REGISTRY_API).status_code == 200

    first, second = scene.ansible.twice("group-absent.yml", scene.variables)
    assert (first.changed(), second.changed()) == ({"Resource group": True}, {"Resource group": False})
    assert scene.get(scene.group_path, "2022-09-01").status_code == 404


def test_a_wrong_secret_fails_the_task_with_entras_error(service, tmp_path, scene):
    ansible = Ansible(service, tmp_path / "home", secret="not-the-secret")
    run = ansible.run("group-absent.yml", {"group": f"rg-ansible-{uuid.uuid4().hex[:8]}"})
    assert run.returncode != 0
    [result] = run.tasks().values()
    assert result["failed"] is True
    assert "invalid_client" in json.dumps(result) or "AADSTS7000215" in json.dumps(result), result
    assert "Traceback" not in result.get("msg", "")


def test_an_invalid_registry_name_fails_with_the_name_check_reason(scene, tmp_path):
    variables = {**scene.variables, "group": f"rg-ansible-{uuid.uuid4().hex[:8]}", "registry": "no_underscores"}
    run = scene.ansible.run("registry.yml", variables)
    try:
        assert run.returncode != 0
        failed = {name: r["msg"] for name, r in run.tasks().items() if r.get("failed")}
        assert list(failed) == ["Registry"], failed
        assert "Invalid registry name. reason: Invalid message:" in failed["Registry"], failed
    finally:
        scene.rest.delete(scene.url(f"/subscriptions/{scene.service.subscription_id}/resourcegroups/"
                                    f"{variables['group']}"), params={"api-version": "2022-09-01"},
                          verify=scene.service.ca, timeout=30)


def test_group_resource_list_pages_within_its_group_and_refuses_bad_input(service, rmc, acr, arm):
    """Resources_ListByResourceGroup (added for azure_rm_resourcegroup): pages of 2 (the suite's page size) hold
    only the group's resources, whatever sorts next to them."""
    groups = [f"rg-list-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    made: dict[str, list[str]] = {groups[0]: [unique_registry_name("lst") for _ in range(3)],
                                  groups[1]: [unique_registry_name("lst")], groups[2]: []}
    try:
        for group, names in made.items():
            rmc.resource_groups.create_or_update(group, {"location": "eastus"})
            for name in names:
                acr.registries.begin_create(group, name, {"location": "eastus", "sku": {"name": "Basic"}}).result()
        for group, names in made.items():
            listed = list(rmc.resources.list_by_resource_group(group.upper()))
            assert sorted(r.name for r in listed) == sorted(names)
            assert all(r.type == "Microsoft.ContainerRegistry/registries" and r.location == "eastus" for r in listed)
        only = list(rmc.resources.list_by_resource_group(
            groups[1], filter="resourceType eq 'Microsoft.ContainerRegistry/registries'"))
        assert [r.id for r in only] == [f"/subscriptions/{service.subscription_id}/resourceGroups/{groups[1]}"
                                        f"/providers/Microsoft.ContainerRegistry/registries/{made[groups[1]][0]}"]
        assert list(rmc.resources.list_by_resource_group(groups[1], filter="resourceType eq 'Other/things'")) == []
        first = made[groups[0]][0]
        assert [r.name for r in rmc.resources.list_by_resource_group(groups[0], filter=f"name eq '{first}'")] == [first]
        # `az resource list -g G [--resource-type T] [-n N]` asks the subscription's list with these clauses.
        in_group = list(rmc.resources.list(filter=f"resourceGroup eq '{groups[0].upper()}' and resourceType eq "
                                                  "'Microsoft.ContainerRegistry/registries'"))
        assert sorted(r.name for r in in_group) == sorted(made[groups[0]])
        assert list(rmc.resources.list(filter=f"resourceGroup eq '{groups[2]}'")) == []
        assert [r.name for r in rmc.resources.list(filter=f"resourceGroup eq '{groups[0]}' and name eq "
                                                           f"'{first}'")] == [first]

        path = f"/subscriptions/{service.subscription_id}/resourceGroups/{{}}/resources"
        missing = arm.request("GET", path.format("rg-missing-" + uuid.uuid4().hex[:6]),
                              params={"api-version": "2022-09-01"})
        assert_arm_error(missing, 404, "ResourceGroupNotFound")
        bad_filter = arm.request("GET", path.format(groups[0]),
                                 params={"api-version": "2022-09-01", "$filter": "location eq 'x'"})
        assert_arm_error(bad_filter, 400, "InvalidFilterInQueryString")
        for repeated in ("name eq 'x' and name eq 'y'", f"resourceGroup eq '{groups[0]}'"):
            bad_filter = arm.request("GET", path.format(groups[0]),
                                     params={"api-version": "2022-09-01", "$filter": repeated})
            assert_arm_error(bad_filter, 400, "InvalidFilterInQueryString")
        no_version = arm.request("GET", path.format(groups[0]))
        assert_arm_error(no_version, 400, "MissingApiVersionParameter")
    finally:
        for group in groups:
            rmc.resource_groups.begin_delete(group).result()
