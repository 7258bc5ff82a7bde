"""The built-in login server end to end: the SDK creates registries and role assignments, and skopeo (images built
with umoci) and az push, pull, list, delete and get refused against `control-plane serve` itself — host style
(`<name>.localhost:<port>`, reached through a CONNECT proxy since it does not resolve here) and path style
(`127.0.0.1:<port>/<name>/<repo>`) — plus the token service's grants and refusals.

Needs `skopeo` and `umoci` (apt-get install -y --no-install-recommends skopeo umoci): without them the skopeo tests
fail when CI=true and are skipped otherwise. The token-service tests need no tool.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry.models import (
    RegenerateCredentialParameters,
    Registry,
    RegistryUpdateParameters,
    Sku,
)

from control_plane.authorization import roles
from control_plane.config import Settings
from control_plane.crypto import load_cipher
from control_plane.dataplane import scopes
from control_plane.dataplane.tokens import REFRESH_TOKEN_SECONDS, RegistryTokens
from control_plane.db import Database
from control_plane.identity.tokens import Caller, TokenIssuer
from tests.conftest import client_kwargs, storage_containers, unique_registry_name
from tests.support import tools
from tests.support.az import Az, az_env, register_cloud
from tests.support.az import login as az_login
from tests.support.dataplane import TOOLS, ConnectProxy, Skopeo, build_image

NULL_USERNAME = "00000000-0000-0000-0000-000000000000"
ACR_SCOPE = "https://containerregistry.azure.net/.default"
EVERYTHING = "repository:team/app:pull,push,delete"


# -- fixtures and helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataplane_tools():
    tools.require_tools(*TOOLS)


@pytest.fixture(scope="module")
def auth(service, credential):
    return AuthorizationManagementClient(credential, service.subscription_id, **client_kwargs(service))


@pytest.fixture(scope="module")
def image(dataplane_tools, tmp_path_factory):
    """An OCI layout with tags 1.0 and 1.1, built with umoci."""
    workdir = tmp_path_factory.mktemp("image")
    return build_image(workdir / "layout", ["1.0", "1.1"], workdir)


def create_registry(acr, group: str, prefix: str = "dp", **properties):
    return acr.registries.begin_create(group, unique_registry_name(prefix), Registry(
        location="eastus", sku=Sku(name="Standard"), **properties)).result()


def registry_scope(service, group: str, name: str) -> str:
    return (f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{name}")


def new_principal(service, label: str) -> dict:
    return service.cli_json("sp", "create", "--name", f"dp-{label}-{uuid.uuid4().hex[:8]}")


def assign(service, auth, scope: str, role_id: str, principal: dict) -> str:
    name = str(uuid.uuid4())
    auth.role_assignments.create(scope, name, RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/"
                           f"roleDefinitions/{role_id}",
        principal_id=principal["id"], principal_type="ServicePrincipal"))
    return name


def creds_of(principal: dict) -> tuple[str, str]:
    return principal["appId"], principal["password"]


def token_response(service, login_server: str, scope: str | list[str] | None = None,
                   auth: tuple[str, str] | None = None, **params) -> requests.Response:
    query = {"service": login_server, **params}
    if scope is not None:
        query["scope"] = scope
    return requests.get(f"{service.url}/oauth2/token", params=query, auth=auth, verify=service.ca, timeout=30)


def access_of(token: str) -> list[dict]:
    return jwt.decode(token, options={"verify_signature": False})["access"]


def granted(service, login_server: str, auth: tuple[str, str] | None, scope: str = EVERYTHING) -> list[str]:
    response = token_response(service, login_server, scope, auth)
    assert response.status_code == 200, response.text
    [entry] = access_of(response.json()["token"])
    return entry["actions"]


def bearer_get(url: str, token: str, **kwargs) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs)


def aad_token(service, principal: dict, scope: str = ACR_SCOPE) -> str:
    response = requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": principal["appId"],
        "client_secret": principal["password"], "scope": scope}, verify=service.ca, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def exchange(service, login_server: str, access_token: str, **form) -> requests.Response:
    body = {"grant_type": "access_token", "service": login_server, "tenant": service.tenant_id,
            "access_token": access_token, **form}
    return requests.post(f"{service.url}/oauth2/exchange", data=body, verify=service.ca, timeout=30)


def refresh_grant(service, login_server: str, refresh_token: str, scope: str) -> requests.Response:
    return requests.post(f"{service.url}/oauth2/token", data={
        "grant_type": "refresh_token", "service": login_server, "scope": scope, "refresh_token": refresh_token},
        verify=service.ca, timeout=30)


def assert_refused(response: requests.Response, status: int, code: str) -> None:
    """Docker's `errors` list and the ARM envelope, same code, no token."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["code"] == code and body["error"]["code"] == code, body
    assert body["error"]["message"] and "token" not in body and "access_token" not in body


def assert_ok(result, what: str) -> None:
    assert result.returncode == 0, f"{what} failed (rc {result.returncode}):\n{result.stderr}"


def assert_denied(result, what: str) -> None:
    assert result.returncode != 0, f"{what} succeeded but should have been refused:\n{result.stdout}"
    text = result.stderr.lower()
    assert any(word in text for word in ("denied", "unauthorized", "authentication required")), result.stderr


def in_process_tokens(service) -> tuple[RegistryTokens, Database]:
    """The service's own token signer, built from its settings: for tokens no client can ask for (expired ones)."""
    settings = Settings.from_env(service.env)
    db = Database(settings.database_url)
    issuer = TokenIssuer(db, load_cipher(settings.encryption_key, settings.data_dir), settings.public_url,
                         settings.token_lifetime_seconds)
    return RegistryTokens(issuer, settings.public_url, settings.registry_token_lifetime_seconds), db


@pytest.fixture(scope="module")
def proxy(service):
    """Every `*.localhost` tunnel to the service: host-style login servers without DNS."""
    with ConnectProxy(suffixes={".localhost": service_port(service)}) as running:
        yield running


def service_port(service) -> int:
    return int(service.url.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Address:
    """Where skopeo sends a registry's images: `<login server>` (host style) or `127.0.0.1:<port>` + `<name>/`."""

    host: str
    prefix: str

    def ref(self, reference: str) -> str:
        return f"{self.prefix}{reference}"


def address_of(service, style: str, name: str, login_server: str) -> Address:
    if style == "host":
        return Address(login_server, "")
    return Address(f"127.0.0.1:{service_port(service)}", f"{name}/")


def skopeo_for(service, proxy, workdir: Path) -> Skopeo:
    return Skopeo(workdir, service.ca, tls=True, proxy_port=proxy.port)


# -- real tools: push, pull, refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["host", "path"])
def test_push_and_pull_with_skopeo_as_admin_and_by_role(service, acr, auth, group, image, proxy, tmp_path, style):
    registry = create_registry(acr, group, admin_user_enabled=True)
    name, server = registry.name, registry.login_server
    assert server == f"{name.lower()}.{service.login_server_suffix}"  # reaches this service, nobody else's
    admin = (name, acr.registries.list_credentials(group, name).passwords[0].value)
    scope = registry_scope(service, group, name)
    group_scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    puller, pusher, deleter, reader, nobody = (new_principal(service, label) for label in
                                               ("pull", "push", "delete", "reader", "nobody"))
    assign(service, auth, scope, roles.ACR_PULL, puller)
    assign(service, auth, group_scope, roles.ACR_PUSH, pusher)  # a parent scope counts
    assign(service, auth, scope, roles.ACR_DELETE, deleter)
    assign(service, auth, scope, roles.ACR_PULL, deleter)  # skopeo delete reads the manifest first
    assign(service, auth, group_scope, roles.READER, reader)

    skopeo = skopeo_for(service, proxy, tmp_path / "skopeo")
    at = address_of(service, style, name, server)
    address = at.host

    # The admin user logs in and pushes.
    assert_ok(skopeo.login(address, *admin), "admin login")
    assert_ok(skopeo.push(f"{image}:1.0", address, at.ref("team/app:1.0"), admin), "admin push")
    tags = skopeo.tags(address, at.ref("team/app"), admin)
    assert_ok(tags, "admin list-tags")
    assert json.loads(tags.stdout)["Tags"] == ["1.0"]
    pushed = json.loads(skopeo.inspect(address, at.ref("team/app:1.0"), admin).stdout)["Digest"]

    # AcrPull: pull, inspect and list work; every push is refused.
    assert_ok(skopeo.pull(address, at.ref("team/app:1.0"), f"oci:{tmp_path / 'pulled'}:1.0", creds_of(puller)),
              "AcrPull pull")
    assert json.loads(skopeo.inspect(address, at.ref("team/app:1.0"), creds_of(puller)).stdout)["Digest"] == pushed
    assert json.loads(skopeo.tags(address, at.ref("team/app"), creds_of(puller)).stdout)["Tags"] == ["1.0"]
    assert_denied(skopeo.push(f"{image}:1.1", address, at.ref("team/app:1.1"), creds_of(puller)), "AcrPull push")
    assert_denied(skopeo.push(f"{image}:1.1", address, at.ref("team/new:1.0"), creds_of(puller)),
                  "AcrPull push to a new repository")
    assert_denied(skopeo.delete(address, at.ref("team/app:1.0"), creds_of(puller)), "AcrPull delete")

    # AcrPush (assigned on the resource group): push works.
    assert_ok(skopeo.push(f"{image}:1.1", address, at.ref("team/app:1.1"), creds_of(pusher)), "AcrPush push")
    assert sorted(json.loads(skopeo.tags(address, at.ref("team/app"), creds_of(pusher)).stdout)["Tags"]) == [
        "1.0", "1.1"]
    assert_denied(skopeo.delete(address, at.ref("team/app:1.1"), creds_of(pusher)), "AcrPush delete")

    # Reader (resource group) pulls and cannot push; AcrDelete deletes.
    assert_ok(skopeo.pull(address, at.ref("team/app:1.1"), f"oci:{tmp_path / 'pulled'}:1.1", creds_of(reader)),
              "Reader pull")
    assert_denied(skopeo.push(f"{image}:1.0", address, at.ref("team/reader:1.0"), creds_of(reader)), "Reader push")
    assert_ok(skopeo.delete(address, at.ref("team/app:1.1"), creds_of(deleter)), "AcrDelete delete")
    assert json.loads(skopeo.tags(address, at.ref("team/app"), admin).stdout)["Tags"] == ["1.0"]

    # No role: the login itself succeeds (the credentials are right), every action is refused.
    assert_ok(skopeo.login(address, *creds_of(nobody)), "login without a role")
    assert_denied(skopeo.pull(address, at.ref("team/app:1.0"), f"oci:{tmp_path / 'nobody'}:1.0", creds_of(nobody)),
                  "pull without a role")
    # Wrong credentials: refused at login.
    wrong = skopeo.login(address, puller["appId"], puller["password"] + "x")
    assert wrong.returncode != 0 and "invalid username/password" in wrong.stderr.lower(), wrong.stderr
    assert skopeo.login(address, name, "not-the-password").returncode != 0

    # ACR's exchange, as az sends it: AAD token -> refresh token -> access token for the service.
    service_name = server if style == "host" else address
    refresh = exchange(service, service_name, aad_token(service, puller))
    assert refresh.status_code == 200, refresh.text
    if style == "host":
        access = refresh_grant(service, server, refresh.json()["refresh_token"], "registry:catalog:*")
        assert access.status_code == 200, access.text
        catalog = proxy.session(service.ca).get(f"https://{server}/v2/_catalog?n=100", timeout=30,
                                                headers={"Authorization": f"Bearer {access.json()['access_token']}"})
        assert catalog.status_code == 200 and catalog.json()["repositories"] == ["team/app"], catalog.text
    # The refresh token is also a password for the null-GUID user (`docker login -u 0000… -p <token>`).
    assert_ok(skopeo.pull(address, at.ref("team/app:1.0"), f"oci:{tmp_path / 'refresh'}:1.0",
                          (NULL_USERNAME, refresh.json()["refresh_token"])), "pull with a refresh token")
    # ... and it never opens the registry itself as a bearer token.
    ping = proxy.session(service.ca).get(f"https://{server}/v2/", timeout=30,
                                         headers={"Authorization": f"Bearer {refresh.json()['refresh_token']}"})
    assert ping.status_code == 401

    if getattr(service, "azurite", None) is None:
        # The data lives in the registry's own container (the local-folder backend's folder), content-addressed.
        [container] = [c for c in storage_containers(service) if c.startswith(name.lower() + "-")]
        layer = Path(service.data_dir) / "blobs" / container / "blobs" / "sha256" / pushed[7:9] / pushed[7:] / "data"
        assert layer.is_file()


def test_new_logins_stop_at_once_after_revocation(service, acr, auth, group, image, proxy, tmp_path):
    """Regenerated password, disabled admin user, deleted assignment, deleted principal: the next login fails."""
    registry = create_registry(acr, group, admin_user_enabled=True)
    name, server = registry.name, registry.login_server
    old = acr.registries.list_credentials(group, name)
    password, password2 = old.passwords[0].value, old.passwords[1].value
    puller, pusher = new_principal(service, "pull"), new_principal(service, "push")
    pull_assignment = assign(service, auth, registry_scope(service, group, name), roles.ACR_PULL, puller)
    assign(service, auth, registry_scope(service, group, name), roles.ACR_PUSH, pusher)

    skopeo = skopeo_for(service, proxy, tmp_path / "skopeo")
    address = server
    assert_ok(skopeo.push(f"{image}:1.0", address, "team/app:1.0", (name, password)), "admin push")
    refresh = exchange(service, server, aad_token(service, pusher)).json()["refresh_token"]

    # `az acr credential renew` / regenerate_credential: the old password fails, the new one and password2 work.
    renewed = acr.registries.regenerate_credential(group, name, RegenerateCredentialParameters(name="password"))
    new_password = renewed.passwords[0].value
    assert new_password != password
    assert skopeo.login(address, name, password).returncode != 0
    assert_refused(token_response(service, server, None, (name, password)), 401, "UNAUTHORIZED")
    assert_ok(skopeo.login(address, name, new_password), "login with the new password")
    assert_ok(skopeo.push(f"{image}:1.1", address, "team/app:1.1", (name, password2)), "push with password2")

    # Admin user disabled: both passwords fail.
    acr.registries.begin_update(group, name, RegistryUpdateParameters(admin_user_enabled=False)).result()
    assert skopeo.login(address, name, password2).returncode != 0
    assert skopeo.login(address, name, new_password).returncode != 0

    # Role assignment deleted: the principal still logs in, but its new tokens grant nothing.
    assert_ok(skopeo.pull(address, "team/app:1.0", f"oci:{tmp_path / 'p'}:1.0", creds_of(puller)), "pull")
    auth.role_assignments.delete(registry_scope(service, group, name), pull_assignment)
    assert_denied(skopeo.pull(address, "team/app:1.0", f"oci:{tmp_path / 'p2'}:1.0", creds_of(puller)),
                  "pull after the assignment was deleted")
    assert granted(service, server, creds_of(puller), "repository:team/app:pull") == []

    # Principal deleted: its secret and its refresh token stop working.
    assert refresh_grant(service, server, refresh, "repository:team/app:pull").status_code == 200
    service.cli("sp", "delete", "--id", pusher["appId"])
    assert skopeo.login(address, *creds_of(pusher)).returncode != 0
    assert_refused(refresh_grant(service, server, refresh, "repository:team/app:pull"), 401, "UNAUTHORIZED")
    assert_refused(token_response(service, server, "repository:team/app:pull", (NULL_USERNAME, refresh)),
                   401, "UNAUTHORIZED")


# -- az: login with --expose-token, repository list ---------------------------------------------------------


@pytest.mark.az
def test_az_acr_login_expose_token_and_repository_list(service, acr, group, image, proxy, tmp_path):
    """az reaches `https://<loginServer>/` through an HTTPS proxy that tunnels to the service (no DNS)."""
    registry = create_registry(acr, group, "dpaz", admin_user_enabled=True)
    name, server = registry.name, registry.login_server
    admin = (name, acr.registries.list_credentials(group, name).passwords[0].value)
    skopeo = skopeo_for(service, proxy, tmp_path / "skopeo")
    assert_ok(skopeo.push(f"{image}:1.0", server, "team/app:1.0", admin), "admin push")
    cli = Az(tools.az_cli(), az_env(tmp_path / "az", service.ca, HTTPS_PROXY=proxy.url,
                                    NO_PROXY="127.0.0.1"))
    for variable in ("https_proxy", "no_proxy"):
        cli.env.pop(variable, None)
    register_cloud(cli, service.url, "DataPlane")
    az_login(cli, service.init["clientId"], service.init["clientSecret"], service.tenant_id)
    az = cli.run

    login = az("acr", "login", "-n", name, "--expose-token")
    assert_ok(login, "az acr login --expose-token")
    exposed = json.loads(login.stdout)
    assert exposed["loginServer"] == server and exposed["username"] == NULL_USERNAME
    assert "admin" not in login.stderr.lower(), login.stderr  # the AAD path, not the admin-password fallback
    # What az printed is a refresh token for this registry: it buys access tokens for the owner's rights.
    assert granted(service, server, (NULL_USERNAME, exposed["accessToken"])) == ["pull", "push", "delete"]

    listed = az("acr", "repository", "list", "-n", name)
    assert_ok(listed, "az acr repository list")
    assert json.loads(listed.stdout) == ["team/app"]
    assert server in proxy.tunnels  # (az's other tunnels, to Azure itself, were refused)


# -- the token service: grants and refusals (no registry process needed) ---------------------------------------


def test_role_assignments_decide_the_granted_actions(service, acr, auth, group):
    registry = create_registry(acr, group)
    other = create_registry(acr, group, "dpo")
    server, scope = registry.login_server, registry_scope(service, group, registry.name)
    group_scope = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}"
    cases = [  # (role, where, expected actions for pull,push,delete; for '*'; for the catalog)
        (roles.ACR_PULL, scope, ["pull"], ["pull"], ["*"]),
        (roles.ACR_PUSH, group_scope, ["pull", "push"], ["pull", "push"], ["*"]),
        (roles.ACR_DELETE, scope, ["delete"], ["delete"], []),
        (roles.READER, f"/subscriptions/{service.subscription_id}", ["pull"], ["pull"], ["*"]),
        (roles.CONTRIBUTOR, group_scope, ["pull", "push", "delete"], ["*"], ["*"]),
        (roles.OWNER, scope, ["pull", "push", "delete"], ["*"], ["*"]),
        (roles.ACR_PULL, registry_scope(service, group, other.name), [], [], []),  # another registry's role
        (None, None, [], [], []),
    ]
    for role, where, expected, star, catalog in cases:
        principal = new_principal(service, "grant")
        if role:
            assign(service, auth, where, role, principal)
        label = f"{roles.BY_ID[role].name if role else 'no role'} at {where}"
        assert granted(service, server, creds_of(principal)) == expected, label
        assert granted(service, server, creds_of(principal), "repository:team/app:*") == star, label
        assert granted(service, server, creds_of(principal), "registry:catalog:*") == catalog, label

    # Several scopes at once: repeated parameters, and space-separated in one (the POST form).
    owner = new_principal(service, "owner")
    assign(service, auth, scope, roles.OWNER, owner)
    response = token_response(service, server, ["repository:a/b:pull", "repository:c:push,pull"], creds_of(owner))
    assert access_of(response.json()["token"]) == [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "repository", "name": "c", "actions": ["push", "pull"]}]
    posted = requests.post(f"{service.url}/oauth2/token", data={
        "grant_type": "password", "service": server, "username": owner["appId"], "password": owner["password"],
        "scope": "repository:a/b:pull registry:catalog:*"}, verify=service.ca, timeout=30)
    assert posted.status_code == 200, posted.text
    assert [e["actions"] for e in access_of(posted.json()["access_token"])] == [["pull"], ["*"]]
    # The token is for the login server as ARM shows it, whatever case the client used.
    upper = token_response(service, server.upper(), "repository:a:pull", creds_of(owner))
    claims = jwt.decode(upper.json()["token"], options={"verify_signature": False})
    assert claims["aud"] == server and claims["iss"] == service.url and claims["sub"] == owner["appId"]


def test_admin_and_anonymous_grants(service, acr, group):
    registry = create_registry(acr, group, admin_user_enabled=True)
    server = registry.login_server
    passwords = acr.registries.list_credentials(group, registry.name).passwords
    for password in passwords:  # password and password2 both open the registry
        assert granted(service, server, (registry.name, password.value)) == ["pull", "push", "delete"]
        assert granted(service, server, (registry.name.upper(), password.value), "repository:x:*") == ["*"]
    # No credentials: a token with nothing in it, until anonymous pull is enabled.
    assert granted(service, server, None) == []
    assert token_response(service, server).status_code == 200  # no scope at all: what `login` asks for
    acr.registries.begin_update(group, registry.name, RegistryUpdateParameters(anonymous_pull_enabled=True)).result()
    assert granted(service, server, None) == ["pull"]


def test_token_service_refuses_bad_input(service, acr, group):
    registry = create_registry(acr, group, admin_user_enabled=True)
    other = create_registry(acr, group, "dpo", admin_user_enabled=True)
    server = registry.login_server
    admin = (registry.name, acr.registries.list_credentials(group, registry.name).passwords[0].value)
    principal = new_principal(service, "bad")
    url = f"{service.url}/oauth2/token"

    # Wrong credentials: 401, whoever they claim to be.
    for wrong in ((registry.name, admin[1] + "x"), (other.name, admin[1]), (principal["appId"], "wrong-secret"),
                  (str(uuid.uuid4()), principal["password"]), ("someone", "something"), (registry.name, "")):
        assert_refused(token_response(service, server, "repository:a:pull", wrong), 401, "UNAUTHORIZED")
    bearer = requests.get(url, params={"service": server}, headers={"Authorization": "Bearer abc"},
                          verify=service.ca, timeout=30)
    assert_refused(bearer, 401, "UNAUTHORIZED")

    # Unknown registry (or a service that is no login server at all): 404; no service: 400.
    for unknown in (f"nosuchregistry{uuid.uuid4().hex[:8]}.azurecr.io", "example.com", server + ".evil.com",
                    "a" * 1000, f"../{registry.name}.azurecr.io"):
        assert_refused(token_response(service, unknown, "repository:a:pull", admin), 404, "NOT_FOUND")
    assert_refused(requests.get(url, auth=admin, verify=service.ca, timeout=30), 400, "INVALID_REQUEST")

    # Malformed scopes: 400, even with good credentials.
    for scope in ("repository", "repository:team/app", "repository:team/app:", "repository:Team/App:pull",
                  "repository:team//app:pull", "repository::pull", "repository:team/app:pull;rm",
                  "Repository:team/app:pull", "repository:-app:pull", "repository:" + "a" * 300 + ":pull",
                  " ".join(["repository:a:pull"] * 40)):
        assert_refused(token_response(service, server, scope, admin), 400, "INVALID_SCOPE")

    # OAuth form: grant types, missing fields.
    def post(path: str, **form) -> requests.Response:
        return requests.post(f"{service.url}{path}", data=form, verify=service.ca, timeout=30)

    assert_refused(post("/oauth2/token", service=server), 400, "INVALID_REQUEST")
    assert_refused(post("/oauth2/token", grant_type="client_credentials", service=server), 400, "UNSUPPORTED")
    assert_refused(post("/oauth2/token", grant_type="password", service=server, username=registry.name), 400,
                   "INVALID_REQUEST")
    assert_refused(post("/oauth2/token", grant_type="refresh_token", service=server, refresh_token="not-a-jwt"),
                   401, "UNAUTHORIZED")

    # The exchange: only valid tokens of this service's issuer, for the tenant named, for a known registry.
    good = aad_token(service, principal)
    assert_refused(exchange(service, server, "not-a-jwt"), 401, "UNAUTHORIZED")
    assert_refused(exchange(service, server, good, tenant=str(uuid.uuid4())), 401, "UNAUTHORIZED")
    assert_refused(exchange(service, server, aad_token(service, principal, "https://graph.example/.default")),
                   401, "UNAUTHORIZED")  # an audience the exchange does not take
    assert_refused(exchange(service, "nosuchregistry1.azurecr.io", good), 404, "NOT_FOUND")
    assert_refused(exchange(service, server, good, grant_type="password"), 400, "UNSUPPORTED")
    assert_refused(post("/oauth2/exchange", grant_type="access_token", service=server), 400, "INVALID_REQUEST")
    assert exchange(service, server, aad_token(service, principal, "https://management.azure.com/.default")
                    ).status_code == 200  # ARM tokens are accepted, as ACR does

    # A refresh token is bound to its registry (audience) and expires.
    refresh = exchange(service, server, good).json()["refresh_token"]
    assert refresh_grant(service, server, refresh, "repository:a:pull").status_code == 200
    assert_refused(refresh_grant(service, other.login_server, refresh, "repository:a:pull"), 401, "UNAUTHORIZED")
    assert_refused(token_response(service, other.login_server, "repository:a:pull", (NULL_USERNAME, refresh)),
                   401, "UNAUTHORIZED")
    # An ordinary issuer token (even one whose audience is the login server) is no refresh token.
    assert_refused(refresh_grant(service, server, good, "repository:a:pull"), 401, "UNAUTHORIZED")
    tokens, db = in_process_tokens(service)
    try:
        caller = Caller(service.tenant_id, principal["id"], principal["appId"], "x")
        stale = tokens.refresh_token(caller, server, now=time.time() - REFRESH_TOKEN_SECONDS - 120)
        assert_refused(refresh_grant(service, server, stale, "repository:a:pull"), 401, "UNAUTHORIZED")
    finally:
        db.dispose()


def test_scope_grammar_and_grants():
    parsed = scopes.parse(["repository:team/app:pull,push", "registry:catalog:* repository:a.b/c-d__e:pull"])
    assert [str(s) for s in parsed] == ["repository:team/app:pull,push", "registry:catalog:*",
                                        "repository:a.b/c-d__e:pull"]
    assert scopes.parse([]) == [] and scopes.parse([""]) == []
    assert scopes.parse_one("repository(plugin):a/b:pull").type == "repository(plugin)"
    with pytest.raises(scopes.ScopeError):
        scopes.parse_one("repository:localhost:5000/x:pull")  # scopes name repositories, never hosts
    push = frozenset({"pull", "push"})
    assert scopes.grant(scopes.parse_one("repository:a:pull,push,delete,*"), push)["actions"] == ["pull", "push"]
    assert scopes.grant(scopes.parse_one("repository:a:*"), frozenset(scopes.REPOSITORY_ACTIONS))["actions"] == ["*"]
    assert scopes.grant(scopes.parse_one("unknown:a:pull"), push)["actions"] == []
    assert scopes.grant(scopes.parse_one("repository:a:metadata_read,metadata_write"), push)["actions"] == [
        "metadata_read", "metadata_write"]
    assert scopes.grant(scopes.parse_one("repository:a:metadata_read,metadata_write"),
                        frozenset({"delete"}))["actions"] == []
    assert scopes.grant(scopes.parse_one("registry:catalog:*"), frozenset({"push"}))["actions"] == []
    access = [scopes.grant(scopes.parse_one("repository:a:*"), push)]
    assert scopes.covers(access, "repository", "a", "pull") and not scopes.covers(access, "repository", "a", "delete")
    assert scopes.covers([{"type": "repository", "name": "a", "actions": ["*"]}], "repository", "a", "metadata_write")
    assert not scopes.covers(access, "repository", "b", "pull")
