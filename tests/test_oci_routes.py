"""The built-in login server's `/v2` routes and request auth, with raw HTTPS requests against `control-plane serve`.

Each route's happy path and its bad inputs (the OCI error body, the right code, a 4xx — never a 500), the challenge
every client parses, bearer tokens (bound to their service, expiry, signature, scope), Basic credentials (admin user,
service principal, null-GUID + refresh token) and anonymous pull; host style (`<name>.localhost:<port>`, reached
through a CONNECT proxy) and path style (`/v2/<registry>/<repo>` on the service's own address).
The conformance replica (tests/test_oci_conformance.py) covers the protocol's workflows in depth; this module
covers what is specific to this service.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry.models import Registry, RegistryUpdateParameters, Sku
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.authorization import roles
from control_plane.config import Settings
from control_plane.crypto import load_cipher
from control_plane.dataplane.tokens import Base64SafeJSONEncoder, RegistryTokens
from control_plane.db import Database
from control_plane.identity.tokens import TokenIssuer
from tests.conftest import client_kwargs, unique_registry_name
from tests.support.dataplane import ConnectProxy

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
NULL_USERNAME = "00000000-0000-0000-0000-000000000000"
EXPOSED = "Docker-Content-Digest, WWW-Authenticate, Link, X-Ms-Correlation-Request-Id"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rg(service, rmc):
    name = f"rg-oci-{uuid.uuid4().hex[:8]}"
    rmc.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    rmc.resource_groups.begin_delete(name).result()


@pytest.fixture(scope="module")
def proxy(service):
    port = int(service.url.rsplit(":", 1)[1])
    with ConnectProxy(suffixes={".localhost": port}) as running:
        yield running


def make_registry(acr, rg: str, prefix: str = "oci", **properties) -> tuple[str, str, str]:
    """(name, login server, admin password) of a new registry with the admin user on."""
    registry = acr.registries.begin_create(rg, unique_registry_name(prefix), Registry(
        location="eastus", sku=Sku(name="Standard"), admin_user_enabled=True, **properties)).result()
    return registry.name, registry.login_server, acr.registries.list_credentials(rg, registry.name).passwords[0].value


@pytest.fixture(scope="module")
def reg(acr, rg):
    return make_registry(acr, rg)


@pytest.fixture(scope="module")
def other(acr, rg):
    return make_registry(acr, rg, "ocib")


@dataclass
class Client:
    """Raw requests to one registry, host style (through the proxy) or path style, with fixed credentials."""

    session: requests.Session
    base: str  # scheme://host[:port]
    prefix: str  # "" (host style) or "<registry>/" (path style)
    service: str  # the token service's `service` for this style
    token_url: str
    authorization: str | None = None

    def path(self, repository: str, rest: str) -> str:
        return f"/v2/{self.prefix}{repository}/{rest}"

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        headers = dict(headers or {})
        if self.authorization and "Authorization" not in headers:
            headers["Authorization"] = self.authorization
        return self.session.request(method, path if path.startswith("http") else self.base + path,
                                    headers=headers, timeout=60, allow_redirects=False, **kwargs)

    def token(self, scopes: list[str], auth: tuple[str, str] | None) -> str:
        response = self.session.get(self.token_url, params={"service": self.service, "scope": scopes}, auth=auth,
                                    timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def with_token(self, scopes: list[str], auth: tuple[str, str] | None) -> Client:
        return Client(self.session, self.base, self.prefix, self.service, self.token_url,
                      f"Bearer {self.token(scopes, auth)}")

    def with_basic(self, username: str, password: str) -> Client:
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
        return Client(self.session, self.base, self.prefix, self.service, self.token_url, f"Basic {encoded}")

    def anonymous(self) -> Client:
        return Client(self.session, self.base, self.prefix, self.service, self.token_url)

    def scope(self, repository: str, actions: str) -> str:
        return f"repository:{self.prefix}{repository}:{actions}"


def host_client(service, proxy: ConnectProxy, login_server: str) -> Client:
    session = proxy.session(service.ca)
    return Client(session, f"https://{login_server}", "", login_server, f"https://{login_server}/oauth2/token")


def path_client(service, name: str) -> Client:
    session = requests.Session()
    session.trust_env = False
    session.verify = service.ca
    return Client(session, service.url, f"{name}/", urlsplit(service.url).netloc, f"{service.url}/oauth2/token")


def assert_oci_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert list(body) == ["errors"] and body["errors"][0]["code"] == code, body
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    return body["errors"][0]


def challenge_of(response: requests.Response) -> str:
    assert response.status_code == 401, response.text
    return response.headers["WWW-Authenticate"]


def push_blob(client: Client, repository: str, data: bytes) -> str:
    digest = sha256(data)
    response = client.request("POST", client.path(repository, f"blobs/uploads/?digest={digest}"), data=data,
                              headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    return digest


def image_manifest(client: Client, repository: str, layer: bytes, subject: dict | None = None,
                   artifact_type: str | None = None) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
                        ).encode()
    manifest: dict = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": push_blob(client, repository, config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(client, repository, layer), "size": len(layer)}],
    }
    if subject is not None:
        manifest["subject"] = subject
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    return json.dumps(manifest, indent=2).encode()


def put_manifest(client: Client, repository: str, reference: str, body: bytes,
                 media_type: str = OCI_MANIFEST) -> requests.Response:
    return client.request("PUT", client.path(repository, f"manifests/{reference}"), data=body,
                          headers={"Content-Type": media_type})


def fetch_blob(client: Client, repository: str, digest: str, headers: dict | None = None) -> requests.Response:
    """GET a blob, following a 307 to storage without the registry's credentials (as every client does)."""
    response = client.request("GET", client.path(repository, f"blobs/{digest}"), headers=headers)
    if response.status_code == 307:
        assert response.headers["Docker-Content-Digest"] == digest
        return requests.get(response.headers["Location"], headers=headers, timeout=30)
    return response


def in_process_tokens(service) -> tuple[RegistryTokens, Database]:
    settings = Settings.from_env(service.env)
    db = Database(settings.database_url)
    issuer = TokenIssuer(db, load_cipher(settings.encryption_key, settings.data_dir), settings.public_url,
                         settings.token_lifetime_seconds)
    return RegistryTokens(issuer, settings.public_url, settings.registry_token_lifetime_seconds), db


# -- ping, challenge, headers -----------------------------------------------------------------------------------


def test_ping_challenges_name_realm_and_service_in_both_styles(service, proxy, reg):
    name, login_server, password = reg
    host = host_client(service, proxy, login_server)
    response = host.request("GET", "/v2/")
    assert challenge_of(response) == f'Bearer realm="https://{login_server}/oauth2/token",service="{login_server}"'
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert response.headers["Access-Control-Expose-Headers"] == EXPOSED
    assert response.headers["X-Ms-Correlation-Request-Id"]
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"

    path = path_client(service, name)
    own = urlsplit(service.url).netloc
    assert challenge_of(path.request("GET", "/v2/")) == (
        f'Bearer realm="{service.url}/oauth2/token",service="{own}"')
    assert path.request("GET", "/v2").status_code == 401

    # Any valid credentials open the ping: a token without any scope (what `skopeo login` asks for), Basic.
    for client in (host.with_token([], (name, password)), host.with_basic(name, password),
                   path.with_token([], (name, password)), path.with_basic(name, password)):
        ok = client.request("GET", "/v2/")
        assert ok.status_code == 200 and ok.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert challenge_of(host.with_basic(name, "wrong").request("GET", "/v2/")).startswith("Bearer realm=")
    assert challenge_of(host.request("GET", "/v2/", headers={"Authorization": "Bearer not-a-token"}))
    # The management API still answers on the service's own host, registry hosts never reach it.
    assert path.session.get(f"{service.url}/healthz", timeout=30).json() == {"status": "ok"}
    assert host.request("GET", "/subscriptions?api-version=2022-09-01").json()["errors"][0]["code"] == "NOT_FOUND"


def test_unknown_registry_and_unknown_routes(service, proxy, reg):
    name, login_server, password = reg
    ghost = host_client(service, proxy, f"nosuchregistry{uuid.uuid4().hex[:6]}.localhost:"
                                        f"{service.url.rsplit(':', 1)[1]}")
    assert_oci_error(ghost.request("GET", "/v2/"), 404, "NAME_UNKNOWN")
    path = path_client(service, "nosuchregistry1").with_basic(name, password)
    assert_oci_error(path.request("GET", "/v2/nosuchregistry1/app/tags/list"), 404, "NAME_UNKNOWN")
    host = host_client(service, proxy, login_server).with_basic(name, password)
    assert_oci_error(host.request("GET", "/v2/app/nothing/here"), 404, "NAME_UNKNOWN")
    assert_oci_error(host.request("POST", "/v2/app/manifests/latest"), 405, "UNSUPPORTED")
    assert_oci_error(host.request("GET", "/v2/team/app/tags/list"), 404, "NAME_UNKNOWN")


def test_path_style_catalog_is_unsupported_on_the_services_own_host(service, proxy, reg):
    """`/v2/_catalog` on the service's address names no registry: 404 with the OCI body and code UNSUPPORTED (how
    registries without a catalog answer; oras, crane and regctl print the code and message), whoever asks — and
    never 401, which would send clients after a token the answer cannot change. Host style lists as before."""
    name, login_server, password = reg
    own = path_client(service, name)
    for client in (own.anonymous(), own.with_basic(name, password)):
        for query in ("", "?n=10", "?last=a&n=1"):
            error = assert_oci_error(client.request("GET", f"/v2/_catalog{query}"), 404, "UNSUPPORTED")
            assert "login server" in error["message"] and error["detail"] == {
                "loginServerSuffix": f"localhost:{service.url.rsplit(':', 1)[1]}"}
        head = client.request("HEAD", "/v2/_catalog")
        assert head.status_code == 404 and head.content == b""
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert_oci_error(client.request(method, "/v2/_catalog"), 405, "UNSUPPORTED")
    # A registry named like the catalog is still a path-style registry segment, not the catalog.
    assert_oci_error(own.with_basic(name, password).request("GET", "/v2/_catalog/app/tags/list"), 400,
                     "NAME_INVALID")
    host = host_client(service, proxy, login_server).with_basic(name, password)
    listed = host.request("GET", "/v2/_catalog")
    assert listed.status_code == 200 and "repositories" in listed.json()


# -- uploads and blobs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["host", "path"])
def test_upload_flows_and_blob_reads(service, proxy, reg, style):
    name, login_server, password = reg
    base = host_client(service, proxy, login_server) if style == "host" else path_client(service, name)
    repo = f"uploads/{style}"
    client = base.with_token([base.scope(repo, "pull,push,delete")], (name, password))

    # Monolithic POST ?digest=.
    data = b"monolithic " * 1000
    digest = push_blob(client, repo, data)
    # POST, then chunked PATCHes with Content-Range, status, a repeated chunk (416), the closing PUT.
    started = client.request("POST", client.path(repo, "blobs/uploads/"))
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    assert location.startswith(f"/v2/{client.prefix}{repo}/blobs/uploads/")  # relative, as the client named it
    assert started.headers["Range"] == "0-0" and started.headers["Docker-Upload-UUID"] in location
    chunked = bytes(range(256)) * 40
    first = client.request("PATCH", location, data=chunked[:4000],
                           headers={"Content-Range": "0-3999", "Content-Type": "application/octet-stream"})
    assert first.status_code == 202 and first.headers["Range"] == "0-3999", first.text
    again = client.request("PATCH", first.headers["Location"], data=chunked[:4000], headers={"Content-Range": "0-3999"})
    assert_oci_error(again, 416, "RANGE_INVALID")
    gap = client.request("PATCH", location, data=b"x", headers={"Content-Range": "5000-5000"})
    assert_oci_error(gap, 416, "RANGE_INVALID")
    assert_oci_error(client.request("PATCH", location, data=b"xy", headers={"Content-Range": "4000-4005"}),
                     416, "RANGE_INVALID")  # the range disagrees with the body's length
    status = client.request("GET", location)
    assert status.status_code == 204 and status.headers["Range"] == "0-3999" and status.headers["Location"]
    closed = client.request("PUT", f"{location}?digest={sha256(chunked)}", data=chunked[4000:])
    assert closed.status_code == 201, closed.text
    assert closed.headers["Location"] == f"/v2/{client.prefix}{repo}/blobs/{sha256(chunked)}"
    assert closed.headers["Docker-Content-Digest"] == sha256(chunked)

    # Streamed PATCH with a chunked request body (no Content-Range), then an empty PUT.
    streamed = b"streamed!" * 100000
    location = client.request("POST", client.path(repo, "blobs/uploads/")).headers["Location"]
    patched = client.request("PATCH", location, data=(streamed[i:i + 65536] for i in range(0, len(streamed), 65536)))
    assert patched.status_code == 202 and patched.headers["Range"] == f"0-{len(streamed) - 1}", patched.text
    done = client.request("PUT", f"{patched.headers['Location']}?digest={sha256(streamed)}",
                          headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text

    # A wrong digest stores nothing; cancel ends a session.
    location = client.request("POST", client.path(repo, "blobs/uploads/")).headers["Location"]
    assert_oci_error(client.request("PUT", f"{location}?digest={sha256(b'other')}", data=b"mine"),
                     400, "DIGEST_INVALID")
    assert_oci_error(client.request("GET", client.path(repo, f"blobs/{sha256(b'mine')}")), 404, "BLOB_UNKNOWN")
    assert client.request("HEAD", client.path(repo, f"blobs/{sha256(b'mine')}")).status_code == 404
    assert_oci_error(client.request("PUT", location), 400, "DIGEST_INVALID")  # no digest at all
    location = client.request("POST", client.path(repo, "blobs/uploads/")).headers["Location"]
    assert client.request("DELETE", location).status_code == 204
    assert_oci_error(client.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(client.request("PATCH", client.path(repo, "blobs/uploads/nosuchupload"), data=b"x"),
                     404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(client.request("POST", client.path(repo, "blobs/uploads/?digest=sha256:abc"), data=b"x"),
                     400, "DIGEST_INVALID")

    # Reads: HEAD has the length, GET the bytes, Range 206 with Content-Range, an unsatisfiable range 416.
    head = client.request("HEAD", client.path(repo, f"blobs/{digest}"))
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    full = fetch_blob(client, repo, digest)
    assert full.status_code == 200 and full.content == data
    part = fetch_blob(client, repo, digest, {"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    if client.request("GET", client.path(repo, f"blobs/{digest}")).status_code != 307:
        assert fetch_blob(client, repo, digest, {"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    assert fetch_blob(client, repo, sha256(streamed)).content == streamed

    # Cross-repository mount: 201 within the registry, 202 (a session) without `from` or from a missing blob.
    mounted = client.request("POST", client.path("mounted/app", f"blobs/uploads/?mount={digest}&from="
                                                              f"{client.prefix}{repo}"))
    if mounted.status_code == 401:  # the token names only `repo`: ask for both, as skopeo does
        client = base.with_token([base.scope("mounted/app", "pull,push"), base.scope(repo, "pull")],
                                 (name, password))
        mounted = client.request("POST", client.path("mounted/app", f"blobs/uploads/?mount={digest}&from="
                                                                  f"{client.prefix}{repo}"))
    assert mounted.status_code == 201, mounted.text
    assert mounted.headers["Location"] == f"/v2/{client.prefix}mounted/app/blobs/{digest}"
    no_from = client.request("POST", client.path("mounted/app", f"blobs/uploads/?mount={digest}"))
    assert no_from.status_code == 202 and "/blobs/uploads/" in no_from.headers["Location"]

    # Delete: 202, then 404.
    deleter = base.with_token([base.scope(repo, "pull,delete")], (name, password))
    assert deleter.request("DELETE", deleter.path(repo, f"blobs/{digest}")).status_code == 202
    assert_oci_error(deleter.request("GET", deleter.path(repo, f"blobs/{digest}")), 404, "BLOB_UNKNOWN")
    assert_oci_error(deleter.request("DELETE", deleter.path(repo, f"blobs/{digest}")), 404, "BLOB_UNKNOWN")


def test_bad_names_tags_and_digests(service, proxy, reg):
    name, login_server, password = reg
    client = host_client(service, proxy, login_server).with_basic(name, password)
    for bad in ("Team/App", "team//app", "-app", "team/app-", "a" * 300):
        assert_oci_error(client.request("GET", f"/v2/{bad}/tags/list"), 400, "NAME_INVALID")
    # Traversal forms never reach storage: `..` in the name or the digest.
    assert_oci_error(client.request("GET", "/v2/team/%2e%2e/etc/tags/list"), 400, "NAME_INVALID")
    assert_oci_error(client.request("GET", "/v2/team%2F..%2Fetc/tags/list"), 400, "NAME_INVALID")
    for digest in ("sha256:../../etc/passwd", "sha256:..%2F..%2Fetc", "sha256:" + "g" * 64, "md5:abc",
                   "sha256:" + "A" * 64, "sha256:abc", "..", "sha512:" + "0" * 64):
        response = client.request("GET", f"/v2/team/app/blobs/{digest}")
        assert response.status_code in (400, 404), (digest, response.text)
        assert response.json()["errors"][0]["code"] in ("DIGEST_INVALID", "NAME_UNKNOWN", "NAME_INVALID"), digest
    assert_oci_error(client.request("GET", "/v2/team/app/blobs/sha256:abc"), 400, "DIGEST_INVALID")
    assert_oci_error(client.request("GET", "/v2/team/app/referrers/sha256:zz"), 400, "DIGEST_INVALID")
    manifest = image_manifest(client, "team/app", b"layer for bad input")
    assert_oci_error(put_manifest(client, "team/app", "bad!tag", manifest), 400, "TAG_INVALID")
    assert_oci_error(put_manifest(client, "team/app", ".hidden", manifest), 400, "TAG_INVALID")
    assert_oci_error(put_manifest(client, "team/app", "sha256:baddigeststring", manifest), 400, "DIGEST_INVALID")
    assert_oci_error(put_manifest(client, "team/app", sha256(b"something else"), manifest), 400, "DIGEST_INVALID")
    assert_oci_error(client.request("GET", "/v2/team/app/tags/list?n=-1"), 400, "PAGINATION_NUMBER_INVALID")
    assert_oci_error(client.request("GET", "/v2/team/app/tags/list?n=abc"), 400, "PAGINATION_NUMBER_INVALID")
    # Percent-encoded names (the SDK sends a%2Fb) are the same repository.
    assert put_manifest(client, "team/app", "encoded", manifest).status_code == 201
    encoded = client.request("GET", "/v2/team%2Fapp/manifests/encoded", headers={"Accept": OCI_MANIFEST})
    assert encoded.status_code == 200 and encoded.content == manifest


def test_manifests_tags_catalog_and_referrers(service, proxy, acr, rg):
    name, login_server, password = make_registry(acr, rg, "ocim")
    base = host_client(service, proxy, login_server)
    client = base.with_basic(name, password)
    manifest = image_manifest(client, "team/app", b"layer one")
    digest = sha256(manifest)
    for tag in ("1.0", "1.1", "2.0", "latest"):
        put = put_manifest(client, "team/app", tag, manifest)
        assert put.status_code == 201, put.text
        assert put.headers["Docker-Content-Digest"] == digest
        assert put.headers["Location"] == f"/v2/team/app/manifests/{digest}"
    got = client.request("GET", "/v2/team/app/manifests/1.0", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200 and got.content == manifest  # the exact bytes
    assert got.headers["Content-Type"] == OCI_MANIFEST and got.headers["Docker-Content-Digest"] == digest
    head = client.request("HEAD", f"/v2/team/app/manifests/{digest}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(manifest))
    assert head.headers["Docker-Content-Digest"] == digest and head.headers["Content-Type"] == OCI_MANIFEST
    assert_oci_error(client.request("GET", "/v2/team/app/manifests/9.9"), 404, "MANIFEST_UNKNOWN")
    assert_oci_error(client.request("GET", f"/v2/team/app/manifests/{sha256(b'nope')}"), 404, "MANIFEST_UNKNOWN")

    # Tag paging: n, last, Link.
    page = client.request("GET", "/v2/team/app/tags/list?n=2")
    assert page.json() == {"name": "team/app", "tags": ["1.0", "1.1"]}
    assert page.headers["Link"] == '</v2/team/app/tags/list?last=1.1&n=2>; rel="next"'
    rest = client.request("GET", "/v2/team/app/tags/list?last=1.1&n=2")
    assert rest.json()["tags"] == ["2.0", "latest"]
    assert client.request("GET", "/v2/team/app/tags/list?n=0").json()["tags"] == []
    assert client.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["1.0", "1.1", "2.0", "latest"]

    # The catalog, paged, with ACR's Link (and `orderby=`, which az needs the `?` of).
    put_manifest(client, "other", "1", image_manifest(client, "other", b"other layer"))
    catalog = client.request("GET", "/v2/_catalog?n=1")
    assert catalog.json() == {"repositories": ["other"]}
    assert catalog.headers["Link"] == '</v2/_catalog?last=other&n=1&orderby=>; rel="next"'
    assert client.request("GET", "/v2/_catalog?last=other&n=1").json() == {"repositories": ["team/app"]}

    # Referrers: OCI-Subject on the push, the index with and without an artifactType filter.
    subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest)}
    signature = image_manifest(client, "team/app", b"signature", subject, "application/vnd.example.sig")
    pushed = put_manifest(client, "team/app", sha256(signature), signature)
    assert pushed.status_code == 201 and pushed.headers["OCI-Subject"] == digest
    sbom = image_manifest(client, "team/app", b"sbom", subject, "application/vnd.example.sbom")
    assert put_manifest(client, "team/app", sha256(sbom), sbom).status_code == 201
    referrers = client.request("GET", f"/v2/team/app/referrers/{digest}")
    assert referrers.status_code == 200 and referrers.headers["Content-Type"] == OCI_INDEX
    index = referrers.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    assert {d["digest"] for d in index["manifests"]} == {sha256(signature), sha256(sbom)}
    filtered = client.request("GET", f"/v2/team/app/referrers/{digest}?artifactType=application/vnd.example.sbom")
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [sha256(sbom)]
    empty = client.request("GET", f"/v2/team/app/referrers/{sha256(b'no subject')}")
    assert empty.status_code == 200 and empty.json()["manifests"] == []

    # Invalid manifests: bad JSON, unknown media type, a missing blob, over the size limit.
    assert_oci_error(put_manifest(client, "team/app", "bad", b"{not json"), 400, "MANIFEST_INVALID")
    unknown = json.dumps({**json.loads(manifest), "mediaType": "application/x-unknown"}).encode()
    assert_oci_error(put_manifest(client, "team/app", "bad", unknown, "application/x-unknown"), 400,
                     "MANIFEST_INVALID")
    missing = json.loads(manifest)
    missing["layers"][0]["digest"] = sha256(b"never pushed")
    assert_oci_error(put_manifest(client, "team/app", "bad", json.dumps(missing).encode()), 400,
                     "MANIFEST_BLOB_UNKNOWN")
    huge = manifest[:-1] + b" " * (4 * 1024 * 1024) + b"}"
    assert_oci_error(put_manifest(client, "team/app", "huge", huge), 413, "SIZE_INVALID")
    assert client.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["1.0", "1.1", "2.0", "latest"]

    # Deletes: a tag (202, the others stay), the manifest by digest (202, every tag goes), then 404.
    assert client.request("DELETE", "/v2/team/app/manifests/latest").status_code == 202
    assert client.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["1.0", "1.1", "2.0"]
    assert client.request("DELETE", f"/v2/team/app/manifests/{digest}").status_code == 202
    assert_oci_error(client.request("GET", f"/v2/team/app/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert_oci_error(client.request("DELETE", f"/v2/team/app/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert client.request("GET", "/v2/team/app/tags/list").json()["tags"] == []


# -- auth -------------------------------------------------------------------------------------------------------


def test_bearer_tokens_are_checked_for_service_scope_expiry_and_signature(service, proxy, reg, other):
    name, login_server, password = reg
    other_name, other_server, other_password = other
    host = host_client(service, proxy, login_server)
    admin = host.with_basic(name, password)
    assert put_manifest(admin, "team/app", "1.0", image_manifest(admin, "team/app", b"auth layer")).status_code == 201

    # A pull token pulls; a push without push rights gets 401 with the scope and insufficient_scope (never 403).
    puller = host.with_token(["repository:team/app:pull"], (name, password))
    assert puller.request("GET", "/v2/team/app/manifests/1.0").status_code == 200
    refused = puller.request("POST", "/v2/team/app/blobs/uploads/")
    assert challenge_of(refused) == (f'Bearer realm="https://{login_server}/oauth2/token",service="{login_server}",'
                                     'scope="repository:team/app:pull,push",error="insufficient_scope"')
    assert refused.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Name": "team/app", "Action": "pull"},
        {"Type": "repository", "Name": "team/app", "Action": "push"}]
    assert 'scope="repository:team/other:pull"' in challenge_of(puller.request("GET", "/v2/team/other/tags/list"))
    assert 'scope="repository:team/app:delete"' in challenge_of(
        puller.request("DELETE", "/v2/team/app/manifests/1.0"))
    assert 'scope="registry:catalog:*"' in challenge_of(puller.request("GET", "/v2/_catalog"))
    # Without credentials: the same challenge, no error.
    anonymous = host.request("GET", "/v2/team/app/manifests/1.0")
    assert challenge_of(anonymous).endswith('scope="repository:team/app:pull"')

    # A token for registry B does not open registry A, nor A's for B.
    other_host = host_client(service, proxy, other_server)
    b_token = other_host.with_token(["repository:team/app:pull"], (other_name, other_password)).authorization
    assert 'error="insufficient_scope"' in challenge_of(
        host.request("GET", "/v2/team/app/manifests/1.0", headers={"Authorization": b_token}))
    assert other_host.request("GET", "/v2/", headers={"Authorization": puller.authorization}).status_code == 401
    # ... nor does a host-style token open the path style (another service), or the reverse.
    path = path_client(service, name)
    assert path.request("GET", f"/v2/{name}/team/app/manifests/1.0",
                        headers={"Authorization": puller.authorization}).status_code == 401

    tokens, db = in_process_tokens(service)
    try:
        access = [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
        expired = tokens.access_token(name, login_server, access, now=time.time() - 3600).token
        assert host.request("GET", "/v2/team/app/manifests/1.0",
                            headers={"Authorization": f"Bearer {expired}"}).status_code == 401
        fresh = tokens.access_token(name, login_server, access).token
        assert host.request("GET", "/v2/team/app/manifests/1.0",
                            headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    finally:
        db.dispose()
    # Forged: signed by another key with the same kid, or the claims changed under the real signature.
    claims = jwt.decode(puller.authorization[7:], options={"verify_signature": False})
    header = jwt.get_unverified_header(puller.authorization[7:])
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": header["kid"]})
    assert host.request("GET", "/v2/team/app/manifests/1.0",
                        headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    head, _payload, signature = puller.authorization[7:].split(".")
    widened = {**claims, "access": [{"type": "repository", "name": "team/app", "actions": ["*"]}]}
    tampered = base64.urlsafe_b64encode(json.dumps(widened).encode()).decode().rstrip("=")
    assert host.request("DELETE", "/v2/team/app/manifests/1.0",
                        headers={"Authorization": f"Bearer {head}.{tampered}.{signature}"}).status_code == 401
    none_alg = jwt.encode(widened, None, algorithm="none")
    assert host.request("GET", "/v2/team/app/manifests/1.0",
                        headers={"Authorization": f"Bearer {none_alg}"}).status_code == 401


def test_basic_credentials_admin_principal_refresh_token_and_anonymous(service, proxy, acr, rg, credential):
    name, login_server, password = make_registry(acr, rg, "ocibasic")
    host = host_client(service, proxy, login_server)
    admin = host.with_basic(name, password)
    manifest = image_manifest(admin, "team/app", b"basic layer")
    assert put_manifest(admin, "team/app", "1.0", manifest).status_code == 201
    assert admin.request("DELETE", "/v2/team/app/manifests/nosuchtag").status_code == 404

    # A service principal with AcrPull: pulls with Basic, a push is challenged.
    puller = service.cli_json("sp", "create", "--name", f"oci-pull-{uuid.uuid4().hex[:6]}")
    auth = AuthorizationManagementClient(credential, service.subscription_id, **client_kwargs(service))
    scope = (f"/subscriptions/{service.subscription_id}/resourceGroups/{rg}/providers/"
             f"Microsoft.ContainerRegistry/registries/{name}")
    auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/"
                           f"roleDefinitions/{roles.ACR_PULL}",
        principal_id=puller["id"], principal_type="ServicePrincipal"))
    sp = host.with_basic(puller["appId"], puller["password"])
    assert sp.request("GET", "/v2/team/app/manifests/1.0").content == manifest
    assert sp.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["1.0"]
    assert challenge_of(sp.request("POST", "/v2/team/app/blobs/uploads/"))
    assert challenge_of(host.with_basic(puller["appId"], "wrong").request("GET", "/v2/team/app/tags/list"))

    # The null-GUID user with a refresh token from the exchange.
    aad = requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": puller["appId"], "client_secret": puller["password"],
        "scope": "https://containerregistry.azure.net/.default"}, verify=service.ca, timeout=30).json()
    refresh = requests.post(f"{service.url}/oauth2/exchange", data={
        "grant_type": "access_token", "service": login_server, "access_token": aad["access_token"]},
        verify=service.ca, timeout=30).json()["refresh_token"]
    assert host.with_basic(NULL_USERNAME, refresh).request("GET", "/v2/team/app/manifests/1.0").status_code == 200
    assert challenge_of(host.with_basic(NULL_USERNAME, refresh + "x").request("GET", "/v2/team/app/tags/list"))
    # ... but a refresh token is no bearer token.
    assert host.request("GET", "/v2/", headers={"Authorization": f"Bearer {refresh}"}).status_code == 401

    # Anonymous pull, once enabled: reads without credentials; writes are still challenged.
    assert host.request("GET", "/v2/team/app/manifests/1.0").status_code == 401
    acr.registries.begin_update(rg, name, RegistryUpdateParameters(anonymous_pull_enabled=True)).result()
    assert host.request("GET", "/v2/").status_code == 200
    assert host.request("GET", "/v2/team/app/manifests/1.0").content == manifest
    assert host.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["1.0"]
    assert 'scope="repository:team/app:pull,push"' in challenge_of(host.request("POST", "/v2/team/app/blobs/uploads/"))
    anon_token = requests.post(f"{service.url}/oauth2/token", data={
        "grant_type": "password", "service": login_server, "scope": "repository:team/app:pull",
        "refresh_token": ""}, verify=service.ca, timeout=30)  # the SDK's anonymous form
    assert anon_token.status_code == 200, anon_token.text
    assert jwt.decode(anon_token.json()["access_token"], options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]}]


def test_path_style_tokens_cover_several_registries(service, reg, other):
    name, _, password = reg
    other_name, _, other_password = other
    path = path_client(service, name)
    admin = path.with_basic(name, password)
    assert put_manifest(admin, "multi/app", "1.0", image_manifest(admin, "multi/app", b"multi")).status_code == 201
    # The path style's service is the public host; the scope's first segment picks the registry. The admin user
    # of one registry gets nothing on another.
    response = path.session.get(path.token_url, params={
        "service": path.service, "scope": [f"repository:{name}/multi/app:pull,push",
                                           f"repository:{other_name}/multi/app:pull"]},
        auth=(name, password), timeout=30)
    assert response.status_code == 200, response.text
    access = jwt.decode(response.json()["token"], options={"verify_signature": False})["access"]
    assert access == [{"type": "repository", "name": f"{name}/multi/app", "actions": ["pull", "push"]},
                      {"type": "repository", "name": f"{other_name}/multi/app", "actions": []}]
    client = Client(path.session, path.base, f"{name}/", path.service, path.token_url,
                    f"Bearer {response.json()['token']}")
    assert client.request("GET", f"/v2/{name}/multi/app/tags/list").json() == {
        "name": f"{name}/multi/app", "tags": ["1.0"]}
    assert challenge_of(client.request("GET", f"/v2/{other_name}/multi/app/tags/list")).endswith(
        f'scope="repository:{other_name}/multi/app:pull",error="insufficient_scope"')
    assert_oci_error(admin.request("GET", f"/v2/{name}/tags/list"), 400, "NAME_INVALID")
    other_admin = path.with_basic(other_name, other_password)
    assert other_admin.request("GET", f"/v2/{name}/multi/app/tags/list").status_code == 401


def test_token_payloads_decode_with_plain_base64(service, reg):
    """The SDK decodes JWT payloads with base64.b64decode, which refuses base64url's `-` and `_`."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alphabet = "abc>?~/+=&<" + "\x7f" + "é"
    for index in range(3000):
        value = "".join(alphabet[(index * 7 + i * 13) % len(alphabet)] for i in range(index % 17 + 1))
        claims = {"sub": value, "aud": f"x{'>' * (index % 5)}.localhost", "n": index}
        payload = jwt.encode(claims, private, algorithm="RS256", json_encoder=Base64SafeJSONEncoder).split(".")[1]
        assert "-" not in payload and "_" not in payload, claims
        assert json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4))) == claims
    name, login_server, password = reg
    token = requests.get(f"{service.url}/oauth2/token", params={
        "service": login_server, "scope": "repository:team/app:pull"}, auth=(name, password), verify=service.ca,
        timeout=30).json()["token"]
    payload = token.split(".")[1]
    assert json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))["aud"] == login_server
