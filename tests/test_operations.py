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

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.operations import service as operations
from control_plane.operations.models import Operation
from control_plane.registries.models import Registry as RegistryRow
from tests.conftest import unique_registry_name
from tests.support import servers, tools
from tests.support.in_process import owner_headers
from tests.support.tcp_proxy import TcpProxy


def test_operation_left_by_a_dead_worker_is_finished_by_the_next(tmp_path):
    """The request commits the registry row and its operation; a worker that claimed it died; the next one runs it."""
    from control_plane.cli import _prepare

    settings = Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path), "CONTROL_PLANE_TLS": "off"})
    _prepare(settings)
    app = create_app(settings, start_worker=False)
    ctx = app.extensions["control_plane"]
    state, headers = owner_headers(app)
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


def _blob_containers(connection: str) -> set[str]:
    from azure.storage.blob import BlobServiceClient

    return {c.name for c in BlobServiceClient.from_connection_string(connection).list_containers()}


def _count(engine, query) -> int:
    with engine.connect() as conn:
        return conn.scalar(query)


def test_kill_9_with_operations_in_flight_then_restart(tmp_path):
    """kill -9 of gunicorn and all its workers while creates and deletes are still talking to (slow) storage; after a
    restart every operation reaches an end, every registry has its container and every container its registry."""
    binary = tools.azurite_blob()
    with servers.azurite(binary, ("acrkill",), tmp_path) as azurite:
        slow = TcpProxy("127.0.0.1", azurite.port, delay=0.4)
        slow.start()
        connection = azurite.connection_string("acrkill").replace(f":{azurite.port}/", f":{slow.port}/")
        svc = servers.make_service(tmp_path / "svc", None, connection, {"CONTROL_PLANE_OPERATION_LEASE_SECONDS": "3"})
        svc.data_dir.mkdir()
        svc.init = svc.cli_json("init")
        svc.start()
        engine = sa.create_engine(f"sqlite:///{svc.data_dir / 'control-plane.db'}")
        try:
            token = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
                "grant_type": "client_credentials", "client_id": svc.init["clientId"],
                "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default"}
            ).json()["access_token"]
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            base = f"{svc.url}/subscriptions/{svc.subscription_id}/resourceGroups/rg1"
            session.put(f"{base}?api-version=2025-04-01", json={"location": "eastus"}, verify=svc.ca, timeout=30)
            names = [unique_registry_name("kill") for _ in range(16)]
            registry = f"{base}/providers/Microsoft.ContainerRegistry/registries/{{}}?api-version=2025-11-01"
            with ThreadPoolExecutor(8) as pool:
                created = list(pool.map(lambda n: session.put(registry.format(n), json={
                    "location": "eastus", "sku": {"name": "Basic"}}, verify=svc.ca, timeout=30), names))
                assert {r.status_code for r in created} == {201}
                deleted = list(pool.map(lambda n: session.delete(registry.format(n), verify=svc.ca, timeout=30),
                                        names[:6]))
                assert {r.status_code for r in deleted} == {202}
            in_flight = _count(engine, sa.select(sa.func.count()).select_from(Operation)
                               .where(Operation.status == "InProgress"))
            assert in_flight >= 4, f"the test needs operations in flight when it kills, found {in_flight}"
            svc.stop(signal.SIGKILL)

            slow.delay = 0.0
            svc.start()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and _count(engine, sa.select(sa.func.count()).select_from(Operation)
                                                          .where(Operation.status == "InProgress")):
                time.sleep(0.5)
            with engine.connect() as conn:
                rows = conn.execute(sa.select(RegistryRow.name, RegistryRow.container_name,
                                              RegistryRow.provisioning_state)).all()
                states = set(conn.scalars(sa.select(Operation.status)))
            assert states == {"Succeeded"}, states
            assert {r.name for r in rows} == set(names[6:])
            assert {r.provisioning_state for r in rows} == {"Succeeded"}
            assert _blob_containers(azurite.connection_string("acrkill")) == {r.container_name for r in rows}
        finally:
            svc.stop()
            slow.stop()
            engine.dispose()
    print(f"kill -9 with {in_flight} operations in flight: nothing lost")


def test_storage_down_fails_create_update_and_delete_cleanly_and_the_next_call_heals(tmp_path):
    """Azurite stopped during create, update and delete: each operation ends Failed with StorageOperationFailed,
    reads keep working, nothing half-done remains, and once storage is back the next PUT or DELETE completes."""
    accounts = ("acrheal",)
    binary = tools.azurite_blob()
    with servers.azurite(binary, accounts, tmp_path) as azurite:
        port = azurite.port
        connection = azurite.connection_string("acrheal")
        svc = servers.make_service(tmp_path / "svc", None, connection)
        svc.data_dir.mkdir()
        svc.init = svc.cli_json("init")
        svc.start()
        from azure.identity import ClientSecretCredential
        from azure.mgmt.resource.resources import ResourceManagementClient

        credential = ClientSecretCredential(svc.tenant_id, svc.init["clientId"], svc.init["clientSecret"],
                                            authority=svc.url, disable_instance_discovery=True,
                                            connection_verify=svc.ca)
        kwargs = {"base_url": svc.url, "connection_verify": svc.ca, "polling_interval": 0.2}
        acr = ContainerRegistryManagementClient(credential, svc.subscription_id, **kwargs)
        ResourceManagementClient(credential, svc.subscription_id, **kwargs).resource_groups.create_or_update(
            "rg1", {"location": "eastus"})
        basic = Registry(location="eastus", sku=Sku(name="Basic"))
        survivor = unique_registry_name("survivor")
        acr.registries.begin_create("rg1", survivor, basic).result()
    try:
        # Azurite is stopped. A create fails cleanly, with the storage error on the operation.
        name = unique_registry_name("heal")
        with pytest.raises(HttpResponseError, match="StorageOperationFailed"):
            acr.registries.begin_create("rg1", name, basic).result()
        assert acr.registries.get("rg1", name).provisioning_state == "Failed"
        # An update of a healthy registry (which checks its container) fails the same way; reads keep working.
        with pytest.raises(HttpResponseError, match="StorageOperationFailed"):
            acr.registries.begin_create("rg1", survivor, Registry(location="eastus", sku=Sku(name="Standard"))).result()
        assert acr.registries.get("rg1", survivor).provisioning_state == "Failed"
        assert sorted(r.name for r in acr.registries.list()) == sorted([name, survivor])
        # A delete cannot remove the container: it fails, and the registry stays (never a container without a row).
        with pytest.raises(HttpResponseError, match="StorageOperationFailed"):
            acr.registries.begin_delete("rg1", survivor).result()
        assert acr.registries.get("rg1", survivor).name == survivor

        # Azurite is back (empty: it keeps its data in memory). The next PUT heals, the next DELETE completes.
        with servers.azurite(binary, accounts, tmp_path, port=port):
            assert acr.registries.begin_create("rg1", name, basic).result().provisioning_state == "Succeeded"
            assert acr.registries.begin_create("rg1", survivor, basic).result().provisioning_state == "Succeeded"
            assert {c.split("-")[0] for c in _blob_containers(connection)} == {name.lower(), survivor.lower()}
            acr.registries.begin_delete("rg1", survivor).result()
            acr.registries.begin_delete("rg1", name).result()
            assert _blob_containers(connection) == set()
            assert list(acr.registries.list()) == []
    finally:
        svc.stop()
    assert "Traceback" not in svc.log(), "a storage outage is an expected failure, not a crash"
