"""The content service in-process, on both backends: SQLite with a local folder, PostgreSQL with Azurite.

The service is the data plane's domain (no HTTP): uploads, blobs, manifests, tags, locks, events and freeing
content. The routes render its errors; here the errors themselves (class, code, status) are checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from control_plane import migrate
from control_plane.config import Settings
from control_plane.content import manifests, names
from control_plane.content import service as content_service
from control_plane.content.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    ContentError,
    DigestInvalid,
    Disallowed,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    PaginationNumberInvalid,
    RangeInvalid,
    StorageUnavailable,
    TagInvalid,
    TagUnknown,
)
from control_plane.content.models import Blob, Manifest, RegistryEvent, Repository, RepositoryBlob, Tag, UploadSession
from control_plane.content.service import HASH_CACHE, ContentService, RegistryRef, RequestInfo
from control_plane.db import Database
from control_plane.storage import StorageError, StorageRouter
from tests.conftest import azurite_storage, selected_backends
from tests.support import servers
from tests.support.rows import seed_registry

OCI_MANIFEST = manifests.OCI_MANIFEST
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
WHO = RequestInfo(actor="tester", request_id="req-1", host="reg.example", method="PUT", user_agent="pytest")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclasses.dataclass
class Env:
    service: ContentService
    db: Database
    storage: StorageRouter
    settings: Settings
    backend: str
    containers: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (location, container)

    def registry(self, prefix: str = "reg") -> RegistryRef:
        return self.service.registry(make_registry(self, prefix))

    def objects(self, reg: RegistryRef, prefix: str = "") -> dict[str, int]:
        return {o.key: o.size for o in self.storage.for_location(reg.location).list_objects(reg.container, prefix)}

    def rows(self, model, **where) -> list:
        with self.db.session() as session:
            return list(session.scalars(sa.select(model).filter_by(**where)))


@contextlib.contextmanager
def content_env(backend: str, data_dir: Path, azurite=None) -> Iterator[Env]:
    """A migrated database and the backend's storage; the registry rows are written directly (no ARM app), so
    these tests depend on the content service alone."""
    with contextlib.ExitStack() as stack:
        env = {"CONTROL_PLANE_DATA_DIR": str(data_dir), "CONTROL_PLANE_TLS": "off",
               "CONTROL_PLANE_LOCATIONS": "eastus,westeurope,westus"}
        if backend != "sqlite-local":
            env["CONTROL_PLANE_DATABASE_URL"] = stack.enter_context(servers.postgres_database())
            env["CONTROL_PLANE_STORAGE"] = azurite_storage(azurite)
        settings = Settings.from_env(env)
        db = Database(settings.database_url)
        stack.callback(db.dispose)
        migrate.upgrade(db.engine)
        storage = StorageRouter(settings.storage, settings.data_dir)
        value = Env(ContentService(db, storage, settings), db, storage, settings, backend)
        # The Azurite account is shared with other tests' services, whose doctor would call these orphans.
        stack.callback(lambda: [storage.for_location(location).delete_container(container)
                                for location, container in value.containers])
        yield value


def make_registry(env: Env, prefix: str = "reg", location: str = "eastus") -> str:
    """A registry's rows and container, the container noted for clean-up."""
    name, container = seed_registry(env.db, env.storage, prefix, location)
    env.containers.append((location, container))
    return name


@pytest.fixture(scope="module", params=selected_backends())
def env(request, tmp_path_factory) -> Iterator[Env]:
    azurite = request.getfixturevalue("azurite_server") if request.param != "sqlite-local" else None
    with content_env(request.param, tmp_path_factory.mktemp("content"), azurite) as value:
        yield value


@pytest.fixture
def reg(env) -> RegistryRef:
    return env.registry()


def push_blob(env: Env, reg: RegistryRef, repository: str, data: bytes) -> str:
    return env.service.upload_blob(reg, repository, digest_of(data), [data]).digest


def image(env: Env, reg: RegistryRef, repository: str, layers: list[bytes], *, media_type: str = OCI_MANIFEST,
          config: dict | None = None, **extra) -> bytes:
    """Pushes config and layers; returns a manifest body naming them (not pushed)."""
    docker = media_type == manifests.DOCKER_MANIFEST
    config_bytes = json.dumps(config or {"os": "linux", "architecture": "arm64", "rootfs": {}}).encode()
    body = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                   "digest": push_blob(env, reg, repository, config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER,
                    "digest": push_blob(env, reg, repository, layer), "size": len(layer)} for layer in layers],
    }
    body.update(extra)
    return json.dumps(body).encode()


def index(children: list[tuple[bytes, str]], media_type: str = manifests.OCI_INDEX, **extra) -> bytes:
    body = {"schemaVersion": 2, "mediaType": media_type,
            "manifests": [{"mediaType": mt, "digest": digest_of(b), "size": len(b),
                           "platform": {"os": "linux", "architecture": f"arch{i}"}}
                          for i, (b, mt) in enumerate(children)]}
    body.update(extra)
    return json.dumps(body).encode()


def expect(error_type: type[ContentError], code: str, status: int):
    """pytest.raises for a ContentError that also checks its code and status."""

    @contextlib.contextmanager
    def check():
        with pytest.raises(error_type) as caught:
            yield caught
        assert (caught.value.code, caught.value.status) == (code, status)

    return check()


# -- names (no backend) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "team/app", "warrantydept/customersubmissions/web", "a.b_c__d-e---f/g0",
                                  "x" * 256])
def test_repository_names_accepted(name):
    assert names.repository(name) == name


@pytest.mark.parametrize("name", ["", "A", "team//app", "/team", "team/", "../etc", "team/../app", "a/./b", "..",
                                  "a..b", "a/%2e%2e/b", "a\\b", "-a", "a-", "a_", "a___b", "x" * 257, "a b", "a\x00"])
def test_repository_names_refused(name):
    with expect(NameInvalid, "NAME_INVALID", 400):
        names.repository(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_x", "A" * 128, "1-2_3.4"])
def test_tags_accepted(tag):
    assert names.tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "A" * 129, "a/b", "..", "../x", "a:b", "a b"])
def test_tags_refused(tag):
    with expect(TagInvalid, "TAG_INVALID", 400):
        names.tag(tag)


def test_digests():
    sha256, sha512 = digest_of(b"x"), digest_of(b"x", "sha512")
    assert names.digest(sha256).key == f"blobs/sha256/{sha256[7:9]}/{sha256[7:]}/data"
    assert str(names.digest(sha512)) == sha512
    for bad in ["sha256:baddigeststring", "sha256:totallywrong", sha256.upper(), sha256[:-1], sha256 + "0",
                "sha512:" + "a" * 64, "md5:" + "a" * 32, "sha256:" + "g" * 64, "sha256:../../etc/passwd",
                "sha256/" + "a" * 64, "", "sha256:", ":" + "a" * 64, "sha256:" + "a" * 63 + "/"]:
        with expect(DigestInvalid, "DIGEST_INVALID", 400):
            names.digest(bad)


# -- uploads -----------------------------------------------------------------------------------------------------


def test_monolithic_upload_then_stat_open_and_usage(env, reg):
    data = b"layer-bytes" * 1000
    info = env.service.upload_blob(reg, "team/app", digest_of(data), iter([data[:100], b"", data[100:]]))
    assert (info.digest, info.size) == (digest_of(data), len(data))
    assert env.service.stat_blob(reg, "team/app", info.digest) == info
    location = env.service.open_blob(reg, "team/app", info.digest)
    assert b"".join(location.read()) == data
    assert b"".join(location.read(500, 1500)) == data[500:1500]
    if env.backend == "sqlite-local":
        assert location.local_path.read_bytes() == data and location.read_url is None
    else:
        assert location.local_path is None and "sp=r" in location.read_url
    assert env.service.storage_used(reg.id) == len(data)
    assert env.objects(reg) == {names.blob_key(info.digest): len(data)}
    # Stored once per registry: the same bytes in another repository add nothing.
    env.service.upload_blob(reg, "other", info.digest, [data])
    assert env.service.storage_used(reg.id) == len(data)
    assert len(env.rows(Blob, registry_id=reg.id)) == 1
    # A blob of one repository is not readable through another by its digest.
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.stat_blob(reg, "third", info.digest)


def test_a_vanished_object_is_blob_unknown_when_opened(env, reg):
    digest = push_blob(env, reg, "vanish", b"here, then gone")
    env.storage.for_location(reg.location).delete_object(reg.container, names.blob_key(digest))
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.open_blob(reg, "vanish", digest).read()


def test_chunked_upload_refuses_out_of_order_and_repeated_chunks(env, reg):
    data = bytes(range(256)) * 100
    upload = env.service.start_upload(reg, "chunks")
    assert upload.size == 0
    assert env.service.append_upload(reg, "chunks", upload.id, [data[:1000]], 0).size == 1000
    with expect(RangeInvalid, "RANGE_INVALID", 416) as caught:
        env.service.append_upload(reg, "chunks", upload.id, [data[:1000]], 0)  # the same chunk again
    assert caught.value.size == 1000
    with expect(RangeInvalid, "RANGE_INVALID", 416):
        env.service.append_upload(reg, "chunks", upload.id, [data[2000:3000]], 2000)  # a gap
    assert env.service.append_upload(reg, "chunks", upload.id, [data[1000:5000]], 1000).size == 5000
    assert env.service.upload_status(reg, "chunks", upload.id).size == 5000
    info = env.service.finish_upload(reg, "chunks", upload.id, digest_of(data), [data[5000:]])
    assert info.size == len(data)
    assert b"".join(env.service.open_blob(reg, "chunks", info.digest).read()) == data
    with expect(BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404):
        env.service.upload_status(reg, "chunks", upload.id)
    assert env.objects(reg, "uploads/") == {}


def test_streamed_upload_finished_on_another_worker(env, reg):
    """No hash state in this process (another worker took the chunks): finishing re-reads the stored upload."""
    data = b"streamed" * 50_000
    upload = env.service.start_upload(reg, "streamed")
    env.service.append_upload(reg, "streamed", upload.id, iter([data[:100_000]]), None)
    env.service.append_upload(reg, "streamed", upload.id, iter([data[100_000:]]), None)
    HASH_CACHE.clear()
    info = env.service.finish_upload(reg, "streamed", upload.id, digest_of(data), iter([]))
    assert info.size == len(data)
    assert b"".join(env.service.open_blob(reg, "streamed", info.digest).read()) == data


def test_wrong_digest_stores_nothing(env, reg):
    data = b"the real bytes" * 100
    wrong = digest_of(b"something else")
    upload = env.service.start_upload(reg, "wrong")
    env.service.append_upload(reg, "wrong", upload.id, [data], 0)
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.finish_upload(reg, "wrong", upload.id, wrong, [])
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.upload_blob(reg, "wrong", wrong, [data])
    with expect(BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404):
        env.service.upload_status(reg, "wrong", upload.id)
    assert env.rows(Blob, registry_id=reg.id) == []
    assert env.rows(UploadSession, registry_id=reg.id) == []
    assert env.objects(reg) == {}
    # A malformed digest on finish is refused without losing the session.
    upload = env.service.start_upload(reg, "wrong")
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.finish_upload(reg, "wrong", upload.id, "sha256:../../x", [])
    assert env.service.upload_status(reg, "wrong", upload.id).size == 0


def test_sha512_and_zero_byte_blobs(env, reg):
    data = b"sha512 content" * 10
    info = env.service.upload_blob(reg, "algos", digest_of(data, "sha512"), [data])
    assert env.service.stat_blob(reg, "algos", info.digest).size == len(data)
    upload = env.service.start_upload(reg, "algos")
    env.service.append_upload(reg, "algos", upload.id, [data[:7]], 0)
    assert env.service.finish_upload(reg, "algos", upload.id, digest_of(data, "sha512"), [data[7:]]).size == len(data)
    empty = digest_of(b"")
    assert env.service.upload_blob(reg, "algos", empty, []).size == 0
    upload = env.service.start_upload(reg, "empty2")
    assert env.service.finish_upload(reg, "empty2", upload.id, empty, [b""]).size == 0
    assert b"".join(env.service.open_blob(reg, "empty2", empty).read()) == b""
    assert env.objects(reg, "blobs/")[names.blob_key(empty)] == 0


def test_cancel_and_unknown_uploads(env, reg):
    upload = env.service.start_upload(reg, "cancel")
    env.service.append_upload(reg, "cancel", upload.id, [b"abc"], 0)
    env.service.cancel_upload(reg, "cancel", upload.id)
    for upload_id in (upload.id, str(uuid.uuid4()), "../../etc", "not-a-uuid"):
        with expect(BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404):
            env.service.upload_status(reg, "cancel", upload_id)
    other = env.service.start_upload(reg, "cancel")
    with expect(BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404):  # another repository's session
        env.service.append_upload(reg, "elsewhere", other.id, [b"x"], 0)


def test_concurrent_chunks_at_one_offset_one_wins(env, reg):
    upload = env.service.start_upload(reg, "race")
    results: list[object] = []

    def send():
        try:
            results.append(env.service.append_upload(reg, "race", upload.id, [b"same" * 1000], 0).size)
        except RangeInvalid as exc:
            results.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(4000) == 1 and sum(isinstance(r, RangeInvalid) for r in results) == 3
    assert env.service.finish_upload(reg, "race", upload.id, digest_of(b"same" * 1000), []).size == 4000


@pytest.fixture
def short_lease(monkeypatch):
    monkeypatch.setattr(content_service, "CLAIM_LEASE_SECONDS", 1)
    monkeypatch.setattr(content_service, "CLAIM_POLL_SECONDS", 0.05)


def test_a_dead_writers_claim_is_waited_out(env, reg, short_lease):
    """A writer killed mid-chunk (kill -9) leaves its claim: the client's resume at the offset upload_status reports
    waits until the lease lapses and then lands, instead of a 416 (and so does a finish)."""
    upload = env.service.start_upload(reg, "claimed")
    env.service.append_upload(reg, "claimed", upload.id, [b"abc"], 0)

    def die_mid_chunk() -> None:
        with env.db.session() as session:
            session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id)
                            .values(claim="dead-writer", updated_at=datetime.now(UTC)))

    die_mid_chunk()
    assert env.service.upload_status(reg, "claimed", upload.id).size == 3
    began = time.monotonic()
    assert env.service.append_upload(reg, "claimed", upload.id, [b"def"], 3).size == 6
    assert time.monotonic() - began >= 0.5
    die_mid_chunk()
    assert env.service.finish_upload(reg, "claimed", upload.id, digest_of(b"abcdef"), []).size == 6


def test_a_live_writers_claim_refuses_a_second_chunk(env, reg, short_lease):
    """A claim kept alive (a writer still streaming) is not taken over: the second chunk at its offset is 416 after
    one lease, and a finish meanwhile does not find the session."""
    upload = env.service.start_upload(reg, "live")
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            with env.db.session() as session:
                session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id)
                                .values(claim="live-writer", updated_at=datetime.now(UTC)))
            stop.wait(0.1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.2)
        with expect(RangeInvalid, "RANGE_INVALID", 416) as caught:
            env.service.append_upload(reg, "live", upload.id, [b"abc"], 0)
        assert caught.value.size == 0
        with expect(BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404):
            env.service.finish_upload(reg, "live", upload.id, digest_of(b""), [])
    finally:
        stop.set()
        writer.join()


def test_a_writer_that_lost_its_claim_stops_writing(env, reg, monkeypatch):
    monkeypatch.setattr(content_service, "CLAIM_RENEW_SECONDS", 0)
    upload = env.service.start_upload(reg, "lost")

    def body():
        yield b"a" * 10
        with env.db.session() as session:  # the lease lapsed and another request took the session over
            session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id).values(claim="other"))
        yield b"b" * 10
        yield b"c" * 10

    with expect(RangeInvalid, "RANGE_INVALID", 416):
        env.service.append_upload(reg, "lost", upload.id, body(), 0)
    assert env.service.upload_status(reg, "lost", upload.id).size == 0


def test_mount(env, reg):
    data = b"mount me"
    digest = push_blob(env, reg, "source/repo", data)
    assert env.service.mount_blob(reg, "target/repo", digest, "source/repo").size == len(data)
    assert env.service.stat_blob(reg, "target/repo", digest).size == len(data)
    assert env.service.mount_blob(reg, "target/two", digest, None) is None
    assert env.service.mount_blob(reg, "target/two", digest, "nowhere") is None
    assert env.service.mount_blob(reg, "target/two", digest, "Bad//Name") is None
    assert env.service.mount_blob(reg, "target/two", digest_of(b"absent"), "source/repo") is None
    other = env.registry("oth")  # never across registries
    assert env.service.mount_blob(other, "target/repo", digest, "source/repo") is None


def test_storage_failure_is_503_and_stores_nothing(env, reg, monkeypatch):
    class Broken:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise StorageError("storage account unreachable")
            return fail

    finishing = env.service.start_upload(reg, "down")
    env.service.append_upload(reg, "down", finishing.id, [b"finish me"], 0)
    monkeypatch.setattr(env.service.storage, "for_location", lambda location: Broken())
    with expect(StorageUnavailable, "UNAVAILABLE", 503):
        env.service.upload_blob(reg, "down", digest_of(b"x"), [b"x"])
    with expect(StorageUnavailable, "UNAVAILABLE", 503):
        env.service.finish_upload(reg, "down", finishing.id, digest_of(b"finish me"), [])
    upload = env.service.start_upload(reg, "down")
    with expect(StorageUnavailable, "UNAVAILABLE", 503):
        env.service.append_upload(reg, "down", upload.id, [b"x"], 0)
    assert env.service.upload_status(reg, "down", upload.id).size == 0
    with expect(StorageUnavailable, "UNAVAILABLE", 503):
        env.service.put_manifest(reg, "down", "v1", index([]), manifests.OCI_INDEX, WHO)
    assert env.rows(Blob, registry_id=reg.id) == [] and env.rows(Manifest, registry_id=reg.id) == []
    monkeypatch.undo()
    # The next push heals, and the client's retry of the failed PUT finishes its upload.
    assert env.service.finish_upload(reg, "down", finishing.id, digest_of(b"finish me"), []).size == 9
    assert env.service.append_upload(reg, "down", upload.id, [b"x"], 0).size == 1
    assert env.service.finish_upload(reg, "down", upload.id, digest_of(b"x"), []).size == 1


# -- manifests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [manifests.OCI_MANIFEST, manifests.DOCKER_MANIFEST])
def test_image_manifests(env, reg, media_type):
    body = image(env, reg, "images", [b"layer one", b"layer two"], media_type=media_type)
    info = env.service.put_manifest(reg, "images", "v1", body, f"{media_type}; charset=utf-8", WHO)
    assert (info.digest, info.media_type, info.size, info.subject) == (digest_of(body), media_type, len(body), None)
    for reference in ("v1", info.digest):
        content = env.service.get_manifest(reg, "images", reference)
        assert (content.body, content.media_type, content.digest, content.size) == \
            (body, media_type, info.digest, len(body))
    # Stored as a blob too, readable by digest.
    assert b"".join(env.service.open_blob(reg, "images", info.digest).read()) == body
    [row] = env.rows(Manifest, registry_id=reg.id, digest=info.digest)
    assert (row.os, row.architecture) == ("linux", "arm64")
    assert row.image_size == len(body) + sum(len(x) for x in (b"layer one", b"layer two")) + \
        json.loads(body)["config"]["size"]
    assert row.artifact_type == json.loads(body)["config"]["mediaType"]


@pytest.mark.parametrize("media_type", [manifests.OCI_INDEX, manifests.DOCKER_LIST])
def test_indexes(env, reg, media_type):
    child_type = manifests.OCI_MANIFEST if media_type == manifests.OCI_INDEX else manifests.DOCKER_MANIFEST
    children = []
    for arch in ("amd64", "arm64"):
        body = image(env, reg, "multi", [arch.encode()], media_type=child_type,
                     config={"os": "linux", "architecture": arch})
        env.service.put_manifest(reg, "multi", digest_of(body), body, child_type, WHO)
        children.append((body, child_type))
    body = index(children, media_type)
    info = env.service.put_manifest(reg, "multi", "latest", body, media_type, WHO)
    assert env.service.get_manifest(reg, "multi", "latest").media_type == media_type
    [row] = env.rows(Manifest, digest=info.digest)
    assert row.artifact_type is None and row.config_media_type is None
    # A nested index (an index of indexes).
    outer = index([(body, media_type)], media_type)
    env.service.put_manifest(reg, "multi", "nested", outer, media_type, WHO)
    # An index naming a manifest the repository does not hold.
    missing = index([(b'{"schemaVersion":2}', child_type)], media_type)
    with expect(ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN", 400):
        env.service.put_manifest(reg, "multi", "broken", missing, media_type, WHO)


def test_artifacts_subject_and_referrers(env, reg):
    subject = image(env, reg, "art", [b"subject layer"])
    subject_digest = digest_of(subject)
    empty = push_blob(env, reg, "art", b"{}")

    def referrer(artifact_type: str, n: int) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2, "data": "e30="},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject)},
            "annotations": {"n": str(n)},
        }).encode()

    # Referrers pushed before their subject exists are accepted and listed.
    pushed = []
    for n, artifact_type in enumerate(["application/vnd.example.sbom", "application/vnd.example.sig",
                                       "application/vnd.example.sbom"]):
        body = referrer(artifact_type, n)
        info = env.service.put_manifest(reg, "art", digest_of(body), body, OCI_MANIFEST, WHO)
        assert info.subject == subject_digest
        pushed.append(digest_of(body))
    env.service.put_manifest(reg, "art", "subject", subject, OCI_MANIFEST, WHO)
    listed = env.service.referrers(reg, "art", subject_digest, None)
    assert sorted(d["digest"] for d in listed) == sorted(pushed)
    assert all(set(d) == {"mediaType", "digest", "size", "artifactType", "annotations"} for d in listed)
    sboms = env.service.referrers(reg, "art", subject_digest, "application/vnd.example.sbom")
    assert sorted(d["annotations"]["n"] for d in sboms) == ["0", "2"]
    assert env.service.referrers(reg, "art", digest_of(b"unknown"), None) == []
    assert env.service.referrers(reg, "nowhere", subject_digest, None) == []
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.referrers(reg, "art", "sha256:nope", None)
    # An index with an artifactType reports it; an artifact without one reports its config type.
    [row] = env.rows(Manifest, digest=pushed[1])
    assert row.artifact_type == "application/vnd.example.sig"


def test_nondistributable_layers_need_not_exist(env, reg):
    body = image(env, reg, "foreign", [b"own layer"])
    document = json.loads(body)
    document["layers"].append({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                               "digest": digest_of(b"elsewhere"), "size": 9, "urls": ["https://example.com/l"]})
    body = json.dumps(document).encode()
    assert env.service.put_manifest(reg, "foreign", "v1", body, OCI_MANIFEST, WHO).digest == digest_of(body)


def test_bad_manifests(env, reg):
    good = image(env, reg, "bad", [b"a layer"])
    cases = [
        (b"{not json", OCI_MANIFEST, ManifestInvalid, "MANIFEST_INVALID"),
        (b"[]", OCI_MANIFEST, ManifestInvalid, "MANIFEST_INVALID"),
        (good.replace(OCI_MANIFEST.encode(), b"application/vnd.example.unknown+json"), OCI_MANIFEST,
         ManifestInvalid, "MANIFEST_INVALID"),
        (good, manifests.DOCKER_MANIFEST, ManifestInvalid, "MANIFEST_INVALID"),  # mediaType vs Content-Type
        (json.dumps({"schemaVersion": 2, "config": {}}).encode(), "application/octet-stream", ManifestInvalid,
         "MANIFEST_INVALID"),
        (good.replace(b'"schemaVersion": 2', b'"schemaVersion": 1'), OCI_MANIFEST, ManifestInvalid,
         "MANIFEST_INVALID"),
        (good.replace(b"sha256:", b"sha256:zz", 1), OCI_MANIFEST, ManifestInvalid, "MANIFEST_INVALID"),
        # A Content-Type naming an unknown or another type than the body's mediaType (Distribution refuses both).
        (good, "application/vnd.example.unknown+json", ManifestInvalid, "MANIFEST_INVALID"),
        (good, "application/json", ManifestInvalid, "MANIFEST_INVALID"),
        (good, manifests.OCI_INDEX, ManifestInvalid, "MANIFEST_INVALID"),
        # schemaVersion is the integer 2, present.
        (good.replace(b'"schemaVersion": 2', b'"schemaVersion": 2.0'), OCI_MANIFEST, ManifestInvalid,
         "MANIFEST_INVALID"),
        (good.replace(b'"schemaVersion": 2', b'"schemaVersion": "2"'), OCI_MANIFEST, ManifestInvalid,
         "MANIFEST_INVALID"),
        (good.replace(b'"schemaVersion": 2,', b''), OCI_MANIFEST, ManifestInvalid, "MANIFEST_INVALID"),
        (index([]).replace(b'"schemaVersion": 2', b'"schemaVersion": 3'), manifests.OCI_INDEX, ManifestInvalid,
         "MANIFEST_INVALID"),
        # Without mediaType the Content-Type types the body: an unknown one, or a Docker type (which MUST be
        # declared in the body), is refused.
        (good.replace(b'"mediaType": "' + OCI_MANIFEST.encode() + b'", ', b""), "application/octet-stream",
         ManifestInvalid, "MANIFEST_INVALID"),
        (good.replace(b'"mediaType": "' + OCI_MANIFEST.encode() + b'", ', b""), manifests.DOCKER_MANIFEST,
         ManifestInvalid, "MANIFEST_INVALID"),
        (image(env, reg, "other-repo", [b"not here"]), OCI_MANIFEST, ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
    ]
    for body, content_type, error, code in cases:
        with expect(error, code, 400):
            env.service.put_manifest(reg, "bad", "v1", body, content_type, WHO)
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.put_manifest(reg, "bad", digest_of(b"other"), good, OCI_MANIFEST, WHO)
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.put_manifest(reg, "bad", "sha256:baddigeststring", good, OCI_MANIFEST, WHO)
    with expect(TagInvalid, "TAG_INVALID", 400):
        env.service.put_manifest(reg, "bad", ".bad", good, OCI_MANIFEST, WHO)
    with expect(NameInvalid, "NAME_INVALID", 400):
        env.service.put_manifest(reg, "../bad", "v1", good, OCI_MANIFEST, WHO)
    too_large = good + b" " * env.settings.manifest_max_bytes
    with expect(ManifestTooLarge, "SIZE_INVALID", 413):
        env.service.put_manifest(reg, "bad", "v1", too_large, OCI_MANIFEST, WHO)
    # The body may omit mediaType when Content-Type names it; whitespace is kept byte for byte.
    bare = json.dumps(json.loads(good) | {"mediaType": None}, indent=3).replace('"mediaType": null,', "").encode()
    info = env.service.put_manifest(reg, "bad", "bare", bare, OCI_MANIFEST, WHO)
    assert env.service.get_manifest(reg, "bad", "bare").body == bare and info.media_type == OCI_MANIFEST
    assert len(env.rows(Manifest, registry_id=reg.id)) == 1
    # Typed by the body alone when no Content-Type is given; an index may omit mediaType like an image manifest.
    assert env.service.put_manifest(reg, "bad", "no-type", good, "", WHO).media_type == OCI_MANIFEST
    bare_index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert env.service.put_manifest(reg, "bad", "bare-index", bare_index, manifests.OCI_INDEX, WHO).media_type \
        == manifests.OCI_INDEX
    with expect(ManifestUnknown, "MANIFEST_UNKNOWN", 404):
        env.service.get_manifest(reg, "bad", "v1")
    with expect(NameUnknown, "NAME_UNKNOWN", 404):
        env.service.get_manifest(reg, "never/pushed", "v1")
    with expect(DigestInvalid, "DIGEST_INVALID", 400):
        env.service.get_manifest(reg, "bad", "sha256:totallywrong")


def test_reading_a_reference_that_cannot_be_a_tag(env, reg):
    """Reads by a reference of tag characters that breaks the tag grammar (the conformance suite's pull specs ask
    for `.INVALID_MANIFEST_NAME`) are MANIFEST_UNKNOWN; other characters stay TAG_INVALID; a push stays TAG_INVALID."""
    body = image(env, reg, "refs", [b"r"])
    env.service.put_manifest(reg, "refs", "v1", body, OCI_MANIFEST, WHO)
    for reference in (".INVALID_MANIFEST_NAME", "-dash", "a" * 129, "..", "."):
        with expect(ManifestUnknown, "MANIFEST_UNKNOWN", 404):
            env.service.get_manifest(reg, "refs", reference)
    with expect(NameUnknown, "NAME_UNKNOWN", 404):
        env.service.get_manifest(reg, "never/pushed", ".INVALID_MANIFEST_NAME")
    for reference in ("bad!tag", "a b", "a/b", "a" * 300):
        with expect(TagInvalid, "TAG_INVALID", 400):
            env.service.get_manifest(reg, "refs", reference)
    with expect(TagInvalid, "TAG_INVALID", 400):
        env.service.put_manifest(reg, "refs", ".INVALID_MANIFEST_NAME", body, OCI_MANIFEST, WHO)


# -- tags, catalog -----------------------------------------------------------------------------------------------


def test_tag_and_catalog_paging(env, reg):
    body = image(env, reg, "paged", [b"p"])
    tags = ["v10", "v2", "V3", "a", "z_last", "v1.0", "v1-0", "_x"]
    for tag in tags:
        env.service.put_manifest(reg, "paged", tag, body, OCI_MANIFEST, WHO)
    ordered = sorted(tags)  # byte order, as OCI wants (not the database's locale)
    assert env.service.list_tags(reg, "paged", None, None) == (ordered, False)
    assert env.service.list_tags(reg, "paged", 3, None) == (ordered[:3], True)
    assert env.service.list_tags(reg, "paged", 3, ordered[2]) == (ordered[3:6], True)
    assert env.service.list_tags(reg, "paged", 3, ordered[5]) == (ordered[6:], False)
    assert env.service.list_tags(reg, "paged", 2, ordered[5]) == (ordered[6:], False)
    assert env.service.list_tags(reg, "paged", 0, None) == ([], False)
    assert env.service.list_tags(reg, "paged", None, "zzz") == ([], False)
    with expect(PaginationNumberInvalid, "PAGINATION_NUMBER_INVALID", 400):
        env.service.list_tags(reg, "paged", -1, None)
    with expect(NameUnknown, "NAME_UNKNOWN", 404):
        env.service.list_tags(reg, "nope", None, None)

    for repository in ("b/two", "a/one", "a-b", "a.b"):
        env.service.put_manifest(reg, repository, "t", image(env, reg, repository, [b"c"]), OCI_MANIFEST, WHO)
    push_blob(env, reg, "blobs/only", b"no manifest")  # a repository without manifests is not listed
    repositories = sorted(["paged", "b/two", "a/one", "a-b", "a.b"])
    assert env.service.catalog(reg, None, None) == (repositories, False)
    assert env.service.catalog(reg, 2, None) == (repositories[:2], True)
    assert env.service.catalog(reg, 10, repositories[1]) == (repositories[2:], False)


# -- deletes and freeing -----------------------------------------------------------------------------------------


def age(env: Env, reg: RegistryRef, minutes: int = 20) -> None:
    """Makes every blob and link of the registry look pushed `minutes` ago (past the sweep's grace)."""
    past = datetime.now(UTC) - timedelta(minutes=minutes)
    with env.db.session() as session:
        session.execute(sa.update(Blob).where(Blob.registry_id == reg.id).values(created_at=past))
        session.execute(sa.update(RepositoryBlob).where(RepositoryBlob.registry_id == reg.id).values(created_at=past))


def test_delete_manifest_leaves_its_blobs_to_the_sweep(env, reg):
    shared, own = b"shared layer" * 100, b"own layer" * 100
    first = image(env, reg, "gc", [shared, own], config={"n": 1})
    second = image(env, reg, "gc", [shared], config={"n": 2})
    for tag, body in (("first", first), ("second", second)):
        env.service.put_manifest(reg, "gc", tag, body, OCI_MANIFEST, WHO)
    env.service.put_manifest(reg, "gc", "first-again", first, OCI_MANIFEST, WHO)
    stored = env.objects(reg, "blobs/")
    assert len(stored) == 6  # 2 layers, 2 configs, 2 manifests: the shared layer once
    used = env.service.storage_used(reg.id)
    assert used == sum(stored.values())
    age(env, reg)  # pushed long ago: the grace counts from the delete, not from the push

    env.service.delete_manifest(reg, "gc", digest_of(first), WHO)
    with expect(ManifestUnknown, "MANIFEST_UNKNOWN", 404):
        env.service.get_manifest(reg, "gc", digest_of(first))
    with expect(ManifestUnknown, "MANIFEST_UNKNOWN", 404):
        env.service.get_manifest(reg, "gc", "first")
    with expect(ManifestUnknown, "MANIFEST_UNKNOWN", 404):
        env.service.delete_manifest(reg, "gc", digest_of(first), WHO)
    assert env.service.list_tags(reg, "gc", None, None) == (["second"], False)
    # Nothing is freed yet: the blobs stay readable, stored and counted until they were unreferenced for the grace.
    assert env.objects(reg, "blobs/") == stored and env.service.storage_used(reg.id) == used
    assert env.service.stat_blob(reg, "gc", digest_of(own)).size == len(own)
    assert env.service.sweep_unreferenced(reg.id) == []

    freed = env.service.sweep_unreferenced(reg.id, older_than=timedelta(0))
    gone = {digest_of(own), digest_of(first), json.loads(first)["config"]["digest"]}
    assert sorted(freed) == sorted((reg.id, d) for d in gone)
    left = env.objects(reg, "blobs/")
    assert {names.blob_key(d) for d in gone}.isdisjoint(left) and names.blob_key(digest_of(shared)) in left
    assert env.service.storage_used(reg.id) == sum(left.values())
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.stat_blob(reg, "gc", digest_of(own))

    env.service.delete_manifest(reg, "gc", digest_of(second), WHO)
    env.service.sweep_unreferenced(None, older_than=timedelta(0))
    assert env.objects(reg, "blobs/") == {} and env.service.storage_used(reg.id) == 0
    assert env.rows(RepositoryBlob, registry_id=reg.id) == []


def test_blob_delete_right_after_manifest_delete(env, reg):
    """The conformance suite's teardown: delete the manifest, then its config and layer blobs (202 each, never
    BLOB_UNKNOWN); a blob nothing else references or links is freed at once, one another manifest uses is kept."""
    layer, kept = b"teardown layer", b"kept layer"
    body = image(env, reg, "teardown", [layer, kept], config={"t": 1})
    env.service.put_manifest(reg, "teardown", "v1", body, OCI_MANIFEST, WHO)
    env.service.put_manifest(reg, "keeper", "v1", image(env, reg, "keeper", [kept]), OCI_MANIFEST, WHO)
    config = json.loads(body)["config"]["digest"]
    env.service.delete_manifest(reg, "teardown", digest_of(body), WHO)
    for digest in (config, digest_of(layer), digest_of(kept)):
        env.service.delete_blob(reg, "teardown", digest)
        with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
            env.service.stat_blob(reg, "teardown", digest)
    stored = env.objects(reg, "blobs/")
    assert names.blob_key(config) not in stored and names.blob_key(digest_of(layer)) not in stored
    assert names.blob_key(digest_of(kept)) in stored
    assert env.service.stat_blob(reg, "keeper", digest_of(kept)).size == len(kept)
    # The deleted manifest's own bytes stay linked until the sweep (or a DELETE of them).
    assert env.service.stat_blob(reg, "teardown", digest_of(body)).size == len(body)


def test_the_sweep_frees_abandoned_pushes_after_the_grace(env, reg):
    """A blob pushed but never referenced by a manifest does not leak: it is freed once older than the grace; a
    push of the same bytes again (or a mount) restarts its grace."""
    abandoned = push_blob(env, reg, "abandoned", b"never referenced")
    again = push_blob(env, reg, "abandoned", b"pushed again")
    mounted = push_blob(env, reg, "abandoned", b"mounted later")
    assert env.service.sweep_unreferenced(reg.id) == []
    age(env, reg)
    push_blob(env, reg, "abandoned", b"pushed again")
    env.service.mount_blob(reg, "elsewhere", mounted, "abandoned")
    assert env.service.sweep_unreferenced(reg.id) == [(reg.id, abandoned)]
    assert names.blob_key(abandoned) not in env.objects(reg, "blobs/")
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.stat_blob(reg, "abandoned", abandoned)
    assert env.service.mount_blob(reg, "other", abandoned, "abandoned") is None
    for digest in (again, mounted):
        assert env.service.stat_blob(reg, "abandoned", digest)
    # A freed blob can be pushed again.
    assert push_blob(env, reg, "abandoned", b"never referenced") == abandoned
    assert b"".join(env.service.open_blob(reg, "abandoned", abandoned).read()) == b"never referenced"


def test_a_manifest_delete_sweeps_what_is_past_the_grace(env, reg):
    """The sweep runs for the registry right after each manifest delete: what is past the grace goes then."""
    old = push_blob(env, reg, "old", b"abandoned long ago")
    age(env, reg)
    body = image(env, reg, "fresh", [b"fresh layer"])
    env.service.put_manifest(reg, "fresh", "v1", body, OCI_MANIFEST, WHO)
    env.service.delete_manifest(reg, "fresh", digest_of(body), WHO)
    assert set(env.objects(reg, "blobs/")) == {names.blob_key(d) for d in (
        digest_of(body), digest_of(b"fresh layer"), json.loads(body)["config"]["digest"])}
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.stat_blob(reg, "old", old)


def test_the_sweep_keeps_blobs_a_manifest_references(env, reg):
    """A blob stays while any manifest of the registry references it, whatever repository it is linked in; one
    linked only in repositories whose manifests do not reference it goes after the grace."""
    layer = b"used twice"
    one = image(env, reg, "one", [layer], config={"r": 1})
    env.service.put_manifest(reg, "one", "v1", one, OCI_MANIFEST, WHO)
    two = image(env, reg, "two", [layer], config={"r": 2})
    env.service.put_manifest(reg, "two", "v1", two, OCI_MANIFEST, WHO)
    loose = push_blob(env, reg, "two", b"linked where nothing references it")
    env.service.delete_manifest(reg, "one", digest_of(one), WHO)
    env.service.sweep_unreferenced(reg.id, older_than=timedelta(0))
    assert env.service.stat_blob(reg, "two", digest_of(layer)).size == len(layer)
    assert env.service.stat_blob(reg, "one", digest_of(layer)).size == len(layer)  # links stay with the blob
    assert names.blob_key(digest_of(layer)) in env.objects(reg, "blobs/")
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.stat_blob(reg, "two", loose)
    other = env.registry("swp")  # a sweep of one registry leaves the others alone
    elsewhere = push_blob(env, other, "x", b"another registry's")
    env.service.sweep_unreferenced(reg.id, older_than=timedelta(0))
    assert env.service.stat_blob(other, "x", elsewhere)


def test_delete_tag_and_blob(env, reg):
    body = image(env, reg, "untag", [b"l"])
    digest = env.service.put_manifest(reg, "untag", "v1", body, OCI_MANIFEST, WHO).digest
    assert env.service.delete_tag(reg, "untag", "v1", WHO) == digest
    assert env.service.get_manifest(reg, "untag", digest).digest == digest
    with expect(TagUnknown, "TAG_UNKNOWN", 404):
        env.service.delete_tag(reg, "untag", "v1", WHO)
    loose = push_blob(env, reg, "untag", b"loose blob")
    env.service.delete_blob(reg, "untag", loose)
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.stat_blob(reg, "untag", loose)
    with expect(BlobUnknown, "BLOB_UNKNOWN", 404):
        env.service.delete_blob(reg, "untag", loose)
    assert names.blob_key(loose) not in env.objects(reg, "blobs/")


def test_events_are_written_with_the_change(env, reg):
    body = image(env, reg, "events", [b"e"])
    digest = env.service.put_manifest(reg, "events", "v1", body, OCI_MANIFEST, WHO).digest
    env.service.delete_tag(reg, "events", "v1", WHO)
    env.service.delete_manifest(reg, "events", digest, RequestInfo(actor="deleter"))
    with env.db.session() as session:
        events = session.scalars(sa.select(RegistryEvent).where(RegistryEvent.registry_id == reg.id)
                                 .order_by(RegistryEvent.id)).all()
    assert [(e.action, e.repository, e.tag, e.digest) for e in events] == [
        ("push", "events", "v1", digest), ("untag", "events", "v1", digest), ("delete", "events", None, digest)]
    push = events[0]
    assert (push.media_type, push.size, push.actor, push.request_id, push.request_host, push.request_method,
            push.user_agent) == (OCI_MANIFEST, len(body), "tester", "req-1", "reg.example", "PUT", "pytest")
    assert events[2].actor == "deleter"
    # A refused push records nothing.
    with pytest.raises(ManifestInvalid):
        env.service.put_manifest(reg, "events", "v2", b"{}", OCI_MANIFEST, WHO)
    assert len(env.rows(RegistryEvent, registry_id=reg.id)) == 3


# -- locks -------------------------------------------------------------------------------------------------------


def _lock(env: Env, model, where, **values) -> None:
    with env.db.session() as session:
        session.execute(sa.update(model).where(*where).values(**values))


def test_locks(env, reg):
    body = image(env, reg, "locked", [b"lock"])
    digest = env.service.put_manifest(reg, "locked", "v1", body, OCI_MANIFEST, WHO).digest
    [repo] = env.rows(Repository, registry_id=reg.id, name="locked")
    tag_where = (Tag.repository_id == repo.id, Tag.name == "v1")
    manifest_where = (Manifest.repository_id == repo.id, Manifest.digest == digest)
    repo_where = (Repository.id == repo.id,)
    other = image(env, reg, "locked", [b"other"])

    # writeEnabled=false on the tag: it cannot move or go, the same push again is fine.
    _lock(env, Tag, tag_where, write_enabled=False)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.put_manifest(reg, "locked", "v1", other, OCI_MANIFEST, WHO)
    env.service.put_manifest(reg, "locked", "v1", body, OCI_MANIFEST, WHO)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.delete_tag(reg, "locked", "v1", WHO)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.delete_manifest(reg, "locked", digest, WHO)  # it would delete the locked tag
    _lock(env, Tag, tag_where, write_enabled=True, delete_enabled=False)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.delete_tag(reg, "locked", "v1", WHO)
    env.service.put_manifest(reg, "locked", "v1", other, OCI_MANIFEST, WHO)  # deleteEnabled alone allows updates
    env.service.put_manifest(reg, "locked", "v1", body, OCI_MANIFEST, WHO)
    _lock(env, Tag, tag_where, delete_enabled=True)

    # The manifest's own locks.
    for values in ({"delete_enabled": False}, {"write_enabled": False}):
        _lock(env, Manifest, manifest_where, **values)
        with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
            env.service.delete_manifest(reg, "locked", digest, WHO)
        _lock(env, Manifest, manifest_where, delete_enabled=True, write_enabled=True)
    _lock(env, Manifest, manifest_where, read_enabled=False)
    for reference in ("v1", digest):
        with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
            env.service.get_manifest(reg, "locked", reference)
    _lock(env, Manifest, manifest_where, read_enabled=True)
    _lock(env, Tag, tag_where, read_enabled=False)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.get_manifest(reg, "locked", "v1")
    assert env.service.get_manifest(reg, "locked", digest).body == body
    _lock(env, Tag, tag_where, read_enabled=True, list_enabled=False)
    assert "v1" not in env.service.list_tags(reg, "locked", None, None)[0]
    _lock(env, Tag, tag_where, list_enabled=True)

    # The repository's locks cover everything in it.
    _lock(env, Repository, repo_where, write_enabled=False)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.put_manifest(reg, "locked", "v2", body, OCI_MANIFEST, WHO)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.start_upload(reg, "locked")
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.delete_manifest(reg, "locked", digest, WHO)
    _lock(env, Repository, repo_where, write_enabled=True, delete_enabled=False)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.delete_tag(reg, "locked", "v1", WHO)
    _lock(env, Repository, repo_where, delete_enabled=True, read_enabled=False)
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.get_manifest(reg, "locked", "v1")
    with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
        env.service.stat_blob(reg, "locked", digest)
    _lock(env, Repository, repo_where, read_enabled=True, list_enabled=False)
    assert "locked" not in env.service.catalog(reg, None, None)[0]
    _lock(env, Repository, repo_where, list_enabled=True)
    assert "locked" in env.service.catalog(reg, None, None)[0]
    env.service.delete_manifest(reg, "locked", digest, WHO)


def test_delete_repository_is_one_transaction(env, reg, monkeypatch):
    """Manifests, tags, links and events go together or not at all: any lock refuses the whole delete, and a
    failure inside it leaves the repository as it was. What nothing else keeps is freed at once."""
    shared, own = b"layer both repositories use" * 50, b"layer only this one uses" * 50
    first = image(env, reg, "whole/app", [shared, own], config={"n": "first"})
    second = image(env, reg, "whole/app", [own], config={"n": "second"})
    for reference, body in (("v1", first), ("v2", second), (digest_of(second), second)):
        env.service.put_manifest(reg, "whole/app", reference, body, OCI_MANIFEST, WHO)
    env.service.put_manifest(reg, "whole/app", "v1-again", first, OCI_MANIFEST, WHO)
    extra = push_blob(env, reg, "whole/app", b"a blob no manifest names")
    kept = image(env, reg, "kept", [shared], config={"n": "kept"})
    env.service.put_manifest(reg, "kept", "1", kept, OCI_MANIFEST, WHO)
    [repo] = env.rows(Repository, registry_id=reg.id, name="whole/app")

    def state() -> tuple:
        return (sorted(m.digest for m in env.rows(Manifest, repository_id=repo.id)),
                sorted(t.name for t in env.rows(Tag, repository_id=repo.id)),
                sorted(link.digest for link in env.rows(RepositoryBlob, repository_id=repo.id)),
                len(env.rows(RegistryEvent, registry_id=reg.id)), sorted(env.objects(reg, "blobs/")))

    before = state()
    assert (len(before[0]), before[1]) == (2, ["v1", "v1-again", "v2"])
    locks = [(Tag, (Tag.repository_id == repo.id, Tag.name == "v2"), "delete_enabled"),
             (Tag, (Tag.repository_id == repo.id, Tag.name == "v1-again"), "write_enabled"),
             (Manifest, (Manifest.repository_id == repo.id, Manifest.digest == digest_of(second)), "delete_enabled"),
             (Manifest, (Manifest.repository_id == repo.id, Manifest.digest == digest_of(first)), "write_enabled"),
             (Repository, (Repository.id == repo.id,), "delete_enabled")]
    for model, where, column in locks:
        _lock(env, model, where, **{column: False})
        with expect(Disallowed, "REGISTRY_DISALLOWED_OPERATION", 405):
            env.service.delete_repository(reg, "whole/app", WHO)
        assert state() == before, (model.__name__, column)
        _lock(env, model, where, **{column: True})

    # A failure after the rows were deleted and the events written rolls all of it back.
    def failing(*args, **kwargs):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(content_service, "_delete_unkept", failing)
        with pytest.raises(RuntimeError):
            env.service.delete_repository(reg, "whole/app", WHO)
    assert state() == before

    deleted = env.service.delete_repository(reg, "whole/app", RequestInfo(actor="deleter"))
    assert deleted == content_service.RepositoryDeleted(sorted([digest_of(first), digest_of(second)]),
                                                         ["v1", "v1-again", "v2"])
    assert state()[:3] == ([], [], [])
    events = env.rows(RegistryEvent, registry_id=reg.id, action="delete")
    assert sorted((e.repository, e.digest, e.actor) for e in events) == sorted(
        ("whole/app", d, "deleter") for d in (digest_of(first), digest_of(second)))
    # Freed at once: everything only this repository held, rows and objects; the shared layer stays for `kept`.
    only_here = {digest_of(own), digest_of(first), digest_of(second), extra,
                 json.loads(first)["config"]["digest"], json.loads(second)["config"]["digest"]}
    assert {b.digest for b in env.rows(Blob, registry_id=reg.id)}.isdisjoint(only_here)
    assert {names.blob_key(d) for d in only_here}.isdisjoint(env.objects(reg, "blobs/"))
    assert env.service.stat_blob(reg, "kept", digest_of(shared)).size == len(shared)
    assert env.service.catalog(reg, None, None) == (["kept"], False)
    with expect(NameUnknown, "NAME_UNKNOWN", 404):
        env.service.delete_repository(reg, "whole/app", WHO)
    with expect(NameUnknown, "NAME_UNKNOWN", 404):
        env.service.delete_repository(reg, "never/pushed", WHO)
    with expect(NameInvalid, "NAME_INVALID", 400):
        env.service.delete_repository(reg, "../etc", WHO)
    # The name can be pushed again from scratch, with fresh attributes.
    again = image(env, reg, "whole/app", [own], config={"n": "again"})
    env.service.put_manifest(reg, "whole/app", "v1", again, OCI_MANIFEST, WHO)
    [fresh] = env.rows(Repository, registry_id=reg.id, name="whole/app")
    assert (fresh.delete_enabled, fresh.write_enabled, fresh.read_enabled, fresh.list_enabled) == (True,) * 4
    assert env.service.list_tags(reg, "whole/app", None, None) == (["v1"], False)


# -- concurrency -------------------------------------------------------------------------------------------------


def test_ten_clients_push_the_same_image_at_once(env, reg):
    layers = [b"L1" * 50_000, b"L2" * 70_000]
    config = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)} for x in layers],
    }).encode()
    barrier = threading.Barrier(10)
    failures: list[BaseException] = []

    def client(n: int) -> None:
        try:
            barrier.wait()
            for blob in (config, *layers):
                if n % 2:  # half monolithic, half chunked
                    env.service.upload_blob(reg, "crowd", digest_of(blob), [blob])
                else:
                    upload = env.service.start_upload(reg, "crowd")
                    env.service.append_upload(reg, "crowd", upload.id, [blob[:1000]], 0)
                    env.service.finish_upload(reg, "crowd", upload.id, digest_of(blob), [blob[1000:]])
            env.service.put_manifest(reg, "crowd", "latest", body, OCI_MANIFEST, WHO)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(env.rows(Blob, registry_id=reg.id)) == 4
    assert len(env.rows(RepositoryBlob, registry_id=reg.id)) == 4
    assert len(env.rows(Manifest, registry_id=reg.id)) == 1
    assert len(env.rows(Repository, registry_id=reg.id)) == 1
    assert env.rows(UploadSession, registry_id=reg.id) == []
    assert set(env.objects(reg)) == {names.blob_key(digest_of(x)) for x in (config, *layers, body)}
    assert len(env.rows(RegistryEvent, registry_id=reg.id)) == 10
    assert env.service.get_manifest(reg, "crowd", "latest").body == body


def test_registry_lookup(env, reg):
    assert env.service.registry(reg.name.upper()) == reg
    assert reg.login_server == f"{reg.name}.{env.settings.login_server_suffix}"
    assert env.service.registry("missing12345") is None
    assert env.service.registry("x" * 60) is None
