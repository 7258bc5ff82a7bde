"""`control-plane doctor` finds and repairs drift between registry rows and blob containers, and inside each
container between the content and its rows."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from azure.mgmt.containerregistry.models import Registry, Sku

from control_plane import doctor
from control_plane.content import names
from control_plane.content.errors import BlobUnknown, BlobUploadUnknown
from control_plane.content.models import UploadSession
from control_plane.content.service import RequestInfo, upload_key
from control_plane.registries.models import Registry as RegistryRow
from tests.conftest import selected_backends, storage_containers, unique_registry_name
from tests.test_content_service import content_env, digest_of


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


@pytest.fixture(params=selected_backends())
def content(request, tmp_path):
    azurite = request.getfixturevalue("azurite_server") if request.param != "sqlite-local" else None
    with content_env(request.param, tmp_path, azurite) as env:
        yield env


def _registry_row(env, reg):
    with env.db.session() as session:
        return session.get(RegistryRow, reg.id)


def test_doctor_finds_and_repairs_content_drift(content):
    """Rows without objects and objects without rows, both ways, and expired upload sessions; young objects (a push
    in flight) are left alone."""
    env = content
    reg = env.registry("drift")
    store = env.storage.for_location(reg.location)
    layer, kept = b"layer that will vanish", b"layer that stays"
    config = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    for blob in (layer, kept, config):
        env.service.upload_blob(reg, "app", digest_of(blob), [blob])
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": digest_of(config), "size": len(config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "digest": digest_of(kept), "size": len(kept)}]}).encode()
    manifest = env.service.put_manifest(reg, "app", "v1", body, "application/vnd.oci.image.manifest.v1+json",
                                        RequestInfo()).digest
    store.delete_object(reg.container, names.blob_key(digest_of(layer)))
    store.delete_object(reg.container, names.blob_key(manifest))
    orphan = names.blob_key(digest_of(b"nobody's"))
    store.write_object(reg.container, orphan, [b"nobody's"])
    stray_upload = f"uploads/{uuid.uuid4()}/data"
    store.write_object(reg.container, stray_upload, [b"half a monolithic push"])
    expired = env.service.start_upload(reg, "app")
    env.service.append_upload(reg, "app", expired.id, [b"abandoned"], 0)
    store.seal_object(reg.container, upload_key(expired.id), 9)  # visible to the listing on Azure too
    live = env.service.start_upload(reg, "app")
    with env.db.session() as session:
        session.execute(sa.update(UploadSession).where(UploadSession.id == expired.id)
                        .values(updated_at=datetime.now(UTC) - timedelta(days=2)))

    young = doctor.check_content(env.db, env.storage, [_registry_row(env, reg)], doctor.Report())
    assert young.blobs_without_objects == [(reg.container, digest) for digest in sorted([digest_of(layer), manifest])]
    assert young.unreferenced_objects == []  # too young to judge
    assert young.expired_uploads == [(reg.container, expired.id)]

    found = doctor.check_content(env.db, env.storage, [_registry_row(env, reg)], doctor.Report(), grace_seconds=0)
    assert sorted(key for _, key in found.unreferenced_objects) == sorted([orphan, stray_upload])
    assert json.loads(json.dumps(found.as_dict()))["drift"] is True

    repaired = doctor.check_content(env.db, env.storage, [_registry_row(env, reg)], doctor.Report(), repair=True,
                                    grace_seconds=0)
    assert len(repaired.repaired) == 5, repaired.repaired
    after = doctor.check_content(env.db, env.storage, [_registry_row(env, reg)], doctor.Report(), grace_seconds=0)
    assert not after.drift, after.as_dict()
    # The manifest's bytes came back from its row; the lost layer is unknown again (a push will upload it anew).
    assert b"".join(env.service.open_blob(reg, "app", manifest).read()) == body
    with pytest.raises(BlobUnknown):
        env.service.stat_blob(reg, "app", digest_of(layer))
    assert env.service.stat_blob(reg, "app", digest_of(kept)).size == len(kept)
    assert env.service.upload_status(reg, "app", live.id).size == 0
    with pytest.raises(BlobUploadUnknown):
        env.service.upload_status(reg, "app", expired.id)


def test_doctor_sweeps_blobs_unreferenced_past_the_grace(content):
    """`doctor` reports the blobs nothing has referenced for the sweep's grace (an abandoned push here) and
    `--repair` frees them, rows and objects; younger ones are left to their grace."""
    env = content
    reg = env.registry("sweep")
    abandoned = env.service.upload_blob(reg, "app", digest_of(b"abandoned push"), [b"abandoned push"]).digest
    rows = [_registry_row(env, reg)]

    young = doctor.check_content(env.db, env.storage, rows, doctor.Report())
    assert young.unreferenced_blobs == [] and not young.drift
    found = doctor.check_content(env.db, env.storage, rows, doctor.Report(), sweep_grace=timedelta(0))
    assert found.unreferenced_blobs == [(reg.container, abandoned)]
    assert found.as_dict()["unreferencedBlobs"] == [{"container": reg.container, "digest": abandoned}]
    assert found.drift
    repaired = doctor.check_content(env.db, env.storage, rows, doctor.Report(), repair=True, sweep_grace=timedelta(0))
    assert repaired.repaired == [f"freed unreferenced blob {abandoned} in {reg.container}"]
    after = doctor.check_content(env.db, env.storage, rows, doctor.Report(), sweep_grace=timedelta(0),
                                 grace_seconds=0)
    assert not after.drift, after.as_dict()
    assert names.blob_key(abandoned) not in {o.key for o in env.storage.for_location(reg.location)
                                             .list_objects(reg.container)}
    with pytest.raises(BlobUnknown):
        env.service.stat_blob(reg, "app", abandoned)
