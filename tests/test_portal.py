"""The portal at /portal, in Debian's headless Chromium driven by selenium, against `control-plane serve` on both
backends: people sign in at the built-in issuer (authorization code + PKCE), an owner creates a registry, reveals
and regenerates its credentials, gives a role, browses, locks and deletes a pushed image, reads the activity log and
deletes the registry; a Reader sees no action they cannot take and a direct POST is refused; a user with no role
sees nothing. Screenshots go to tests/artifacts/portal/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import ssl
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.dataplane import Skopeo, build_image, missing_tools

ARTIFACTS = Path(__file__).parent / "artifacts" / "portal"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
WAIT = 30

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) or bool(missing_tools()),
    reason="needs Debian's chromium, chromium-driver, skopeo and umoci")


def spki_hashes(service) -> str:
    """Base64 SHA-256 of the public keys of the service's CA and certificate: Chromium trusts exactly these
    (`--ignore-certificate-errors-spki-list`), not every certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    port = int(service.url.rsplit(":", 1)[1])
    pems = [Path(service.ca).read_text(), ssl.get_server_certificate(("127.0.0.1", port))]
    hashes = []
    for pem in pems:
        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        hashes.append(base64.b64encode(hashlib.sha256(der).digest()).decode())
    return ",".join(hashes)


class Browser:
    """One person's Chromium: its own profile, so its own cookies."""

    def __init__(self, service, spki: str, backend: str, javascript: bool = True):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                         f"--ignore-certificate-errors-spki-list={spki}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.service = service
        self.backend = backend

    def quit(self) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        self.driver.get(f"{self.service.url}{path}")

    def find(self, element_id: str):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, WAIT).until(
                expected_conditions.presence_of_element_located((By.ID, element_id)))
        except TimeoutException:
            raise AssertionError(f"no #{element_id} on {self.driver.current_url}:\n{self.text()[:2000]}") from None

    def ids(self) -> set[str]:
        from selenium.webdriver.common.by import By

        return {e.get_attribute("id") for e in self.driver.find_elements(By.CSS_SELECTOR, "[id]")}

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def click_link(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self.go(self.driver.find_element(By.LINK_TEXT, text))

    def wait_for(self, condition, what: str) -> None:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, WAIT).until(lambda driver: condition(), message=what)
        except TimeoutException:
            raise AssertionError(f"{what} on {self.driver.current_url}:\n{self.text()[:2000]}") from None

    def go(self, element, confirm: bool = False) -> None:
        """Clicks what leads to another page (accepting its confirmation first) and waits for that page."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        from tests.support.signin_browser import click_to_navigate

        page = self.driver.find_element(By.TAG_NAME, "html")
        click_to_navigate(element)
        if confirm:
            WebDriverWait(self.driver, WAIT).until(expected_conditions.alert_is_present()).accept()
        WebDriverWait(self.driver, WAIT).until(expected_conditions.staleness_of(page))

    def button(self, label: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, f"button[aria-label='{label}']")

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}-{self.backend}.png"))

    def sign_in(self, username: str, password: str) -> None:
        self.open("/portal/")
        self.go(self.find("signin-link"))
        self.find("username").send_keys(username)
        self.find("password").send_keys(password)
        self.go(self.find("signin"))
        assert self.find("signed-in-user").text == username
        assert urlsplit(self.driver.current_url).path == "/portal/"

    def cookie(self) -> dict:
        return next(c for c in self.driver.get_cookies() if c["name"] == "__Host-portal-session")

    def csrf(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")

    def http(self) -> requests.Session:
        """requests with this browser's portal session, for what a page would never send (a forged or direct POST)."""
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE, which this machine exports, beats `verify`
        session.verify = self.service.ca
        session.cookies.set("__Host-portal-session", self.cookie()["value"], domain="127.0.0.1", path="/")
        return session

    def csp_violations(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")
                if "Content Security Policy" in entry["message"]]


@pytest.fixture(scope="module")
def backend(service) -> str:
    return "postgres-azurite" if getattr(service, "azurite", None) else "sqlite-local"


@pytest.fixture(scope="module")
def spki(service) -> str:
    return spki_hashes(service)


@pytest.fixture
def browsers(service, spki, backend):
    started: list[Browser] = []

    def start(javascript: bool = True) -> Browser:
        browser = Browser(service, spki, backend, javascript)
        started.append(browser)
        return browser

    yield start
    for browser in started:
        browser.quit()


def make_user(service, prefix: str) -> tuple[str, str, str]:
    """(UPN, password, object id) of a new user."""
    password = f"Pw-{uuid.uuid4().hex[:12]}!A"
    made = service.cli_json("user", "create", "--name", f"{prefix}{uuid.uuid4().hex[:6]}", "--password", password)
    return made["userPrincipalName"], password, made["id"]


def assign(arm, scope: str, role: str, principal_id: str) -> None:
    response = arm.request("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                           params={"api-version": "2022-04-01"},
                           json={"properties": {"roleDefinitionId": f"{scope}/providers/Microsoft.Authorization/"
                                                                    f"roleDefinitions/{role}",
                                                "principalId": principal_id, "principalType": "User"}})
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def people(service, arm):
    """An Owner of the subscription, a Reader of one resource group, and a user with no role at all."""
    group = f"rg-portal-{uuid.uuid4().hex[:8]}"
    subscription = f"/subscriptions/{service.subscription_id}"
    created = arm.request("PUT", f"{subscription}/resourcegroups/{group}", params={"api-version": "2022-09-01"},
                          json={"location": "eastus"})
    assert created.status_code == 201, created.text
    owner, reader, nobody = (make_user(service, p) for p in ("owner", "reader", "nobody"))
    assign(arm, subscription, OWNER_ROLE, owner[2])
    assign(arm, f"{subscription}/resourceGroups/{group}", READER_ROLE, reader[2])
    return {"group": group, "owner": owner, "reader": reader, "nobody": nobody}


def browser_wait_for_registry(arm, group: str, name: str) -> None:
    """A registry made with a raw PUT is ready once ARM says Succeeded (the suite answers asynchronously)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        state = arm.request("GET", arm.registry_path(group, name), params={"api-version": "2023-07-01"}).json()
        if state["properties"]["provisioningState"] == "Succeeded":
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} is still {state['properties']['provisioningState']}")


def session_rows(service) -> list[str]:
    from sqlalchemy import create_engine, text

    from control_plane.config import Settings

    engine = create_engine(Settings.from_env(service.env).database_url)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(text("SELECT data FROM portal_sessions"))]
    finally:
        engine.dispose()


def push_image(service, tmp_path: Path, registry: str, username: str, password: str) -> None:
    skopeo = Skopeo(tmp_path / "skopeo", service.ca)
    source = build_image(tmp_path / "layout", ["1.0"], tmp_path)
    address = f"{urlsplit(service.url).netloc}/{registry}"
    pushed = skopeo.push(f"{source}:1.0", address, "team/app:1.0", (username, password))
    assert pushed.returncode == 0, pushed.stderr


def test_portal_pages_carry_a_strict_policy_and_assets_come_from_the_package(service):
    page = requests.get(f"{service.url}/portal/", verify=service.ca, timeout=30)
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assets = re.findall(r'(?:href|src)="([^"]+\.(?:css|js))"', page.text)
    assert sorted(Path(a).suffix for a in assets) == [".css", ".js"]
    for asset in assets:
        assert asset.startswith("/portal/static/")  # nothing from a CDN
        served = requests.get(f"{service.url}{asset}", verify=service.ca, timeout=30)
        assert served.status_code == 200 and len(served.content) > 500
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    # No session is made for a visitor who has not started signing in.
    assert "Set-Cookie" not in page.headers
    # Sign-in starts on the public URL, where the portal's redirect URI is registered and its cookie will be sent.
    port = urlsplit(service.url).port
    elsewhere = requests.get(f"{service.url}/portal/auth/signin?next=/portal/", headers={"Host": f"localhost:{port}"},
                             verify=service.ca, timeout=30, allow_redirects=False)
    assert elsewhere.status_code == 302
    assert elsewhere.headers["Location"] == f"{service.url}/portal/auth/signin?next=/portal/"
    started = requests.get(f"{service.url}/portal/auth/signin", verify=service.ca, timeout=30, allow_redirects=False)
    assert started.status_code == 302
    authorize = started.headers["Location"]
    assert authorize.startswith(f"{service.url}/{service.tenant_id}/oauth2/v2.0/authorize?")
    assert "code_challenge_method=S256" in authorize and "redirect_uri=https%3A%2F%2F127.0.0.1" in authorize
    cookie = started.headers["Set-Cookie"]
    assert cookie.startswith("__Host-portal-session=") and all(
        attribute in cookie for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"))


def test_owner_creates_a_registry_gives_access_browses_an_image_and_deletes_it(service, people, browsers, arm,
                                                                               tmp_path, backend):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    upn, password, _ = people["owner"]
    group = people["group"]
    browser = browsers()
    browser.sign_in(upn, password)
    cookie = browser.cookie()
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    browser.screenshot("subscriptions")
    # The session is a row of the service's database, encrypted: no token or name in the clear.
    rows = session_rows(service)
    assert rows and all(row.startswith("gAAAA") for row in rows)
    assert not any("eyJhbGciOi" in row or upn in row or "refresh_token" in row for row in rows)

    # Subscription -> group -> a new registry, its name checked as it is typed.
    browser.find("signed-in-user")
    subscription_link = f"a[href='/portal/subscriptions/{service.subscription_id}']"
    browser.go(browser.driver.find_element(By.CSS_SELECTOR, subscription_link))
    browser.find("list-resourceGroups")
    browser.click_link(group)
    browser.go(browser.find("new-registry"))
    name = f"portal{uuid.uuid4().hex[:10]}"
    field = browser.find("registry-name")
    field.send_keys(name)
    browser.wait_for(lambda: "is available" in browser.find("name-check").text, "the name check")
    Select(browser.find("registry-sku")).select_by_visible_text("Standard")
    browser.find("registry-admin").click()
    browser.screenshot("create-registry")
    browser.go(browser.find("create-registry-submit"))
    # The operation's progress, then the registry.
    browser.wait_for(lambda: browser.find("operation-status").text == "Done.", "the create operation")
    browser.go(browser.find("operation-continue"))
    login_server = browser.find("login-server").text
    assert login_server == f"{name}.{service.login_server_suffix}"
    usage_rows = browser.driver.find_elements(By.CSS_SELECTOR, "#usages tbody tr")
    assert any(row.text.startswith("Size") for row in usage_rows), [r.text for r in usage_rows]

    # Credentials: revealed, then one regenerated.
    browser.go(browser.find("reveal-credentials"))
    username = browser.find("admin-username").text
    first, second = browser.find("admin-password").text, browser.find("admin-password2").text
    assert username == name and first and second and first != second
    api = arm.request("POST", arm.registry_path(group, name) + "/listCredentials",
                      params={"api-version": "2023-07-01"}).json()
    assert api["passwords"][0]["value"] == first
    browser.go(browser.find("regenerate-password2"))
    assert browser.find("admin-password2").text not in ("", second)
    assert browser.find("admin-password").text == first
    browser.screenshot("registry")
    shutil.copy(ARTIFACTS / f"registry-{backend}.png", ARTIFACTS / "registry.png")

    # A name already taken is refused, with ARM's message.
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{group}/new-registry")
    browser.find("registry-name").send_keys(name)
    browser.wait_for(lambda: "already" in browser.find("name-check").text.lower(), "the name check of a taken name")
    browser.go(browser.find("create-registry-submit"))
    assert "PreconditionFailed" in browser.driver.find_element(By.CSS_SELECTOR, "[role=alert]").text

    # Access control: find the reader by name, give them AcrPull on this registry.
    reader_upn = people["reader"][0]
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{group}/registries/{name}/access")
    browser.find("principal-query").send_keys(reader_upn.split("@")[0])
    browser.go(browser.find("principal-search"))
    browser.find("add-assignment")
    Select(browser.find("assignment-role")).select_by_visible_text("AcrPull")
    browser.go(browser.find("add-assignment-submit"))
    rows = [row.text for row in browser.find("assignments").find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert any(reader_upn in row and "AcrPull" in row and "This registry" in row for row in rows), rows
    listed = arm.request("GET", arm.registry_path(group, name) + "/providers/Microsoft.Authorization/roleAssignments",
                         params={"api-version": "2022-04-01", "$filter": f"principalId eq '{people['reader'][2]}'"})
    assert any(a["properties"]["scope"].lower() == arm.registry_path(group, name).lower()
               for a in listed.json()["value"])
    browser.screenshot("access-control")
    # ... and take it away again (only assignments made at this registry can be removed here).
    browser.go(browser.button(f"Remove AcrPull from {people['reader'][0].split('@')[0]}"), confirm=True)
    rows = [row.text for row in browser.find("assignments").find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert not any("AcrPull" in row for row in rows) and any("Reader" in row for row in rows), rows
    listed = arm.request("GET", arm.registry_path(group, name) + "/providers/Microsoft.Authorization/roleAssignments",
                         params={"api-version": "2022-04-01", "$filter": f"principalId eq '{people['reader'][2]}'"})
    assert all(a["properties"]["scope"].lower() != arm.registry_path(group, name).lower()
               for a in listed.json()["value"])
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#assignments button")) == 0

    # An image pushed with the admin credentials, browsed through the data plane's ACR API.
    push_image(service, tmp_path, name, username, first)
    browser.click_link("Repositories")
    browser.click_link("team/app")
    tags = browser.find("tags").text
    assert "1.0" in tags
    manifests = browser.find("manifests").text
    assert "linux / amd64" in manifests and "write: yes" in manifests
    browser.screenshot("repository")
    # Lock the tag (writeEnabled and deleteEnabled false), then unlock and delete it.
    browser.go(browser.button("Lock 1.0"))
    assert "write: no" in browser.find("tags").text and "delete: no" in browser.find("tags").text
    browser.go(browser.button("Delete 1.0"), confirm=True)
    assert "REGISTRY_DISALLOWED_OPERATION" in browser.find("error").text or "DENIED" in browser.find("error").text
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{group}/registries/{name}/repositories/"
                 "team/app")
    browser.go(browser.button("Unlock 1.0"))
    browser.go(browser.button("Delete 1.0"), confirm=True)
    assert "1.0" not in browser.find("tags").text
    assert browser.csp_violations() == []

    # The registry's activity log names the owner.
    browser.click_link("Activity log")
    log = browser.find("activity").text
    assert upn in log, log

    # Phone width: nothing scrolls sideways.
    browser.driver.set_window_size(390, 844)
    browser.click_link("Overview")
    browser.find("login-server")
    too_wide = browser.driver.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        "document.documentElement.clientWidth + 1).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + "
        "Math.round(e.getBoundingClientRect().right) + '/' + document.documentElement.clientWidth)")
    assert too_wide == [], too_wide
    browser.screenshot("registry-phone")
    browser.driver.set_window_size(1280, 1000)

    # A refused delete shows ARM's error: a CanNotDelete lock on the registry.
    lock = arm.registry_path(group, name) + "/providers/Microsoft.Authorization/locks/keep"
    locked = arm.request("PUT", lock, params={"api-version": "2020-05-01"},
                         json={"properties": {"level": "CanNotDelete"}})
    assert locked.status_code in (200, 201), locked.text
    browser.go(browser.find(f"delete-{name}"), confirm=True)
    assert "ScopeLocked" in browser.find("error").text
    assert arm.request("DELETE", lock, params={"api-version": "2020-05-01"}).status_code == 200
    browser.driver.back()

    # Delete the registry, following the operation.
    browser.go(browser.find(f"delete-{name}"), confirm=True)
    browser.wait_for(lambda: browser.find("operation-status").text == "Done.", "the delete operation")
    browser.go(browser.find("operation-continue"))
    assert name not in browser.text()
    gone = arm.request("GET", arm.registry_path(group, name), params={"api-version": "2023-07-01"})
    assert gone.status_code == 404

    # A resource group: created from the subscription's page, its activity log read, deleted with progress.
    browser.open(f"/portal/subscriptions/{service.subscription_id}")
    browser.driver.find_element(By.CSS_SELECTOR, "details.create summary").click()
    extra_group = f"rg-portal-new-{uuid.uuid4().hex[:6]}"
    browser.find("group-name").send_keys(extra_group)
    Select(browser.find("group-location")).select_by_value("westeurope")
    browser.go(browser.find("create-group-submit"))
    assert browser.find("main").find_element(By.TAG_NAME, "h1").text == extra_group
    assert "westeurope" in browser.text()
    browser.go(browser.find("group-activity"))
    assert upn in browser.find("activity").text
    browser.driver.back()
    browser.go(browser.find(f"delete-{extra_group}"), confirm=True)
    browser.wait_for(lambda: browser.find("operation-status").text == "Done.", "the group's delete operation")
    browser.go(browser.find("operation-continue"))
    assert extra_group not in browser.find("list-resourceGroups").text
    assert arm.request("GET", f"/subscriptions/{service.subscription_id}/resourcegroups/{extra_group}",
                       params={"api-version": "2022-09-01"}).status_code == 404

    # A form posted without its CSRF token is refused before anything is called.
    forged = browser.http().post(f"{service.url}/portal/subscriptions/{service.subscription_id}/groups",
                                 data={"name": "rg-forged", "location": "eastus"}, timeout=30, allow_redirects=False)
    assert forged.status_code == 400 and "security token" in forged.text
    exists = arm.request("GET", f"/subscriptions/{service.subscription_id}/resourcegroups/rg-forged",
                         params={"api-version": "2022-09-01"})
    assert exists.status_code == 404

    # Signing out ends the portal session: its cookie no longer opens anything.
    stale = browser.http()
    browser.go(browser.find("signout"))
    browser.find("signin-link")
    assert stale.get(f"{service.url}/portal/", timeout=30).text.count('id="signin-link"') == 1


def test_reader_sees_no_action_they_cannot_take_and_a_direct_post_is_refused(service, people, browsers, arm,
                                                                             tmp_path):

    group = people["group"]
    name = f"portalr{uuid.uuid4().hex[:10]}"
    created = arm.request("PUT", arm.registry_path(group, name), params={"api-version": "2023-07-01"},
                          json={"location": "eastus", "sku": {"name": "Basic"},
                                "properties": {"adminUserEnabled": True}})
    assert created.status_code in (200, 201), created.text
    browser_wait_for_registry(arm, group, name)
    admin = arm.request("POST", arm.registry_path(group, name) + "/listCredentials",
                        params={"api-version": "2023-07-01"}).json()
    push_image(service, tmp_path, name, admin["username"], admin["passwords"][0]["value"])
    upn, password, _ = people["reader"]
    browser = browsers()
    browser.sign_in(upn, password)
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{group}")
    browser.find("list-registries")
    ids = browser.ids()
    assert "new-registry" not in ids and not any(i.startswith("delete-") for i in ids), ids
    browser.wait_for(lambda: name in browser.text(), "the registry in the list")
    browser.screenshot("reader-group")
    browser.click_link(name)
    browser.find("login-server")
    ids = browser.ids()
    assert "reveal-credentials" not in ids and f"delete-{name}" not in ids, ids
    # The image is there to read, with no lock or delete button.
    browser.click_link("Repositories")
    browser.click_link("team/app")
    assert "1.0" in browser.find("tags").text and "linux / amd64" in browser.find("manifests").text
    assert not browser.driver.find_elements("css selector", "#tags button, #manifests button")
    browser.click_link("Access control")
    browser.find("assignments")
    assert "principal-query" not in browser.ids()
    # A page of a form they may not use says so.
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{group}/new-registry")
    assert "may not create registries" in browser.find("error").text
    assert browser.csp_violations() == []
    # Posting what the page does not offer: ARM refuses it, and the portal shows ARM's error.
    csrf = browser.csrf()
    refused = browser.http().post(
        f"{service.url}/portal/subscriptions/{service.subscription_id}/groups/{group}/registries/{name}/credentials",
        data={"csrf": csrf}, timeout=30)
    assert refused.status_code == 403 and "AuthorizationFailed" in refused.text
    deleted = browser.http().post(f"{service.url}/portal/delete", timeout=30, allow_redirects=False,
                                  data={"csrf": csrf, "kind": "registries", "id": arm.registry_path(group, name)})
    assert deleted.status_code == 403 and "AuthorizationFailed" in deleted.text
    still = arm.request("GET", arm.registry_path(group, name), params={"api-version": "2023-07-01"})
    assert still.status_code == 200
    arm.request("DELETE", arm.registry_path(group, name), params={"api-version": "2023-07-01"})


def test_a_user_without_a_role_sees_no_subscription(service, people, browsers):
    upn, password, _ = people["nobody"]
    browser = browsers()
    browser.sign_in(upn, password)
    assert "no role" in browser.find("no-subscriptions").text
    browser.screenshot("no-role")
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{people['group']}")
    assert "AuthorizationFailed" in browser.find("error").text


def test_pages_need_a_session_and_keyboard_reaches_the_content(service, browsers):
    browser = browsers()
    browser.open(f"/portal/subscriptions/{service.subscription_id}")
    # Without a session, a page sends the person to sign in at the issuer, then back.
    browser.find("username")
    assert "/oauth2/v2.0/authorize" in browser.driver.current_url
    browser.open("/portal/")
    from selenium.webdriver.common.keys import Keys

    browser.driver.find_element("tag name", "body").send_keys(Keys.TAB)
    focused = browser.driver.switch_to.active_element
    assert focused.text == "Skip to content"
    focused.send_keys(Keys.ENTER)
    assert browser.driver.switch_to.active_element.get_attribute("id") == "main"


def test_permissions_follow_arm_wildcards_and_not_actions():
    """The portal's reading of role definitions (control_plane/portal/permissions.py), on the built-in roles'
    own action lists."""
    from control_plane.portal.permissions import REGISTRIES, ROLE_ASSIGNMENTS, Permissions

    contributor = Permissions(((("*",), ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                                         "Microsoft.Authorization/elevateAccess/Action")),))
    reader = Permissions(((("*/read",), ()),))
    acr_pull = Permissions(((("Microsoft.ContainerRegistry/registries/pull/read",), ()),))
    assert contributor.can(REGISTRIES, "write") and contributor.can(REGISTRIES, "listCredentials/action")
    assert not contributor.can(ROLE_ASSIGNMENTS, "write") and not contributor.can(ROLE_ASSIGNMENTS, "delete")
    assert reader.can(REGISTRIES, "read") and reader.can(ROLE_ASSIGNMENTS, "read")
    assert not reader.can(REGISTRIES, "write") and not reader.can(REGISTRIES, "listCredentials/action")
    assert acr_pull.can(REGISTRIES, "pull/read") and not acr_pull.can(REGISTRIES, "read")
    assert not Permissions().can(REGISTRIES, "read")
    # Matching ignores case, as ARM's does, and a wildcard spans segments.
    assert Permissions(((("microsoft.containerregistry/*",), ()),)).can(REGISTRIES, "regenerateCredential/action")


def test_the_pages_work_without_javascript(service, people, browsers, arm):
    """Progressive enhancement: with scripts off a registry is still created (the progress page refreshes itself
    until ARM says done) and deleted (no confirmation dialog then)."""
    upn, password, _ = people["owner"]
    group = people["group"]
    browser = browsers(javascript=False)
    browser.sign_in(upn, password)
    browser.open(f"/portal/subscriptions/{service.subscription_id}/groups/{group}/new-registry")
    name = f"nojs{uuid.uuid4().hex[:10]}"
    browser.find("registry-name").send_keys(name)
    time.sleep(1.5)  # with scripts on, the name would have been checked by now (tests above wait for it)
    assert browser.find("name-check").text.startswith("5 to 50 letters")
    browser.go(browser.find("create-registry-submit"))
    browser.wait_for(lambda: browser.find("operation-status").text == "Done.", "the self-refreshing progress page")
    browser.go(browser.find("operation-continue"))
    assert browser.find("login-server").text.startswith(f"{name}.")
    browser.go(browser.find(f"delete-{name}"))
    browser.wait_for(lambda: browser.find("operation-status").text == "Done.", "the delete's progress page")
    gone = arm.request("GET", arm.registry_path(group, name), params={"api-version": "2023-07-01"})
    assert gone.status_code == 404


def test_portal_settings_are_checked_at_start():
    from control_plane.config import Settings, SettingsError

    base = {"CONTROL_PLANE_DATA_DIR": "/tmp/portal-settings"}
    assert Settings.from_env(base).portal_client_id is None
    trusted = json.dumps([{"issuer": "https://login.example/tenant/v2.0", "audience": "api://portal",
                           "tenantId": "9b6a4a3e-8c1f-4a5e-9f0d-2b7c1e3d4f50"}])
    configured = Settings.from_env({**base, "CONTROL_PLANE_PORTAL_CLIENT_ID": "app",
                                    "CONTROL_PLANE_PORTAL_CLIENT_SECRET": "secret",
                                    "CONTROL_PLANE_TRUSTED_ISSUERS": trusted,
                                    "CONTROL_PLANE_PORTAL_AUTHORITY": "https://login.example/tenant/v2.0/"})
    assert (configured.portal_client_id, configured.portal_authority) == ("app", "https://login.example/tenant/v2.0")
    for wrong in ({"CONTROL_PLANE_PORTAL_CLIENT_ID": "app"},
                  {"CONTROL_PLANE_PORTAL_AUTHORITY": "https://login.example/tenant"},
                  {"CONTROL_PLANE_PORTAL_CLIENT_ID": "app", "CONTROL_PLANE_PORTAL_CLIENT_SECRET": "s",
                   "CONTROL_PLANE_PORTAL_AUTHORITY": "http://login.example/tenant"},
                  {"CONTROL_PLANE_PORTAL_CLIENT_ID": "app", "CONTROL_PLANE_PORTAL_CLIENT_SECRET": "s",
                   "CONTROL_PLANE_PORTAL_AUTHORITY": "https://untrusted.example/tenant/v2.0"}):
        with pytest.raises(SettingsError, match="CONTROL_PLANE_PORTAL"):
            Settings.from_env({**base, **wrong})
