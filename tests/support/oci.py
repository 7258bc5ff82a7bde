"""A client that talks to the data plane the way the OCI conformance suite's client (reggie) does, and the fixtures'
plumbing for it: registries with an admin user, path style and host style addresses, and the suite's test data.

reggie sends every request without credentials first; on a 401 it reads the challenge, fetches a token from the
realm (GET with Basic auth and the challenge's service and scope) and sends the request again with the bearer
token (or with Basic when the challenge is Basic). It keeps no token between requests. `OciClient` does the same,
so every request here also checks the challenge the service answers with.

Host style: `<name>.localhost:<port>` does not resolve on this machine, so `LoopbackAdapter` connects to
127.0.0.1:<port> while the URL, the Host header, SNI and the certificate check all stay the login server's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import string
import uuid
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# conformance/setup.go errorCodes: what a 4xx body's errors[0].code must be one of.
OCI_ERROR_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID",
    "TAG_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
})
_CHALLENGE_PARAM = re.compile(r'([a-zA-Z]+)="(.+?)"')  # reggie's parseAuthHeader


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def go_json(value) -> bytes:
    """json.MarshalIndent(v, "", "\\t"): the suite's manifests are tab-indented, which also proves the registry
    stores the pushed bytes rather than a re-serialisation."""
    return json.dumps(value, indent="\t").encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_challenge(header: str) -> dict[str, str]:
    return {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(header)}


class LoopbackAdapter(HTTPAdapter):
    """Sends every request to 127.0.0.1:<port>; the URL's host stays the Host header, the SNI name and the name the
    certificate must match — what a client that resolved the login server to this machine would see."""

    def __init__(self, port: int, **kwargs):
        self.port = port
        super().__init__(**kwargs)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        host = urlsplit(request.url).hostname
        pool_kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": verify, "server_hostname": host,
                       "assert_hostname": host} if verify else {"cert_reqs": "CERT_NONE"}
        return self.poolmanager.connection_from_host("127.0.0.1", self.port, scheme="https", pool_kwargs=pool_kwargs)

    def send(self, request, **kwargs):
        # On a copy: requests builds a redirect from the request it sent, and a 307 to storage must not carry this.
        request = request.copy()
        request.headers["Host"] = urlsplit(request.url).netloc
        return super().send(request, **kwargs)


def session_for(base_url: str, service_port: int) -> requests.Session:
    """A requests session that reaches `base_url`; host-style URLs go through the loopback adapter."""
    session = requests.Session()
    host = urlsplit(base_url).hostname
    if host not in ("127.0.0.1", "localhost"):
        session.mount(f"https://{urlsplit(base_url).netloc}", LoopbackAdapter(service_port))
    return session


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.body[:400]}"


@dataclass
class OciClient:
    """reggie's behaviour: `<name>`, `<reference>` and `<digest>` in a path are filled in, the first attempt carries
    no credentials, and a 401 leads to one token fetch and one retry."""

    base_url: str
    namespace: str
    username: str
    password: str
    ca: str
    session: requests.Session
    user_agent: str = "distribution-spec-conformance-tests"
    history: list[Exchange] = field(default_factory=list)
    token_requests: int = 0

    def url(self, path: str, name: str | None = None, reference: str | None = None, digest: str | None = None) -> str:
        if path.startswith("https://"):
            return path
        path = path.replace("<name>", name or self.namespace)
        if reference is not None:
            path = path.replace("<reference>", reference)
        if digest is not None:
            path = path.replace("<digest>", digest)
        return self.base_url + path

    def request(self, method: str, path: str, *, name: str | None = None, reference: str | None = None,
                digest: str | None = None, headers: dict | None = None, params: dict | None = None,
                body: bytes | None = None, timeout: float = 60, allow_redirects: bool = True) -> requests.Response:
        url = self.url(path, name, reference, digest)
        headers = {"User-Agent": self.user_agent, **(headers or {})}
        send = dict(params=params, data=body, verify=self.ca, timeout=timeout, allow_redirects=allow_redirects)
        response = self.session.request(method, url, headers=headers, **send)
        if response.status_code == 401 and response.headers.get("WWW-Authenticate"):
            challenge = response.headers["WWW-Authenticate"]
            if challenge.lower().startswith("bearer"):
                token = self.fetch_token(challenge)
                headers["Authorization"] = f"Bearer {token}"
            elif challenge.lower().startswith("basic"):
                headers["Authorization"] = _basic(self.username, self.password)
            response = self.session.request(method, url, headers=headers, **send)
        self.history.append(Exchange(method, response.request.url, response.status_code, _text(response)))
        return response

    def fetch_token(self, challenge: str) -> str:
        fields = parse_challenge(challenge)
        params = {"service": fields.get("service", "")}
        if fields.get("scope"):
            params["scope"] = fields["scope"]
        self.token_requests += 1
        response = self.session.get(fields["realm"], params=params, verify=self.ca, timeout=30,
                                    headers={"Accept": "application/json", "User-Agent": self.user_agent,
                                             "Authorization": _basic(self.username, self.password)})
        self.history.append(Exchange("GET", response.request.url, response.status_code, _text(response)))
        try:
            info = response.json()
        except ValueError:
            return ""
        return info.get("token") or info.get("access_token") or ""

    def relative_location(self, response: requests.Response) -> str:
        """reggie GetRelativeLocation: the Location's path and query, whether it was sent absolute or relative."""
        location = response.headers.get("Location", "")
        parts = urlsplit(location)
        if parts.scheme:
            return parts.path + (f"?{parts.query}" if parts.query else "")
        return location

    def absolute_location(self, response: requests.Response) -> str:
        return urljoin(self.base_url + "/", response.headers.get("Location", ""))

    def explain(self, response: requests.Response | None = None, last: int = 4) -> str:
        """What was sent and answered, for assertion messages."""
        lines = [str(e) for e in self.history[-last:]]
        if response is not None:
            lines.append(f"headers: {dict(response.headers)}")
        return "\n".join(lines)


def _basic(username: str, password: str) -> str:
    return "Basic " + b64(f"{username}:{password}".encode())


def _text(response: requests.Response) -> str:
    if response.request.method == "HEAD":
        return ""
    content_type = response.headers.get("Content-Type", "")
    if "json" in content_type or "text" in content_type:
        return response.text
    return f"<{len(response.content)} bytes>"


def errors_of(response: requests.Response) -> list[dict]:
    """reggie Response.Errors(): the `errors` list of an OCI error body."""
    try:
        return response.json().get("errors", [])
    except ValueError:
        return []


# -- registries ------------------------------------------------------------------------------------------------


@dataclass
class RegistryUnderTest:
    """A registry with its admin user, addressed either path style or host style."""

    name: str
    login_server: str
    username: str
    password: str
    service_url: str
    ca: str
    style: str  # "path" | "host"

    @property
    def service_port(self) -> int:
        return int(self.service_url.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        return self.service_url if self.style == "path" else f"https://{self.login_server}"

    @property
    def address(self) -> str:
        """What a client puts before the repository: `127.0.0.1:<port>/<registry>` or the login server."""
        host = urlsplit(self.base_url).netloc
        return f"{host}/{self.name}" if self.style == "path" else host

    def repository(self, repo: str) -> str:
        """The name in /v2/<name>/…: path style puts the registry first."""
        return f"{self.name}/{repo}" if self.style == "path" else repo

    def client(self, repo: str, username: str | None = None, password: str | None = None) -> OciClient:
        return OciClient(self.base_url, self.repository(repo), username or self.username,
                         password if password is not None else self.password, self.ca,
                         session_for(self.base_url, self.service_port))


def create_admin_registry(acr, group: str, prefix: str = "oci", sku: str = "Standard") -> tuple[str, str, str, str]:
    """A registry with the admin user enabled; returns (name, login server, username, password)."""
    from azure.mgmt.containerregistry.models import Registry, Sku

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    registry = acr.registries.begin_create(group, name, Registry(
        location="eastus", sku=Sku(name=sku), admin_user_enabled=True)).result()
    credentials = acr.registries.list_credentials(group, name)
    return name, registry.login_server, credentials.username, credentials.passwords[0].value


# -- the suite's test data (conformance/setup.go) --------------------------------------------------------------

# setup.go layerBase64String: a small tar.gz of test.txt.
LAYER_BLOB = base64.b64decode(
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA")


def descriptor(media_type: str, content: bytes, digest: str | None = None, data: str | None = None,
               unspecified: str | None = None) -> dict:
    """The suite's descriptor struct: `data` is omitempty, `newUnspecifiedField` is not (so it is `null`)."""
    value = {"mediaType": media_type, "digest": digest or sha256(content), "size": len(content)}
    if data is not None:
        value["data"] = data
    value["newUnspecifiedField"] = unspecified
    return value


@dataclass
class Blob:
    content: bytes

    @property
    def digest(self) -> str:
        return sha256(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


class ConformanceData:
    """setup.go's init(): a config and a manifest per workflow, the chunked blob, the referrers' artifacts."""

    annotation_key = "org.opencontainers.conformance.test"
    artifact_type_a = "application/vnd.nhl.peanut.butter.bagel"
    artifact_type_b = "application/vnd.nba.strawberry.jam.croissant"
    artifact_type_index = "application/vnd.food.stand"
    empty_layer_tag = "emptylayer"
    test_tag = "tagtest0"
    nonexistent_manifest = ".INVALID_MANIFEST_NAME"
    invalid_manifest = b"blablabla"
    dummy_digest = sha256(b"hello world")

    def __init__(self, seed: int | None = None):
        rng = random.Random(seed)
        self.configs = [Blob(go_json({
            "author": "".join(rng.choice(string.ascii_letters + string.digits + "-") for _ in range(16)),
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}))
            for _ in range(5)]
        self.layer = Blob(LAYER_BLOB)
        layers = [descriptor(OCI_LAYER_GZIP, self.layer.content)]
        self.manifests = [Blob(go_json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, c.content, data=b64(c.content), unspecified=b64(b"hello world")),
            "layers": layers})) for c in self.configs]
        self.empty_layer_manifest = Blob(go_json({
            "schemaVersion": 2,
            "config": descriptor(OCI_CONFIG, self.configs[1].content, data=b64(self.configs[1].content),
                                 unspecified=b64(b"hello world")),
            "layers": []}))
        self.blob_a = Blob(rng.randbytes(42))
        self.setup_chunked_blob(42, rng)
        self.empty_json = Blob(b"{}")
        empty = descriptor(OCI_EMPTY, self.empty_json.content)
        self.ref_blob_a = Blob(b"NHL Peanut Butter on my NHL bagel")
        self.ref_blob_b = Blob(b"NBA Strawberry Jam on my NBA croissant")
        subject = descriptor(OCI_MANIFEST, self.manifests[4].content)
        self.annotations: dict[str, str] = {}

        def artifact(config: dict, layer_list: list, note: str | None, artifact_type: str | None = None,
                     on: dict = subject) -> Blob:
            body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
            if artifact_type:
                body["artifactType"] = artifact_type
            body.update({"config": config, "layers": layer_list, "subject": on})
            if note:
                body["annotations"] = {self.annotation_key: note}
            blob = Blob(go_json(body))
            if note:
                self.annotations[blob.digest] = note
            return blob

        self.refs_a_config = artifact(descriptor(self.artifact_type_a, self.ref_blob_a.content), [empty],
                                      "test config a")
        self.refs_b_config = artifact(descriptor(self.artifact_type_b, self.ref_blob_b.content), [empty],
                                      "test config b")
        self.refs_a_layer = artifact(empty, [descriptor(self.artifact_type_a, self.ref_blob_a.content)],
                                     "test layer a", self.artifact_type_a)
        self.refs_b_layer = artifact(empty, [descriptor(self.artifact_type_b, self.ref_blob_b.content)],
                                     "test layer b", self.artifact_type_b)
        # C is B's twin whose subject (manifests[3]) is never pushed in the discovery workflow.
        self.refs_c_layer = artifact(empty, [descriptor(self.artifact_type_b, self.ref_blob_b.content)], None,
                                     self.artifact_type_b, descriptor(OCI_MANIFEST, self.manifests[3].content))
        self.refs_index = Blob(go_json({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": self.artifact_type_index,
            "manifests": [descriptor(OCI_MANIFEST, self.refs_a_config.content),
                          descriptor(OCI_MANIFEST, self.refs_a_layer.content)],
            "subject": subject, "annotations": {self.annotation_key: "test index"}}))
        self.annotations[self.refs_index.digest] = "test index"
        self.crossmount_namespace = f"conformance-{uuid.uuid4()}"

    def setup_chunked_blob(self, size: int, rng: random.Random) -> None:
        self.blob_b = Blob(rng.randbytes(size))
        half = size // 2 + 1
        self.chunk1, self.chunk2 = self.blob_b.content[:half], self.blob_b.content[half:]
        self.chunk1_range = f"0-{len(self.chunk1) - 1}"
        self.chunk2_range = f"{len(self.chunk1)}-{size - 1}"


# -- dedicated services for destructive tests --------------------------------------------------------------------


def management_clients(svc):
    """The ARM SDK clients for a service a test started itself (the session fixtures serve the shared one)."""
    from azure.identity import ClientSecretCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    credential = ClientSecretCredential(svc.tenant_id, svc.init["clientId"], svc.init["clientSecret"],
                                        authority=svc.url, disable_instance_discovery=True, connection_verify=svc.ca)
    kwargs = {"base_url": svc.url, "connection_verify": svc.ca, "polling_interval": 0.2}
    return (ContainerRegistryManagementClient(credential, svc.subscription_id, **kwargs),
            ResourceManagementClient(credential, svc.subscription_id, **kwargs))


def admin_registry_on(svc, group: str = "rg-oci") -> RegistryUnderTest:
    """A resource group and an admin-enabled registry on a dedicated service, addressed path style."""
    acr, rmc = management_clients(svc)
    rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    name, login_server, username, password = create_admin_registry(acr, group, "fault")
    return RegistryUnderTest(name, login_server, username, password, svc.url, svc.ca, "path")


def resume_offset(status: requests.Response) -> int:
    """Where an upload goes on, from its status' `Range: 0-<last byte>`. "0-0" is read as nothing stored yet (the
    form Distribution and ACR send for an empty session); the tests' uploads never hold exactly one byte."""
    last = int(status.headers.get("Range", "0-0").split("-")[1])
    return last + 1 if last else 0
