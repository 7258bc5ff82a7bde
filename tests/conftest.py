"""Fixtures: the real service under gunicorn on two backends, and the real Azure clients pointed at it.

Every test that takes `service` runs twice: on SQLite with the local-folder storage, and on PostgreSQL with
Azurite (two storage accounts, chosen by location). CONTROL_PLANE_TEST_BACKENDS narrows the list.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
import requests

from tests.support import servers, tools

BACKENDS = ("sqlite-local", "postgres-azurite")
AZURITE_ACCOUNTS = ("acreastus", "acrwesteurope")
TEST_LOCATIONS = "eastus,westeurope,westus"


def selected_backends() -> list[str]:
    wanted = os.environ.get("CONTROL_PLANE_TEST_BACKENDS")
    return [b for b in BACKENDS if not wanted or b in wanted.split(",")]


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    with servers.azurite(tools.azurite_blob(), AZURITE_ACCOUNTS, tmp_path_factory.mktemp("azurite")) as server:
        yield server


def azurite_storage(server: servers.Azurite) -> str:
    east, west = (server.connection_string(a) for a in AZURITE_ACCOUNTS)
    return json.dumps({"eastus": east, "westus": east, "westeurope": west})


@pytest.fixture(scope="session", params=selected_backends())
def service(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite-local":
        svc = servers.make_service(data_dir, None, "local", {"CONTROL_PLANE_LOCATIONS": TEST_LOCATIONS})
        yield from _run(svc)
    else:
        azurite = request.getfixturevalue("azurite_server")
        with servers.postgres_database() as database_url:
            svc = servers.make_service(data_dir, database_url, azurite_storage(azurite),
                                       {"CONTROL_PLANE_LOCATIONS": TEST_LOCATIONS})
            svc.azurite = azurite
            yield from _run(svc)


def _run(svc: servers.Service):
    svc.init = svc.cli_json("init")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(params=selected_backends())
def two_processes(request, tmp_path):
    """Two apps on one database, in process: two replicas, for what must hold across them (revocation)."""
    from control_plane.app import create_app
    from tests.support.in_process import prepared_settings

    with prepared_settings(request.param, tmp_path) as settings:
        first, second = create_app(settings), create_app(settings)
        try:
            yield first, second
        finally:
            for app in (first, second):
                app.extensions["control_plane"].db.dispose()


@pytest.fixture(scope="session")
def credential(service):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(service.tenant_id, service.init["clientId"], service.init["clientSecret"],
                                  authority=service.init["authority"], disable_instance_discovery=True,
                                  connection_verify=service.ca)


def client_kwargs(service) -> dict:
    return {"base_url": service.url, "connection_verify": service.ca, "polling_interval": 0.2}


@pytest.fixture(scope="session")
def acr(service, credential):
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    return ContainerRegistryManagementClient(credential, service.subscription_id, **client_kwargs(service))


@pytest.fixture(scope="session")
def rmc(service, credential):
    from azure.mgmt.resource.resources import ResourceManagementClient

    return ResourceManagementClient(credential, service.subscription_id, **client_kwargs(service))


@pytest.fixture
def group(rmc):
    """A fresh resource group, deleted (with whatever the test left in it) afterwards."""
    name = f"rg-{uuid.uuid4().hex[:10]}"
    rmc.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    if rmc.resource_groups.check_existence(name):
        rmc.resource_groups.begin_delete(name).result()


def unique_registry_name(prefix: str = "reg") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class Arm:
    """Raw HTTPS calls with a bearer token, for what the SDK cannot send (bad input, odd headers)."""

    def __init__(self, service, token: str):
        self.service = service
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.service.url}{path}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        # verify per request: a session-wide setting loses to REQUESTS_CA_BUNDLE, which this machine exports.
        return self.session.request(method, self.url(path), timeout=30, verify=self.service.ca, **kwargs)

    def registry_path(self, group: str, name: str) -> str:
        return (f"/subscriptions/{self.service.subscription_id}/resourceGroups/{group}"
                "/providers/Microsoft.ContainerRegistry/registries/" + name)


@pytest.fixture(scope="session")
def arm(service, credential):
    token = credential.get_token("https://management.azure.com/.default").token
    return Arm(service, token)


def storage_containers(service) -> set[str]:
    """The blob containers that exist in every storage account of the service's backend."""
    azurite = getattr(service, "azurite", None)
    if azurite is None:
        root = Path(service.data_dir) / "blobs"
        return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} if root.exists() else set()
    from azure.storage.blob import BlobServiceClient

    names: set[str] = set()
    for account in azurite.accounts:
        client = BlobServiceClient.from_connection_string(azurite.connection_string(account))
        names |= {c.name for c in client.list_containers()}
    return names


GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_arm_error(response: requests.Response, status: int, code: str) -> dict:
    """The ARM error envelope with this status and code, and nothing that leaks the server's insides."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    assert GUID.match(response.headers["x-ms-request-id"])
    return body["error"]
