"""`control-plane doctor` finds and repairs drift between registry rows and blob containers."""

from __future__ import annotations

import json
import shutil

from azure.mgmt.containerregistry.models import Registry, Sku

from tests.conftest import storage_containers, unique_registry_name


def _container_admin(service):
    """Create/delete containers behind the service's back, in whichever backend it uses."""
    azurite = getattr(service, "azurite", None)
    if azurite is None:
        root = service.data_dir / "blobs"
        return (lambda name: (root / name).mkdir(parents=True)), (lambda name: shutil.rmtree(root / name))
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(azurite.connection_string("acreastus"))
    return client.create_container, client.delete_container


def test_doctor_reports_then_repairs_drift(service, acr, group):
    names = [unique_registry_name("doc") for _ in range(2)]
    registries = [acr.registries.begin_create(group, n, Registry(location="eastus", sku=Sku(name="Basic"))).result()
                  for n in names]
    containers = {c for c in storage_containers(service) if c.startswith(tuple(n.lower() for n in names))}
    assert len(containers) == 2
    lost = sorted(containers)[0]
    create, delete = _container_admin(service)
    delete(lost)
    create("orphan1234567-deadbeef")
    create("not-ours-at-all")

    found = service.cli("doctor", check=False)
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert {"store": report["orphanContainers"][0]["store"], "container": "orphan1234567-deadbeef"} in \
        report["orphanContainers"]
    assert [r["container"] for r in report["registriesWithoutContainers"]] == [lost]
    assert any(r.id.lower() == report["registriesWithoutContainers"][0]["registry"].lower() for r in registries)
    assert "not-ours-at-all" not in json.dumps(report)
    assert "doctor: checking" in found.stderr

    repaired = service.cli("doctor", "--repair", check=False)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert set(json.loads(repaired.stdout)["repaired"]) == {"deleted container orphan1234567-deadbeef",
                                                            f"recreated container {lost}"}
    after = storage_containers(service)
    assert lost in after and "orphan1234567-deadbeef" not in after and "not-ours-at-all" in after
    assert service.cli("doctor", check=False).returncode == 0
    delete("not-ours-at-all")
