"""Users and groups of the built-in directory, and users signing in with a password, as real clients do it.

- the CLI (`control-plane user|group ...`), Graph over raw HTTPS, and `az ad user|group ...`;
- role assignments to users and groups (nested too) enforced by ARM, and revoked at the next request when a
  member is removed or a user disabled (in-process: two apps on one database stand for two replicas, and plain SQL
  stands for a write no application code sees);
- the password grant and refresh tokens through msal's `PublicClientApplication` and `az login -u/-p`, the lockout
  after repeated failures, disabled users, and no password in the service's log.

MSAL's user-realm discovery (before every password grant) asks `https://<authority host>/common/userrealm/...` on
port 443, whatever port the authority has; the `port_443` fixture forwards that port to the service under test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid

import msal
import pytest
import requests
import sqlalchemy as sa

from control_plane.app import create_app
from control_plane.authorization import roles
from control_plane.authorization import service as authorization
from control_plane.identity import admin as directory_admin
from tests.support import tools
from tests.support.az import Az, az_env, logged_in, register_cloud
from tests.support.in_process import owner_headers, prepared_settings
from tests.support.tcp_proxy import TcpProxy
from tests.test_graph import Graph, assert_graph_error, token

AZ_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
ARM_SCOPE = "https://management.core.windows.net//.default"
CLOUD = "ControlPlaneUsers"
GROUPS_VERSION = "2021-04-01"
SUBSCRIPTIONS_VERSION = "2022-12-01"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
PASSWORD = "Corr3ct-Horse!"


def tag() -> str:
    return uuid.uuid4().hex[:8]


# -- helpers -------------------------------------------------------------------------------------------------------


def password_grant(service, username: str, password: str, scope: str = ARM_SCOPE, tenant: str | None = None,
                   client_id: str = AZ_CLIENT_ID) -> requests.Response:
    """The password grant exactly as MSAL sends it for az."""
    return requests.post(f"{service.url}/{tenant or service.tenant_id}/oauth2/v2.0/token", timeout=30,
                         verify=service.ca, data={"client_id": client_id, "grant_type": "password",
                                                  "username": username, "password": password, "client_info": "1",
                                                  "scope": f"{scope} offline_access openid profile"})


def user_token(service, username: str, password: str, scope: str = ARM_SCOPE) -> dict:
    response = password_grant(service, username, password, scope)
    assert response.status_code == 200, response.text
    return response.json()


def refresh_grant(service, refresh_token: str, scope: str = ARM_SCOPE) -> requests.Response:
    return requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", timeout=30, verify=service.ca,
                         data={"client_id": AZ_CLIENT_ID, "grant_type": "refresh_token",
                               "refresh_token": refresh_token, "scope": f"{scope} offline_access openid profile"})


def assert_oauth_error(response: requests.Response, error: str, aadsts: int) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error and body["error_codes"] == [aadsts], body
    return body


def arm(service, bearer: str, method: str, path: str, version: str = GROUPS_VERSION) -> requests.Response:
    return requests.request(method, f"{service.url}{path}?api-version={version}", timeout=30, verify=service.ca,
                            headers={"Authorization": f"Bearer {bearer}"})


def subscriptions(service, bearer: str) -> requests.Response:
    return arm(service, bearer, "GET", "/subscriptions", SUBSCRIPTIONS_VERSION)


def rg_path(service, name: str) -> str:
    return f"/subscriptions/{service.subscription_id}/resourcegroups/{name}"


def assign(service, scope: str, role_id: str, principal_id: str, principal_type: str) -> str:
    """A role assignment made by the owner over raw ARM; returns its id."""
    owner = token(service, service.init["clientId"], service.init["clientSecret"], ARM_SCOPE)
    assignment = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    response = requests.put(f"{service.url}{assignment}?api-version=2022-04-01", timeout=30, verify=service.ca,
                            headers={"Authorization": f"Bearer {owner}"}, json={"properties": {
                                "principalId": principal_id, "principalType": principal_type,
                                "roleDefinitionId": f"/subscriptions/{service.subscription_id}/providers/"
                                                    f"Microsoft.Authorization/roleDefinitions/{role_id}"}})
    assert response.status_code == 201, response.text
    return assignment


@pytest.fixture(scope="module")
def admin(service) -> Graph:
    return Graph.of(service, service.init["clientId"], service.init["clientSecret"])


@pytest.fixture(scope="module")
def groups(service, rmc):
    """Three resource groups (a, b, c) for the role tests, deleted at the end."""
    names = {key: f"rg-ug-{key}-{tag()}" for key in "abc"}
    for name in names.values():
        rmc.resource_groups.create_or_update(name, {"location": "eastus"})
    yield names
    for name in names.values():
        rmc.resource_groups.begin_delete(name).result()


@pytest.fixture(scope="module")
def port_443(service):
    """Forwards 127.0.0.1:443 to the service for MSAL's user-realm discovery (needs root; waits while another run
    holds the port)."""
    proxy = TcpProxy("127.0.0.1", int(service.url.rsplit(":", 1)[1]))
    proxy.port = 443
    deadline = time.monotonic() + 120
    while True:
        try:
            proxy.start()
            break
        except PermissionError:
            pytest.skip("binding 127.0.0.1:443 (where MSAL asks for the user realm) needs root")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    yield
    proxy.stop()


# -- the command line ------------------------------------------------------------------------------------------


def test_cli_user_commands(service):
    name = f"cli-{tag()}"
    created = service.cli_json("user", "create", "--name", name)
    assert set(created) == {"userPrincipalName", "id", "tenant", "password", "displayName"}
    upn = created["userPrincipalName"]
    domain = upn.split("@")[1]
    assert upn == f"{name}@{domain}" and domain.endswith(".onmicrosoft.local")
    assert created["tenant"] == service.tenant_id
    user_token(service, upn, created["password"])
    # With the tenant in the path, the name alone will do.
    user_token(service, name, created["password"])

    given = service.cli_json("user", "create", "--name", f"given-{tag()}", "--password", PASSWORD,
                             "--display-name", "Given Name")
    assert given["password"] == PASSWORD and given["displayName"] == "Given Name"
    weak = service.cli("user", "create", "--name", f"weak-{tag()}", "--password", "password", check=False)
    assert weak.returncode == 1 and "complexity" in weak.stderr, weak.stderr
    taken = service.cli("user", "create", "--name", name, check=False)
    assert taken.returncode == 1 and "already exists" in taken.stderr, taken.stderr
    elsewhere = service.cli("user", "create", "--name", f"x@{tag()}.example", check=False)
    assert elsewhere.returncode == 1 and "verified domain" in elsewhere.stderr, elsewhere.stderr

    listed = service.cli_json("user", "list")
    assert {"userPrincipalName": upn, "id": created["id"], "displayName": name, "accountEnabled": True} in listed

    reset = service.cli_json("user", "reset-password", "--id", name)
    assert reset["id"] == created["id"] and reset["password"] != created["password"]
    assert_oauth_error(password_grant(service, upn, created["password"]), "invalid_grant", 50126)
    user_token(service, upn, reset["password"])

    assert service.cli_json("user", "disable", "--id", upn)["accountEnabled"] is False
    assert_oauth_error(password_grant(service, upn, reset["password"]), "invalid_grant", 50057)
    assert service.cli_json("user", "enable", "--id", created["id"])["accountEnabled"] is True
    user_token(service, upn, reset["password"])

    deleted = service.cli_json("user", "delete", "--id", upn)
    assert deleted["id"] == created["id"] and deleted["deleted"] is True
    assert created["id"] not in {u["id"] for u in service.cli_json("user", "list")}
    assert_oauth_error(password_grant(service, upn, reset["password"]), "invalid_grant", 50126)
    missing = service.cli("user", "delete", "--id", upn, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr, missing.stderr
    service.cli_json("user", "delete", "--id", given["id"])


def test_cli_group_commands(service, admin):
    user = service.cli_json("user", "create", "--name", f"member-{tag()}")
    principal = service.cli_json("sp", "create", "--name", f"member-sp-{tag()}")
    team_name, outer_name = f"team-{tag()}", f"outer-{tag()}"
    team = service.cli_json("group", "create", "--name", team_name, "--description", "the team")
    assert (team["displayName"], team["description"], team["tenant"]) == (team_name, "the team", service.tenant_id)
    assert service.cli_json("group", "create", "--name", team_name)["id"] == team["id"]  # idempotent, like az
    outer = service.cli_json("group", "create", "--name", outer_name)
    assert {team["id"], outer["id"]} <= {g["id"] for g in service.cli_json("group", "list")}

    added = service.cli_json("group", "add-member", "--group", team_name, "--member", user["userPrincipalName"])
    assert added["member"]["type"] == "User" and added["member"]["id"] == user["id"]
    assert service.cli_json("group", "add-member", "--group", team["id"],
                            "--member", principal["appId"])["member"]["id"] == principal["id"]
    assert service.cli_json("group", "add-member", "--group", outer_name,
                            "--member", team_name)["member"]["type"] == "Group"
    members = service.cli_json("group", "list-members", "--group", team_name)
    assert sorted((m["type"], m["id"]) for m in members) == sorted(
        [("User", user["id"]), ("ServicePrincipal", principal["id"])])
    again = service.cli("group", "add-member", "--group", team_name, "--member", user["id"], check=False)
    assert again.returncode == 1 and "already exist" in again.stderr, again.stderr
    cycle = service.cli("group", "add-member", "--group", team_name, "--member", outer["id"], check=False)
    assert cycle.returncode == 1 and "cannot be added" in cycle.stderr, cycle.stderr
    # Nested membership as Graph sees it.
    groups_of_user = admin.ok("POST", f"/users/{user['id']}/getMemberGroups", json={"securityEnabledOnly": True})
    assert sorted(groups_of_user["value"]) == sorted([team["id"], outer["id"]])

    assert service.cli_json("group", "remove-member", "--group", team_name,
                            "--member", user["userPrincipalName"])["removed"] is True
    assert [m["id"] for m in service.cli_json("group", "list-members", "--group", team_name)] == [principal["id"]]
    assert service.cli_json("group", "delete", "--group", team_name)["deleted"] is True
    assert service.cli_json("group", "list-members", "--group", outer_name) == []
    unknown = service.cli("group", "delete", "--group", team_name, check=False)
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr, unknown.stderr
    service.cli_json("group", "delete", "--group", outer["id"])
    service.cli_json("user", "delete", "--id", user["id"])
    service.cli_json("sp", "delete", "--id", principal["appId"])


# -- Graph over raw HTTPS ----------------------------------------------------------------------------------------


def test_graph_users(service, admin):
    domain = service.cli_json("user", "create", "--name", f"probe-{tag()}")["userPrincipalName"].split("@")[1]
    upn = f"Graph.User-{tag()}@{domain}"
    body = {"accountEnabled": True, "displayName": "Graph User", "mailNickname": "graphuser",
            "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": False},
            "userPrincipalName": upn}
    created = admin.ok("POST", "/users", 201, json=body)
    assert created["userPrincipalName"] == upn and created["accountEnabled"] is True
    assert created["@odata.context"].endswith("/v1.0/$metadata#users/$entity")
    assert PASSWORD not in str(created)
    assert admin.ok("GET", f"/users/{created['id']}")["userPrincipalName"] == upn
    assert admin.ok("GET", f"/users/{upn.lower()}")["id"] == created["id"]  # UPNs ignore case
    assert [u["id"] for u in admin.list("users", f"userPrincipalName eq '{upn.upper()}'")] == [created["id"]]
    assert created["id"] in {u["id"] for u in admin.list("users", "startswith(displayName,'Graph U')")}
    assert_graph_error(admin.request("POST", "/users", json=body), 409, "Request_MultipleObjectsWithSameKeyValue")

    assert admin.ok("PATCH", f"/users/{upn}", 204, json={"displayName": "Renamed"}) is None
    assert admin.ok("GET", f"/users/{upn}")["displayName"] == "Renamed"
    issued = user_token(service, upn, PASSWORD)
    new_password = "An0ther-Secret!"
    admin.ok("PATCH", f"/users/{created['id']}", 204, json={"passwordProfile": {"password": new_password}})
    assert_oauth_error(password_grant(service, upn, PASSWORD), "invalid_grant", 50126)
    # A new password revokes the refresh tokens issued before it.
    assert_oauth_error(refresh_grant(service, issued["refresh_token"]), "invalid_grant", 50173)
    user_token(service, upn, new_password)

    for bad in [{}, {**body, "userPrincipalName": f"x@{tag()}.example"}, {**body, "userPrincipalName": "no domain"},
                {**body, "passwordProfile": {"password": "short"}}, {**body, "passwordProfile": None},
                {**body, "accountEnabled": "yes"},
                {**body, "userPrincipalName": f"new-{tag()}@{domain}",
                 "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": True}}]:
        assert_graph_error(admin.request("POST", "/users", json=bad), 400, "Request_BadRequest")
    assert_graph_error(admin.request("GET", f"/users/nobody@{domain}"), 404, "Request_ResourceNotFound")

    member = service.cli_json("sp", "create", "--name", f"graph-reader-{tag()}")
    reader = Graph.of(service, member["appId"], member["password"])
    assert reader.ok("GET", f"/users/{created['id']}")["id"] == created["id"]  # reading is open to the tenant
    for method, path, json_body in [("POST", "/users", {**body, "userPrincipalName": f"n-{tag()}@{domain}"}),
                                    ("PATCH", f"/users/{created['id']}", {"accountEnabled": False}),
                                    ("DELETE", f"/users/{created['id']}", None)]:
        assert_graph_error(reader.request(method, path, json=json_body), 403, "Authorization_RequestDenied")
    assert_graph_error(reader.request("GET", "/me"), 400, "Request_BadRequest")

    other = service.cli_json("tenant", "create", "--name", f"ug-other-{tag()}")
    theirs = Graph.of(service, other["clientId"], other["clientSecret"], tenant=other["tenantId"])
    assert_graph_error(theirs.request("GET", f"/users/{created['id']}"), 404, "Request_ResourceNotFound")
    assert created["id"] not in {u["id"] for u in theirs.list("users")}
    assert_graph_error(theirs.request("POST", "/users", json=body), 400, "Request_BadRequest")  # not their domain

    assert admin.ok("DELETE", f"/users/{upn}", 204) is None
    assert_graph_error(admin.request("GET", f"/users/{created['id']}"), 404, "Request_ResourceNotFound")
    assert_oauth_error(password_grant(service, upn, new_password), "invalid_grant", 50126)


def test_graph_groups_members_and_membership_checks(service, admin):
    user = service.cli_json("user", "create", "--name", f"gm-{tag()}")
    principal = service.cli_json("sp", "create", "--name", f"gm-sp-{tag()}")
    name = f"graph-team-{tag()}"
    team = admin.ok("POST", "/groups", 201, json={"displayName": name, "mailNickname": name, "mailEnabled": False,
                                                  "securityEnabled": True, "description": "d"})
    assert (team["displayName"], team["securityEnabled"], team["mailEnabled"]) == (name, True, False)
    outer = admin.ok("POST", "/groups", 201, json={"displayName": f"{name}-outer", "mailNickname": "o",
                                                   "mailEnabled": False, "securityEnabled": True})
    assert [g["id"] for g in admin.list("groups", f"displayName eq '{name}' and mailNickname eq '{name}'")] == [
        team["id"]]
    assert {g["id"] for g in admin.list("groups", f"startswith(displayName,'{name}')")} == {team["id"], outer["id"]}
    assert admin.ok("GET", f"/groups/{team['id']}")["description"] == "d"

    def ref(object_id: str) -> dict:
        return {"@odata.id": f"{service.url}/v1.0/directoryObjects/{object_id}"}

    for member in (user["id"], principal["id"]):
        assert admin.ok("POST", f"/groups/{team['id']}/members/$ref", 204, json=ref(member)) is None
    admin.ok("POST", f"/groups/{outer['id']}/members/$ref", 204, json=ref(team["id"]))
    members = admin.list(f"groups/{team['id']}/members", top=1)  # paged through nextLink
    assert sorted((m["@odata.type"], m["id"]) for m in members) == sorted(
        [("#microsoft.graph.user", user["id"]), ("#microsoft.graph.servicePrincipal", principal["id"])])
    assert next(m for m in members if m["id"] == user["id"])["userPrincipalName"] == user["userPrincipalName"]
    assert_graph_error(admin.request("POST", f"/groups/{team['id']}/members/$ref", json=ref(user["id"])), 400,
                       "Request_BadRequest")
    assert_graph_error(admin.request("POST", f"/groups/{team['id']}/members/$ref", json=ref(outer["id"])), 400,
                       "Request_BadRequest")
    assert_graph_error(admin.request("POST", f"/groups/{team['id']}/members/$ref", json=ref(str(uuid.uuid4()))),
                       404, "Request_ResourceNotFound")
    assert_graph_error(admin.request("POST", f"/groups/{team['id']}/members/$ref", json={"@odata.id": "x"}), 400,
                       "Request_BadRequest")

    checked = admin.ok("POST", f"/directoryObjects/{user['id']}/checkMemberGroups",
                       json={"groupIds": [outer["id"], str(uuid.uuid4())]})
    assert checked["value"] == [outer["id"]]  # through the nested group
    assert sorted(admin.ok("POST", f"/groups/{team['id']}/getMemberGroups", json={})["value"]) == [outer["id"]]
    assert sorted(admin.ok("POST", f"/users/{user['userPrincipalName']}/getMemberGroups",
                           json={"securityEnabledOnly": False})["value"]) == sorted([team["id"], outer["id"]])
    found = admin.ok("POST", "/directoryObjects/getByIds", json={
        "ids": [user["id"], team["id"], principal["id"]],
        "types": ["user", "group", "servicePrincipal", "directoryObjectPartnerReference"]})["value"]
    assert [(o["@odata.type"], o["id"]) for o in found] == [("#microsoft.graph.user", user["id"]),
                                                            ("#microsoft.graph.group", team["id"]),
                                                            ("#microsoft.graph.servicePrincipal", principal["id"])]

    assert admin.ok("DELETE", f"/groups/{team['id']}/members/{user['id']}/$ref", 204) is None
    assert_graph_error(admin.request("DELETE", f"/groups/{team['id']}/members/{user['id']}/$ref"), 404,
                       "Request_ResourceNotFound")
    assert admin.ok("POST", f"/directoryObjects/{user['id']}/checkMemberGroups",
                    json={"groupIds": [outer["id"]]})["value"] == []
    assert admin.ok("DELETE", f"/groups/{team['id']}", 204) is None
    assert admin.list(f"groups/{outer['id']}/members") == []
    assert_graph_error(admin.request("GET", f"/groups/{team['id']}"), 404, "Request_ResourceNotFound")
    for bad in [{}, {"displayName": "x", "mailEnabled": True}, {"displayName": "x", "securityEnabled": False},
                {"displayName": "x", "groupTypes": ["Unified"]}]:
        assert_graph_error(admin.request("POST", "/groups", json=bad), 400, "Request_BadRequest")
    admin.ok("DELETE", f"/groups/{outer['id']}", 204)


# -- az ad user / group ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az(service, tmp_path_factory) -> Az:
    return logged_in(service, tmp_path_factory.mktemp("az-users"), CLOUD)


@pytest.fixture(scope="module")
def domain(service) -> str:
    return service.cli_json("user", "create", "--name", f"domain-{tag()}")["userPrincipalName"].split("@")[1]


@pytest.mark.az
def test_az_ad_user_commands(az, domain):
    upn = f"az-user-{tag()}@{domain}"
    created = az.json("ad", "user", "create", "--display-name", "Az User", "--user-principal-name", upn,
                      "--password", PASSWORD)
    assert created["userPrincipalName"] == upn and created["displayName"] == "Az User"
    assert [u["id"] for u in az.json("ad", "user", "list", "--upn", upn)] == [created["id"]]
    assert created["id"] in {u["id"] for u in az.json("ad", "user", "list", "--display-name", "Az U")}
    assert az.json("ad", "user", "show", "--id", upn)["id"] == created["id"]
    assert az.json("ad", "user", "show", "--id", created["id"])["userPrincipalName"] == upn
    assert az.json("ad", "user", "update", "--id", upn, "--display-name", "Az User 2") is None
    assert az.json("ad", "user", "show", "--id", upn)["displayName"] == "Az User 2"
    assert az.json("ad", "user", "get-member-groups", "--id", upn) == []
    assert az.json("ad", "user", "delete", "--id", upn) is None
    shown = az.run("ad", "user", "show", "--id", upn)
    assert shown.returncode != 0 and "does not exist" in shown.stderr, shown.stderr


@pytest.mark.az
def test_az_ad_group_commands(az, service):
    user = service.cli_json("user", "create", "--name", f"az-member-{tag()}")
    name = f"az-team-{tag()}"
    created = az.json("ad", "group", "create", "--display-name", name, "--mail-nickname", name)
    assert created["displayName"] == name and created["securityEnabled"] is True
    again = az.run("ad", "group", "create", "--display-name", name, "--mail-nickname", name)
    assert again.returncode == 0 and "already exists" in again.stderr, again.stderr
    assert [g["id"] for g in az.json("ad", "group", "list", "--display-name", name)] == [created["id"]]
    assert az.json("ad", "group", "show", "--group", name)["id"] == created["id"]  # by display name
    assert az.json("ad", "group", "member", "check", "--group", name, "--member-id", user["id"]) == {"value": False}
    assert az.json("ad", "group", "member", "add", "--group", name, "--member-id", user["id"]) is None
    assert az.json("ad", "group", "member", "check", "--group", created["id"],
                   "--member-id", user["id"]) == {"value": True}
    listed = az.json("ad", "group", "member", "list", "--group", name)
    assert [(m["id"], m["userPrincipalName"]) for m in listed] == [(user["id"], user["userPrincipalName"])]
    assert az.json("ad", "group", "get-member-groups", "--group", name) == []
    assert az.json("ad", "group", "member", "remove", "--group", name, "--member-id", user["id"]) is None
    assert az.json("ad", "group", "member", "list", "--group", name) == []
    assert az.json("ad", "group", "delete", "--group", name) is None
    assert az.json("ad", "group", "list", "--display-name", name) == []


# -- signing in as a user, and what the user's (groups') roles allow ---------------------------------------------


def user_az(service, tmp_path_factory, upn: str, password: str) -> Az:
    az = Az(tools.az_cli(), az_env(tmp_path_factory.mktemp("az-user"), service.ca))
    register_cloud(az, service.url, CLOUD)
    az.json("login", "-u", upn, f"--password={password}")
    return az


@pytest.mark.az
def test_az_login_as_a_user_sees_what_its_roles_and_groups_allow(az, service, groups, port_443, tmp_path_factory,
                                                                 admin):
    alice = service.cli_json("user", "create", "--name", f"alice-{tag()}", "--password", PASSWORD)
    upn = alice["userPrincipalName"]
    team = az.json("ad", "group", "create", "--display-name", f"alice-team-{tag()}", "--mail-nickname", "t")
    outer = az.json("ad", "group", "create", "--display-name", f"alice-outer-{tag()}", "--mail-nickname", "o")
    az.json("ad", "group", "member", "add", "--group", team["id"], "--member-id", alice["id"])
    az.json("ad", "group", "member", "add", "--group", outer["id"], "--member-id", team["id"])

    scope_a, scope_b = rg_path(service, groups["a"]), rg_path(service, groups["b"])
    direct = az.json("role", "assignment", "create", "--assignee", upn, "--role", "Reader", "--scope", scope_a)
    assert (direct["principalId"], direct["principalType"]) == (alice["id"], "User")
    # The group's grant reaches alice through the nested group.
    through_group = az.json("role", "assignment", "create", "--assignee", outer["id"], "--role", "Contributor",
                            "--scope", scope_b)
    assert (through_group["principalId"], through_group["principalType"]) == (outer["id"], "Group")
    listed = az.json("role", "assignment", "list", "--scope", scope_a)
    assert (upn, "User", "Reader") in {(a["principalName"], a["principalType"], a["roleDefinitionName"])
                                       for a in listed}

    alice_az = user_az(service, tmp_path_factory, upn, PASSWORD)
    account = alice_az.json("account", "show")
    assert (account["user"]["name"], account["user"]["type"]) == (upn, "user")
    assert account["tenantId"] == service.tenant_id
    assert {g["name"] for g in alice_az.json("group", "list")} == {groups["a"], groups["b"]}
    me = alice_az.json("ad", "signed-in-user", "show")
    assert (me["id"], me["userPrincipalName"]) == (alice["id"], upn)
    # A write through the group's Contributor, logged under alice's UPN.
    alice_az.json("group", "update", "-n", groups["b"], "--tags", "by=alice")
    refused = alice_az.run("group", "update", "-n", groups["a"], "--tags", "by=alice")
    assert refused.returncode != 0 and "AuthorizationFailed" in refused.stderr, refused.stderr
    events = az.json("monitor", "activity-log", "list", "-g", groups["b"], "--offset", "1h", "--caller", upn)
    assert events and {e["caller"] for e in events} == {upn}, events

    # Out of the team, out of the group's roles: the very next call is refused.
    az.json("ad", "group", "member", "remove", "--group", team["id"], "--member-id", alice["id"])
    shown = alice_az.run("group", "show", "-n", groups["b"])
    assert shown.returncode != 0 and "AuthorizationFailed" in shown.stderr, shown.stderr
    assert {g["name"] for g in alice_az.json("group", "list")} == {groups["a"]}

    # Disabled: every token of hers is refused at once, and so is a new sign-in.
    admin.ok("PATCH", f"/users/{alice['id']}", 204, json={"accountEnabled": False})
    disabled = alice_az.run("group", "list")
    assert disabled.returncode != 0 and "InvalidAuthenticationToken" in disabled.stderr, disabled.stderr
    relogin = alice_az.run("login", "-u", upn, f"--password={PASSWORD}")
    assert relogin.returncode != 0 and "AADSTS50057" in relogin.stderr, relogin.stderr
    service.cli_json("user", "delete", "--id", alice["id"])
    for group in (team, outer):
        az.json("ad", "group", "delete", "--group", group["id"])


@pytest.mark.az
def test_az_login_with_a_wrong_password_says_nothing_more(service, port_443, tmp_path_factory):
    alice = service.cli_json("user", "create", "--name", f"wrong-{tag()}", "--password", PASSWORD)
    az = Az(tools.az_cli(), az_env(tmp_path_factory.mktemp("az-wrong"), service.ca))
    register_cloud(az, service.url, CLOUD)
    for username in (alice["userPrincipalName"], f"nobody-{tag()}@{alice['userPrincipalName'].split('@')[1]}"):
        result = az.run("login", "-u", username, "--password=Wr0ng-Password!", "--tenant", service.tenant_id)
        assert result.returncode != 0 and "AADSTS50126" in result.stderr, result.stderr
    assert "Wr0ng-Password!" not in service.log() and PASSWORD not in service.log()


# -- msal and the token endpoint ---------------------------------------------------------------------------------


@contextlib.contextmanager
def ca_for_msal(service, monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override MSAL's `verify` (README): point them at the CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", service.ca)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    yield


def test_msal_public_client_username_password(service, port_443, monkeypatch, groups):
    alice = service.cli_json("user", "create", "--name", f"msal-{tag()}", "--password", PASSWORD)
    assign(service, rg_path(service, groups["c"]), READER, alice["id"], "User")
    with ca_for_msal(service, monkeypatch):
        app = msal.PublicClientApplication(AZ_CLIENT_ID, authority=f"{service.url}/{service.tenant_id}",
                                           instance_discovery=False)
        result = app.acquire_token_by_username_password(alice["userPrincipalName"], PASSWORD, scopes=[ARM_SCOPE])
        assert "access_token" in result, result
        assert result["id_token_claims"]["preferred_username"] == alice["userPrincipalName"]
        assert result["id_token_claims"]["oid"] == alice["id"]
        [account] = app.get_accounts(alice["userPrincipalName"])
        assert account["home_account_id"] == f"{alice['id']}.{service.tenant_id}"
        response = arm(service, result["access_token"], "GET", rg_path(service, groups["c"]))
        assert response.status_code == 200, response.text
        assert arm(service, result["access_token"], "GET", rg_path(service, groups["a"])).status_code == 403

        # Silently, with the refresh token: another resource (Graph), then ARM again after the cache is dropped.
        graph = app.acquire_token_silent([f"{service.url}//.default"], account=account)
        assert graph and "access_token" in graph, graph
        assert Graph(service, graph["access_token"]).ok("GET", "/me")["id"] == alice["id"]
        app.remove_account(account)
        wrong = app.acquire_token_by_username_password(alice["userPrincipalName"], "Wr0ng-Password!",
                                                       scopes=[ARM_SCOPE])
        assert wrong["error"] == "invalid_grant" and 50126 in wrong["error_codes"], wrong
        unknown = app.acquire_token_by_username_password(f"x{alice['userPrincipalName']}", "Wr0ng-Password!",
                                                         scopes=[ARM_SCOPE])
        assert unknown["error_description"].split("Trace ID")[0] == wrong["error_description"].split("Trace ID")[0]
        # `organizations`: the UPN's domain names the tenant.
        anywhere = msal.PublicClientApplication(AZ_CLIENT_ID, authority=f"{service.url}/organizations",
                                                instance_discovery=False)
        tokens = anywhere.acquire_token_by_username_password(alice["userPrincipalName"], PASSWORD, scopes=[ARM_SCOPE])
        assert tokens["id_token_claims"]["tid"] == service.tenant_id, tokens
    service.cli_json("user", "delete", "--id", alice["id"])


def test_refresh_tokens_and_disabled_users(service, admin):
    alice = service.cli_json("user", "create", "--name", f"rt-{tag()}", "--password", PASSWORD)
    upn = alice["userPrincipalName"]
    issued = user_token(service, upn, PASSWORD)
    assert set(issued) >= {"access_token", "refresh_token", "id_token", "client_info", "expires_in", "scope"}
    refreshed = refresh_grant(service, issued["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    # A refresh token is not an access token, nor is an access token a refresh token.
    assert subscriptions(service, issued["refresh_token"]).status_code == 401
    assert_oauth_error(refresh_grant(service, issued["access_token"]), "invalid_grant", 9002313)
    other_client = requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", timeout=30,
                                 verify=service.ca, data={"client_id": "1950a258-227b-4e31-a9cf-717495945fc2",
                                                          "grant_type": "refresh_token", "scope": ARM_SCOPE,
                                                          "refresh_token": issued["refresh_token"]})
    assert_oauth_error(other_client, "invalid_grant", 70000)
    assert_oauth_error(password_grant(service, upn, PASSWORD, client_id=str(uuid.uuid4())), "unauthorized_client",
                       700016)

    access = issued["access_token"]
    assert subscriptions(service, access).status_code == 200
    admin.ok("PATCH", f"/users/{upn}", 204, json={"accountEnabled": False})
    refused = subscriptions(service, access)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert_oauth_error(password_grant(service, upn, PASSWORD), "invalid_grant", 50057)
    # Only who knows the password learns that the account is disabled.
    assert_oauth_error(password_grant(service, upn, "Wr0ng-Password!"), "invalid_grant", 50126)
    assert_oauth_error(refresh_grant(service, issued["refresh_token"]), "invalid_grant", 50057)
    admin.ok("PATCH", f"/users/{upn}", 204, json={"accountEnabled": True})
    # Disabling revoked the refresh tokens for good; a new sign-in works.
    assert_oauth_error(refresh_grant(service, refreshed.json()["refresh_token"]), "invalid_grant", 50173)
    assert subscriptions(service, user_token(service, upn, PASSWORD)["access_token"]).status_code == 200
    service.cli_json("user", "delete", "--id", upn)


def test_repeated_failures_lock_the_name_for_that_source(service):
    """CONTROL_PLANE_SIGNIN_LOCKOUT_THRESHOLD is 10 by default: the 11th attempt is refused even with the right
    password, and an unknown name locks the same way (the lockout tells nothing about who exists)."""
    alice = service.cli_json("user", "create", "--name", f"locked-{tag()}", "--password", PASSWORD)
    upn = alice["userPrincipalName"]
    for name in (upn, f"ghost-{tag()}@{upn.split('@')[1]}"):
        for _ in range(10):
            assert_oauth_error(password_grant(service, name, "Wr0ng-Password!"), "invalid_grant", 50126)
        assert_oauth_error(password_grant(service, name, PASSWORD), "invalid_grant", 50053)
    # Another user from the same source is not affected.
    bob = service.cli_json("user", "create", "--name", f"bob-{tag()}", "--password", PASSWORD)
    user_token(service, bob["userPrincipalName"], PASSWORD)
    for secret in (PASSWORD, "Wr0ng-Password!"):
        assert secret not in service.log()


# -- in-process: two replicas on one database ---------------------------------------------------------------------


def _user_with_group_role(app) -> tuple[dict, dict[str, str], str, str]:
    """alice, in team, in outer; outer is Reader of rg1. Returns (ids, alice's bearer header, rg1's URL, state)."""
    ctx = app.extensions["control_plane"]
    state, owner = owner_headers(app)
    client = app.test_client()
    group_url = f"/subscriptions/{state['subscriptionId']}/resourceGroups/rg1"
    assert client.put(f"{group_url}?api-version={GROUPS_VERSION}", json={"location": "eastus"},
                      headers=owner).status_code == 201
    tenant = state["tenantId"]
    with ctx.db.session() as session:
        alice = directory_admin.create_user(session, tenant, "alice", PASSWORD, None)
        team = directory_admin.create_group(session, tenant, "team", None)
        outer = directory_admin.create_group(session, tenant, "outer", None)
        directory_admin.add_member(session, tenant, "team", "alice")
        directory_admin.add_member(session, tenant, "outer", "team")
        authorization.assign(session, tenant, group_url, roles.READER, outer["id"], principal_type="Group")
    response = client.post(f"/{tenant}/oauth2/v2.0/token", data={
        "grant_type": "password", "client_id": AZ_CLIENT_ID, "username": alice["userPrincipalName"],
        "password": PASSWORD, "scope": "https://management.azure.com/.default"})
    assert response.status_code == 200, response.get_data(as_text=True)
    ids = {"alice": alice["id"], "team": team["id"], "outer": outer["id"]}
    return ids, {"Authorization": f"Bearer {response.get_json()['access_token']}"}, group_url, state


@pytest.mark.parametrize("change", ["remove from the group", "unnest the group", "disable the user",
                                    "delete the group"])
def test_directory_changes_by_plain_sql_reach_every_cache(two_processes, change):
    """No application code runs the change: only the triggers of migration 0007 can tell the caches."""
    first, _ = two_processes
    ids, alice, group_url, _ = _user_with_group_role(first)
    client = first.test_client()
    for _ in range(2):  # cached after the first
        assert client.get(f"{group_url}?api-version={GROUPS_VERSION}", headers=alice).status_code == 200
    statements = {
        "remove from the group": ("DELETE FROM group_members WHERE member_id = :alice", {"alice": ids["alice"]}),
        "unnest the group": ("DELETE FROM group_members WHERE member_id = :team", {"team": ids["team"]}),
        "disable the user": ("UPDATE users SET account_enabled = false WHERE object_id = :alice",
                             {"alice": ids["alice"]}),
        "delete the group": ("DELETE FROM directory_groups WHERE object_id = :outer", {"outer": ids["outer"]}),
    }
    with first.extensions["control_plane"].db.engine.begin() as connection:
        connection.execute(sa.text(statements[change][0]), statements[change][1])
    after = client.get(f"{group_url}?api-version={GROUPS_VERSION}", headers=alice)
    expected = (401, "InvalidAuthenticationToken") if change == "disable the user" else (403, "AuthorizationFailed")
    assert (after.status_code, after.get_json()["error"]["code"]) == expected


def test_a_membership_added_by_another_replica_applies_at_once(two_processes):
    first, second = two_processes
    _, alice, group_url, state = _user_with_group_role(first)
    client = first.test_client()
    with second.extensions["control_plane"].db.session() as session:
        directory_admin.remove_member(session, state["tenantId"], "team", "alice")
    assert client.get(f"{group_url}?api-version={GROUPS_VERSION}", headers=alice).status_code == 403
    with second.extensions["control_plane"].db.session() as session:
        directory_admin.add_member(session, state["tenantId"], "outer", "alice")
    assert client.get(f"{group_url}?api-version={GROUPS_VERSION}", headers=alice).status_code == 200


def test_lockout_is_per_source_and_ends(tmp_path):
    """Per user name *and source address*: an attacker elsewhere does not lock the user out here; and it ends
    after CONTROL_PLANE_SIGNIN_LOCKOUT_SECONDS."""
    with prepared_settings("sqlite-local", tmp_path) as settings:
        settings = dataclasses.replace(settings, signin_lockout_threshold=3, signin_lockout_seconds=1)
        app = create_app(settings)
        state, _ = owner_headers(app)
        with app.extensions["control_plane"].db.session() as session:
            alice = directory_admin.create_user(session, state["tenantId"], "alice", PASSWORD, None)
        client = app.test_client()

        def attempt(password: str, address: str) -> dict:
            return client.post(f"/{state['tenantId']}/oauth2/v2.0/token", environ_base={"REMOTE_ADDR": address},
                               data={"grant_type": "password", "client_id": AZ_CLIENT_ID,
                                     "username": alice["userPrincipalName"], "password": password,
                                     "scope": ARM_SCOPE}).get_json()

        for _ in range(3):
            assert attempt("Wr0ng-Password!", "203.0.113.7")["error_codes"] == [50126]
        assert attempt(PASSWORD, "203.0.113.7")["error_codes"] == [50053]
        assert "access_token" in attempt(PASSWORD, "198.51.100.2")
        time.sleep(1.2)
        assert "access_token" in attempt(PASSWORD, "203.0.113.7")
        app.extensions["control_plane"].db.dispose()


def test_quoted_filter_values_and_upn_paths(service, admin):
    """az percent-encodes `#` in a UPN path (`%23`); OData quotes inside values are doubled."""
    created = service.cli_json("user", "create", "--name", f"o'hara#{tag()}", "--password", PASSWORD)
    upn = created["userPrincipalName"]
    assert admin.ok("GET", f"/users/{upn.replace('#', '%23')}")["id"] == created["id"]
    doubled = upn.replace("'", "''")
    assert [u["id"] for u in admin.list("users", f"userPrincipalName eq '{doubled}'")] == [created["id"]]
    service.cli_json("user", "delete", "--id", created["id"])
