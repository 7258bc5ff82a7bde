"""Real registry clients and faults against the login server `control-plane serve` runs.

- oras-py 0.2.43 (PyPI `oras`): an artifact with `artifactType`, referrers attached to an image (its `subject`),
  pull back, tags, tag delete; the `basic` auth backend, as docs §6 advises (its default token backend caches one
  pull-only token for everything). Its retries sleep 131 s in all, so the negative case patches the sleeps.
- Faults, each on a service of its own: `kill -9` during 10 concurrent uploads; 10 clients pushing one image at
  once; storage stopped mid-push (503 + Retry-After, then the next push heals); a slow upload at a normal rate is
  not cut off by the slow-client guard while a stalled body is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import azurite_storage
from tests.support import servers, tools
from tests.support.oci import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Blob,
    LoopbackAdapter,
    OciClient,
    RegistryUnderTest,
    admin_registry_on,
    create_admin_registry,
    descriptor,
    errors_of,
    go_json,
    resume_offset,
    sha256,
)

STYLES = ("path", "host")
OCTET = {"Content-Type": "application/octet-stream"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def clients_group(service, rmc):
    group = f"rg-clients-{uuid.uuid4().hex[:8]}"
    rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    yield group
    rmc.resource_groups.begin_delete(group).result()


@pytest.fixture(scope="module")
def clients_registry(service, acr, clients_group):
    return create_admin_registry(acr, clients_group, "clients")


@pytest.fixture(params=STYLES)
def target(request, service, clients_registry) -> RegistryUnderTest:
    name, login_server, username, password = clients_registry
    return RegistryUnderTest(name, login_server, username, password, service.url, service.ca, request.param)


def upload(client: OciClient, content: bytes) -> requests.Response:
    resp = client.request("POST", "/v2/<name>/blobs/uploads/")
    assert resp.status_code == 202, client.explain(resp)
    return client.request("PUT", client.relative_location(resp), params={"digest": sha256(content)},
                          headers=OCTET, body=content)


def push_image(client: OciClient, tag: str) -> Blob:
    """An OCI image (config + one layer) pushed by tag; returns its manifest."""
    config = Blob(go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "author": uuid.uuid4().hex}))
    layer = Blob(os.urandom(4096))
    for blob in (config, layer):
        assert upload(client, blob.content).status_code == 201, client.explain()
    manifest = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": descriptor(OCI_CONFIG, config.content),
                             "layers": [descriptor(OCI_LAYER_GZIP, layer.content)]}))
    resp = client.request("PUT", "/v2/<name>/manifests/<reference>", reference=tag,
                          headers={"Content-Type": OCI_MANIFEST}, body=manifest.content)
    assert resp.status_code == 201, client.explain(resp)
    return manifest


# -- oras-py -------------------------------------------------------------------------------------------------------


def oras_registry(target: RegistryUnderTest, username: str | None = None, password: str | None = None):
    """oras-py's client with the basic backend, reaching the host-style login server through the loopback adapter."""
    import oras.provider

    client = oras.provider.Registry(hostname=target.address.split("/")[0], tls_verify=target.ca,
                                    auth_backend="basic")
    client.auth.set_basic_auth(username or target.username, password or target.password)
    if target.style == "host":
        client.session.mount(f"https://{target.login_server}", LoopbackAdapter(target.service_port))
    return client


def test_oras_artifact_with_artifact_type_and_referrers_on_an_image(target, tmp_path, monkeypatch):
    import oras.oci

    monkeypatch.chdir(tmp_path)
    repo = f"oras/{uuid.uuid4().hex[:8]}"
    raw = target.client(repo)
    image = push_image(raw, "v1")
    client = oras_registry(target)
    reference = f"{target.address}/{repo}"

    # A plain artifact: oras pushes the file as a layer, an empty config, then the manifest.
    readme = tmp_path / "README.md"
    readme.write_text("# hello from oras\n")
    response = client.push(target=f"{reference}:artifact", files=["README.md:text/markdown"],
                           manifest_annotations={"org.example.kind": "docs"})
    assert response.status_code == 201, response.text
    outdir = tmp_path / "pulled"
    files = client.pull(target=f"{reference}:artifact", outdir=str(outdir))
    assert [Path(f).read_text() for f in files] == ["# hello from oras\n"]

    # A referrer whose artifact type is its config's media type, attached with oras' own `subject`.
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=image.digest, size=len(image.content))
    signature = tmp_path / "signature.sig"
    signature.write_bytes(os.urandom(5000))
    config = tmp_path / "config.json"
    config.write_text("{}")
    response = client.push(target=f"{reference}:sig", files=["signature.sig:application/vnd.example.sig.layer"],
                           manifest_config="config.json:application/vnd.example.signature", subject=subject,
                           do_chunked=True, chunk_size=2048)  # PATCHes with Content-Range, then the closing PUT
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == image.digest, response.headers

    # A referrer with `artifactType` (oras' push has no parameter for it): its blob upload and manifest upload.
    container = client.get_container(f"{reference}:sbom")
    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"packages": []}')
    layer = oras.oci.NewLayer(str(sbom), media_type="application/spdx+json")
    assert client.upload_blob(str(sbom), container, layer).status_code == 201
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    empty_config = {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}
    assert client.upload_blob(str(empty), container, empty_config).status_code in (200, 201)  # 200: already there
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
                "config": empty_config, "layers": [layer],
                "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.content)},
                "annotations": {"org.example.kind": "sbom"}}
    response = client.upload_manifest(manifest, container)
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == image.digest
    sbom_digest = response.headers["Docker-Content-Digest"]
    pulled = client.get_manifest(container)
    assert pulled["artifactType"] == "application/vnd.example.sbom" and pulled["subject"]["digest"] == image.digest

    # The referrers API (oras-py 0.2.43 has none): both referrers, with their artifact types, and the filter.
    resp = raw.request("GET", "/v2/<name>/referrers/<digest>", digest=image.digest)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == OCI_INDEX, raw.explain(resp)
    listed = {m["artifactType"]: m for m in resp.json()["manifests"]}
    assert set(listed) == {"application/vnd.example.signature", "application/vnd.example.sbom"}, resp.text
    assert listed["application/vnd.example.sbom"]["digest"] == sbom_digest
    assert listed["application/vnd.example.sbom"]["annotations"] == {"org.example.kind": "sbom"}
    resp = raw.request("GET", "/v2/<name>/referrers/<digest>", digest=image.digest,
                       params={"artifactType": "application/vnd.example.sbom"})
    assert [m["digest"] for m in resp.json()["manifests"]] == [sbom_digest], raw.explain(resp)
    assert resp.headers.get("OCI-Filters-Applied") == "artifactType"

    assert sorted(client.get_tags(f"{reference}")) == ["artifact", "sbom", "sig", "v1"]
    assert client.delete_tag(f"{reference}", "artifact") is True  # HEAD for Docker-Content-Digest, DELETE: 202
    assert sorted(client.get_tags(f"{reference}")) == ["sbom", "sig", "v1"]


def test_oras_with_a_wrong_password_is_refused(target, tmp_path, monkeypatch):
    import oras.decorator

    sleeps: list[float] = []
    monkeypatch.setattr(oras.decorator.time, "sleep", sleeps.append)  # oras' retries would sleep 131 s
    repo = f"oras/{uuid.uuid4().hex[:8]}"
    push_image(target.client(repo), "v1")
    client = oras_registry(target, password="not-the-password")
    with pytest.raises(Exception, match=r"401|UNAUTHORIZED|Unauthorized|Issue with"):
        client.get_manifest(f"{target.address}/{repo}:v1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(Exception, match=r"401|UNAUTHORIZED|Unauthorized|Issue with"):
        client.push(target=f"{target.address}/{repo}:denied", files=["f.txt"])
    assert target.client(repo).request("GET", "/v2/<name>/manifests/denied").status_code == 404


# -- 10 clients pushing one image at once --------------------------------------------------------------------------


def stored_objects(service, registry: str, prefix: str) -> list[str]:
    """Keys under `prefix` in the registry's blob container, on whichever backend the service uses."""
    azurite = getattr(service, "azurite", None)
    if azurite is None:
        root = Path(service.data_dir) / "blobs"
        keys = []
        for container in root.iterdir():
            if container.name.startswith(registry.lower()):
                keys += [p.relative_to(container).as_posix() for p in (container / prefix).rglob("*") if p.is_file()]
        return keys
    from azure.storage.blob import BlobServiceClient

    keys = []
    for account in azurite.accounts:
        blob_service = BlobServiceClient.from_connection_string(azurite.connection_string(account))
        for container in blob_service.list_containers(name_starts_with=registry.lower()):
            keys += [b.name for b in blob_service.get_container_client(container.name).list_blobs(
                name_starts_with=prefix)]
    return keys


def test_ten_clients_push_the_same_image_at_once(service, acr, clients_group):
    """Ten clients push one image (same config, layer and manifest) into a fresh registry at the same moment."""
    clients_registry = create_admin_registry(acr, clients_group, "same")
    name, login_server, username, password = clients_registry
    target = RegistryUnderTest(name, login_server, username, password, service.url, service.ca, "path")
    repo = f"same/{uuid.uuid4().hex[:8]}"
    config = Blob(go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "author": uuid.uuid4().hex}))
    layer = Blob(os.urandom(3 * MiB + 17))
    manifest = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": descriptor(OCI_CONFIG, config.content),
                             "layers": [descriptor(OCI_LAYER_GZIP, layer.content)]}))
    start = threading.Barrier(10)

    def push(i: int) -> list[int]:
        client = target.client(repo)
        start.wait()
        statuses = [upload(client, config.content).status_code]
        resp = client.request("POST", "/v2/<name>/blobs/uploads/")
        location = client.relative_location(resp)
        if i % 2:  # half of them chunked, half streamed in one PATCH
            for offset in range(0, len(layer.content), MiB):
                piece = layer.content[offset:offset + MiB]
                resp = client.request("PATCH", location, headers={
                    **OCTET, "Content-Range": f"{offset}-{offset + len(piece) - 1}"}, body=piece)
                statuses.append(resp.status_code)
                location = client.relative_location(resp)
        else:
            resp = client.request("PATCH", location, headers=OCTET, body=layer.content)
            statuses.append(resp.status_code)
            location = client.relative_location(resp)
        resp = client.request("PUT", location, params={"digest": layer.digest}, headers=OCTET, body=b"")
        statuses.append(resp.status_code)
        resp = client.request("PUT", "/v2/<name>/manifests/latest", headers={"Content-Type": OCI_MANIFEST},
                              body=manifest.content)
        statuses.append(resp.status_code)
        assert resp.headers.get("Docker-Content-Digest") == manifest.digest, client.explain(resp)
        return statuses

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(push, range(10)))
    for statuses in results:
        assert statuses[0] == 201 and statuses[-2:] == [201, 201] and set(statuses[1:-2]) == {202}, results
    client = target.client(repo)
    resp = client.request("GET", "/v2/<name>/blobs/<digest>", digest=layer.digest)
    assert resp.status_code == 200 and resp.content == layer.content
    assert client.request("GET", "/v2/<name>/tags/list").json()["tags"] == ["latest"]
    # Stored once: one object per digest, no upload left behind, and the registry's usage counts each blob once.
    blobs = stored_objects(service, name, "blobs/")
    for blob in (config, layer, manifest):
        hex_digest = blob.digest.split(":")[1]
        assert [k for k in blobs if hex_digest in k] == [f"blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"], blobs
    assert len(blobs) == 3, blobs
    assert stored_objects(service, name, "uploads/") == []
    usage = {u.name: u.current_value for u in acr.registries.list_usages(clients_group, name).value}
    assert usage["Size"] == len(config.content) + len(layer.content) + len(manifest.content), usage


# -- kill -9 during 10 concurrent uploads --------------------------------------------------------------------------


@contextlib.contextmanager
def dedicated_service(request, tmp_path: Path, backend: str, extra_env: dict | None = None):
    """A service of the test's own on `backend` (SQLite + local folder, or PostgreSQL + the session's Azurite)."""
    env = {"CONTROL_PLANE_LOCATIONS": "eastus", **(extra_env or {})}
    data_dir = tmp_path / "svc"
    data_dir.mkdir()
    with contextlib.ExitStack() as stack:
        if backend == "sqlite-local":
            svc = servers.make_service(data_dir, None, "local", env)
        else:
            azurite = request.getfixturevalue("azurite_server")
            database = stack.enter_context(servers.postgres_database())
            svc = servers.make_service(data_dir, database, azurite_storage(azurite), env)
            svc.azurite = azurite
        svc.init = svc.cli_json("init")
        svc.start()
        stack.callback(svc.stop)
        yield svc


def backends() -> list[str]:
    from tests.conftest import selected_backends

    return selected_backends()


@pytest.mark.parametrize("backend", backends())
def test_kill_9_during_ten_concurrent_uploads_then_every_retry_completes(request, tmp_path, backend):
    with dedicated_service(request, tmp_path, backend) as svc:
        target = admin_registry_on(svc)
        blobs = [Blob(os.urandom(6 * MiB + i)) for i in range(10)]
        piece = 256 * 1024
        progressed = [threading.Event() for _ in blobs]
        interrupted = [threading.Event() for _ in blobs]
        restarted = threading.Event()
        outcome: dict[int, str] = {}

        def client_upload(i: int) -> None:
            client = target.client(f"kill/{i}")
            content = blobs[i].content
            resp = client.request("POST", "/v2/<name>/blobs/uploads/")
            location, offset = client.relative_location(resp), 0
            try:
                while offset < len(content):
                    chunk = content[offset:offset + piece]
                    resp = client.request("PATCH", location, body=chunk, timeout=30, headers={
                        **OCTET, "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
                    assert resp.status_code == 202, client.explain(resp)
                    location, offset = client.relative_location(resp), offset + len(chunk)
                    progressed[i].set()
                    time.sleep(0.1)
                outcome[i] = "finished before the kill"
                return
            except requests.RequestException:
                interrupted[i].set()
            assert restarted.wait(120)
            # The client's retry: ask the session where it stands and go on from there; start over if it is gone.
            status = client.request("GET", location)
            if status.status_code == 204:
                offset, location = resume_offset(status), client.relative_location(status)
            else:
                assert status.status_code == 404, client.explain(status)
                location, offset = client.relative_location(client.request("POST", "/v2/<name>/blobs/uploads/")), 0
            resp = client.request("PATCH", location, body=content[offset:], headers={
                **OCTET, "Content-Range": f"{offset}-{len(content) - 1}"})
            assert resp.status_code == 202, f"status said Range {status.headers.get('Range')}\n{client.explain(resp)}"
            resp = client.request("PUT", client.relative_location(resp), params={"digest": blobs[i].digest},
                                  headers=OCTET, body=b"")
            assert resp.status_code == 201, client.explain(resp)
            outcome[i] = "retried"

        with ThreadPoolExecutor(10) as pool:
            futures = [pool.submit(client_upload, i) for i in range(10)]
            for event in progressed:
                assert event.wait(60), "every upload must be under way before the kill"
            svc.stop(signal.SIGKILL)
            for event in interrupted:
                assert event.wait(60), "every client must notice the kill"
            svc.start()
            for i, blob in enumerate(blobs):  # no partial blob is visible
                client = target.client(f"kill/{i}")
                assert client.request("HEAD", "/v2/<name>/blobs/<digest>", digest=blob.digest).status_code == 404
            restarted.set()
            for future in futures:
                future.result()
        assert outcome == {i: "retried" for i in range(10)}, outcome
        for i, blob in enumerate(blobs):
            resp = target.client(f"kill/{i}").request("GET", "/v2/<name>/blobs/<digest>", digest=blob.digest)
            assert resp.status_code == 200 and resp.content == blob.content
        assert "Traceback" not in svc.log()


# -- storage stopped mid-push --------------------------------------------------------------------------------------


@contextlib.contextmanager
def azurite_on_disk(binary: Path, account: str, location: Path, port: int):
    """Azurite keeping its data in a folder, so that a stop and a start on the same port loses nothing."""
    location.mkdir(exist_ok=True)
    env = dict(os.environ, AZURITE_ACCOUNTS=f"{account}:{servers.AZURITE_KEY}")
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location), "--loose",
         "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
        cwd=location, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        servers.wait_for_port(port, process=process)
        yield servers.Azurite(process, port, (account,))
    finally:
        servers.stop(process)


def assert_unavailable(client: OciClient, resp: requests.Response) -> None:
    assert resp.status_code == 503, client.explain(resp)
    assert resp.headers.get("Retry-After", "").isdigit(), client.explain(resp)
    assert errors_of(resp) and errors_of(resp)[0]["code"] == "UNAVAILABLE", client.explain(resp)


def test_storage_stopped_mid_push_answers_503_and_the_next_push_heals(tmp_path):
    binary = tools.azurite_blob()
    port = servers.free_port()
    account = "acrstop"
    disk = tmp_path / "azurite"
    with contextlib.ExitStack() as stack:
        azurite = stack.enter_context(azurite_on_disk(binary, account, disk, port))
        (tmp_path / "svc").mkdir()
        svc = servers.make_service(tmp_path / "svc", None, azurite.connection_string(account),
                                   {"CONTROL_PLANE_LOCATIONS": "eastus"})
        svc.init = svc.cli_json("init")
        svc.start()
        stack.callback(svc.stop)
        target = admin_registry_on(svc)
        client = target.client("team/app")
        before = push_image(client, "before")
        layer = Blob(os.urandom(2 * MiB))
        resp = client.request("POST", "/v2/<name>/blobs/uploads/")
        location = client.relative_location(resp)
        resp = client.request("PATCH", location, headers={**OCTET, "Content-Range": f"0-{MiB - 1}"},
                              body=layer.content[:MiB])
        assert resp.status_code == 202, client.explain(resp)
        location = client.relative_location(resp)

        # SIGTERM: Azurite (LokiJS) saves its metadata every few seconds, so a SIGKILL would lose blocks it had
        # acknowledged — which real storage never does. The service sees the same thing: connections refused.
        servers.stop(azurite.process)
        resp = client.request("PATCH", location, headers={**OCTET, "Content-Range": f"{MiB}-{2 * MiB - 1}"},
                              body=layer.content[MiB:])
        assert_unavailable(client, resp)
        assert_unavailable(client, upload(client, os.urandom(1000)))
        other = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": descriptor(OCI_CONFIG, b"{}"), "layers": []}))
        resp = client.request("PUT", "/v2/<name>/manifests/during", headers={"Content-Type": OCI_MANIFEST},
                              body=other.content)
        assert resp.status_code in (400, 503), client.explain(resp)  # the config is missing anyway; never a 500

        with azurite_on_disk(binary, account, disk, port):
            status = client.request("GET", location)
            assert status.status_code == 204, client.explain(status)
            offset = resume_offset(status)
            resp = client.request("PATCH", client.relative_location(status), body=layer.content[offset:], headers={
                **OCTET, "Content-Range": f"{offset}-{len(layer.content) - 1}"})
            assert resp.status_code == 202, client.explain(resp)
            resp = client.request("PUT", client.relative_location(resp), params={"digest": layer.digest},
                                  headers=OCTET, body=b"")
            assert resp.status_code == 201, client.explain(resp)
            after = push_image(client, "after")
            for tag, manifest in (("before", before), ("after", after)):
                resp = client.request("GET", f"/v2/<name>/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                assert resp.status_code == 200 and resp.content == manifest.content
            resp = client.request("GET", "/v2/<name>/blobs/<digest>", digest=layer.digest)
            assert resp.status_code == 200 and resp.content == layer.content
    assert "Traceback" not in svc.log(), "a storage outage is an expected failure, not a crash"


# -- the slow-client guard and uploads -----------------------------------------------------------------------------

IO_TIMEOUT = 2


def paced(content: bytes, rate: float, piece: int = 64 * 1024):
    """The body as a generator (so chunked, no Content-Length) that arrives at `rate` bytes per second."""
    started = time.monotonic()
    for offset in range(0, len(content), piece):
        yield content[offset:offset + piece]
        ahead = started + (offset + piece) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def test_slow_upload_at_a_normal_rate_is_not_cut_off_but_a_stalled_body_is(request, tmp_path):
    """With a 2 s I/O budget and the 1 MiB/s floor: 8 MiB in small PATCHes over several seconds, and 8 MiB streamed
    in one PATCH at 1.6 MiB/s (5 s, far past the budget), both complete; a body that stalls is cut off."""
    with dedicated_service(request, tmp_path, "sqlite-local",
                           {"CONTROL_PLANE_REQUEST_IO_TIMEOUT": str(IO_TIMEOUT)}) as svc:
        target = admin_registry_on(svc)
        client = target.client("slow/app")
        content = os.urandom(8 * MiB)

        resp = client.request("POST", "/v2/<name>/blobs/uploads/")
        location, piece, started = client.relative_location(resp), 128 * 1024, time.monotonic()
        for offset in range(0, len(content), piece):
            resp = client.request("PATCH", location, body=content[offset:offset + piece], headers={
                **OCTET, "Content-Range": f"{offset}-{offset + piece - 1}"})
            assert resp.status_code == 202, client.explain(resp)
            location = client.relative_location(resp)
            time.sleep(0.06)
        assert time.monotonic() - started > 4
        resp = client.request("PUT", location, params={"digest": sha256(content)}, headers=OCTET, body=b"")
        assert resp.status_code == 201, client.explain(resp)

        streamed = os.urandom(8 * MiB)
        resp = client.request("POST", "/v2/<name>/blobs/uploads/")
        location = client.relative_location(resp)
        token_headers = {"Authorization": "Basic " + _basic(target)}
        started = time.monotonic()
        resp = client.session.patch(client.url(location), data=paced(streamed, 1.6 * MiB), verify=target.ca,
                                    headers={**OCTET, **token_headers}, timeout=60)
        assert resp.status_code == 202, f"{resp.status_code} {resp.text[:300]}"
        assert time.monotonic() - started > IO_TIMEOUT + 2
        resp = client.request("PUT", client.relative_location(resp), params={"digest": sha256(streamed)},
                              headers=OCTET, body=b"")
        assert resp.status_code == 201, client.explain(resp)

        # A stalled body: 64 KiB of an announced 8 MiB, then nothing. The guard allows 2 s + 8 MiB at 1 MiB/s.
        resp = client.request("POST", "/v2/<name>/blobs/uploads/")
        location = client.relative_location(resp)
        stalled = os.urandom(8 * MiB)
        context = ssl.create_default_context(cafile=target.ca)
        with socket.create_connection(("127.0.0.1", target.service_port), timeout=60) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall((f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{target.service_port}\r\n"
                         f"Authorization: Basic {_basic(target)}\r\nContent-Type: application/octet-stream\r\n"
                         f"Content-Range: 0-{len(stalled) - 1}\r\nContent-Length: {len(stalled)}\r\n\r\n").encode()
                        + stalled[:64 * 1024])
            started = time.monotonic()
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := tls.recv(65536):
                    answer += chunk
            waited = time.monotonic() - started
        assert waited < IO_TIMEOUT + 8 + 10, f"the stalled body held its thread {waited:.1f} s"
        assert answer == b"" or answer.split(b" ")[1] in (b"408", b"400"), answer[:300]
        assert client.request("HEAD", "/v2/<name>/blobs/<digest>", digest=sha256(stalled)).status_code == 404
        # The session survives, and a retry from where the registry says it stands completes.
        status = client.request("GET", location)
        assert status.status_code == 204, client.explain(status)
        offset = resume_offset(status)
        resp = client.request("PATCH", client.relative_location(status), body=stalled[offset:], headers={
            **OCTET, "Content-Range": f"{offset}-{len(stalled) - 1}"})
        assert resp.status_code == 202, client.explain(resp)
        resp = client.request("PUT", client.relative_location(resp), params={"digest": sha256(stalled)},
                              headers=OCTET, body=b"")
        assert resp.status_code == 201, client.explain(resp)
        assert "Traceback" not in svc.log()


def _basic(target: RegistryUnderTest) -> str:
    import base64

    return base64.b64encode(f"{target.username}:{target.password}".encode()).decode()

