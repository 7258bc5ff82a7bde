"""The in-request fast path: a write whose operation finishes within CONTROL_PLANE_INLINE_OPERATION_MS answers with
the finished resource and no status URL (real clients then make no poll); slow or failing work falls back to the
asynchronous answer, and an operation never runs twice.

The rest of the suite runs with the fast path off (tests/support/servers.py), so it keeps checking the
asynchronous protocol; here a service with it on is driven with raw HTTPS and with the SDK, on both backends.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import requests
import sqlalchemy as sa
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import Registry, RegistryUpdateParameters, Sku

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.operations.models import Operation
from control_plane.registries.models import Registry as RegistryRow
from control_plane.storage import StorageError
from tests.conftest import (
    TEST_LOCATIONS,
    _run,
    azurite_storage,
    selected_backends,
    storage_containers,
    unique_registry_name,
)
from tests.support import servers
from tests.support.in_process import owner_headers

API = "api-version=2025-11-01"
# Generous: the machine running the suite may be busy; the benchmark (bench/) measures how fast it really is.
BUDGET_MS = "10000"


@pytest.fixture(scope="module", params=selected_backends())
def inline_service(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"inline-{request.param}")
    env = {"CONTROL_PLANE_LOCATIONS": TEST_LOCATIONS, "CONTROL_PLANE_INLINE_OPERATION_MS": BUDGET_MS}
    if request.param == "sqlite-local":
        yield from _run(servers.make_service(data_dir, None, "local", env))
    else:
        azurite = request.getfixturevalue("azurite_server")
        with servers.postgres_database() as database_url:
            svc = servers.make_service(data_dir, database_url, azurite_storage(azurite), env)
            svc.azurite = azurite
            yield from _run(svc)


class Client:
    def __init__(self, svc: servers.Service):
        self.svc = svc
        token = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
            "grant_type": "client_credentials", "client_id": svc.init["clientId"],
            "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default"})
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.svc.url}{path}", verify=self.svc.ca, timeout=60, **kwargs)

    def group(self) -> str:
        name = f"rg-{unique_registry_name('')}"
        path = f"/subscriptions/{self.svc.subscription_id}/resourceGroups/{name}?api-version=2025-04-01"
        assert self.request("PUT", path, json={"location": "eastus"}).status_code == 201
        return name

    def registry(self, group: str, name: str) -> str:
        return (f"/subscriptions/{self.svc.subscription_id}/resourceGroups/{group}"
                f"/providers/Microsoft.ContainerRegistry/registries/{name}?{API}")


def assert_synchronous(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    for header in ("Azure-AsyncOperation", "Location", "Retry-After"):
        assert header not in response.headers, (header, response.headers)


def test_put_patch_delete_finish_inside_the_request(inline_service):
    client = Client(inline_service)
    group = client.group()
    name = unique_registry_name("inline")
    path = client.registry(group, name)

    created = client.request("PUT", path, json={"location": "eastus", "sku": {"name": "Basic"}})
    assert_synchronous(created, 201)
    assert created.json()["properties"]["provisioningState"] == "Succeeded"
    assert any(c.startswith(f"{name.lower()}-") for c in storage_containers(inline_service))
    fetched = client.request("GET", path)
    assert fetched.json() == created.json()
    assert fetched.headers["ETag"] == created.headers["ETag"] == created.json()["etag"]

    replaced = client.request("PUT", path, json={"location": "eastus", "sku": {"name": "Standard"}})
    assert_synchronous(replaced, 200)
    assert replaced.json()["properties"]["provisioningState"] == "Succeeded"
    assert replaced.json()["sku"]["name"] == "Standard"

    patched = client.request("PATCH", path, json={"tags": {"team": "a"}, "properties": {"adminUserEnabled": True}})
    assert_synchronous(patched, 200)
    assert patched.json()["properties"]["provisioningState"] == "Succeeded"
    assert patched.json()["tags"] == {"team": "a"} and patched.json()["properties"]["adminUserEnabled"] is True
    assert client.request("GET", path).json() == patched.json()

    deleted = client.request("DELETE", path)
    assert_synchronous(deleted, 200)
    assert deleted.content == b""
    assert client.request("GET", path).status_code == 404
    assert not any(c.startswith(f"{name.lower()}-") for c in storage_containers(inline_service))
    assert client.request("DELETE", path).status_code == 204


class Recorder(SansIOHTTPPolicy):
    """Every request the SDK client sends (not the credential's token requests)."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []

    def on_request(self, request):
        self.requests.append((request.http_request.method, request.http_request.url.split("?")[0]))


def test_sdk_long_running_calls_return_without_polling(inline_service):
    from azure.identity import ClientSecretCredential

    svc = inline_service
    group = Client(svc).group()
    credential = ClientSecretCredential(svc.tenant_id, svc.init["clientId"], svc.init["clientSecret"],
                                        authority=svc.url, disable_instance_discovery=True, connection_verify=svc.ca)
    recorder = Recorder()
    acr = ContainerRegistryManagementClient(credential, svc.subscription_id, base_url=svc.url,
                                            connection_verify=svc.ca, per_call_policies=[recorder],
                                            polling_interval=30)
    name = unique_registry_name("sdkinline")

    registry = acr.registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Basic"))).result()
    assert registry.provisioning_state == "Succeeded" and registry.name == name
    updated = acr.registries.begin_update(group, name, RegistryUpdateParameters(tags={"a": "1"})).result()
    assert updated.provisioning_state == "Succeeded" and updated.tags == {"a": "1"}
    assert acr.registries.begin_delete(group, name).result() is None

    # One request per call: the answers were final, so the poller never asked again.
    assert [method for method, _ in recorder.requests] == ["PUT", "PATCH", "DELETE"]
    assert [r.name for r in acr.registries.list_by_resource_group(group)] == []


# -- in-process: the fallback and the lease, with a storage backend the test controls ---------------------------


class GatedStore:
    """A container store whose creates wait for the test (or fail), standing in for slow or broken storage."""

    def __init__(self):
        self.gate = threading.Event()
        self.fail = False
        self.created: list[str] = []

    def create_container(self, name: str) -> None:
        if self.fail:
            raise StorageError("The storage account is unreachable.")
        self.gate.wait(30)
        self.created.append(name)

    def delete_container(self, name: str) -> None:
        self.created = [c for c in self.created if c != name]


@pytest.fixture
def local_app(tmp_path):
    from control_plane.cli import _prepare

    settings = Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path), "CONTROL_PLANE_TLS": "off",
                                  "CONTROL_PLANE_INLINE_OPERATION_MS": "300",
                                  "CONTROL_PLANE_WORKER_POLL_SECONDS": "3600"})
    _prepare(settings)
    app = create_app(settings, start_worker=True)
    ctx = app.extensions["control_plane"]
    store = GatedStore()
    ctx.storage.for_location = lambda _location: store
    state, headers = owner_headers(app)
    client = app.test_client()
    group = f"/subscriptions/{state['subscriptionId']}/resourceGroups/rg1"
    assert client.put(f"{group}?api-version=2025-04-01", json={"location": "eastus"}, headers=headers).status_code \
        == 201
    yield SimpleNamespace(ctx=ctx, store=store, client=client, headers=headers, group=group)
    store.gate.set()
    ctx.worker.stop()
    ctx.db.dispose()


def _operations(ctx) -> list[Operation]:
    with ctx.db.session() as session:
        return list(session.scalars(sa.select(Operation).order_by(Operation.created_at)))


def test_slow_work_falls_back_to_the_asynchronous_answer_and_finishes_once(local_app):
    ctx, store, client, headers, group = (local_app.ctx, local_app.store, local_app.client,
                                          local_app.headers, local_app.group)
    path = f"{group}/providers/Microsoft.ContainerRegistry/registries/slow1?{API}"

    answer = client.put(path, json={"location": "eastus", "sku": {"name": "Basic"}}, headers=headers)
    assert answer.status_code == 201
    assert answer.get_json()["properties"]["provisioningState"] == "Creating"
    assert answer.headers["Retry-After"] == "1"
    status_url = answer.headers["Azure-AsyncOperation"]
    assert client.get(status_url, headers=headers).get_json()["status"] == "InProgress"

    # The work goes on under this process's lease: the worker's sweep must not start it a second time.
    assert ctx.worker.run_due() == 0
    store.gate.set()
    operation = _wait(lambda: next((o for o in _operations(ctx) if o.status != "InProgress"), None))
    assert operation.status == "Succeeded" and operation.attempts == 1
    assert store.created == [_container_of(ctx, "slow1")]
    assert client.get(path, headers=headers).get_json()["properties"]["provisioningState"] == "Succeeded"
    assert client.get(status_url, headers=headers).get_json()["status"] == "Succeeded"


def test_failed_work_answers_asynchronously_with_the_failure_on_the_operation(local_app):
    store, client, headers, group = local_app.store, local_app.client, local_app.headers, local_app.group
    store.fail = True
    path = f"{group}/providers/Microsoft.ContainerRegistry/registries/broken1?{API}"

    answer = client.put(path, json={"location": "eastus", "sku": {"name": "Basic"}}, headers=headers)
    assert answer.status_code == 201
    assert "Azure-AsyncOperation" in answer.headers
    status = client.get(answer.headers["Azure-AsyncOperation"], headers=headers).get_json()
    assert status["status"] == "Failed" and status["error"]["code"] == "StorageOperationFailed"
    assert client.get(path, headers=headers).get_json()["properties"]["provisioningState"] == "Failed"


def test_fast_work_runs_once_inside_the_request(local_app):
    ctx, store, client, headers, group = (local_app.ctx, local_app.store, local_app.client,
                                          local_app.headers, local_app.group)
    store.gate.set()
    path = f"{group}/providers/Microsoft.ContainerRegistry/registries/fast1?{API}"

    answer = client.put(path, json={"location": "eastus", "sku": {"name": "Basic"}}, headers=headers)
    assert answer.status_code == 201 and "Azure-AsyncOperation" not in answer.headers
    assert answer.get_json()["properties"]["provisioningState"] == "Succeeded"
    [operation] = _operations(ctx)
    assert operation.status == "Succeeded" and operation.attempts == 1
    assert ctx.worker.run_due() == 0
    assert store.created == [_container_of(ctx, "fast1")]


def test_no_inline_run_without_a_running_worker_or_with_a_zero_budget(tmp_path):
    settings = Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path), "CONTROL_PLANE_TLS": "off"})
    assert settings.inline_operation_ms == 1000
    worker = create_app(settings, start_worker=False).extensions["control_plane"].worker
    assert worker.run_inline("registries-nothing", 5.0) is False  # a process that runs no operations
    assert Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path),
                              "CONTROL_PLANE_INLINE_OPERATION_MS": "0"}).inline_operation_ms == 0


def _container_of(ctx, name: str) -> str:
    with ctx.db.session() as session:
        return session.scalar(sa.select(RegistryRow.container_name).where(RegistryRow.name_key == name))


def _wait(probe, timeout: float = 30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
