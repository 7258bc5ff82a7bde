"""Long-running operations are durable: a killed process, or storage that is down, never leaves half a registry."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import Registry, Sku

from control_plane import bootstrap
from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.operations import service as operations
from control_plane.operations.models import Operation
from control_plane.registries.models import Registry as RegistryRow
from tests.conftest import unique_registry_name
from tests.support import servers, tools


def _token(app, tenant_id: str, client_id: str, secret: str) -> str:
    response = app.test_client().post(f"/{tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": "https://management.azure.com/.default"})
    return response.get_json()["access_token"]


def test_operation_left_by_a_dead_worker_is_finished_by_the_next(tmp_path):
    """The request commits the registry row and its operation; a worker that claimed it died; the next one runs it."""
    from control_plane.cli import _prepare

    settings = Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path), "CONTROL_PLANE_TLS": "off"})
    _prepare(settings)
    app = create_app(settings, start_worker=False)
    ctx = app.extensions["control_plane"]
    with ctx.db.session() as session:
        state, secret = bootstrap.init(session)
    headers = {"Authorization": f"Bearer {_token(app, state['tenantId'], state['clientId'], secret)}"}
    client = app.test_client()
    base = f"/subscriptions/{state['subscriptionId']}/resourceGroups/rg1"
    assert client.put(f"{base}?api-version=2025-04-01", json={"location": "eastus"}, headers=headers).status_code == 201
    created = client.put(f"{base}/providers/Microsoft.ContainerRegistry/registries/durable1?api-version=2025-11-01",
                         json={"location": "eastus", "sku": {"name": "Basic"}}, headers=headers)
    assert created.status_code == 201
    assert created.get_json()["properties"]["provisioningState"] == "Creating"
    store = ctx.storage.for_location("eastus")
    assert store.list_containers() == []

    with ctx.db.session() as session:
        operation_id = session.scalar(sa.select(Operation.id))
        assert operations.claim(session, operation_id, "a-worker-that-died", lease_seconds=60) is not None
    assert ctx.worker.run_due() == 0, "a live lease must not be taken over"

    with ctx.db.session() as session:  # the dead worker's lease runs out
        session.execute(sa.update(Operation).values(
            lease_expires_at=session.scalar(sa.select(Operation.created_at))))
    assert ctx.worker.run_due() == 1
    with ctx.db.session() as session:
        registry = session.scalar(sa.select(RegistryRow))
        operation = session.get(Operation, operation_id)
    assert registry.provisioning_state == "Succeeded"
    assert operation.status == "Succeeded" and operation.attempts == 2
    assert store.list_containers() == [registry.container_name]


def _containers(svc) -> set[str]:
    root = svc.data_dir / "blobs"
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} if root.exists() else set()


def test_kill_9_during_creates_and_deletes_then_restart(tmp_path):
    """kill -9 of gunicorn and its workers while operations are in flight; after a restart all reach an end."""
    svc = servers.make_service(tmp_path, None, "local", {"CONTROL_PLANE_OPERATION_LEASE_SECONDS": "3"})
    svc.init = svc.cli_json("init")
    svc.start()
    token = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": svc.init["clientId"],
        "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default"}
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    base = f"{svc.url}/subscriptions/{svc.subscription_id}/resourceGroups/rg1"
    session.put(f"{base}?api-version=2025-04-01", json={"location": "eastus"}, verify=svc.ca, timeout=30)
    names = [unique_registry_name("kill") for _ in range(24)]

    def put(name):
        return session.put(f"{base}/providers/Microsoft.ContainerRegistry/registries/{name}?api-version=2025-11-01",
                           json={"location": "eastus", "sku": {"name": "Basic"}}, verify=svc.ca, timeout=30)

    def delete(name):
        return session.delete(f"{base}/providers/Microsoft.ContainerRegistry/registries/{name}"
                              "?api-version=2025-11-01", verify=svc.ca, timeout=30)

    try:
        with ThreadPoolExecutor(8) as pool:
            assert {r.status_code for r in pool.map(put, names)} == {201}
            assert {r.status_code for r in pool.map(delete, names[:8])} <= {202}
        svc.stop(signal.SIGKILL)
        svc.start()
        deadline = time.monotonic() + 60
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'control-plane.db'}")
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending = conn.scalar(sa.select(sa.func.count()).select_from(Operation)
                                      .where(Operation.status == "InProgress"))
            if pending == 0:
                break
            time.sleep(0.5)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(RegistryRow.name, RegistryRow.container_name,
                                          RegistryRow.provisioning_state)).all()
            states = set(conn.scalars(sa.select(Operation.status)))
        engine.dispose()
        assert states <= {"Succeeded"}, states
        assert {r.name for r in rows} == set(names[8:])
        assert {r.provisioning_state for r in rows} == {"Succeeded"}
        assert _containers(svc) == {r.container_name for r in rows}
    finally:
        svc.stop()


def test_storage_down_fails_the_operation_and_the_next_put_heals(tmp_path):
    accounts = ("acrheal",)
    binary = tools.azurite_blob()
    with servers.azurite(binary, accounts, tmp_path) as azurite:
        port = azurite.port
        connection = azurite.connection_string("acrheal")
        svc = servers.make_service(tmp_path / "svc", None, connection)
        svc.data_dir.mkdir()
        svc.init = svc.cli_json("init")
        svc.start()
    try:
        from azure.identity import ClientSecretCredential
        from azure.mgmt.resource.resources import ResourceManagementClient

        credential = ClientSecretCredential(svc.tenant_id, svc.init["clientId"], svc.init["clientSecret"],
                                            authority=svc.url, disable_instance_discovery=True,
                                            connection_verify=svc.ca)
        kwargs = {"base_url": svc.url, "connection_verify": svc.ca, "polling_interval": 0.2}
        acr = ContainerRegistryManagementClient(credential, svc.subscription_id, **kwargs)
        ResourceManagementClient(credential, svc.subscription_id, **kwargs).resource_groups.create_or_update(
            "rg1", {"location": "eastus"})
        name = unique_registry_name("heal")
        # Azurite is stopped: the create fails cleanly, with the storage error on the operation.
        with pytest.raises(HttpResponseError) as raised:
            acr.registries.begin_create("rg1", name, Registry(location="eastus", sku=Sku(name="Basic"))).result()
        assert "StorageOperationFailed" in str(raised.value)
        assert acr.registries.get("rg1", name).provisioning_state == "Failed"
        assert [r.name for r in acr.registries.list()] == [name]

        with servers.azurite(binary, accounts, tmp_path, port=port) as azurite:
            healed = acr.registries.begin_create("rg1", name, Registry(location="eastus", sku=Sku(name="Basic")))
            assert healed.result().provisioning_state == "Succeeded"
            from azure.storage.blob import BlobServiceClient

            listed = [c.name for c in BlobServiceClient.from_connection_string(connection).list_containers()]
            assert len(listed) == 1 and listed[0].startswith(name.lower())
            acr.registries.begin_delete("rg1", name).result()
            assert list(BlobServiceClient.from_connection_string(connection).list_containers()) == []
            assert azurite.port == port
    finally:
        svc.stop()
    assert "Traceback" not in svc.log(), "a storage outage is an expected failure, not a crash"
