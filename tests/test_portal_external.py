"""The portal signing people in at an external OIDC authority (CONTROL_PLANE_PORTAL_AUTHORITY), end to end.

A second `control-plane serve`, with its own data folder and database, is the external identity provider: the
portal's confidential web application and a person are registered there. The first service trusts it
(CONTROL_PLANE_TRUSTED_ISSUERS, with an audience of its own), gives the person a role by object id, and its portal
signs them in there in headless Chromium, then lists the subscription and a registry and opens the registry's
repositories (the data plane, through the exchange of the external token). One backend: SQLite + local folder (the
portal's backend-specific parts are covered by tests/test_portal.py on both).
"""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from tests.conftest import Arm, unique_registry_name
from tests.support import servers
from tests.test_graph import Graph
from tests.test_portal import READER_ROLE, Browser, assign, browser_wait_for_registry, push_image, spki_hashes

# Not the ARM resource the portal asks the built-in issuer for: proves the portal asks for the trusted audience.
AUDIENCE = "api://container-registry-portal-e2e"
ARM_SCOPE = "https://management.azure.com/.default"
CONTRIBUTOR_ROLE = "b24988ac-6180-42a0-ab88-20f7382dd24c"


def external_user(idp) -> tuple[str, str, str]:
    """(UPN, password, object id) of a new user of the external provider."""
    password = f"Pw-{uuid.uuid4().hex[:12]}!A"
    made = idp.cli_json("user", "create", "--name", f"ext{uuid.uuid4().hex[:6]}", "--password", password)
    return made["userPrincipalName"], password, made["id"]


def register_portal(idp, portal_url: str) -> tuple[str, str]:
    """(client id, secret) of a portal's web application at the provider: the callback, and the portal's home,
    where the provider may send the browser back after signing out."""
    admin = Graph.of(idp, idp.init["clientId"], idp.init["clientSecret"])
    application = admin.create_application(f"portal-{uuid.uuid4().hex[:6]}", web={"redirectUris": [
        f"{portal_url}/portal/auth/callback", f"{portal_url}/portal/"]})
    admin.create_principal(application["appId"])
    return application["appId"], admin.add_password("applications", application["id"], displayName="portal")[
        "secretText"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The provider first (its issuer URL and the portal's registration go into the portal's configuration), then
    the portal's service: `init`, then serve with the external authority and the trust in it."""
    with ExitStack() as stack:
        idp = servers.make_service(tmp_path_factory.mktemp("external-idp"), None, "local")
        idp.init = idp.cli_json("init")
        idp.start()
        stack.callback(idp.stop)
        svc = servers.make_service(tmp_path_factory.mktemp("external-portal"), None, "local",
                                   {"CONTROL_PLANE_LOCATIONS": "eastus"})
        svc.init = svc.cli_json("init")

        app_id, secret = register_portal(idp, svc.url)
        authority = f"{idp.url}/{idp.tenant_id}/v2.0"
        svc.env.update({
            "CONTROL_PLANE_PORTAL_AUTHORITY": authority,
            "CONTROL_PLANE_PORTAL_CLIENT_ID": app_id,
            "CONTROL_PLANE_PORTAL_CLIENT_SECRET": secret,
            "CONTROL_PLANE_TRUSTED_ISSUERS": json.dumps([{"issuer": authority, "audience": AUDIENCE,
                                                          "tenantId": svc.tenant_id, "caBundle": idp.ca}]),
        })
        svc.start()
        stack.callback(svc.stop)
        yield {"idp": idp, "service": svc, "authority": authority, "app_id": app_id}


@pytest.fixture(scope="module")
def svc(deployment):
    return deployment["service"]


@pytest.fixture(scope="module")
def arm(svc) -> Arm:
    """The portal service's own owner (its built-in principal)."""
    form = {"grant_type": "client_credentials", "client_id": svc.init["clientId"],
            "client_secret": svc.init["clientSecret"], "scope": ARM_SCOPE}
    answer = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", data=form, verify=svc.ca, timeout=30)
    assert answer.status_code == 200, answer.text
    return Arm(svc, answer.json()["access_token"])


@pytest.fixture(scope="module")
def estate(svc, arm, tmp_path_factory):
    """A resource group with a registry holding one image (pushed with its admin user)."""
    group, name = f"rg-ext-{uuid.uuid4().hex[:8]}", unique_registry_name("extportal")
    made = arm.request("PUT", f"/subscriptions/{svc.subscription_id}/resourcegroups/{group}",
                       params={"api-version": "2022-09-01"}, json={"location": "eastus"})
    assert made.status_code == 201, made.text
    made = arm.request("PUT", arm.registry_path(group, name), params={"api-version": "2023-07-01"},
                       json={"location": "eastus", "sku": {"name": "Standard"},
                             "properties": {"adminUserEnabled": True}})
    assert made.status_code in (200, 201), made.text
    browser_wait_for_registry(arm, group, name)
    credentials = arm.request("POST", arm.registry_path(group, name) + "/listCredentials",
                              params={"api-version": "2023-07-01"}).json()
    push_image(svc, tmp_path_factory.mktemp("push"), name, credentials["username"],
               credentials["passwords"][0]["value"])
    return {"group": group, "name": name}


@pytest.fixture
def browsers(deployment):
    """Chromium trusting exactly the two services' certificates and CAs."""
    svc, idp = deployment["service"], deployment["idp"]
    spki = f"{spki_hashes(svc)},{spki_hashes(idp)}"
    started: list[Browser] = []

    def start() -> Browser:
        browser = Browser(svc, spki, "sqlite-local")
        started.append(browser)
        return browser

    yield start
    for browser in started:
        browser.quit()


def sign_in_externally(browser: Browser, deployment, upn: str, password: str, signed_in_page: bool = True) -> None:
    """/portal -> Sign in -> the provider's sign-in page (not this service's) -> back in the portal."""
    browser.open("/portal/")
    browser.go(browser.find("signin-link"))
    browser.find("password")
    at = urlsplit(browser.driver.current_url)
    assert f"{at.scheme}://{at.netloc}{at.path}" == f"{deployment['authority'].removesuffix('/v2.0')}" \
                                                    "/oauth2/v2.0/authorize", browser.driver.current_url
    assert parse_qs(at.query)["client_id"] == [deployment["app_id"]]
    browser.find("username").send_keys(upn)
    browser.find("password").send_keys(password)
    browser.go(browser.find("signin"))
    if signed_in_page:
        assert browser.find("signed-in-user").text == upn
        assert browser.driver.current_url == f"{deployment['service'].url}/portal/"


def test_sign_in_starts_at_the_external_authority_asking_for_the_trusted_audience(deployment, svc):
    started = requests.get(f"{svc.url}/portal/auth/signin", verify=svc.ca, timeout=30, allow_redirects=False)
    assert started.status_code == 302, started.text
    location = urlsplit(started.headers["Location"])
    assert started.headers["Location"].startswith(f"{deployment['idp'].url}/{deployment['idp'].tenant_id}/"
                                                  "oauth2/v2.0/authorize?")
    query = parse_qs(location.query)
    assert query["redirect_uri"] == [f"{svc.url}/portal/auth/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [deployment["app_id"]]
    assert f"{AUDIENCE}/.default" in query["scope"][0].split()
    # The portal's pages may send the browser to the provider (form-action), and to nowhere else.
    policy = requests.get(f"{svc.url}/portal/", verify=svc.ca, timeout=30).headers["Content-Security-Policy"]
    assert f"form-action 'self' {deployment['idp'].url}" in policy


def test_the_providers_tokens_are_for_the_trusted_audience_and_name_no_local_principal(deployment, svc):
    """What the portal relies on: a token the provider mints for the trusted audience opens ARM here only with a
    role, and one for another audience does not at all."""
    idp = deployment["idp"]
    upn, password, oid = external_user(idp)

    def token(scope: str) -> str:
        answer = requests.post(f"{idp.url}/{idp.tenant_id}/oauth2/v2.0/token", verify=idp.ca, timeout=30, data={
            "grant_type": "password", "client_id": idp.init["clientId"], "username": upn, "password": password,
            "scope": scope})
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    trusted = token(f"{AUDIENCE}/.default")
    claims = jwt.decode(trusted, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["oid"]) == (deployment["authority"], AUDIENCE, oid)
    listed = requests.get(f"{svc.url}/subscriptions?api-version=2022-12-01", verify=svc.ca, timeout=30,
                          headers={"Authorization": f"Bearer {trusted}"})
    assert listed.status_code == 200 and listed.json()["value"] == [], listed.text
    wrong = requests.get(f"{svc.url}/subscriptions?api-version=2022-12-01", verify=svc.ca, timeout=30,
                         headers={"Authorization": f"Bearer {token(ARM_SCOPE)}"})
    assert wrong.status_code == 401 and "audience" in wrong.json()["error"]["message"], wrong.text


def test_external_person_signs_in_sees_the_registry_and_its_repositories(deployment, svc, arm, estate, browsers):
    from selenium.webdriver.common.by import By

    upn, password, oid = external_user(deployment["idp"])
    subscription = f"/subscriptions/{svc.subscription_id}"
    assign(arm, subscription, READER_ROLE, oid)
    group, name = estate["group"], estate["name"]

    browser = browsers()
    sign_in_externally(browser, deployment, upn, password)
    browser.screenshot("external-subscriptions")
    browser.go(browser.driver.find_element(By.CSS_SELECTOR, f"a[href='/portal{subscription}']"))
    browser.find("list-resourceGroups")
    browser.click_link(group)
    browser.find("list-registries")
    assert not browser.driver.find_elements(By.ID, "new-registry")  # a Reader is offered no create
    browser.click_link(name)
    assert browser.find("login-server").text == f"{name}.{svc.login_server_suffix}"
    assert "reveal-credentials" not in browser.ids()  # nor the admin credentials
    browser.click_link("Repositories")
    assert [e.text for e in browser.find("repositories").find_elements(By.TAG_NAME, "a")] == ["team/app"]
    browser.screenshot("external-repositories")
    browser.click_link("team/app")
    assert "1.0" in browser.find("tags").text
    browser.open(f"/portal{subscription}/groups/{group}/registries/{name}/activity")
    assert name in browser.find("activity").text  # the registry's creation, by the service's owner

    # Access control reads the directory (Graph), which is the built-in issuer's: no tab, and the page says so.
    assert not browser.driver.find_elements(By.LINK_TEXT, "Access control")
    browser.open(f"/portal{subscription}/groups/{group}/registries/{name}/access")
    assert "DirectoryUnavailable" in browser.find("error").text

    # Signing out ends the provider's session too: the next sign-in shows its form again.
    browser.go(browser.find("signout"))
    browser.wait_for(lambda: browser.driver.current_url == f"{svc.url}/portal/", "the way back from sign-out")
    browser.open("/portal/")
    browser.go(browser.find("signin-link"))
    assert browser.find("password").is_displayed()
    assert urlsplit(browser.driver.current_url).netloc == urlsplit(deployment["idp"].url).netloc


def test_external_contributor_reveals_the_admin_credentials(deployment, svc, arm, estate, browsers):
    """Permissions without Graph: a role held by the person's own object id offers its actions."""
    upn, password, oid = external_user(deployment["idp"])
    group, name = estate["group"], estate["name"]
    assign(arm, f"/subscriptions/{svc.subscription_id}/resourceGroups/{group}", CONTRIBUTOR_ROLE, oid)
    browser = browsers()
    sign_in_externally(browser, deployment, upn, password)
    browser.open(f"/portal/subscriptions/{svc.subscription_id}/groups/{group}/registries/{name}")
    browser.go(browser.find("reveal-credentials"))
    api = arm.request("POST", arm.registry_path(group, name) + "/listCredentials",
                      params={"api-version": "2023-07-01"}).json()
    assert browser.find("admin-username").text == api["username"] == name
    assert browser.find("admin-password").text == api["passwords"][0]["value"]


def test_external_person_without_a_role_sees_no_subscription(deployment, browsers):
    upn, password, _ = external_user(deployment["idp"])
    browser = browsers()
    sign_in_externally(browser, deployment, upn, password)
    assert "no role in any subscription" in browser.find("no-subscriptions").text


def test_external_token_reaches_the_data_plane_only_with_a_role(deployment, svc, arm, estate):
    """The exchange the portal's repository pages go through, driven directly: the provider's token for the
    trusted audience becomes a registry refresh token; the catalog needs a role."""
    idp = deployment["idp"]
    upn, password, oid = external_user(idp)
    answer = requests.post(f"{idp.url}/{idp.tenant_id}/oauth2/v2.0/token", verify=idp.ca, timeout=30, data={
        "grant_type": "password", "client_id": idp.init["clientId"], "username": upn, "password": password,
        "scope": f"{AUDIENCE}/.default"})
    assert answer.status_code == 200, answer.text
    login_server = f"{estate['name']}.{svc.login_server_suffix}"

    def catalog() -> requests.Response:
        exchanged = requests.post(f"{svc.url}/oauth2/exchange", headers={"Host": login_server}, verify=svc.ca,
                                  timeout=30, data={"grant_type": "access_token", "service": login_server,
                                                    "access_token": answer.json()["access_token"]})
        assert exchanged.status_code == 200, exchanged.text
        access = requests.post(f"{svc.url}/oauth2/token", headers={"Host": login_server}, verify=svc.ca, timeout=30,
                               data={"grant_type": "refresh_token", "service": login_server,
                                     "scope": "registry:catalog:*", "refresh_token": exchanged.json()["refresh_token"]})
        assert access.status_code == 200, access.text
        return requests.get(f"{svc.url}/acr/v1/_catalog", verify=svc.ca, timeout=30, headers={
            "Host": login_server, "Authorization": f"Bearer {access.json()['access_token']}"})

    assert catalog().status_code == 401
    assign(arm, f"/subscriptions/{svc.subscription_id}/resourceGroups/{estate['group']}", READER_ROLE, oid)
    listed = catalog()
    assert listed.status_code == 200 and listed.json()["repositories"] == ["team/app"], listed.text


def test_an_authority_the_service_does_not_trust_is_refused_at_start(deployment, tmp_path):
    """Misconfigured (CONTROL_PLANE_PORTAL_AUTHORITY without the issuer in CONTROL_PLANE_TRUSTED_ISSUERS): every
    token the portal got there would be refused, so the service says so when it starts, not with 401s later."""
    idp = deployment["idp"]
    untrusting = servers.make_service(tmp_path / "untrusting", None, "local")
    app_id, secret = register_portal(idp, untrusting.url)
    untrusting.env.update({"CONTROL_PLANE_PORTAL_AUTHORITY": deployment["authority"],
                           "CONTROL_PLANE_PORTAL_CLIENT_ID": app_id, "CONTROL_PLANE_PORTAL_CLIENT_SECRET": secret})
    refused = untrusting.cli("serve", "--port", "1", check=False)
    assert refused.returncode != 0
    assert "CONTROL_PLANE_PORTAL_AUTHORITY must be the issuer of one of CONTROL_PLANE_TRUSTED_ISSUERS" in \
        refused.stderr + refused.stdout, refused.stderr
    assert "Traceback" not in refused.stderr
