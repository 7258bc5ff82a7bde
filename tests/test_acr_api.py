"""ACR's data-plane API (`/acr/v1/…`) on `control-plane serve`, host style: raw requests for the wire shapes, paging,
locks and refusals; the azure-containerregistry 1.2.0 SDK; and az 2.91's `acr repository` and `acr manifest`.

Content is pushed first with raw `/v2` requests (admin Basic, which the data plane takes directly, as ACR does).
`<name>.localhost:<port>` does not resolve here: requests and the SDK reach it through tests/support/oci.py's
LoopbackAdapter (the URL, Host, SNI and certificate check stay the login server's); az, which builds its own
sessions, through tests/support/dataplane.py's CONNECT proxy (HTTPS_PROXY).
"""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa
from azure.containerregistry import (
    ArtifactManifestOrder,
    ArtifactTagOrder,
    ContainerRegistryClient,
)
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry.models import Registry, Sku

from control_plane.authorization import roles
from control_plane.config import Settings
from control_plane.content.models import Blob, RegistryEvent
from control_plane.db import Database
from control_plane.registries.models import Registry as RegistryRow
from tests.conftest import client_kwargs, unique_registry_name
from tests.support import tools
from tests.support.az import Az, az_env, login, register_cloud
from tests.support.dataplane import ConnectProxy
from tests.support.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, LoopbackAdapter, sha256

ACR_AUDIENCE = "https://containerregistry.azure.net"
DISALLOWED = "REGISTRY_DISALLOWED_OPERATION"
ATTRIBUTES = {"deleteEnabled": True, "writeEnabled": True, "readEnabled": True, "listEnabled": True}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LINK = re.compile(r'^<(/acr/v1/[^>]*\?[^>]*)>; rel="next"$')


# -- registries and content -------------------------------------------------------------------------------------


@dataclass
class Reg:
    """A registry with its admin user, reached at its login server through 127.0.0.1."""

    service: Any
    name: str
    login_server: str
    admin: tuple[str, str]
    session: requests.Session

    @property
    def endpoint(self) -> str:
        return f"https://{self.login_server}"

    def request(self, method: str, path: str, auth: Any = "admin", **kwargs) -> requests.Response:
        auth = self.admin if auth == "admin" else auth
        return self.session.request(method, self.endpoint + path, auth=auth, verify=self.service.ca, timeout=60,
                                    allow_redirects=False, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def patch(self, path: str, body: Any, **kwargs) -> requests.Response:
        return self.request("PATCH", path, json=body, **kwargs)


@dataclass(frozen=True)
class Image:
    digest: str
    size: int  # of the manifest
    image_size: int  # manifest + config + layers
    layer: str


def service_port(service) -> int:
    return int(service.url.rsplit(":", 1)[1])


def loopback_session(service, login_server: str) -> requests.Session:
    session = requests.Session()
    session.mount(f"https://{login_server}", LoopbackAdapter(service_port(service)))
    return session


def create_registry(service, acr, group: str, **properties) -> Reg:
    created = acr.registries.begin_create(group, unique_registry_name("acrapi"), Registry(
        location="eastus", sku=Sku(name="Standard"), admin_user_enabled=True, **properties)).result()
    password = acr.registries.list_credentials(group, created.name).passwords[0].value
    return Reg(service, created.name, created.login_server, (created.name, password),
               loopback_session(service, created.login_server))


@pytest.fixture(scope="module")
def acr_group(rmc):
    name = f"rg-acrapi-{uuid.uuid4().hex[:8]}"
    rmc.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    rmc.resource_groups.begin_delete(name).result()


@pytest.fixture
def registry(service, acr, acr_group) -> Reg:
    return create_registry(service, acr, acr_group)


def push_blob(reg: Reg, repository: str, data: bytes) -> str:
    digest = sha256(data)
    response = reg.request("POST", f"/v2/{repository}/blobs/uploads/", params={"digest": digest}, data=data,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    return digest


def push_manifest(reg: Reg, repository: str, reference: str, body: bytes, media_type: str) -> requests.Response:
    return reg.request("PUT", f"/v2/{repository}/manifests/{reference}", data=body,
                       headers={"Content-Type": media_type})


def push_image(reg: Reg, repository: str, tag: str | None, architecture: str = "amd64") -> Image:
    """A one-layer OCI image (unique content), by tag or, without one, by digest (untagged)."""
    salt = uuid.uuid4().hex
    config = json.dumps({"architecture": architecture, "os": "linux", "config": {"Labels": {"salt": salt}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = f"layer {repository} {salt}".encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": push_blob(reg, repository, config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": push_blob(reg, repository, layer), "size": len(layer)}],
    }).encode()
    digest = sha256(manifest)
    response = push_manifest(reg, repository, tag or digest, manifest, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    return Image(digest, len(manifest), len(manifest) + len(config) + len(layer), sha256(layer))


def push_index(reg: Reg, repository: str, tag: str, children: list[tuple[Image, str]]) -> str:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size,
         "platform": {"architecture": architecture, "os": "linux"}} for image, architecture in children]}).encode()
    response = push_manifest(reg, repository, tag, body, OCI_INDEX)
    assert response.status_code == 201, response.text
    return sha256(body)


def follow(reg: Reg, path: str, key: str, **kwargs) -> tuple[list, list[str]]:
    """Every item of a paged list (following `Link` as the SDK does) and the Links seen."""
    items, links = [], []
    response = reg.get(path, **kwargs)
    while True:
        assert response.status_code == 200, response.text
        items += response.json()[key]
        link = response.headers.get("Link")
        if not link:
            return items, links
        links.append(link)
        match = LINK.match(link)
        assert match, link
        response = reg.get(match.group(1))


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["Content-Type"].startswith("application/json")
    [error] = response.json()["errors"]
    assert error["code"] == code, error
    assert error["message"]
    assert "Traceback" not in response.text
    return error


def database(service) -> Database:
    return Database(Settings.from_env(service.env).database_url)


def events_of(service, reg: Reg) -> list[tuple[str, str, str | None, str | None]]:
    db = database(service)
    try:
        with db.session() as session:
            rows = session.execute(
                sa.select(RegistryEvent.action, RegistryEvent.repository, RegistryEvent.tag, RegistryEvent.digest)
                .join(RegistryRow, RegistryRow.id == RegistryEvent.registry_id)
                .where(RegistryRow.name_key == reg.name.lower()).order_by(RegistryEvent.id))
            return [tuple(row) for row in rows]
    finally:
        db.dispose()


def stored_blobs(service, reg: Reg) -> set[str]:
    db = database(service)
    try:
        with db.session() as session:
            return set(session.scalars(sa.select(Blob.digest).join(RegistryRow, RegistryRow.id == Blob.registry_id)
                                       .where(RegistryRow.name_key == reg.name.lower())))
    finally:
        db.dispose()


# -- raw requests: shapes, paging, attributes, deletes ----------------------------------------------------------


def test_catalog_and_repository_properties(registry):
    reg = registry
    first = push_image(reg, "team/app", "1.0")
    push_image(reg, "team/app", "2.0")
    push_image(reg, "team/app", None)  # untagged
    push_image(reg, "base", "latest")
    push_image(reg, "zeta/x/y", "v1")
    # A blob alone makes no repository.
    push_blob(reg, "uploads-only", b"just a blob")

    response = reg.get("/acr/v1/_catalog")
    assert response.status_code == 200, response.text
    assert response.json() == {"repositories": ["base", "team/app", "zeta/x/y"]}
    assert "Link" not in response.headers
    names, links = follow(reg, "/acr/v1/_catalog", "repositories", params={"n": 1})
    assert names == ["base", "team/app", "zeta/x/y"]
    assert links[0] == '</acr/v1/_catalog?last=base&n=1&orderby=>; rel="next"'
    assert links[1] == '</acr/v1/_catalog?last=team%2Fapp&n=1&orderby=>; rel="next"'
    # `last` alone, as az re-sends it (unquoted).
    assert reg.get("/acr/v1/_catalog", params={"last": "team/app"}).json() == {"repositories": ["zeta/x/y"]}

    encoded = reg.get("/acr/v1/team%2Fapp")  # how the SDK sends a multi-level name
    assert encoded.status_code == 200, encoded.text
    body = encoded.json()
    assert body == reg.get("/acr/v1/team/app").json()
    assert list(body) == ["registry", "imageName", "createdTime", "lastUpdateTime", "manifestCount", "tagCount",
                          "changeableAttributes"]
    assert body["registry"] == reg.login_server and body["imageName"] == "team/app"
    assert (body["manifestCount"], body["tagCount"]) == (3, 2)
    assert body["changeableAttributes"] == ATTRIBUTES
    assert ISO_Z.match(body["createdTime"]) and ISO_Z.match(body["lastUpdateTime"])
    assert body["createdTime"] <= body["lastUpdateTime"]
    deep = reg.get(f"/acr/v1/{quote('zeta/x/y', safe='')}").json()
    assert (deep["imageName"], deep["manifestCount"], deep["tagCount"]) == ("zeta/x/y", 1, 1)
    assert reg.get("/acr/v1/team%2Fapp/_tags/1.0").json()["tag"]["digest"] == first.digest


def test_tags_order_paging_and_digest_filter(registry):
    reg = registry
    images = {tag: push_image(reg, "team/app", tag) for tag in ("a", "b", "c")}
    moved = push_image(reg, "team/app", "a")  # `a` now points elsewhere and is the most recently updated

    response = reg.get("/acr/v1/team%2Fapp/_tags")
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["registry", "imageName", "tags"]
    assert (body["registry"], body["imageName"]) == (reg.login_server, "team/app")
    assert [t["name"] for t in body["tags"]] == ["a", "b", "c"]
    tag = body["tags"][1]
    assert list(tag) == ["name", "digest", "createdTime", "lastUpdateTime", "signed", "changeableAttributes"]
    assert (tag["digest"], tag["signed"], tag["changeableAttributes"]) == (images["b"].digest, False, ATTRIBUTES)
    assert ISO_Z.match(tag["createdTime"]) and ISO_Z.match(tag["lastUpdateTime"])
    assert body["tags"][0]["digest"] == moved.digest
    assert body["tags"][0]["lastUpdateTime"] > body["tags"][0]["createdTime"]

    def names(**params) -> list[str]:
        return [t["name"] for t in reg.get("/acr/v1/team%2Fapp/_tags", params=params).json()["tags"]]

    assert names(orderby="timedesc") == ["a", "c", "b"]
    assert names(orderby="timeasc") == ["b", "c", "a"]
    assert names(orderby="") == ["a", "b", "c"]
    assert names(digest=images["b"].digest) == ["b"]
    assert names(digest=images["a"].digest) == []  # nothing points there any more
    assert names(last="a") == ["b", "c"]
    for order, expected in (("timedesc", ["a", "c", "b"]), ("timeasc", ["b", "c", "a"]), (None, ["a", "b", "c"])):
        params = {"n": 1, **({"orderby": order} if order else {})}
        found, links = follow(reg, "/acr/v1/team%2Fapp/_tags", "tags", params=params)
        assert [t["name"] for t in found] == expected, order
        assert links[0] == (f'</acr/v1/team%2Fapp/_tags?last={expected[0]}&n=1&orderby={order or ""}>; '
                            'rel="next"')
    found, links = follow(reg, "/acr/v1/team%2Fapp/_tags", "tags", params={"n": 1, "digest": images["c"].digest})
    assert [t["name"] for t in found] == ["c"] and links == []

    single = reg.get("/acr/v1/team/app/_tags/b")
    assert single.status_code == 200, single.text
    assert single.json() == {"registry": reg.login_server, "imageName": "team/app", "tag": tag}


def test_manifests_listing_with_untagged_and_index_references(registry):
    reg = registry
    amd = push_image(reg, "multi/arch", "amd")
    arm = push_image(reg, "multi/arch", None, architecture="arm64")
    index = push_index(reg, "multi/arch", "multi", [(amd, "amd64"), (arm, "arm64")])

    response = reg.get("/acr/v1/multi%2Farch/_manifests")
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["registry", "imageName", "manifests"]
    by_digest = {m["digest"]: m for m in body["manifests"]}
    assert [m["digest"] for m in body["manifests"]] == sorted(by_digest)
    image = by_digest[amd.digest]
    assert image == {
        "digest": amd.digest, "imageSize": amd.image_size, "createdTime": image["createdTime"],
        "lastUpdateTime": image["lastUpdateTime"], "architecture": "amd64", "os": "linux", "mediaType": OCI_MANIFEST,
        "configMediaType": OCI_CONFIG, "tags": ["amd"], "changeableAttributes": ATTRIBUTES}
    assert ISO_Z.match(image["createdTime"]) and ISO_Z.match(image["lastUpdateTime"])
    assert "tags" not in by_digest[arm.digest]  # untagged: the key is omitted, as ACR does
    assert by_digest[arm.digest]["architecture"] == "arm64"
    listed_index = by_digest[index]
    assert listed_index["mediaType"] == OCI_INDEX and listed_index["tags"] == ["multi"]
    assert listed_index["references"] == [{"digest": amd.digest, "architecture": "amd64", "os": "linux"},
                                          {"digest": arm.digest, "architecture": "arm64", "os": "linux"}]
    assert "architecture" not in listed_index and "references" not in image

    def digests(**params) -> list[str]:
        return [m["digest"] for m in reg.get("/acr/v1/multi%2Farch/_manifests", params=params).json()["manifests"]]

    assert digests(orderby="timeasc") == [amd.digest, arm.digest, index]
    assert digests(orderby="timedesc") == [index, arm.digest, amd.digest]
    found, links = follow(reg, "/acr/v1/multi%2Farch/_manifests", "manifests", params={"n": 1, "orderby": "timedesc"})
    assert [m["digest"] for m in found] == [index, arm.digest, amd.digest]
    assert links[0] == f'</acr/v1/multi%2Farch/_manifests?last={quote(index, safe="")}&n=1&orderby=timedesc>; ' \
                       'rel="next"'

    single = reg.get(f"/acr/v1/multi%2Farch/_manifests/{amd.digest}")
    assert single.status_code == 200, single.text
    assert single.json() == {"registry": reg.login_server, "imageName": "multi/arch", "manifest": image}


def test_patch_attributes_hide_from_lists_and_lock_deletes(registry):
    reg = registry
    one = push_image(reg, "locked/app", "1.0")
    push_image(reg, "locked/app", "2.0")
    push_image(reg, "other", "1")

    # PATCH takes the flat writeable properties, changes only those sent, and answers the new state.
    response = reg.patch("/acr/v1/locked%2Fapp/_tags/1.0", {"listEnabled": False, "deleteEnabled": False})
    assert response.status_code == 200, response.text
    assert response.json()["tag"]["changeableAttributes"] == {**ATTRIBUTES, "listEnabled": False,
                                                              "deleteEnabled": False}
    assert reg.patch("/acr/v1/locked%2Fapp/_tags/1.0", {}).json()["tag"]["changeableAttributes"]["listEnabled"] \
        is False
    tags = reg.get("/acr/v1/locked%2Fapp/_tags").json()["tags"]
    assert [t["name"] for t in tags] == ["2.0"]  # hidden from the list...
    assert reg.get("/acr/v1/locked%2Fapp/_tags/1.0").status_code == 200  # ...but still there
    assert reg.get("/acr/v1/locked%2Fapp").json()["tagCount"] == 2

    # A delete-locked tag refuses its deletion, and its manifest's (which would take the tag along).
    assert_error(reg.request("DELETE", "/acr/v1/locked%2Fapp/_tags/1.0"), 405, DISALLOWED)
    assert_error(reg.request("DELETE", f"/v2/locked/app/manifests/{one.digest}"), 405, DISALLOWED)
    assert_error(reg.request("DELETE", "/acr/v1/locked%2Fapp"), 405, DISALLOWED)
    assert reg.get("/acr/v1/locked%2Fapp/_tags/1.0").status_code == 200
    assert reg.get("/acr/v1/locked%2Fapp").json()["manifestCount"] == 2  # the refused repository delete kept all

    # writeEnabled=false on the manifest: no deletes either (ACR), and no push over the tag that moves it.
    unlocked = reg.patch("/acr/v1/locked%2Fapp/_tags/1.0", {"deleteEnabled": True, "listEnabled": True})
    assert unlocked.json()["tag"]["changeableAttributes"] == ATTRIBUTES
    response = reg.patch(f"/acr/v1/locked%2Fapp/_manifests/{one.digest}", {"writeEnabled": False,
                                                                             "listEnabled": False})
    assert response.status_code == 200, response.text
    assert response.json()["manifest"]["changeableAttributes"] == {**ATTRIBUTES, "writeEnabled": False,
                                                                   "listEnabled": False}
    listed = [m["digest"] for m in reg.get("/acr/v1/locked%2Fapp/_manifests").json()["manifests"]]
    assert one.digest not in listed and len(listed) == 1
    assert_error(reg.request("DELETE", f"/v2/locked/app/manifests/{one.digest}"), 405, DISALLOWED)
    reg.patch(f"/acr/v1/locked%2Fapp/_manifests/{one.digest}", {"writeEnabled": True, "listEnabled": True})

    # A write-locked tag cannot be moved by a push.
    reg.patch("/acr/v1/locked%2Fapp/_tags/2.0", {"writeEnabled": False})
    salt = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    assert_error(push_manifest(reg, "locked/app", "2.0", salt, OCI_INDEX), 405, DISALLOWED)
    assert_error(reg.request("DELETE", "/acr/v1/locked%2Fapp/_tags/2.0"), 405, DISALLOWED)
    reg.patch("/acr/v1/locked%2Fapp/_tags/2.0", {"writeEnabled": True})

    # Repository attributes: listEnabled hides it from the catalog; writeEnabled=false refuses pushes and deletes.
    response = reg.patch("/acr/v1/locked%2Fapp", {"listEnabled": False, "writeEnabled": False})
    assert response.status_code == 200, response.text
    assert response.json()["changeableAttributes"] == {**ATTRIBUTES, "listEnabled": False, "writeEnabled": False}
    assert reg.get("/acr/v1/_catalog").json() == {"repositories": ["other"]}
    assert_error(reg.request("DELETE", "/acr/v1/locked%2Fapp/_tags/2.0"), 405, DISALLOWED)
    assert_error(reg.request("DELETE", "/acr/v1/locked%2Fapp"), 405, DISALLOWED)
    assert_error(push_manifest(reg, "locked/app", "3.0", salt, OCI_INDEX), 405, DISALLOWED)
    # readEnabled=false refuses pulls of the repository's content (not its metadata).
    reg.patch("/acr/v1/locked%2Fapp", {"readEnabled": False})
    assert_error(reg.get("/v2/locked/app/manifests/1.0"), 405, DISALLOWED)
    assert reg.get("/acr/v1/locked%2Fapp").json()["changeableAttributes"]["readEnabled"] is False
    restored = reg.patch("/acr/v1/locked%2Fapp", {"listEnabled": True, "writeEnabled": True, "readEnabled": True})
    assert restored.json()["changeableAttributes"] == ATTRIBUTES
    assert reg.get("/v2/locked/app/manifests/1.0").status_code == 200
    assert reg.request("DELETE", "/acr/v1/locked%2Fapp").status_code == 202


def test_delete_tag_and_repository_record_events_and_free_blobs(service, registry):
    reg = registry
    one = push_image(reg, "gone/app", "1.0")
    two = push_image(reg, "gone/app", "2.0")
    amd = push_image(reg, "gone/app", None)
    index = push_index(reg, "gone/app", "multi", [(amd, "amd64")])
    keep = push_image(reg, "kept", "1")
    extra = push_blob(reg, "gone/app", b"a blob no manifest names")

    response = reg.request("DELETE", "/acr/v1/gone%2Fapp/_tags/1.0")
    assert response.status_code == 202, response.text
    assert response.content == b""
    assert response.headers["X-Ms-Int-Docker-Content-Digest"] == one.digest
    assert_error(reg.get("/acr/v1/gone%2Fapp/_tags/1.0"), 404, "TAG_UNKNOWN")
    assert_error(reg.request("DELETE", "/acr/v1/gone%2Fapp/_tags/1.0"), 404, "TAG_UNKNOWN")
    manifest = reg.get(f"/acr/v1/gone%2Fapp/_manifests/{one.digest}").json()["manifest"]
    assert "tags" not in manifest  # untagged now, still there

    created = reg.get("/acr/v1/gone%2Fapp").json()["createdTime"]
    response = reg.request("DELETE", "/acr/v1/gone%2Fapp")
    assert response.status_code == 202, response.text
    assert response.json() == {"manifestsDeleted": sorted([one.digest, two.digest, amd.digest, index]),
                               "tagsDeleted": ["2.0", "multi"]}
    assert_error(reg.get("/acr/v1/gone%2Fapp"), 404, "NAME_UNKNOWN")
    assert_error(reg.get("/acr/v1/gone%2Fapp/_tags"), 404, "NAME_UNKNOWN")
    assert_error(reg.request("DELETE", "/acr/v1/gone%2Fapp"), 404, "NAME_UNKNOWN")
    assert reg.get("/acr/v1/_catalog").json() == {"repositories": ["kept"]}
    assert reg.get(f"/v2/gone/app/blobs/{one.layer}").status_code == 404
    # Nothing of the repository is stored any more; the other repository's content is untouched.
    remaining = stored_blobs(service, reg)
    assert not {one.digest, one.layer, two.digest, two.layer, amd.digest, index, extra} & remaining
    assert {keep.digest, keep.layer} <= remaining
    assert reg.get("/v2/kept/manifests/1").status_code == 200

    events = [e for e in events_of(service, reg) if e[1] == "gone/app" and e[0] != "push"]
    assert events[0] == ("untag", "gone/app", "1.0", one.digest)
    assert sorted(e[3] for e in events[1:]) == sorted([one.digest, two.digest, amd.digest, index])
    assert {e[0] for e in events[1:]} == {"delete"}
    # The repository can be pushed again from scratch.
    again = push_image(reg, "gone/app", "1.0")
    fresh = reg.get("/acr/v1/gone%2Fapp").json()
    assert (fresh["manifestCount"], fresh["tagCount"]) == (1, 1)
    assert fresh["createdTime"] > created and fresh["changeableAttributes"] == ATTRIBUTES
    assert reg.get("/acr/v1/gone%2Fapp/_tags/1.0").json()["tag"]["digest"] == again.digest


# -- bad input and authorisation --------------------------------------------------------------------------------


def test_bad_input_gets_the_oci_error_body(registry):
    reg = registry
    image = push_image(reg, "team/app", "1.0")
    missing = sha256(b"nothing")
    cases = [
        ("GET", "/acr/v1/nothere", None, 404, "NAME_UNKNOWN"),
        ("GET", "/acr/v1/no%2Fsuch/_tags", None, 404, "NAME_UNKNOWN"),
        ("PATCH", "/acr/v1/nothere", {"writeEnabled": False}, 404, "NAME_UNKNOWN"),
        ("DELETE", "/acr/v1/nothere", None, 404, "NAME_UNKNOWN"),
        ("GET", "/acr/v1/team%2Fapp/_tags/9.9", None, 404, "TAG_UNKNOWN"),
        ("PATCH", "/acr/v1/team%2Fapp/_tags/9.9", {"writeEnabled": False}, 404, "TAG_UNKNOWN"),
        ("DELETE", "/acr/v1/team%2Fapp/_tags/9.9", None, 404, "TAG_UNKNOWN"),
        ("GET", f"/acr/v1/team%2Fapp/_manifests/{missing}", None, 404, "MANIFEST_UNKNOWN"),
        ("PATCH", f"/acr/v1/team%2Fapp/_manifests/{missing}", {"writeEnabled": False}, 404, "MANIFEST_UNKNOWN"),
        ("GET", "/acr/v1/team%2Fapp/_manifests/sha256:totallywrong", None, 400, "DIGEST_INVALID"),
        ("GET", "/acr/v1/team%2Fapp/_manifests/1.0", None, 400, "DIGEST_INVALID"),
        ("GET", "/acr/v1/team%2Fapp/_tags/bad%20tag", None, 400, "TAG_INVALID"),
        ("GET", "/acr/v1/Team%2FApp", None, 400, "NAME_INVALID"),
        ("GET", "/acr/v1/team%2F..%2Fapp/_tags", None, 400, "NAME_INVALID"),
        ("GET", "/acr/v1/team//app", None, 400, "NAME_INVALID"),
        ("GET", "/acr/v1/team%2Fapp/_tags/", None, 400, "TAG_INVALID"),
        ("GET", "/acr/v1/_deleted/_catalog", None, 400, "NAME_INVALID"),
        ("DELETE", f"/acr/v1/team%2Fapp/_manifests/{image.digest}", None, 405, "UNSUPPORTED"),
        ("PATCH", "/acr/v1/team%2Fapp/_tags", {}, 405, "UNSUPPORTED"),
        ("DELETE", "/acr/v1/_catalog", None, 405, "UNSUPPORTED"),
        ("PUT", "/acr/v1/team%2Fapp", {}, 405, "UNSUPPORTED"),
    ]
    for method, path, body, status, code in cases:
        response = reg.request(method, path, json=body) if body is not None else reg.request(method, path)
        assert_error(response, status, code)

    for path in ("/acr/v1/_catalog", "/acr/v1/team%2Fapp/_tags", "/acr/v1/team%2Fapp/_manifests"):
        for n in ("-1", "x", "1.5", "99999999999", " 1"):
            assert_error(reg.get(path, params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
        assert reg.get(path, params={"n": "0"}).json() in ({"repositories": []},
                                                            {"registry": reg.login_server, "imageName": "team/app",
                                                             "tags": []},
                                                            {"registry": reg.login_server, "imageName": "team/app",
                                                             "manifests": []})
        # `last` is only a position: anything sorts somewhere, and nothing breaks the query.
        for last in ("\x00", "z" * 5000, "é", "'; DROP TABLE tags; --", "sha256:"):
            response = reg.get(path, params={"last": last, "orderby": "timedesc" if "_catalog" not in path else ""})
            assert response.status_code in (200, 400), response.text
            if response.status_code == 400:
                assert_error(response, 400, "INVALID_REQUEST")
    for path in ("/acr/v1/team%2Fapp/_tags", "/acr/v1/team%2Fapp/_manifests"):
        for orderby in ("newest", "TIMEDESC", "time_desc"):
            assert_error(reg.get(path, params={"orderby": orderby}), 400, "INVALID_REQUEST")
    assert_error(reg.get("/acr/v1/team%2Fapp/_tags", params={"digest": "sha256:nope"}), 400, "DIGEST_INVALID")
    # A huge n is served as the largest page, with a Link when more follows.
    assert reg.get("/acr/v1/team%2Fapp/_tags", params={"n": "100000"}).json()["tags"][0]["name"] == "1.0"

    for path in ("/acr/v1/team%2Fapp", "/acr/v1/team%2Fapp/_tags/1.0", f"/acr/v1/team%2Fapp/_manifests/{image.digest}"):
        for raw in (b"{", b"not json", b"", b"\xff\xfe", b"[]", b'"writeEnabled"', b"null"):
            response = reg.request("PATCH", path, data=raw, headers={"Content-Type": "application/json"})
            assert_error(response, 400, "INVALID_REQUEST")
        for body in ({"writeEnabled": "false"}, {"writeEnabled": None}, {"writeEnabled": 0},
                     {"teleportEnabled": True}, {"digest": "sha256:x"}, {"quarantineState": "Passed"},
                     {"changeableAttributes": {"writeEnabled": False}}):
            assert_error(reg.patch(path, body), 400, "INVALID_REQUEST")
        response = reg.request("PATCH", path, data=b"{" + b" " * 70000 + b"}",
                               headers={"Content-Type": "application/json"})
        assert_error(response, 400, "INVALID_REQUEST")
    # Nothing above changed anything.
    assert reg.get("/acr/v1/team%2Fapp").json()["changeableAttributes"] == ATTRIBUTES
    assert reg.get("/acr/v1/team%2Fapp/_tags/1.0").json()["tag"]["changeableAttributes"] == ATTRIBUTES


def test_missing_rights_get_the_challenge_with_acr_scopes(service, registry):
    reg = registry
    image = push_image(reg, "team/app", "1.0")
    realm = f"https://{reg.login_server}/oauth2/token"

    def challenge(scope: str, insufficient: bool = False) -> str:
        value = f'Bearer realm="{realm}",service="{reg.login_server}",scope="{scope}"'
        return value + (',error="insufficient_scope"' if insufficient else "")

    cases = [
        ("GET", "/acr/v1/_catalog", "registry:catalog:*"),
        ("GET", "/acr/v1/team%2Fapp", "repository:team/app:metadata_read"),
        ("PATCH", "/acr/v1/team%2Fapp", "repository:team/app:metadata_write"),
        ("DELETE", "/acr/v1/team%2Fapp", "repository:team/app:delete"),
        ("GET", "/acr/v1/team%2Fapp/_tags", "repository:team/app:metadata_read"),
        ("GET", "/acr/v1/team%2Fapp/_tags/1.0", "repository:team/app:metadata_read"),
        ("PATCH", "/acr/v1/team%2Fapp/_tags/1.0", "repository:team/app:metadata_write"),
        ("DELETE", "/acr/v1/team%2Fapp/_tags/1.0", "repository:team/app:delete"),
        ("GET", "/acr/v1/team%2Fapp/_manifests", "repository:team/app:metadata_read"),
        ("GET", f"/acr/v1/team%2Fapp/_manifests/{image.digest}", "repository:team/app:metadata_read"),
        ("PATCH", f"/acr/v1/team%2Fapp/_manifests/{image.digest}", "repository:team/app:metadata_write"),
        # An unknown repository is challenged the same way: no credentials, no hint that it does not exist.
        ("GET", "/acr/v1/no%2Fsuch", "repository:no/such:metadata_read"),
    ]
    read_token = requests.get(f"{service.url}/oauth2/token", auth=reg.admin, verify=service.ca, timeout=30, params={
        "service": reg.login_server, "scope": "repository:team/app:metadata_read"}).json()["access_token"]
    for method, path, scope in cases:
        kwargs = {"json": {"writeEnabled": False}} if method == "PATCH" else {}
        response = reg.request(method, path, auth=None, **kwargs)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"] == challenge(scope), path
        wrong = reg.request(method, path, auth=(reg.name, "wrong-password"), **kwargs)
        assert_error(wrong, 401, "UNAUTHORIZED")
        assert wrong.headers["WWW-Authenticate"] == challenge(scope)
        bearer = reg.request(method, path, auth=None, headers={"Authorization": f"Bearer {read_token}"}, **kwargs)
        if scope == "repository:team/app:metadata_read":
            assert bearer.status_code == 200, bearer.text
        else:
            assert_error(bearer, 401, "UNAUTHORIZED")
            assert bearer.headers["WWW-Authenticate"] == challenge(scope, insufficient=True)
    # The refusals changed nothing.
    assert reg.get("/acr/v1/team%2Fapp").json()["changeableAttributes"] == ATTRIBUTES
    assert reg.get("/acr/v1/team%2Fapp/_tags/1.0").status_code == 200
    # The registry that is not there: NAME_UNKNOWN before any credentials are asked for.
    stranger = requests.Session()
    server = f"nosuchregistry{uuid.uuid4().hex[:6]}.{service.login_server_suffix}"
    stranger.mount(f"https://{server}", LoopbackAdapter(service_port(service)))
    assert_error(stranger.get(f"https://{server}/acr/v1/_catalog", verify=service.ca, timeout=30), 404,
                 "NAME_UNKNOWN")


def test_path_style_on_the_services_own_host(service, registry):
    """`/acr/v1/<registry>/<repository…>` on the service's address, as `/v2/<registry>/…`: scopes and names carry
    the registry in front; the SDK's percent-encoded form (`<registry>%2Fteam%2Fapp`) works too."""
    reg = registry
    image = push_image(reg, "team/app", "1.0")
    push_image(reg, "team/app", "2.0")
    own = requests.Session()

    def call(method: str, path: str, auth: Any = reg.admin, **kwargs) -> requests.Response:
        return own.request(method, service.url + path, auth=auth, verify=service.ca, timeout=30, **kwargs)

    full = f"{reg.name}/team/app"
    props = call("GET", f"/acr/v1/{quote(full, safe='')}")
    assert props.status_code == 200, props.text
    assert (props.json()["imageName"], props.json()["registry"], props.json()["tagCount"]) == \
        (full, reg.login_server, 2)
    tags = call("GET", f"/acr/v1/{full}/_tags", params={"n": 1})
    assert [t["name"] for t in tags.json()["tags"]] == ["1.0"] and tags.json()["imageName"] == full
    assert tags.headers["Link"] == f'</acr/v1/{quote(full, safe="")}/_tags?last=1.0&n=1&orderby=>; rel="next"'
    following = call("GET", LINK.match(tags.headers["Link"]).group(1))
    assert [t["name"] for t in following.json()["tags"]] == ["2.0"]
    manifest = call("GET", f"/acr/v1/{full}/_manifests/{image.digest}").json()["manifest"]
    assert manifest["tags"] == ["1.0"]
    assert call("PATCH", f"/acr/v1/{full}/_tags/1.0", json={"writeEnabled": False}).json()["tag"][
        "changeableAttributes"]["writeEnabled"] is False
    assert_error(call("DELETE", f"/acr/v1/{full}/_tags/1.0"), 405, DISALLOWED)

    challenged = call("GET", f"/acr/v1/{full}", auth=None)
    assert_error(challenged, 401, "UNAUTHORIZED")
    host = service.url.removeprefix("https://")
    assert challenged.headers["WWW-Authenticate"] == (
        f'Bearer realm="{service.url}/oauth2/token",service="{host}",scope="repository:{full}:metadata_read"')
    assert_error(call("GET", f"/acr/v1/nosuchregistry{uuid.uuid4().hex[:6]}/team/app"), 404, "NAME_UNKNOWN")
    assert_error(call("GET", f"/acr/v1/{reg.name}"), 404, "NAME_UNKNOWN")
    # The catalog is host style only (it names no registry on the service's host).
    assert_error(call("GET", "/acr/v1/_catalog"), 404, "NAME_UNKNOWN")
    assert_error(call("GET", f"/acr/v1/{reg.name}/_catalog"), 400, "NAME_INVALID")


# -- the azure-containerregistry SDK ----------------------------------------------------------------------------


def sdk_client(reg: Reg, credential) -> ContainerRegistryClient:
    """The SDK with its own transport over the loopback session (the exchange and token calls use it too)."""
    transport = RequestsTransport(session=loopback_session(reg.service, reg.login_server), session_owner=False,
                                  connection_verify=reg.service.ca)
    return ContainerRegistryClient(reg.endpoint, credential, audience=ACR_AUDIENCE, transport=transport,
                                   connection_verify=reg.service.ca)


def test_sdk_metadata_updates_and_deletes(registry, credential):
    reg = registry
    one = push_image(reg, "team/app", "1.0")
    two = push_image(reg, "team/app", "2.0")
    push_image(reg, "base", "latest")
    client = sdk_client(reg, credential)

    assert list(client.list_repository_names()) == ["base", "team/app"]
    assert list(client.list_repository_names(results_per_page=1)) == ["base", "team/app"]

    props = client.get_repository_properties("team/app")
    assert (props.name, props.manifest_count, props.tag_count) == ("team/app", 2, 2)
    assert (props.can_delete, props.can_write, props.can_read, props.can_list) == (True, True, True, True)
    assert props.created_on.tzinfo is not None and props.last_updated_on >= props.created_on
    props.can_list = False
    updated = client.update_repository_properties("team/app", props)
    assert updated.can_list is False and updated.can_write is True
    assert list(client.list_repository_names()) == ["base"]
    assert client.update_repository_properties("team/app", can_list=True).can_list is True

    tags = list(client.list_tag_properties("team/app", order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING,
                                           results_per_page=1))
    assert [t.name for t in tags] == ["2.0", "1.0"]
    assert [t.digest for t in tags] == [two.digest, one.digest]
    ascending = client.list_tag_properties("team/app", order_by=ArtifactTagOrder.LAST_UPDATED_ON_ASCENDING)
    assert [t.name for t in ascending] == ["1.0", "2.0"]
    tag = client.get_tag_properties("team/app", "1.0")
    assert (tag.name, tag.digest, tag.can_delete) == ("1.0", one.digest, True)
    locked = client.update_tag_properties("team/app", "1.0", can_delete=False)
    assert (locked.can_delete, locked.can_write) == (False, True)
    with pytest.raises(HttpResponseError) as refused:
        client.delete_tag("team/app", "1.0")
    assert refused.value.status_code == 405 and DISALLOWED in str(refused.value)
    client.update_tag_properties("team/app", "1.0", can_delete=True)

    manifests = list(client.list_manifest_properties(
        "team/app", order_by=ArtifactManifestOrder.LAST_UPDATED_ON_ASCENDING, results_per_page=1))
    assert [m.digest for m in manifests] == [one.digest, two.digest]
    assert [m.tags for m in manifests] == [["1.0"], ["2.0"]]
    assert (manifests[0].architecture, manifests[0].operating_system, manifests[0].size_in_bytes) == \
        ("amd64", "linux", one.image_size)
    by_tag = client.get_manifest_properties("team/app", "2.0")
    by_digest = client.get_manifest_properties("team/app", two.digest)
    assert by_tag.digest == by_digest.digest == two.digest and by_digest.tags == ["2.0"]
    write_locked = client.update_manifest_properties("team/app", two.digest, can_write=False)
    assert (write_locked.can_write, write_locked.can_delete) == (False, True)
    with pytest.raises(HttpResponseError) as refused:
        client.delete_manifest("team/app", two.digest)
    assert refused.value.status_code == 405
    assert client.update_manifest_properties("team/app", "2.0", can_write=True).can_write is True

    client.delete_tag("team/app", "1.0")
    client.delete_tag("team/app", "1.0")  # 404 is success for the SDK
    with pytest.raises(ResourceNotFoundError):
        client.get_tag_properties("team/app", "1.0")
    client.delete_manifest("team/app", "2.0")  # resolves the tag, then deletes by digest
    assert [m.digest for m in client.list_manifest_properties("team/app")] == [one.digest]
    client.delete_repository("team/app")
    client.delete_repository("team/app")  # already gone: no error
    with pytest.raises(ResourceNotFoundError):
        client.get_repository_properties("team/app")
    assert list(client.list_repository_names()) == ["base"]


def test_sdk_upload_and_download(registry, credential, service):
    reg = registry
    client = sdk_client(reg, credential)
    layer = uuid.uuid4().bytes * 4096
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer_digest, layer_size = client.upload_blob("sdk/app", io.BytesIO(layer))
    config_digest, config_size = client.upload_blob("sdk/app", io.BytesIO(config))
    assert (layer_digest, layer_size) == (sha256(layer), len(layer))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer_size}]}
    digest = client.set_manifest("sdk/app", manifest, tag="v1")

    downloaded = client.get_manifest("sdk/app", "v1")
    assert (downloaded.digest, downloaded.media_type) == (digest, OCI_MANIFEST)
    assert downloaded.manifest == manifest
    assert client.get_manifest_properties("sdk/app", "v1").architecture == "amd64"

    if getattr(service, "azurite", None) is None:
        assert b"".join(client.download_blob("sdk/app", layer_digest)) == layer
    else:
        # Azure storage: blob GET answers 307 to the SAS URL, which Azurite serves over http. The SDK refuses an
        # http hop unless the caller allows it (acr-dataplane-api.md §0 item 6).
        with pytest.raises(ServiceRequestError):
            b"".join(client.download_blob("sdk/app", layer_digest))
        assert b"".join(client.download_blob("sdk/app", layer_digest, enforce_https=False)) == layer
    client.delete_manifest("sdk/app", digest)
    with pytest.raises(ResourceNotFoundError):
        client.get_manifest_properties("sdk/app", digest)


def test_sdk_rights_of_the_acr_roles(service, acr, acr_group, registry, credential):
    """Service principals with one role each on the registry: AcrPull and Reader read the metadata, AcrPush also
    updates it, AcrDelete only deletes (ACR's role table; the token service turns the role into token actions)."""
    reg = registry
    for tag in ("1", "2", "3"):
        push_image(reg, "roles/app", tag)
    auth = AuthorizationManagementClient(credential, service.subscription_id, **client_kwargs(service))
    scope = acr.registries.get(acr_group, reg.name).id

    def principal_with(role: str) -> ContainerRegistryClient:
        created = service.cli_json("sp", "create", "--name", f"acrapi-{uuid.uuid4().hex[:8]}")
        auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/"
                               f"roleDefinitions/{role}",
            principal_id=created["id"], principal_type="ServicePrincipal"))
        return sdk_client(reg, ClientSecretCredential(
            service.tenant_id, created["appId"], created["password"], authority=service.init["authority"],
            disable_instance_discovery=True, connection_verify=service.ca))

    for role in (roles.ACR_PULL, roles.READER):
        reader = principal_with(role)
        assert list(reader.list_repository_names()) == ["roles/app"]
        assert [t.name for t in reader.list_tag_properties("roles/app")] == ["1", "2", "3"]
        assert reader.get_repository_properties("roles/app").tag_count == 3
        with pytest.raises(ClientAuthenticationError):
            reader.update_tag_properties("roles/app", "1", can_write=False)
        with pytest.raises(ClientAuthenticationError):
            reader.delete_tag("roles/app", "1")

    pusher = principal_with(roles.ACR_PUSH)
    assert pusher.update_tag_properties("roles/app", "1", can_list=False).can_list is False
    assert pusher.update_tag_properties("roles/app", "1", can_list=True).can_list is True
    with pytest.raises(ClientAuthenticationError):
        pusher.delete_tag("roles/app", "1")

    deleter = principal_with(roles.ACR_DELETE)
    with pytest.raises(ClientAuthenticationError):
        deleter.get_repository_properties("roles/app")
    deleter.delete_tag("roles/app", "1")
    deleter.delete_repository("roles/app")
    assert_error(reg.get("/acr/v1/roles%2Fapp"), 404, "NAME_UNKNOWN")


def test_sdk_anonymous_pull_registry(service, acr, acr_group, credential):
    reg = create_registry(service, acr, acr_group, anonymous_pull_enabled=True)
    image = push_image(reg, "public/app", "1.0")
    anonymous = sdk_client(reg, None)
    assert list(anonymous.list_repository_names()) == ["public/app"]
    assert anonymous.get_repository_properties("public/app").tag_count == 1
    assert [t.name for t in anonymous.list_tag_properties("public/app")] == ["1.0"]
    assert anonymous.get_manifest_properties("public/app", "1.0").digest == image.digest
    assert anonymous.get_manifest("public/app", "1.0").digest == image.digest
    with pytest.raises(ClientAuthenticationError):
        anonymous.update_repository_properties("public/app", can_delete=False)
    with pytest.raises(ClientAuthenticationError):
        anonymous.delete_tag("public/app", "1.0")
    assert sdk_client(reg, credential).get_tag_properties("public/app", "1.0").can_delete is True

    # Without anonymous pull, the anonymous SDK gets nothing.
    private = create_registry(service, acr, acr_group)
    push_image(private, "secret", "1")
    with pytest.raises(ClientAuthenticationError):
        list(sdk_client(private, None).list_repository_names())


# -- az 2.91 ----------------------------------------------------------------------------------------------------


@dataclass
class AzDataPlane:
    az: Az
    proxy: ConnectProxy  # `routes` maps a login server's host name to the service's port

    def reach(self, reg: Reg) -> None:
        self.proxy.routes[reg.login_server.rsplit(":", 1)[0]] = service_port(reg.service)


@pytest.fixture(scope="module")
def az_data_plane(service, tmp_path_factory):
    """az logged in as the service principal, reaching login servers through the CONNECT proxy (NO_PROXY must not
    name `localhost`: requests would match `<name>.localhost` against it and resolve the name itself)."""
    with ConnectProxy({}) as proxy:
        az = Az(tools.az_cli(), az_env(tmp_path_factory.mktemp("az-acr"), service.ca,
                                       HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}", NO_PROXY="127.0.0.1"))
        for variable in ("https_proxy", "no_proxy", "http_proxy", "HTTP_PROXY"):
            az.env.pop(variable, None)
        register_cloud(az, service.url, "AcrApi")
        login(az, service.init["clientId"], service.init["clientSecret"], service.tenant_id)
        yield AzDataPlane(az, proxy)


@pytest.mark.az
def test_az_acr_repository_and_manifest_commands(registry, az_data_plane):
    reg, az = registry, az_data_plane.az
    az_data_plane.reach(reg)
    one = push_image(reg, "team/app", "1.0")
    two = push_image(reg, "team/app", "2.0")
    push_image(reg, "team/app", None)
    name = reg.name

    exposed = az.json("acr", "login", "-n", name, "--expose-token")
    assert exposed["loginServer"] == reg.login_server
    assert exposed["username"] == "00000000-0000-0000-0000-000000000000"

    assert az.json("acr", "repository", "list", "-n", name) == ["team/app"]
    shown = az.json("acr", "repository", "show", "-n", name, "--repository", "team/app")
    assert (shown["imageName"], shown["manifestCount"], shown["tagCount"]) == ("team/app", 3, 2)
    tag = az.json("acr", "repository", "show", "-n", name, "--image", "team/app:1.0")
    assert (tag["name"], tag["digest"]) == ("1.0", one.digest)
    by_digest = az.json("acr", "repository", "show", "-n", name, "--image", f"team/app@{two.digest}")
    assert by_digest["digest"] == two.digest and by_digest["tags"] == ["2.0"]
    assert az.json("acr", "repository", "show-tags", "-n", name, "--repository", "team/app") == ["1.0", "2.0"]
    detailed = az.json("acr", "repository", "show-tags", "-n", name, "--repository", "team/app",
                       "--orderby", "time_desc", "--detail")
    assert [t["name"] for t in detailed] == ["2.0", "1.0"]
    assert az.json("acr", "repository", "show-tags", "-n", name, "--repository", "team/app", "--top", "1",
                   "--orderby", "time_asc") == ["1.0"]
    manifests = az.json("acr", "repository", "show-manifests", "-n", name, "--repository", "team/app")
    assert len(manifests) == 3
    metadata = az.json("acr", "manifest", "list-metadata", "-r", name, "-n", "team/app", "--orderby", "time_asc")
    assert [m["digest"] for m in metadata][:2] == [one.digest, two.digest]
    assert az.json("acr", "manifest", "show", "-r", name, "-n", "team/app:1.0")["mediaType"] == OCI_MANIFEST

    locked = az.json("acr", "repository", "update", "-n", name, "--image", "team/app:1.0", "--delete-enabled", "false")
    assert locked["changeableAttributes"]["deleteEnabled"] is False
    refused = az.fail("acr", "repository", "untag", "-n", name, "--image", "team/app:1.0")
    assert "disallowed" in refused.lower()
    az.json("acr", "repository", "update", "-n", name, "--image", "team/app:1.0", "--delete-enabled", "true")
    repo = az.json("acr", "repository", "update", "-n", name, "--repository", "team/app", "--list-enabled", "false")
    assert repo["changeableAttributes"]["listEnabled"] is False
    assert az.json("acr", "repository", "list", "-n", name) in ([], None)
    az.json("acr", "repository", "update", "-n", name, "--repository", "team/app", "--list-enabled", "true")

    az.json("acr", "repository", "untag", "-n", name, "--image", "team/app:1.0")
    assert az.json("acr", "repository", "show-tags", "-n", name, "--repository", "team/app") == ["2.0"]
    az.json("acr", "manifest", "delete", "-r", name, "-n", "team/app:2.0", "--yes")
    assert_error(reg.get(f"/acr/v1/team%2Fapp/_manifests/{two.digest}"), 404, "MANIFEST_UNKNOWN")
    az.json("acr", "repository", "delete", "-n", name, "--image", f"team/app@{one.digest}", "--yes")
    # One delete-locked manifest refuses the repository's delete whole: nothing of it goes.
    [untagged] = [m["digest"] for m in az.json("acr", "manifest", "list-metadata", "-r", name, "-n", "team/app")]
    az.json("acr", "repository", "update", "-n", name, "--image", f"team/app@{untagged}", "--delete-enabled", "false")
    refused = az.fail("acr", "repository", "delete", "-n", name, "--repository", "team/app", "--yes")
    assert "disallowed" in refused.lower()
    assert az.json("acr", "repository", "show", "-n", name, "--repository", "team/app")["manifestCount"] == 1
    az.json("acr", "repository", "update", "-n", name, "--image", f"team/app@{untagged}", "--delete-enabled", "true")
    az.json("acr", "repository", "delete", "-n", name, "--repository", "team/app", "--yes")
    assert az.json("acr", "repository", "list", "-n", name) in ([], None)
    assert reg.login_server in az_data_plane.proxy.tunnels
