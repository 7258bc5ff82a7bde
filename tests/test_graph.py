"""The Microsoft Graph subset (`/v1.0`): the real az CLI making service principals the way Azure users do, and raw
HTTPS for every `$filter` form, paging, error shapes, privileges and tenant isolation (docs/real-clients.md §12).

az reaches Graph at the cloud's `microsoftGraphResourceId` (the service's own URL) and asks for tokens with that
URL as the audience, so these tests register the cloud exactly as the README's az example does.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
import requests

from tests.conftest import unique_registry_name
from tests.support.az import Az, logged_in

CLOUD = "ControlPlaneGraph"
SUBSCRIPTIONS_VERSION = "2022-12-01"
AUTHORIZATION_VERSION = "2022-04-01"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"


# -- the az CLI, with its own profile ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az(service, tmp_path_factory) -> Az:
    """Logged in as the `init` principal: the tenant administrator, Owner of the subscription."""
    az = logged_in(service, tmp_path_factory.mktemp("az-graph"), CLOUD)
    return az


@pytest.fixture(scope="module")
def registry_id(rmc, acr) -> str:
    """A registry to scope role assignments to, in a group deleted with it at the end."""
    group = f"rg-graph-{uuid.uuid4().hex[:8]}"
    rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    from azure.mgmt.containerregistry.models import Registry, Sku

    registry = acr.registries.begin_create(group, unique_registry_name("graph"),
                                           Registry(location="eastus", sku=Sku(name="Basic"))).result()
    yield registry.id
    rmc.resource_groups.begin_delete(group).result()


# -- raw HTTPS ----------------------------------------------------------------------------------------------------


def token_response(service, client_id: str, secret: str, scope: str | None = None,
                   tenant: str | None = None) -> requests.Response:
    return requests.post(f"{service.url}/{tenant or service.tenant_id}/oauth2/v2.0/token",
                         data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
                               "scope": scope or f"{service.url}//.default"},
                         verify=service.ca, timeout=30)


def token(service, client_id: str, secret: str, scope: str | None = None, tenant: str | None = None) -> str:
    response = token_response(service, client_id, secret, scope, tenant)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def assert_refused_secret(service, client_id: str, secret: str) -> None:
    response = token_response(service, client_id, secret)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


class Graph:
    """Raw calls to `/v1.0` with one principal's Graph token (verify per request: REQUESTS_CA_BUNDLE is set)."""

    def __init__(self, service, bearer: str | None):
        self.service = service
        self.headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

    @classmethod
    def of(cls, service, client_id: str, secret: str, tenant: str | None = None) -> Graph:
        return cls(service, token(service, client_id, secret, tenant=tenant))

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.service.url}/v1.0{path}"
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, url, headers=headers, verify=self.service.ca, timeout=30, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs):
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def list(self, collection: str, filter_: str | None = None, top: int | None = None) -> list[dict]:
        """Every page, following `@odata.nextLink` verbatim as az does."""
        query = []
        if filter_ is not None:
            query.append(f"$filter={quote(filter_, safe='')}")
        if top is not None:
            query.append(f"$top={top}")
        url = f"/{collection}" + ("?" + "&".join(query) if query else "")
        items = []
        while url:
            page = self.ok("GET", url)
            items.extend(page["value"])
            url = page.get("@odata.nextLink")
        return items

    def create_application(self, name: str, **properties) -> dict:
        return self.ok("POST", "/applications", 201, json={"displayName": name, **properties})

    def create_principal(self, app_id: str) -> dict:
        return self.ok("POST", "/servicePrincipals", 201, json={"appId": app_id, "accountEnabled": True})

    def add_password(self, collection: str, object_id: str, **credential) -> dict:
        return self.ok("POST", f"/{collection}/{object_id}/addPassword", json={"passwordCredential": credential})


def assert_graph_error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and body["error"]["code"] == code, body
    assert body["error"]["message"] and "Traceback" not in response.text
    return body["error"]["message"]


@pytest.fixture(scope="module")
def admin(service) -> Graph:
    return Graph.of(service, service.init["clientId"], service.init["clientSecret"])


@pytest.fixture(scope="module")
def member(service) -> dict:
    """A principal of the same tenant that is not its administrator (what `control-plane sp create` makes)."""
    return service.cli_json("sp", "create", "--name", f"graph-member-{uuid.uuid4().hex[:8]}")


def arm_get_subscriptions(service, bearer: str) -> requests.Response:
    return requests.get(f"{service.url}/subscriptions?api-version={SUBSCRIPTIONS_VERSION}",
                        headers={"Authorization": f"Bearer {bearer}"}, verify=service.ca, timeout=30)


# -- az: create-for-rbac, sp list/show, credential reset, role assignments by appId, sp delete ---------------------


@pytest.fixture(scope="module")
def ci_pusher(az, registry_id) -> dict:
    return az.json("ad", "sp", "create-for-rbac", "--name", "ci-pusher", "--role", "AcrPush",
                   "--scopes", registry_id)


@pytest.mark.az
def test_create_for_rbac_makes_a_principal_whose_password_works_and_grants_the_role(az, service, ci_pusher,
                                                                                    registry_id):
    assert set(ci_pusher) == {"appId", "displayName", "password", "tenant"}
    assert ci_pusher["displayName"] == "ci-pusher"
    assert ci_pusher["tenant"] == service.tenant_id
    # The password signs in at once, for ARM and for Graph.
    token(service, ci_pusher["appId"], ci_pusher["password"], "https://management.core.windows.net//.default")
    token(service, ci_pusher["appId"], ci_pusher["password"])

    assignments = az.json("role", "assignment", "list", "--scope", registry_id)
    mine = [a for a in assignments if a["principalName"] == ci_pusher["appId"]]
    assert len(mine) == 1, assignments
    assert mine[0]["roleDefinitionName"] == "AcrPush"
    assert mine[0]["principalType"] == "ServicePrincipal"
    assert mine[0]["scope"] == registry_id


@pytest.mark.az
def test_sp_list_show_and_app_show(az, ci_pusher):
    listed = az.json("ad", "sp", "list", "--display-name", "ci-pusher")
    assert [p["appId"] for p in listed] == [ci_pusher["appId"]]
    shown = az.json("ad", "sp", "show", "--id", ci_pusher["appId"])
    assert shown["id"] == listed[0]["id"] and shown["id"] != ci_pusher["appId"]
    assert shown["appId"] == ci_pusher["appId"]
    assert shown["displayName"] == "ci-pusher"
    assert shown["servicePrincipalNames"] == [ci_pusher["appId"]]
    assert shown["accountEnabled"] is True
    # create-for-rbac adds its password to the application, so the principal object lists none.
    assert shown["passwordCredentials"] == []

    application = az.json("ad", "app", "show", "--id", ci_pusher["appId"])
    assert application["appId"] == ci_pusher["appId"] and application["displayName"] == "ci-pusher"
    [credential] = application["passwordCredentials"]
    assert credential["displayName"] == "rbac"
    assert credential["hint"] == ci_pusher["password"][:3]
    assert credential["secretText"] is None
    assert ci_pusher["password"] not in json.dumps(application)
    assert [a["appId"] for a in az.json("ad", "app", "list", "--display-name", "ci-pusher")] == [ci_pusher["appId"]]


@pytest.mark.az
def test_create_for_rbac_again_patches_the_application_and_replaces_its_secret(az, service, registry_id):
    name = f"repeat-pusher-{uuid.uuid4().hex[:8]}"
    first = az.json("ad", "sp", "create-for-rbac", "--name", name, "--role", "AcrPush", "--scopes", registry_id)
    second = az.run("ad", "sp", "create-for-rbac", "--name", name, "--role", "AcrPush", "--scopes", registry_id)
    assert second.returncode == 0, second.stderr
    assert "Found an existing application instance" in second.stderr
    assert "Role assignment already exists" in second.stderr
    again = json.loads(second.stdout)
    assert again["appId"] == first["appId"] and again["password"] != first["password"]
    assert_refused_secret(service, first["appId"], first["password"])
    token(service, again["appId"], again["password"])
    assert len(az.json("ad", "sp", "list", "--display-name", name)) == 1
    assert len(az.json("ad", "app", "list", "--display-name", name)) == 1


@pytest.mark.az
def test_sp_credential_reset(az, service):
    name = f"reset-me-{uuid.uuid4().hex[:8]}"
    created = az.json("ad", "sp", "create-for-rbac", "--name", name)
    app_id = created["appId"]

    first = az.json("ad", "sp", "credential", "reset", "--id", app_id)
    assert set(first) == {"appId", "password", "tenant"}
    assert (first["appId"], first["tenant"]) == (app_id, service.tenant_id)
    token(service, app_id, first["password"])
    # As in Azure, `sp credential reset` resets the service principal's passwords only: the one create-for-rbac
    # put on the application keeps working until the application's own credentials are reset.
    token(service, app_id, created["password"])

    second = az.json("ad", "sp", "credential", "reset", "--id", app_id)
    assert second["password"] not in (first["password"], created["password"])
    token(service, app_id, second["password"])
    assert_refused_secret(service, app_id, first["password"])
    [credential] = az.json("ad", "sp", "show", "--id", app_id)["passwordCredentials"]
    assert credential["hint"] == second["password"][:3]

    app_reset = az.json("ad", "app", "credential", "reset", "--id", app_id)
    token(service, app_id, app_reset["password"])
    assert_refused_secret(service, app_id, created["password"])
    token(service, app_id, second["password"])


@pytest.mark.az
def test_role_assignment_create_list_delete_by_app_id(az, service, registry_id):
    principal = service.cli_json("sp", "create", "--name", f"assignee-{uuid.uuid4().hex[:8]}")
    created = az.json("role", "assignment", "create", "--assignee", principal["appId"], "--role", "AcrPull",
                      "--scope", registry_id)
    # Graph resolved the appId to the object id: the assignment names the principal, not its appId.
    assert created["principalId"] == principal["id"]
    assert created["principalType"] == "ServicePrincipal"
    assert created["roleDefinitionId"].endswith(ACR_PULL)

    listed = az.json("role", "assignment", "list", "--assignee", principal["appId"], "--scope", registry_id)
    assert [(a["principalId"], a["principalName"], a["roleDefinitionName"]) for a in listed] == [
        (principal["id"], principal["appId"], "AcrPull")]

    assert az.json("role", "assignment", "delete", "--assignee", principal["appId"], "--role", "AcrPull",
                   "--scope", registry_id) is None
    assert az.json("role", "assignment", "list", "--assignee", principal["appId"], "--scope", registry_id) == []


@pytest.mark.az
def test_sp_delete_removes_the_principal_its_assignments_and_its_tokens(az, service, registry_id):
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    created = az.json("ad", "sp", "create-for-rbac", "--name", name, "--role", "AcrPush", "--scopes", registry_id)
    app_id, password = created["appId"], created["password"]
    object_id = az.json("ad", "sp", "show", "--id", app_id)["id"]
    arm_token = token(service, app_id, password, "https://management.core.windows.net//.default")
    assert arm_get_subscriptions(service, arm_token).status_code == 200

    assert az.json("ad", "sp", "delete", "--id", app_id) is None

    assert az.json("ad", "sp", "list", "--display-name", name) == []
    assert object_id not in {a["principalId"] for a in az.json("role", "assignment", "list", "--scope", registry_id)}
    refused = arm_get_subscriptions(service, arm_token)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    # Without its principal the application cannot sign in, whatever secret it holds.
    response = token_response(service, app_id, password)
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client", response.text
    # az looks the appId up, finds nothing, tries it as an object id: Graph's 404 message, exit code 3.
    shown = az.run("ad", "sp", "show", "--id", app_id)
    assert shown.returncode == 3 and "does not exist" in shown.stderr, shown.stderr


@pytest.mark.az
def test_app_create_sp_create_and_app_delete_by_identifier_uri(az, service):
    name = f"uri-app-{uuid.uuid4().hex[:8]}"
    uri = f"api://{name}"
    application = az.json("ad", "app", "create", "--display-name", name, "--identifier-uris", uri)
    assert (application["displayName"], application["identifierUris"]) == (name, [uri])
    principal = az.json("ad", "sp", "create", "--id", uri)
    assert principal["appId"] == application["appId"]
    assert principal["servicePrincipalNames"] == [application["appId"], uri]
    assert az.json("ad", "sp", "show", "--id", uri)["id"] == principal["id"]
    assert az.json("ad", "app", "show", "--id", uri)["id"] == application["id"]

    assert az.json("ad", "app", "delete", "--id", uri) is None
    assert az.json("ad", "app", "list", "--display-name", name) == []
    # Deleting the application deleted its service principal too.
    assert az.json("ad", "sp", "list", "--spn", application["appId"]) == []


# -- privileges, audiences and tenants ---------------------------------------------------------------------------


def test_only_the_tenant_administrator_may_change_the_directory(service, admin, member):
    graph = Graph.of(service, member["appId"], member["password"])
    # Reads are open to every principal of the tenant.
    assert member["appId"] in {p["appId"] for p in graph.list("servicePrincipals")}
    own = graph.ok("GET", f"/servicePrincipals/{member['id']}")
    application = graph.list("applications", f"appId eq '{member['appId']}'")[0]

    attempts = [
        ("POST", "/applications", {"displayName": "not-allowed"}),
        ("POST", "/servicePrincipals", {"appId": member["appId"]}),
        ("PATCH", f"/applications/{application['id']}", {"displayName": "renamed"}),
        ("POST", f"/servicePrincipals/{own['id']}/addPassword", {"passwordCredential": {}}),
        ("POST", f"/applications/{application['id']}/addPassword", {"passwordCredential": {}}),
        ("POST", f"/applications/{application['id']}/removePassword", {"keyId": str(uuid.uuid4())}),
        ("POST", f"/servicePrincipals/{own['id']}/removePassword", {"keyId": str(uuid.uuid4())}),
        ("DELETE", f"/servicePrincipals/{own['id']}", None),
        ("DELETE", f"/applications/{application['id']}", None),
    ]
    for method, path, body in attempts:
        message = assert_graph_error(graph.request(method, path, json=body), 403, "Authorization_RequestDenied")
        assert message == "Insufficient privileges to complete the operation."
    assert graph.list("applications", "displayName eq 'not-allowed'") == []
    assert admin.ok("GET", f"/applications/{application['id']}")["displayName"] == application["displayName"]
    token(service, member["appId"], member["password"])


def test_graph_accepts_only_graph_tokens_of_living_principals(service, admin):
    assert_graph_error(Graph(service, None).request("GET", "/servicePrincipals"), 401, "InvalidAuthenticationToken")
    assert_graph_error(Graph(service, "not-a-jwt").request("GET", "/servicePrincipals"), 401,
                       "InvalidAuthenticationToken")
    arm = Graph(service, token(service, service.init["clientId"], service.init["clientSecret"],
                               "https://management.core.windows.net//.default"))
    message = assert_graph_error(arm.request("GET", "/servicePrincipals"), 401, "InvalidAuthenticationToken")
    assert "audience" in message
    # The Graph resource id with or without its trailing slash is the same audience.
    bare = Graph(service, token(service, service.init["clientId"], service.init["clientSecret"],
                                f"{service.url}/.default"))
    assert bare.ok("GET", "/servicePrincipals")["value"]

    application = admin.create_application(f"short-lived-{uuid.uuid4().hex[:8]}")
    principal = admin.create_principal(application["appId"])
    secret = admin.add_password("servicePrincipals", principal["id"])["secretText"]
    graph = Graph.of(service, application["appId"], secret)
    assert graph.ok("GET", f"/servicePrincipals/{principal['id']}")["id"] == principal["id"]
    assert admin.ok("DELETE", f"/servicePrincipals/{principal['id']}", 204) is None
    assert_graph_error(graph.request("GET", "/servicePrincipals"), 401, "InvalidAuthenticationToken")


def test_each_tenant_sees_only_its_own_directory(service, admin):
    other = service.cli_json("tenant", "create", "--name", f"graph-other-{uuid.uuid4().hex[:6]}")
    theirs = Graph.of(service, other["clientId"], other["clientSecret"], tenant=other["tenantId"])
    mine = admin.create_application(f"isolated-{uuid.uuid4().hex[:8]}")
    my_principal = admin.create_principal(mine["appId"])

    assert {p["appId"] for p in theirs.list("servicePrincipals")} == {other["clientId"]}
    assert mine["appId"] not in {a["appId"] for a in theirs.list("applications")}
    assert theirs.list("servicePrincipals", f"servicePrincipalNames/any(c:c eq '{mine['appId']}')") == []
    assert_graph_error(theirs.request("GET", f"/applications/{mine['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(theirs.request("DELETE", f"/servicePrincipals/{my_principal['id']}"), 404,
                       "Request_ResourceNotFound")
    assert_graph_error(theirs.request("POST", f"/applications/{mine['id']}/addPassword", json={}), 404,
                       "Request_ResourceNotFound")
    # A service principal for another tenant's application cannot be made.
    assert_graph_error(theirs.request("POST", "/servicePrincipals", json={"appId": mine["appId"]}), 400,
                       "Request_BadRequest")
    found = theirs.ok("POST", "/directoryObjects/getByIds", json={"ids": [my_principal["id"], mine["id"]]})
    assert found["value"] == []
    assert other["objectId"] not in {p["id"] for p in admin.list("servicePrincipals")}
    assert admin.ok("GET", f"/servicePrincipals/{my_principal['id']}")["appId"] == mine["appId"]


# -- objects, credentials, filters, paging, errors (raw) ----------------------------------------------------------


def test_application_and_principal_lifecycle(service, admin):
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    application = admin.create_application(name, keyCredentials=[], identifierUris=[f"api://{name}"])
    assert application["displayName"] == name
    assert application["identifierUris"] == [f"api://{name}"]
    assert application["passwordCredentials"] == [] and application["keyCredentials"] == []
    assert application["id"] != application["appId"]
    assert application["signInAudience"] == "AzureADMyOrg"

    assert admin.ok("PATCH", f"/applications/{application['id']}", 204, json={"displayName": f"{name}-2"}) is None
    assert admin.ok("GET", f"/applications/{application['id']}")["displayName"] == f"{name}-2"

    principal = admin.create_principal(application["appId"])
    assert principal["appId"] == application["appId"]
    assert principal["servicePrincipalNames"] == [application["appId"], f"api://{name}"]
    assert principal["passwordCredentials"] == []
    duplicate = admin.request("POST", "/servicePrincipals", json={"appId": application["appId"]})
    assert_graph_error(duplicate, 409, "Request_MultipleObjectsWithSameKeyValue")

    added = admin.add_password("applications", application["id"], displayName="ci",
                               startDateTime="2026-01-01T00:00:00Z", endDateTime="2099-01-01T00:00:00Z")
    assert set(added) >= {"keyId", "secretText", "displayName", "endDateTime", "startDateTime", "hint"}
    assert (added["displayName"], added["hint"]) == ("ci", added["secretText"][:3])
    assert (added["startDateTime"], added["endDateTime"]) == ("2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
    on_principal = admin.add_password("servicePrincipals", principal["id"])
    token(service, application["appId"], added["secretText"])
    token(service, application["appId"], on_principal["secretText"])
    # Each object lists the passwords added to it, never their values.
    listed = admin.ok("GET", f"/applications/{application['id']}")["passwordCredentials"]
    assert [(c["keyId"], c["secretText"]) for c in listed] == [(added["keyId"], None)]
    listed = admin.ok("GET", f"/servicePrincipals/{principal['id']}")["passwordCredentials"]
    assert [c["keyId"] for c in listed] == [on_principal["keyId"]]

    assert admin.ok("POST", f"/applications/{application['id']}/removePassword", 204,
                    json={"keyId": added["keyId"]}) is None
    assert_refused_secret(service, application["appId"], added["secretText"])
    again = admin.request("POST", f"/applications/{application['id']}/removePassword", json={"keyId": added["keyId"]})
    assert_graph_error(again, 400, "Request_BadRequest")
    # A key of the principal is not removed through the application.
    wrong_object = admin.request("POST", f"/applications/{application['id']}/removePassword",
                                 json={"keyId": on_principal["keyId"]})
    assert_graph_error(wrong_object, 400, "Request_BadRequest")

    # Deleting the application deletes its principal and every secret of its appId.
    assert admin.ok("DELETE", f"/applications/{application['id']}", 204) is None
    assert_graph_error(admin.request("GET", f"/servicePrincipals/{principal['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(admin.request("GET", f"/applications/{application['id']}"), 404, "Request_ResourceNotFound")
    response = token_response(service, application["appId"], on_principal["secretText"])
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


def test_filters(admin):
    tag = uuid.uuid4().hex[:8]
    apps = {key: admin.create_application(f"flt-{tag}-{key}", identifierUris=[f"api://flt-{tag}-{key}"])
            for key in ("alpha", "alphabet", "beta")}
    quoted = admin.create_application(f"flt-{tag}-o'brien and co")
    principals = {key: admin.create_principal(a["appId"]) for key, a in apps.items()}

    def app_names(filter_: str) -> list[str]:
        return sorted(a["displayName"].removeprefix(f"flt-{tag}-") for a in admin.list("applications", filter_))

    def sp_names(filter_: str) -> list[str]:
        return sorted(p["displayName"].removeprefix(f"flt-{tag}-") for p in admin.list("servicePrincipals", filter_))

    assert app_names(f"startswith(displayName,'flt-{tag}-alpha')") == ["alpha", "alphabet"]
    assert app_names(f"startswith(displayName, 'FLT-{tag}-')") == ["alpha", "alphabet", "beta", "o'brien and co"]
    assert app_names(f"displayName eq 'flt-{tag}-alpha'") == ["alpha"]
    assert app_names(f"displayName eq 'FLT-{tag}-ALPHA'") == ["alpha"]  # directory strings ignore case
    assert app_names(f"appId eq '{apps['beta']['appId']}'") == ["beta"]
    assert app_names(f"identifierUris/any(s:s eq 'api://flt-{tag}-alphabet')") == ["alphabet"]
    assert app_names(f"id eq '{apps['alpha']['id']}'") == ["alpha"]
    assert app_names(f"startswith(displayName,'flt-{tag}-alpha') and appId eq '{apps['alpha']['appId']}'") == [
        "alpha"]
    # OData doubles a quote inside a literal; an `and` inside a literal is not a separator.
    assert app_names(f"displayName eq 'flt-{tag}-o''brien and co'") == ["o'brien and co"]
    assert quoted["displayName"] == f"flt-{tag}-o'brien and co"
    assert app_names(f"displayName eq 'flt-{tag}-nobody'") == []

    assert sp_names(f"servicePrincipalNames/any(c:c eq '{apps['alpha']['appId']}')") == ["alpha"]
    assert sp_names(f"servicePrincipalNames/any(x:x eq 'api://flt-{tag}-beta')") == ["beta"]
    assert sp_names(f"displayName eq 'flt-{tag}-alphabet'") == ["alphabet"]
    assert sp_names(f"startswith(displayName,'flt-{tag}-')") == ["alpha", "alphabet", "beta"]
    assert sp_names(f"startswith(displayName,'flt-{tag}-') and servicePrincipalNames/any(c:c eq "
                    f"'{apps['beta']['appId']}')") == ["beta"]
    assert sp_names(f"appId eq '{apps['alpha']['appId']}'") == ["alpha"]
    assert {p["id"] for p in admin.list("servicePrincipals", f"startswith(displayName,'flt-{tag}')")} == {
        p["id"] for p in principals.values()}

    for collection, bad in [
        ("applications", "displayName ne 'x'"),
        ("applications", "startswith(appId,'x')"),
        ("applications", "servicePrincipalNames/any(c:c eq 'x')"),
        ("servicePrincipals", "identifierUris/any(c:c eq 'x')"),
        ("servicePrincipals", "servicePrincipalNames/any(c:d eq 'x')"),
        ("applications", "displayName eq 'x' or displayName eq 'y'"),
        ("applications", "displayName eq 'unterminated"),
        ("applications", "displayName eq 'x' and"),
        ("servicePrincipals", "tags/any(t:t eq 'x')"),
    ]:
        response = admin.request("GET", f"/{collection}?$filter={quote(bad, safe='')}")
        assert_graph_error(response, 400, "Request_BadRequest")


def test_paging_follows_next_links(admin):
    tag = uuid.uuid4().hex[:8]
    made = {admin.create_application(f"page-{tag}-{i}")["id"] for i in range(5)}
    prefix = quote(f"startswith(displayName,'page-{tag}')", safe="")
    first = admin.ok("GET", f"/applications?$filter={prefix}&$top=2")
    assert len(first["value"]) == 2 and "$filter=" in first["@odata.nextLink"]
    assert first["@odata.context"].endswith("/v1.0/$metadata#applications")
    paged = admin.list("applications", f"startswith(displayName,'page-{tag}')", top=2)
    assert len(paged) == len(made) and {a["id"] for a in paged} == made
    # The service's default page size (2 in the tests) applies without $top.
    assert {a["id"] for a in admin.list("applications", f"startswith(displayName,'page-{tag}')")} == made
    assert_graph_error(admin.request("GET", "/applications?$top=0"), 400, "Request_BadRequest")
    assert_graph_error(admin.request("GET", "/applications?$top=abc"), 400, "Request_BadRequest")
    assert_graph_error(admin.request("GET", "/applications?$skiptoken=!!!"), 400, "Request_BadRequest")


def test_get_by_ids(admin, service):
    application = admin.create_application(f"byids-{uuid.uuid4().hex[:8]}")
    principal = admin.create_principal(application["appId"])
    unknown = str(uuid.uuid4())
    body = {"ids": [principal["id"], unknown, service.init["objectId"]],
            "types": ["user", "group", "servicePrincipal", "directoryObjectPartnerReference"]}
    found = admin.ok("POST", "/directoryObjects/getByIds", json=body)["value"]
    assert [o["id"] for o in found] == [principal["id"], service.init["objectId"]]
    assert found[0]["@odata.type"] == "#microsoft.graph.servicePrincipal"
    assert found[0]["servicePrincipalNames"] == [application["appId"]]
    assert found[0]["displayName"] == application["displayName"]
    both = admin.ok("POST", "/directoryObjects/getByIds", json={"ids": [application["id"], principal["id"]]})
    assert [o["@odata.type"] for o in both["value"]] == ["#microsoft.graph.application",
                                                         "#microsoft.graph.servicePrincipal"]
    only_apps = admin.ok("POST", "/directoryObjects/getByIds",
                         json={"ids": [application["id"], principal["id"]], "types": ["application"]})
    assert [o["id"] for o in only_apps["value"]] == [application["id"]]
    assert_graph_error(admin.request("POST", "/directoryObjects/getByIds", json={"ids": ["nope"]}), 400,
                       "Request_BadRequest")
    assert_graph_error(admin.request("POST", "/directoryObjects/getByIds", json={}), 400, "Request_BadRequest")


def test_error_shapes(service, admin):
    missing = str(uuid.uuid4())
    for method, path, body in [
        ("GET", f"/applications/{missing}", None),
        ("PATCH", f"/applications/{missing}", {"displayName": "x"}),
        ("DELETE", f"/applications/{missing}", None),
        ("POST", f"/applications/{missing}/addPassword", {}),
        ("POST", f"/applications/{missing}/removePassword", {"keyId": missing}),
        ("GET", f"/servicePrincipals/{missing}", None),
        ("DELETE", f"/servicePrincipals/{missing}", None),
        ("POST", f"/servicePrincipals/{missing}/addPassword", {}),
        ("GET", "/servicePrincipals/not-a-guid", None),
    ]:
        message = assert_graph_error(admin.request(method, path, json=body), 404, "Request_ResourceNotFound")
        assert "does not exist" in message

    application = admin.create_application(f"errors-{uuid.uuid4().hex[:8]}")
    for method, path, body in [
        ("POST", "/applications", {}),
        ("POST", "/applications", {"displayName": ""}),
        ("POST", "/applications", {"displayName": 5}),
        ("POST", "/applications", {"displayName": "x" * 257}),
        ("POST", "/applications", {"displayName": "x", "identifierUris": "api://x"}),
        ("POST", "/applications", {"displayName": "x", "identifierUris": ["not a uri"]}),
        ("POST", "/applications", {"displayName": "x", "signInAudience": "Everyone"}),
        ("POST", "/applications", {"displayName": "x", "keyCredentials": [{"type": "AsymmetricX509Cert"}]}),
        ("PATCH", f"/applications/{application['id']}", {"displayName": None, "identifierUris": [1]}),
        ("POST", "/servicePrincipals", {}),
        ("POST", "/servicePrincipals", {"appId": str(uuid.uuid4())}),
        ("POST", "/servicePrincipals", {"appId": application["appId"], "accountEnabled": False}),
        ("POST", f"/applications/{application['id']}/addPassword",
         {"passwordCredential": {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2029-01-01T00:00:00Z"}}),
        ("POST", f"/applications/{application['id']}/addPassword",
         {"passwordCredential": {"endDateTime": "2001-01-01T00:00:00Z"}}),
        ("POST", f"/applications/{application['id']}/addPassword", {"passwordCredential": {"endDateTime": "soon"}}),
        ("POST", f"/applications/{application['id']}/removePassword", {"keyId": "nope"}),
        ("POST", f"/applications/{application['id']}/removePassword", {"keyId": str(uuid.uuid4())}),
    ]:
        assert_graph_error(admin.request(method, path, json=body), 400, "Request_BadRequest")
    not_json = admin.request("POST", "/applications", data="{", headers={"Content-Type": "application/json"})
    assert_graph_error(not_json, 400, "Request_BadRequest")
    assert admin.ok("GET", f"/applications/{application['id']}")["identifierUris"] == []

    # What this Graph does not serve still answers JSON.
    assert admin.request("GET", "/devices").status_code == 400
    assert admin.request("GET", "/devices").json()["error"]["message"]
    assert_graph_error(admin.request("PUT", f"/applications/{application['id']}", json={}), 405,
                       "Request_BadRequest")
    # The tenant administrator `init` made cannot be deleted: nobody could administer the directory after it.
    assert_graph_error(admin.request("DELETE", f"/servicePrincipals/{service.init['objectId']}"), 400,
                       "Request_BadRequest")


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_sp_list_and_delete(service, admin, registry_id):
    created = service.cli_json("sp", "create", "--name", f"cli-sp-{uuid.uuid4().hex[:8]}")
    listed = service.cli_json("sp", "list")
    assert {"appId": created["appId"], "id": created["id"], "displayName": created["displayName"]} in listed
    assert {"appId": service.init["clientId"], "id": service.init["objectId"],
            "displayName": "control-plane-owner"} in listed

    assignment = f"{registry_id}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    arm_token = token(service, service.init["clientId"], service.init["clientSecret"],
                      "https://management.azure.com/.default")
    put = requests.put(f"{service.url}{assignment}?api-version={AUTHORIZATION_VERSION}",
                       headers={"Authorization": f"Bearer {arm_token}"}, verify=service.ca, timeout=30,
                       json={"properties": {"principalId": created["id"], "principalType": "ServicePrincipal",
                                            "roleDefinitionId": f"/subscriptions/{service.subscription_id}/providers/"
                                                                f"Microsoft.Authorization/roleDefinitions/{ACR_PULL}"}})
    assert put.status_code == 201, put.text
    principal_token = token(service, created["appId"], created["password"], "https://management.azure.com/.default")

    deleted = service.cli_json("sp", "delete", "--id", created["appId"])
    assert deleted == {"appId": created["appId"], "id": created["id"], "displayName": created["displayName"],
                       "deleted": True}
    assert created["id"] not in {p["id"] for p in service.cli_json("sp", "list")}
    assert admin.list("applications", f"appId eq '{created['appId']}'") == []
    gone = requests.get(f"{service.url}{assignment}?api-version={AUTHORIZATION_VERSION}",
                        headers={"Authorization": f"Bearer {arm_token}"}, verify=service.ca, timeout=30)
    assert gone.status_code == 404, gone.text
    assert arm_get_subscriptions(service, principal_token).status_code == 401

    by_object_id = service.cli_json("sp", "create", "--name", f"cli-sp-{uuid.uuid4().hex[:8]}")
    assert service.cli_json("sp", "delete", "--id", by_object_id["id"])["appId"] == by_object_id["appId"]

    for identifier in (created["appId"], "not-a-principal"):
        result = service.cli("sp", "delete", "--id", identifier, check=False)
        assert result.returncode == 1 and "does not exist" in result.stderr, result.stderr
    refused = service.cli("sp", "delete", "--id", service.init["clientId"], check=False)
    assert refused.returncode == 1 and "tenant administrator" in refused.stderr, refused.stderr
    token(service, service.init["clientId"], service.init["clientSecret"])
