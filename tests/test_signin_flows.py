"""Interactive sign-in at the built-in issuer, as MSAL and az use it, through Debian's Chromium (headless, selenium):

- authorization code + PKCE with msal's PublicClientApplication (az's client id, a loopback redirect URI) and
  ConfidentialClientApplication (an application registered through Graph with a `web` redirect URI and a secret),
  the browser session (a second sign-in without the form), refresh tokens, and sign-out (then `prompt=none` answers
  `login_required`);
- the device code flow with msal and with `az login --use-device-code`; `az login` opening the browser through
  Python's `webbrowser` (BROWSER names tests/support/signin_browser.py); then `az account get-access-token` and ARM
  calls as the user;
- the bad inputs over raw HTTPS (the form driven with requests): wrong PKCE verifier, a code used twice, a wrong
  redirect URI, an unknown client, no CSRF token, expired, declined and pending device codes, the same message for
  an unknown user and a wrong password; the page's CSP;
- §4 of issue 12: `/oauth2/exchange` with a trusted external issuer's token, an unknown tenant's OIDC discovery,
  `ensure_portal_application`, and the README's SDK example after `init` has already run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urlsplit

import jwt
import msal
import pytest
import requests
import sqlalchemy as sa

from control_plane.config import Settings
from control_plane.db import Database, utcnow
from control_plane.identity import service as identity
from control_plane.identity.models import Application, DeviceCode, ServicePrincipal
from tests.conftest import selected_backends, unique_registry_name
from tests.support import servers, tools
from tests.support.az import Az, az_env, register_cloud
from tests.support.signin_browser import chromium, enter_device_code, sign_in, visit
from tests.test_graph import Graph
from tests.test_users_groups import (
    ARM_SCOPE,
    AZ_CLIENT_ID,
    PASSWORD,
    READER,
    arm,
    assign,
    ca_for_msal,
    rg_path,
    tag,
)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SIGNIN_BROWSER = Path(__file__).parent / "support" / "signin_browser.py"


# -- fixtures and helpers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(service):
    driver = chromium(service.data_dir / "tls" / "server.pem")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def person(service, rmc):
    """A user with Reader on a resource group of their own (and nothing else)."""
    user = service.cli_json("user", "create", "--name", f"signin-{tag()}", "--password", PASSWORD)
    group = f"rg-signin-{tag()}"
    rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    assign(service, rg_path(service, group), READER, user["id"], "User")
    yield SimpleNamespace(upn=user["userPrincipalName"], id=user["id"], group=group)
    rmc.resource_groups.begin_delete(group).result()
    service.cli_json("user", "delete", "--id", user["id"])


@pytest.fixture(scope="module")
def admin(service) -> Graph:
    return Graph.of(service, service.init["clientId"], service.init["clientSecret"])


def loopback() -> str:
    return f"http://localhost:{servers.free_port()}"


def auth_response(url: str) -> dict[str, str]:
    """The query of the redirect, as msal's acquire_token_by_auth_code_flow takes it."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class FormClient:
    """The sign-in pages driven over raw HTTPS with requests (cookies kept), for the bad inputs."""

    def __init__(self, service):
        self.service = service
        self.session = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self._url(path), verify=self.service.ca, timeout=30, allow_redirects=False,
                                **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self._url(path), verify=self.service.ca, timeout=30, allow_redirects=False,
                                 **kwargs)

    def _url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.service.url}{path}"

    @staticmethod
    def csrf(page: requests.Response) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    @staticmethod
    def action(page: requests.Response) -> str:
        return re.search(r'<form method="post" action="([^"]+)"', page.text).group(1).replace("&amp;", "&")

    def authorize(self, params: dict, tenant: str | None = None) -> requests.Response:
        return self.get(f"/{tenant or self.service.tenant_id}/oauth2/v2.0/authorize", params=params)

    def sign_in(self, params: dict, username: str, password: str, csrf: bool = True) -> requests.Response:
        """The form (`prompt=login`: even with a session), filled and posted; the answer is not followed."""
        page = self.authorize({"prompt": "login", **params})
        assert page.status_code == 200, page.text
        form = {"username": username, "password": password}
        if csrf:
            form["csrf_token"] = self.csrf(page)
        return self.post(self.action(page), data=form)


def authorize_params(redirect_uri: str, challenge: str | None = None, **extra) -> dict:
    params = {"client_id": AZ_CLIENT_ID, "response_type": "code", "redirect_uri": redirect_uri,
              "scope": f"{ARM_SCOPE} openid profile offline_access", "state": uuid.uuid4().hex,
              "nonce": uuid.uuid4().hex}
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return {**params, **extra}


def code_of(response: requests.Response, state: str) -> str:
    assert response.status_code == 302, response.text
    query = auth_response(response.headers["Location"])
    assert query["state"] == state, query
    return query["code"]


def token_request(service, **form) -> requests.Response:
    tenant = form.pop("tenant", service.tenant_id)
    return requests.post(f"{service.url}/{tenant}/oauth2/v2.0/token", data=form, verify=service.ca, timeout=30)


def assert_oauth(response: requests.Response, status: int, error: str, aadsts: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["error_codes"] == [aadsts], body
    assert body["error_description"].startswith(f"AADSTS{aadsts}: "), body
    return body


def page_error(page: requests.Response) -> str:
    found = re.search(r'<p class="error" id="error" role="alert">([^<]*)</p>', page.text)
    return html.unescape(found.group(1)) if found else ""


# -- msal with Chromium ----------------------------------------------------------------------------------------


# msal recommends form_post; the query mode is what it sends by default, and what these tests read back.
QUERY_MODE = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")


@QUERY_MODE
def test_msal_public_client_auth_code_sso_refresh_and_sign_out(service, browser, person, monkeypatch):
    authority = f"{service.url}/{service.tenant_id}"
    redirect = loopback()
    with ca_for_msal(service, monkeypatch):
        app = msal.PublicClientApplication(AZ_CLIENT_ID, authority=authority, instance_discovery=False)
        flow = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=redirect, login_hint=person.upn)
        result = app.acquire_token_by_auth_code_flow(flow, auth_response(
            sign_in(browser, flow["auth_uri"], person.upn, PASSWORD, redirect)))
        assert "access_token" in result, result
        claims = result["id_token_claims"]
        assert (claims["preferred_username"], claims["oid"], claims["sub"], claims["tid"]) == (
            person.upn, person.id, person.id, service.tenant_id)
        assert (claims["aud"], claims["iss"], claims["ver"]) == (AZ_CLIENT_ID, f"{authority}/v2.0", "2.0")
        # MSAL sends the SHA-256 of its nonce and checks the ID token repeats it.
        assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest() and claims["name"]
        assert claims["iat"] <= claims["nbf"] + 1 and claims["exp"] > time.time()
        assert arm(service, result["access_token"], "GET", rg_path(service, person.group)).status_code == 200
        assert arm(service, result["access_token"], "PUT", rg_path(service, person.group)).status_code == 403

        # The refresh token: a new access token without the browser.
        [account] = app.get_accounts(person.upn)
        assert account["home_account_id"] == f"{person.id}.{service.tenant_id}"
        refreshed = app.acquire_token_silent([ARM_SCOPE], account=account, force_refresh=True)
        assert refreshed and refreshed["access_token"] != result["access_token"], refreshed
        assert arm(service, refreshed["access_token"], "GET", rg_path(service, person.group)).status_code == 200

        # The browser session: the second sign-in shows no form (sign_in fails if it does).
        again = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=redirect)
        second = app.acquire_token_by_auth_code_flow(again, auth_response(
            sign_in(browser, again["auth_uri"], None, None, redirect)))
        assert second["id_token_claims"]["oid"] == person.id, second

        # Sign-out ends it: then `prompt=none` gets login_required at the redirect URI, as Entra answers.
        signed_out = visit(browser, f"{authority}/oauth2/v2.0/logout?post_logout_redirect_uri="
                                    f"{quote(redirect + '/bye', safe='')}")
        assert signed_out.startswith(redirect + "/bye"), signed_out
        silent = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=redirect, prompt="none")
        refused = app.acquire_token_by_auth_code_flow(silent, auth_response(
            sign_in(browser, silent["auth_uri"], None, None, redirect)))
        assert refused["error"] == "login_required", refused


@QUERY_MODE
def test_msal_confidential_client_auth_code(service, browser, person, admin, monkeypatch):
    callback = f"{service.url}/signin-test/callback"
    application = admin.create_application(f"signin-web-{tag()}", web={"redirectUris": [callback]})
    assert admin.ok("GET", f"/applications/{application['id']}")["web"]["redirectUris"] == [callback]
    admin.create_principal(application["appId"])
    secret = admin.ok("POST", f"/applications/{application['id']}/addPassword",
                      json={"passwordCredential": {"displayName": "web"}})["secretText"]
    try:
        with ca_for_msal(service, monkeypatch):
            app = msal.ConfidentialClientApplication(application["appId"], client_credential=secret,
                                                     authority=f"{service.url}/{service.tenant_id}",
                                                     instance_discovery=False)
            flow = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=callback, prompt="login")
            result = app.acquire_token_by_auth_code_flow(flow, auth_response(
                sign_in(browser, flow["auth_uri"], person.upn, PASSWORD, callback)))
            assert "access_token" in result, result
            assert result["id_token_claims"]["aud"] == application["appId"]
            assert jwt.decode(result["access_token"], options={"verify_signature": False})["appid"] == \
                application["appId"]
            assert arm(service, result["access_token"], "GET", rg_path(service, person.group)).status_code == 200
            # Its refresh tokens, too, are only redeemed with the secret.
            [account] = app.get_accounts(person.upn)
            refreshed = app.acquire_token_silent([ARM_SCOPE], account=account, force_refresh=True)
            assert refreshed and "access_token" in refreshed, refreshed
            assert_oauth(token_request(service, grant_type="refresh_token", client_id=application["appId"],
                                       refresh_token=result["refresh_token"], scope=ARM_SCOPE),
                         401, "invalid_client", 7000218)

            # A code for a `web` redirect URI is only redeemed with the client's secret.
            flow = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=callback)
            code = auth_response(sign_in(browser, flow["auth_uri"], None, None, callback))["code"]
            assert_oauth(token_request(service, grant_type="authorization_code", client_id=application["appId"],
                                       code=code, redirect_uri=callback, code_verifier=flow["code_verifier"]),
                         401, "invalid_client", 7000218)
    finally:
        admin.ok("DELETE", f"/applications/{application['id']}", 204)


def test_msal_device_flow(service, browser, person, monkeypatch):
    with ca_for_msal(service, monkeypatch):
        app = msal.PublicClientApplication(AZ_CLIENT_ID, authority=f"{service.url}/organizations",
                                           instance_discovery=False)
        flow = app.initiate_device_flow([ARM_SCOPE])
        assert flow["verification_uri"] == f"{service.url}/devicelogin", flow
        assert flow["user_code"] in flow["message"] and flow["interval"] == 5, flow
        message = enter_device_code(browser, flow["verification_uri"], flow["user_code"].lower(), person.upn,
                                    PASSWORD)
        assert person.upn in message
        result = app.acquire_token_by_device_flow(flow)
        assert result.get("id_token_claims", {}).get("oid") == person.id, result
        assert arm(service, result["access_token"], "GET", rg_path(service, person.group)).status_code == 200


# -- az with Chromium ------------------------------------------------------------------------------------------


def user_az(service, tmp_path: Path, person, **extra: str) -> Az:
    """A fresh az profile on the service's cloud, whose BROWSER signs in as the person through Chromium."""
    wrapper = tmp_path / "browser.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SIGNIN_BROWSER}" "$1"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    az = Az(tools.az_cli(), az_env(tmp_path / "az", service.ca, BROWSER=str(wrapper),
                                   AZURE_CORE_LOGIN_EXPERIENCE_V2="off", SIGNIN_USERNAME=person.upn,
                                   SIGNIN_PASSWORD=PASSWORD, SIGNIN_CERT=str(service.data_dir / "tls" / "server.pem"),
                                   SIGNIN_BROWSER_LOG=str(tmp_path / "browser.log"), **extra))
    register_cloud(az, service.url, "ControlPlaneSignIn")
    return az


def assert_signed_in_as(az: Az, service, person) -> None:
    account = az.json("account", "show")
    assert (account["user"]["name"], account["user"]["type"], account["tenantId"]) == (
        person.upn, "user", service.tenant_id)
    token = az.json("account", "get-access-token")
    claims = jwt.decode(token["accessToken"], options={"verify_signature": False})
    assert (claims["oid"], claims["appid"]) == (person.id, AZ_CLIENT_ID)
    # Another resource: az asks with its refresh token.
    graph = az.json("account", "get-access-token", "--scope", f"{service.url}//.default")
    assert jwt.decode(graph["accessToken"], options={"verify_signature": False})["aud"] == f"{service.url}/"
    assert az.json("group", "show", "-n", person.group)["name"] == person.group
    refused = az.run("group", "update", "-n", person.group, "--tags", "by=reader")
    assert refused.returncode != 0 and "AuthorizationFailed" in refused.stderr, refused.stderr


@pytest.mark.az
def test_az_login_opens_the_browser(service, person, tmp_path):
    az = user_az(service, tmp_path, person)
    result = az.run("login", "--tenant", service.tenant_id)
    log = (tmp_path / "browser.log").read_text() if (tmp_path / "browser.log").exists() else ""
    assert result.returncode == 0, result.stderr + log
    assert_signed_in_as(az, service, person)


@pytest.mark.az
def test_az_login_with_a_device_code(service, browser, person, tmp_path):
    az = user_az(service, tmp_path, person)
    process = subprocess.Popen([str(az.binary), "login", "--use-device-code", "--tenant", service.tenant_id],
                               env=az.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "enter the code" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        found = re.search(r"open the page (\S+) and enter the code (\S+) ", line)
        assert found, line
        assert found.group(1) == f"{service.url}/devicelogin"
        assert person.upn in enter_device_code(browser, found.group(1), found.group(2), person.upn, PASSWORD)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert_signed_in_as(az, service, person)


# -- the bad inputs, over raw HTTPS ------------------------------------------------------------------------------


def test_the_sign_in_page_is_strict_and_says_nothing_more(service, person):
    client = FormClient(service)
    redirect = loopback()
    page = client.authorize(authorize_params(redirect))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and f"form-action 'self' {redirect}" in csp
    assert "unsafe-inline" not in csp and "src=" not in page.text and "href=" not in page.text  # no external asset
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert 'id="username"' in page.text and 'id="password" name="password" type="password"' in page.text
    assert 'id="signin" type="submit"' in page.text and 'name="viewport"' in page.text
    cookie = next(c for c in client.session.cookies if c.name == "__Host-cp-csrf")
    assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")

    # No CSRF token: 400, and nothing is signed in.
    refused = client.sign_in(authorize_params(redirect), person.upn, PASSWORD, csrf=False)
    assert refused.status_code == 400 and "Location" not in refused.headers
    assert not any(c.name == "__Host-cp-signin" for c in client.session.cookies)

    # Unknown user and wrong password: the same words, and no redirect.
    domain = person.upn.split("@")[1]
    wrong = client.sign_in(authorize_params(redirect), person.upn, "Wr0ng-Password!")
    unknown = client.sign_in(authorize_params(redirect), f"nobody-{tag()}@{domain}", "Wr0ng-Password!")
    assert wrong.status_code == unknown.status_code == 200
    assert page_error(wrong) == page_error(unknown) == "Your account or password is incorrect."
    assert "Wr0ng-Password!" not in wrong.text + service.log()

    # The lockout per user name and source address holds on the page as for the password grant.
    victim = service.cli_json("user", "create", "--name", f"locked-{tag()}", "--password", PASSWORD)
    threshold = int(service.env.get("CONTROL_PLANE_SIGNIN_LOCKOUT_THRESHOLD", "10"))
    for _ in range(threshold):
        failed = client.sign_in(authorize_params(redirect), victim["userPrincipalName"], "Wr0ng-Password!")
        assert page_error(failed) == "Your account or password is incorrect."
    locked = client.sign_in(authorize_params(redirect), victim["userPrincipalName"], PASSWORD)
    assert locked.status_code == 200 and "locked" in page_error(locked) and "Location" not in locked.headers
    service.cli_json("user", "delete", "--id", victim["id"])

    # A good sign-in: the code and state at the redirect URI, and a session cookie as the contract says.
    params = authorize_params(redirect)
    code_of(client.sign_in(params, person.upn, PASSWORD), params["state"])
    session = next(c for c in client.session.cookies if c.name == "__Host-cp-signin")
    assert session.secure and session.has_nonstandard_attr("HttpOnly")


def test_codes_are_single_use_and_bound_to_client_redirect_and_verifier(service, person):
    client = FormClient(service)
    redirect = loopback()

    def fresh_code(**extra) -> tuple[str, str]:
        verifier, challenge = pkce()
        params = authorize_params(redirect, challenge, **extra)
        return code_of(client.sign_in(params, person.upn, PASSWORD), params["state"]), verifier

    def redeem(code: str, verifier: str | None, **form) -> requests.Response:
        fields = {"grant_type": "authorization_code", "client_id": AZ_CLIENT_ID, "code": code,
                  "redirect_uri": redirect, "scope": f"{ARM_SCOPE} openid offline_access", **form}
        if verifier is not None:
            fields["code_verifier"] = verifier
        return token_request(service, **fields)

    code, verifier = fresh_code()
    assert_oauth(redeem(code, "not-the-verifier-" + "x" * 40), 400, "invalid_grant", 50148)
    assert_oauth(redeem(code, verifier), 400, "invalid_grant", 70008)  # spent by the failed attempt

    code, verifier = fresh_code()
    first = redeem(code, verifier)
    assert first.status_code == 200 and {"access_token", "id_token", "refresh_token"} <= set(first.json())
    assert_oauth(redeem(code, verifier), 400, "invalid_grant", 70008)

    code, verifier = fresh_code()
    assert_oauth(redeem(code, verifier, redirect_uri=loopback()), 400, "invalid_grant", 500112)
    code, verifier = fresh_code()
    assert_oauth(redeem(code, verifier, client_id="1950a258-227b-4e31-a9cf-717495945fc2"), 400, "invalid_grant",
                 70000)
    code, _ = fresh_code()
    assert_oauth(redeem(code, None), 400, "invalid_grant", 50148)
    assert_oauth(redeem("made-up-code", "v" * 43), 400, "invalid_grant", 70008)

    # plain PKCE, and an expired code (made old by plain SQL)
    params = authorize_params(redirect, code_challenge="p" * 43, code_challenge_method="plain")
    code = code_of(client.sign_in(params, person.upn, PASSWORD), params["state"])
    assert redeem(code, "p" * 43).status_code == 200
    code, verifier = fresh_code()
    with database(service).session() as session:
        session.execute(sa.text("UPDATE authorization_codes SET expires_at = :past"),
                        {"past": utcnow() - timedelta(seconds=1)})
    assert_oauth(redeem(code, verifier), 400, "invalid_grant", 70008)


def test_authorize_refuses_unknown_clients_and_redirect_uris_on_the_page(service, person, admin):
    client = FormClient(service)
    # Never redirected: the page says why.
    for params, aadsts in (
            (authorize_params(loopback(), client_id=str(uuid.uuid4())), 700016),
            (authorize_params("https://evil.example/cb"), 50011),
            (authorize_params("http://evil.example:8080/"), 50011),
    ):
        page = client.authorize(params)
        assert page.status_code == 400 and "Location" not in page.headers, page.text
        assert f"AADSTS{aadsts}" in page_error(page), page.text
    unknown_tenant = client.authorize(authorize_params(loopback()), tenant="no-such-tenant.example")
    assert unknown_tenant.status_code == 400 and "AADSTS90002" in page_error(unknown_tenant)

    # A registered public client: its `publicClient` loopback URI allows any port (as Entra does), nothing else.
    application = admin.create_application(f"signin-native-{tag()}", publicClient={"redirectUris": ["http://localhost"]},
                                           isFallbackPublicClient=True)
    try:
        redirect = loopback()
        params = authorize_params(redirect, client_id=application["appId"])
        code = code_of(client.sign_in(params, person.upn, PASSWORD), params["state"])
        redeemed = token_request(service, grant_type="authorization_code", client_id=application["appId"],
                                 code=code, redirect_uri=redirect)
        assert redeemed.status_code == 200, redeemed.text
        page = client.authorize(authorize_params("http://localhost:1234/other", client_id=application["appId"]))
        assert page.status_code == 400 and "AADSTS50011" in page_error(page)
        # With the session: no form. Errors after validation go to the redirect URI (response_type, PKCE).
        params = authorize_params(redirect, client_id=application["appId"], response_type="token")
        sent = auth_response(client.authorize(params).headers["Location"])
        assert (sent["error"], sent["state"]) == ("unsupported_response_type", params["state"])
        params = authorize_params(redirect, code_challenge="short", code_challenge_method="S256")
        assert auth_response(client.authorize(params).headers["Location"])["error"] == "invalid_request"
        # form_post: an auto-submitting form to the redirect URI, allowed by the CSP's form-action.
        params = authorize_params(redirect, response_mode="form_post")
        posted = client.authorize(params)
        assert posted.status_code == 200 and f'action="{redirect}"' in posted.text
        assert f"form-action 'self' {redirect}" in posted.headers["Content-Security-Policy"]
        assert re.search(r'name="code" value="[^"]+"', posted.text) and params["state"] in posted.text
    finally:
        admin.ok("DELETE", f"/applications/{application['id']}", 204)


def test_sign_out_and_prompt_none(service, person):
    client = FormClient(service)
    redirect = loopback()
    silent = authorize_params(redirect, prompt="none")
    sent = auth_response(client.authorize(silent).headers["Location"])
    assert (sent["error"], sent["state"]) == ("login_required", silent["state"])
    params = authorize_params(redirect)
    code_of(client.sign_in(params, person.upn, PASSWORD), params["state"])
    silent = authorize_params(redirect, prompt="none")
    code_of(client.authorize(silent), silent["state"])
    forced = client.authorize(authorize_params(redirect, prompt="login"))
    assert forced.status_code == 200 and 'id="password"' in forced.text

    # Sign-out: an open redirect is not followed; the service's own origin and loopback are.
    out = client.get(f"/{service.tenant_id}/oauth2/v2.0/logout",
                     params={"post_logout_redirect_uri": "https://evil.example/"})
    assert out.status_code == 200 and "signed out" in out.text
    assert not any(c.name == "__Host-cp-signin" for c in client.session.cookies)
    sent = auth_response(client.authorize(authorize_params(redirect, prompt="none")).headers["Location"])
    assert sent["error"] == "login_required"
    back = client.get(f"/{service.tenant_id}/oauth2/v2.0/logout",
                      params={"post_logout_redirect_uri": f"{service.url}/portal/", "state": "s1"})
    assert back.status_code == 302 and back.headers["Location"] == f"{service.url}/portal/?state=s1"

    # A new password ends the session at once.
    params = authorize_params(redirect)
    code_of(client.sign_in(params, person.upn, PASSWORD), params["state"])
    service.cli_json("user", "reset-password", "--id", person.id, "--password", PASSWORD)
    sent = auth_response(client.authorize(authorize_params(redirect, prompt="none")).headers["Location"])
    assert sent["error"] == "login_required"


def database(service) -> Database:
    return Database(Settings.from_env(service.env).database_url)


def test_device_codes_pending_slow_down_declined_and_expired(service, person):
    def start(client_id: str = AZ_CLIENT_ID) -> requests.Response:
        return requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/devicecode", verify=service.ca,
                             timeout=30, data={"client_id": client_id, "scope": f"{ARM_SCOPE} offline_access"})

    def poll(device_code: str) -> requests.Response:
        return token_request(service, grant_type=DEVICE_GRANT, client_id=AZ_CLIENT_ID, device_code=device_code)

    assert_oauth(start(str(uuid.uuid4())), 400, "unauthorized_client", 700016)
    flow = start().json()
    assert_oauth(poll(flow["device_code"]), 400, "authorization_pending", 70016)
    assert_oauth(poll(flow["device_code"]), 400, "slow_down", 70016)
    assert_oauth(poll("no-such-device-code"), 400, "bad_verification_code", 70018)

    client = FormClient(service)
    page = client.get("/devicelogin")
    assert page.status_code == 200 and 'id="code"' in page.text and 'id="next" type="submit"' in page.text
    csrf = client.csrf(page)
    assert client.post("/devicelogin", data={"code": flow["user_code"], "step": "code"}).status_code == 400
    wrong = client.post("/devicelogin", data={"csrf_token": csrf, "code": "AAAAAAAAA", "step": "code"})
    assert wrong.status_code == 400 and "didn't work" in page_error(wrong)
    form = client.post("/devicelogin", data={"csrf_token": csrf, "code": flow["user_code"], "step": "code"})
    assert 'id="password"' in form.text and 'id="cancel"' in form.text
    declined = client.post("/devicelogin", data={"csrf_token": csrf, "code": flow["user_code"], "step": "signin",
                                                 "decision": "decline"})
    assert declined.status_code == 200 and "declined" in declined.text
    assert_oauth(poll(flow["device_code"]), 400, "authorization_declined", 70000)
    assert_oauth(poll(flow["device_code"]), 400, "bad_verification_code", 70018)

    expiring = start().json()
    with database(service).session() as session:
        session.execute(sa.update(DeviceCode).where(DeviceCode.user_code == expiring["user_code"])
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    gone = client.post("/devicelogin", data={"csrf_token": csrf, "code": expiring["user_code"], "step": "code"})
    assert gone.status_code == 400
    assert_oauth(poll(expiring["device_code"]), 400, "expired_token", 70019)

    # Approved by a sign-in on the page: one token, once.
    flow = start().json()
    signed = client.post("/devicelogin", data={"csrf_token": csrf, "code": flow["user_code"], "step": "signin",
                                               "username": person.upn, "password": PASSWORD})
    assert signed.status_code == 200 and person.upn in signed.text
    tokens = poll(flow["device_code"])
    assert tokens.status_code == 200, tokens.text
    assert jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})["oid"] == person.id
    assert_oauth(poll(flow["device_code"]), 400, "bad_verification_code", 70018)


# -- §4: discovery, the exchange for external issuers, the portal's registration, the README -------------------


def test_discovery_of_an_unknown_tenant_is_400_as_entra_answers(service):
    known = requests.get(f"{service.url}/{service.tenant_id}/v2.0/.well-known/openid-configuration",
                         verify=service.ca, timeout=30).json()
    assert known["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")
    assert known["device_authorization_endpoint"] == f"{service.url}/{service.tenant_id}/oauth2/v2.0/devicecode"
    assert "S256" in known["code_challenge_methods_supported"] and "code" in known["response_types_supported"]
    for tenant in ("organizations", "common", "defaultdirectory.onmicrosoft.local"):
        assert requests.get(f"{service.url}/{tenant}/v2.0/.well-known/openid-configuration", verify=service.ca,
                            timeout=30).status_code == 200
    for tenant in (str(uuid.uuid4()), "nowhere.example"):
        response = requests.get(f"{service.url}/{tenant}/v2.0/.well-known/openid-configuration", verify=service.ca,
                                timeout=30)
        assert_oauth(response, 400, "invalid_tenant", 90002)


def test_portal_application_is_made_once_even_by_two_workers_at_once(two_processes):
    from control_plane.identity.portal_client import NotInitialised, ensure_portal_application
    from tests.support.in_process import owner_headers

    first, second = two_processes
    contexts = [app.extensions["control_plane"] for app in (first, second)]
    with pytest.raises(NotInitialised):
        ensure_portal_application(contexts[0])
    state, _ = owner_headers(first)
    results: list = []
    threads = [threading.Thread(target=lambda c=c: results.append(ensure_portal_application(c))) for c in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1], results
    client_id, secret, tenant_id = results[0]
    assert tenant_id == state["tenantId"] and ensure_portal_application(contexts[1]) == results[0]
    with contexts[0].db.session() as session:
        applications = list(session.scalars(sa.select(Application).where(
            Application.display_name == "Container Registry Portal")))
        assert [(a.app_id, a.display_name, a.web_redirect_uris) for a in applications] == [
            (client_id, "Container Registry Portal", [f"{contexts[0].settings.public_url}/portal/auth/callback"])]
        assert session.scalar(sa.select(ServicePrincipal).where(ServicePrincipal.app_id == client_id))
        object_id = applications[0].object_id
    token = second.test_client().post(f"/{tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": "https://management.azure.com/.default"})
    assert token.status_code == 200, token.get_json()
    # Deleted (through Graph, say): the next start registers it again.
    with contexts[0].db.session() as session:
        identity.delete_application(session, tenant_id, object_id)
    renewed = ensure_portal_application(contexts[1])
    assert renewed[0] != client_id and ensure_portal_application(contexts[0]) == renewed


@pytest.fixture(scope="module", params=selected_backends())
def external(request, tmp_path_factory):
    """A service trusting one test OIDC issuer (tests/test_external_identity.py's) for its first tenant."""
    from tests.test_external_identity import AUDIENCE, OidcIssuer

    with ExitStack() as stack:
        database_url = (stack.enter_context(servers.postgres_database()) if request.param == "postgres-azurite"
                        else None)
        issuer = stack.enter_context(OidcIssuer("/realms/people").running())
        svc = servers.make_service(tmp_path_factory.mktemp(f"signin-ext-{request.param}"), database_url, "local",
                                   {"CONTROL_PLANE_LOCATIONS": "eastus"})
        svc.init = svc.cli_json("init")
        svc.env["CONTROL_PLANE_TRUSTED_ISSUERS"] = json.dumps([
            {"issuer": issuer.issuer, "audience": AUDIENCE, "tenantId": svc.tenant_id}])
        svc.start(workers=1)
        stack.callback(svc.stop)
        yield svc, issuer


def test_exchange_accepts_trusted_external_issuers(external):
    svc, issuer = external
    from azure.mgmt.containerregistry.models import Registry, Sku

    from tests.test_external_identity import acr_for, make_key, owner_credential, rmc_for

    owner = owner_credential(svc, svc.init).get_token("https://management.azure.com/.default").token
    group, name = f"rg-ext-{tag()}", unique_registry_name("ext")
    rmc_for(svc, owner).resource_groups.create_or_update(group, {"location": "eastus"})
    acr_for(svc, owner).registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Basic"))
                                                ).result()
    person, stranger = str(uuid.uuid4()), str(uuid.uuid4())
    scope = f"/subscriptions/{svc.subscription_id}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/" \
            f"registries/{name}"
    assign(svc, scope, "7f951dda-4ed3-4680-a7ca-43fe172d538d", person, "User")  # AcrPull
    host = urlsplit(svc.url).netloc

    def exchange(token: str) -> requests.Response:
        return requests.post(f"{svc.url}/oauth2/exchange", verify=svc.ca, timeout=30, data={
            "grant_type": "access_token", "service": host, "tenant": svc.tenant_id, "access_token": token})

    def pull_token(refresh_token: str) -> list:
        response = requests.post(f"{svc.url}/oauth2/token", verify=svc.ca, timeout=30, data={
            "grant_type": "refresh_token", "service": host, "refresh_token": refresh_token,
            "scope": f"repository:{name}/app:pull,push"})
        assert response.status_code == 200, response.text
        return jwt.decode(response.json()["access_token"], options={"verify_signature": False})["access"]

    granted = exchange(issuer.token(oid=person, name="Pat External"))
    assert granted.status_code == 200, granted.text
    assert pull_token(granted.json()["refresh_token"]) == [
        {"type": "repository", "name": f"{name}/app", "actions": ["pull"]}]
    nothing = exchange(issuer.token(oid=stranger))
    assert nothing.status_code == 200 and pull_token(nothing.json()["refresh_token"])[0]["actions"] == []
    # An external issuer cannot speak for a principal of the built-in directory, nor sign with another key.
    assert exchange(issuer.token(oid=svc.init["objectId"])).status_code == 401
    assert exchange(issuer.token(oid=person, sign_with=make_key("RS256"))).status_code == 401
    assert exchange(issuer.token(oid=person, aud="api://someone-else")).status_code == 401


def test_the_readme_sdk_example_works_after_init_has_run(service):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Worked example: the Azure SDK for Python", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    group, registry = f"rg-readme-{tag()}", unique_registry_name("readme")
    example = example.replace('"rg1"', f'"{group}"').replace('"myregistry1"', f'"{registry}"')
    example += f"\nrmc.resource_groups.begin_delete({group!r}).result()\n"
    env = dict(service.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # `init` has already run (the fixture did, as the README's reader did): the example must still get a secret.
    assert service.cli("init").stdout and json.loads(service.cli("init").stdout)["clientSecret"] is None
    result = subprocess.run([sys.executable, "-c", example], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0].startswith(registry) and len(lines[1]) >= 32, result.stdout
