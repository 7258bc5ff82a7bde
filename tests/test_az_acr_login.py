"""`az acr login -n <registry>` without `--expose-token`, with podman as the docker command, against
`control-plane serve`'s built-in login server — as the admin user, a service principal and a user — and the
credential it stores proven by pushing and pulling an image through the login server.

What az 2.91 does (azure/cli/command_modules/acr/custom.py `acr_login`, `get_docker_command`): the command is
`$DOCKER_COMMAND`, else `docker`, else `podman`; it first runs `<command> ps` (any stderr output is a failure), then
gets the credential (`-u/-p` as given; otherwise the AAD token exchanged for an ACR refresh token, user
`00000000-0000-0000-0000-000000000000`) and runs `<command> login --username <user> --password-stdin <loginServer>`.
podman then checks the credential itself: `GET /v2/` (401 + challenge), a token for no scope with Basic, and
`GET /v2/` with that token must answer 200. It writes the credential to `$REGISTRY_AUTH_FILE`.

TLS: podman (root or not) reads a registry's CA from `$HOME/.config/containers/certs.d/<host:port>/ca.crt`
(before `/etc/containers/certs.d/`), so each test's profile gets a HOME of its own holding the service's CA: nothing
is written outside the test's folder. `<name>.localhost:<port>` is reached through tests/support/dataplane.py's
CONNECT proxy (HTTPS_PROXY, which az passes on to podman, and skopeo honours too).

Needs podman, skopeo and umoci (apt-get install -y --no-install-recommends podman skopeo umoci).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry.models import Registry, Sku

from control_plane.authorization import roles
from tests.conftest import client_kwargs, unique_registry_name
from tests.support import tools
from tests.support.az import Az, az_env, register_cloud
from tests.support.az import login as sp_login
from tests.support.dataplane import ConnectProxy, Skopeo, build_image
from tests.support.tcp_proxy import TcpProxy

NULL_USERNAME = "00000000-0000-0000-0000-000000000000"
CLOUD = "AcrLogin"
USER_PASSWORD = "Login-Pa55word!"


@dataclass
class LoginRegistry:
    name: str
    login_server: str
    admin: tuple[str, str]
    resource_id: str


@pytest.fixture(scope="module")
def tools_present():
    tools.require_tools("podman", "skopeo", "umoci")


@pytest.fixture(scope="module")
def proxy(service):
    with ConnectProxy(suffixes={".localhost": int(service.url.rsplit(":", 1)[1])}) as running:
        yield running


@pytest.fixture(scope="module")
def image(tools_present, tmp_path_factory) -> str:
    workdir = tmp_path_factory.mktemp("login-image")
    return build_image(workdir / "layout", ["1.0"], workdir)


@pytest.fixture(scope="module")
def auth(service, credential):
    return AuthorizationManagementClient(credential, service.subscription_id, **client_kwargs(service))


@pytest.fixture(scope="module")
def registry(service, acr, rmc, tools_present):
    """A registry with its admin user."""
    group = f"rg-login-{uuid.uuid4().hex[:8]}"
    rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    created = acr.registries.begin_create(group, unique_registry_name("login"), Registry(
        location="eastus", sku=Sku(name="Standard"), admin_user_enabled=True)).result()
    password = acr.registries.list_credentials(group, created.name).passwords[0].value
    try:
        yield LoginRegistry(created.name, created.login_server, (created.name, password), created.id)
    finally:
        rmc.resource_groups.begin_delete(group).result()


@pytest.fixture(scope="module")
def port_443(service):
    """MSAL asks `https://<authority host>/common/userrealm/…` on port 443 before a password grant: forward it to
    the service (waits while another test run holds the port)."""
    forward = TcpProxy("127.0.0.1", int(service.url.rsplit(":", 1)[1]))
    forward.port = 443
    deadline = time.monotonic() + 120
    while True:
        try:
            forward.start()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    yield
    forward.stop()


class Session:
    """One person's az profile, podman auth file and skopeo, all through the proxy; podman is the docker command,
    trusting the service's CA for the login server through its HOME (unless `trust` is off)."""

    def __init__(self, service, proxy: ConnectProxy, workdir: Path, login_server: str, trust: bool = True):
        workdir.mkdir(parents=True, exist_ok=True)
        self.authfile = workdir / "auth.json"
        home = workdir / "home"
        certs = home / ".config" / "containers" / "certs.d" / login_server
        certs.mkdir(parents=True)
        if trust:
            shutil.copy(service.ca, certs / "ca.crt")
        self.az = Az(tools.az_cli(), az_env(workdir / "az", service.ca, HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1",
                                            DOCKER_COMMAND=shutil.which("podman") or "podman",
                                            REGISTRY_AUTH_FILE=str(self.authfile), HOME=str(home)))
        for variable in ("https_proxy", "no_proxy", "http_proxy", "HTTP_PROXY"):
            self.az.env.pop(variable, None)
        register_cloud(self.az, service.url, CLOUD)
        self.skopeo = Skopeo(workdir / "skopeo", service.ca, proxy_port=proxy.port)
        self.skopeo.env["REGISTRY_AUTH_FILE"] = str(self.authfile)  # what podman wrote, nothing else

    def stored_login(self, login_server: str) -> tuple[str, str] | None:
        """The (user, password) podman stored for the login server, if any."""
        if not self.authfile.exists():
            return None
        entry = json.loads(self.authfile.read_text()).get("auths", {}).get(login_server)
        if entry is None:
            return None
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return user, password

    def push(self, image: str, reference: str):
        return self.skopeo.run("copy", "--retry-times", "0", "--dest-cert-dir", str(self.skopeo.cert_dir),
                               f"{image}:1.0", f"docker://{reference}")

    def pull(self, reference: str, destination: Path):
        return self.skopeo.run("copy", "--retry-times", "0", "--src-cert-dir", str(self.skopeo.cert_dir),
                               f"docker://{reference}", f"oci:{destination}:pulled")


def assert_ok(result, what: str) -> None:
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"


def assert_push_and_pull(session: Session, image: str, registry: LoginRegistry, repository: str,
                         tmp_path: Path) -> None:
    reference = f"{registry.login_server}/{repository}:1.0"
    assert_ok(session.push(image, reference), f"skopeo push to {reference} with podman's credential")
    assert_ok(session.pull(reference, tmp_path / f"pulled-{uuid.uuid4().hex[:6]}"), f"skopeo pull of {reference}")
    listed = session.skopeo.run("list-tags", "--cert-dir", str(session.skopeo.cert_dir),
                                f"docker://{registry.login_server}/{repository}")
    assert_ok(listed, "skopeo list-tags")
    assert json.loads(listed.stdout)["Tags"] == ["1.0"]


def assign(service, auth, scope: str, role_id: str, principal_id: str, principal_type: str) -> None:
    auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/"
                           f"roleDefinitions/{role_id}",
        principal_id=principal_id, principal_type=principal_type))


# -- the admin user --------------------------------------------------------------------------------------------


@pytest.mark.az
def test_admin_user(service, proxy, registry, image, tmp_path):
    session = Session(service, proxy, tmp_path / "admin", registry.login_server)
    sp_login(session.az, service.init["clientId"], service.init["clientSecret"], service.tenant_id)
    session.az.json("account", "set", "--subscription", service.subscription_id)
    user, password = registry.admin

    refused = session.az.run("acr", "login", "-n", registry.name, "-u", user, "--password=wrong-password")
    assert refused.returncode != 0 and "Login failed" in refused.stderr, refused.stderr
    assert session.stored_login(registry.login_server) is None

    # podman checks the login server's certificate: without the service's CA the login fails.
    untrusting = Session(service, proxy, tmp_path / "untrusting", registry.login_server, trust=False)
    untrusting.az.env["AZURE_CONFIG_DIR"] = session.az.env["AZURE_CONFIG_DIR"]
    unverified = untrusting.az.run("acr", "login", "-n", registry.name, "-u", user, f"--password={password}")
    assert unverified.returncode != 0 and "certificate" in unverified.stderr, unverified.stderr
    assert untrusting.stored_login(registry.login_server) is None

    result = session.az.run("acr", "login", "-n", registry.name, "-u", user, f"--password={password}")
    assert_ok(result, "az acr login as the admin user")
    assert "Login Succeeded" in result.stdout + result.stderr
    assert session.stored_login(registry.login_server) == (user, password)
    assert_push_and_pull(session, image, registry, "login/admin", tmp_path)
    assert registry.login_server in proxy.tunnels


# -- a service principal ---------------------------------------------------------------------------------------


@pytest.mark.az
def test_service_principal(service, proxy, registry, auth, image, tmp_path):
    pusher = service.cli_json("sp", "create", "--name", f"login-push-{uuid.uuid4().hex[:8]}")
    # `az acr login -n` finds the registry through ARM's resource list first: AcrPush alone reads nothing there.
    for role in (roles.ACR_PUSH, roles.READER):
        assign(service, auth, registry.resource_id, role, pusher["id"], "ServicePrincipal")
    session = Session(service, proxy, tmp_path / "sp", registry.login_server)
    sp_login(session.az, pusher["appId"], pusher["password"], service.tenant_id)

    assert_ok(session.az.run("acr", "login", "-n", registry.name), "az acr login as a service principal")
    user, refresh_token = session.stored_login(registry.login_server)
    assert user == NULL_USERNAME and refresh_token.count(".") == 2  # the exchanged ACR refresh token
    assert_push_and_pull(session, image, registry, "login/sp", tmp_path)

    # Reader: the login works (it asks for no scope), pulls work, pushes are refused.
    puller = service.cli_json("sp", "create", "--name", f"login-pull-{uuid.uuid4().hex[:8]}")
    assign(service, auth, registry.resource_id, roles.READER, puller["id"], "ServicePrincipal")
    reader = Session(service, proxy, tmp_path / "sp-pull", registry.login_server)
    sp_login(reader.az, puller["appId"], puller["password"], service.tenant_id)
    assert_ok(reader.az.run("acr", "login", "-n", registry.name), "az acr login as a Reader")
    assert_ok(reader.pull(f"{registry.login_server}/login/sp:1.0", tmp_path / "pulled-reader"), "Reader's pull")
    refused = reader.push(image, f"{registry.login_server}/login/reader:1.0")
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "denied" in refused.stderr.lower(), refused.stderr

    # A principal without any role on the registry does not even find it: az fails, podman stores nothing.
    stranger = service.cli_json("sp", "create", "--name", f"login-none-{uuid.uuid4().hex[:8]}")
    nobody = Session(service, proxy, tmp_path / "sp-none", registry.login_server)
    nobody.az.json("login", "--service-principal", "-u", stranger["appId"], f"--password={stranger['password']}",
                   "--tenant", service.tenant_id, "--allow-no-subscriptions")
    denied = nobody.az.run("acr", "login", "-n", registry.name)
    assert denied.returncode != 0, denied.stdout
    assert nobody.stored_login(registry.login_server) is None


# -- a user ----------------------------------------------------------------------------------------------------


@pytest.mark.az
def test_user(service, proxy, registry, auth, image, port_443, tmp_path):
    user = service.cli_json("user", "create", "--name", f"login{uuid.uuid4().hex[:8]}", "--password", USER_PASSWORD)
    for role in (roles.ACR_PUSH, roles.READER):
        assign(service, auth, registry.resource_id, role, user["id"], "User")
    session = Session(service, proxy, tmp_path / "user", registry.login_server)
    session.az.json("login", "-u", user["userPrincipalName"], f"--password={USER_PASSWORD}")

    assert_ok(session.az.run("acr", "login", "-n", registry.name), "az acr login as a user")
    stored_user, refresh_token = session.stored_login(registry.login_server)
    assert stored_user == NULL_USERNAME and refresh_token.count(".") == 2
    assert_push_and_pull(session, image, registry, "login/user", tmp_path)


# -- the docker command ----------------------------------------------------------------------------------------


@pytest.mark.az
def test_docker_command_that_does_not_work_is_reported(service, proxy, registry, tmp_path):
    """az runs `<command> ps` first: a command that fails stops the login before any credential is fetched."""
    session = Session(service, proxy, tmp_path / "nodocker", registry.login_server)
    sp_login(session.az, service.init["clientId"], service.init["clientSecret"], service.tenant_id)
    session.az.env["DOCKER_COMMAND"] = "/bin/false-docker-command-that-does-not-exist"
    result = session.az.run("acr", "login", "-n", registry.name)
    assert result.returncode != 0
    assert "--expose-token" in result.stderr  # az's tip: the token path needs no docker command
    assert session.stored_login(registry.login_server) is None
