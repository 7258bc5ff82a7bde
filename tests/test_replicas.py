"""Several replicas on one PostgreSQL: two `control-plane serve` processes on different ports (one with its
in-process operation worker off) and a separate `control-plane worker`, driven alternately with the real SDK
clients, one per replica.

Replicas behind one load balancer share its public URL (the token issuer) and the encryption key; everything else
they share through the database: signing keys, throttling buckets, operation leases.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import Registry, RegistryUpdateParameters, Sku
from azure.mgmt.resource.resources import ResourceManagementClient
from cryptography.fernet import Fernet

from tests.conftest import (
    TEST_LOCATIONS,
    azurite_storage,
    client_kwargs,
    selected_backends,
    storage_containers,
    unique_registry_name,
)
from tests.support import servers

pytestmark = pytest.mark.skipif("postgres-azurite" not in selected_backends(),
                                reason="replicas share a PostgreSQL database (backend postgres-azurite)")


class Worker:
    """A running `control-plane worker`."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "worker"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while "operation worker" not in self.log():
            assert self.process.poll() is None, f"the worker exited: {self.log()}"
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        servers.stop(self.process)


def clients(svc, init: dict):
    credential = ClientSecretCredential(init["tenantId"], init["clientId"], init["clientSecret"],
                                        authority=svc.url, disable_instance_discovery=True, connection_verify=svc.ca)
    kwargs = client_kwargs(svc)
    return (ResourceManagementClient(credential, init["subscriptionId"], **kwargs),
            ContainerRegistryManagementClient(credential, init["subscriptionId"], **kwargs))


def test_replicas_share_one_database_and_a_separate_worker_runs_the_operations(tmp_path, azurite_server):
    common = {"CONTROL_PLANE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
              "CONTROL_PLANE_LOCATIONS": TEST_LOCATIONS}
    with servers.postgres_database() as database_url:
        storage = azurite_storage(azurite_server)
        first = servers.make_service(tmp_path / "first", database_url, storage, common)
        # Same public URL (the token issuer) and encryption key; its own port, data folder and local CA.
        second = servers.make_service(tmp_path / "second", database_url, storage, {
            **common, "CONTROL_PLANE_PUBLIC_URL": first.url, "CONTROL_PLANE_RUN_WORKER": "false"})
        for svc in (first, second):
            svc.data_dir.mkdir()
            svc.azurite = azurite_server
        init = first.cli_json("init")
        first.init = second.init = init
        workers: list[Worker] = []
        first.start(workers=2)
        second.start(workers=2)
        try:
            workers.append(Worker(second.env, tmp_path / "worker-1.log"))
            for svc in (first, second):
                ready = requests.get(f"{svc.url}/readyz", verify=svc.ca, timeout=30)
                assert ready.status_code == 200, ready.text

            rmc_first, acr_first = clients(first, init)
            rmc_second, acr_second = clients(second, init)
            group = "rg-replicas"
            rmc_first.resource_groups.create_or_update(group, {"location": "eastus"})
            assert rmc_second.resource_groups.get(group).location == "eastus"
            containers_before = storage_containers(first)

            # Made through the first replica ...
            name = unique_registry_name("replica")
            created = acr_first.registries.begin_create(
                group, name, Registry(location="eastus", sku=Sku(name="Standard"))).result()
            assert created.provisioning_state == "Succeeded"
            # ... read, updated and deleted through the second.
            read = acr_second.registries.get(group, name)
            assert read.id == created.id and read.provisioning_state == "Succeeded"
            updated = acr_second.registries.begin_update(
                group, name, RegistryUpdateParameters(admin_user_enabled=True, tags={"via": "second"})).result()
            assert updated.admin_user_enabled and updated.tags == {"via": "second"}
            assert acr_first.registries.get(group, name).tags == {"via": "second"}
            # Admin passwords are encrypted by one replica and read by the other: the same key on both.
            passwords_first = [p.value for p in acr_first.registries.list_credentials(group, name).passwords]
            passwords_second = [p.value for p in acr_second.registries.list_credentials(group, name).passwords]
            assert passwords_first == passwords_second and all(passwords_first)
            assert len(storage_containers(first) - containers_before) == 1, "its blob container was made"
            acr_second.registries.begin_delete(group, name).result()
            with pytest.raises(ResourceNotFoundError):
                acr_first.registries.get(group, name)
            assert storage_containers(first) == containers_before, "its blob container was removed"

            # Only the separate worker runs operations now: the second replica's in-process worker is off.
            first.stop()
            workers[0].stop()
            late = unique_registry_name("late")
            poller = acr_second.registries.begin_create(group, late, Registry(location="westus",
                                                                               sku=Sku(name="Basic")))
            time.sleep(3)
            assert acr_second.registries.get(group, late).provisioning_state == "Creating", (
                "no worker runs: CONTROL_PLANE_RUN_WORKER=false left it to `control-plane worker`")
            workers.append(Worker(second.env, tmp_path / "worker-2.log"))
            assert poller.result(timeout=60).provisioning_state == "Succeeded"
            acr_second.registries.begin_delete(group, late).result(timeout=60)
            with pytest.raises(ResourceNotFoundError):
                acr_second.registries.get(group, late)

            logs = [first.log(), second.log(), *(w.log() for w in workers)]
            for log in logs:
                assert init["clientSecret"] not in log
                for password in passwords_first:
                    assert password not in log
            worker_lines = [json.loads(line) for line in workers[1].log().splitlines() if line.startswith("{")]
            assert any("operation worker" in line["message"] for line in worker_lines), "the worker logs JSON"
        finally:
            for worker in workers:
                worker.stop()
            first.stop()
            second.stop()
