"""The token issuer and bearer-token checks, driven by MSAL, azure-identity, PyJWT and raw HTTPS.

Forged tokens that need the service's own signing key (expired, wrong audience, wrong issuer) are signed with it,
read from the service's database, so the claim under test is the only thing wrong with them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import ssl
import time
import uuid

import jwt
import pytest
import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import unique_registry_name

ARM_SCOPES = ("https://management.azure.com/.default", "https://management.core.windows.net//.default")
SUBSCRIPTIONS_VERSION = "2022-12-01"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_arm_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and "Traceback" not in response.text
    return body["error"]


def assert_oauth_error(response: requests.Response, status: int, error: str, aadsts: int | None = None) -> dict:
    """Entra's token-endpoint error shape, which MSAL and azure-identity parse (not the ARM envelope)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert "access_token" not in body and "Traceback" not in response.text
    if aadsts is not None:
        assert body["error_codes"] == [aadsts] and body["error_description"].startswith(f"AADSTS{aadsts}:")
    return body


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_jwt(header: dict, claims: dict) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def token_url(service, tenant: str | None = None) -> str:
    return f"{service.url}/{tenant or service.tenant_id}/oauth2/v2.0/token"


def request_token(service, tenant: str | None = None, **form) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_id": service.init["clientId"],
            "client_secret": service.init["clientSecret"], "scope": ARM_SCOPES[0], **form}
    data = {k: v for k, v in data.items() if v is not None}
    return requests.post(token_url(service, tenant), data=data, verify=service.ca, timeout=30)


def get_subscription(service, token: str | None, subscription_id: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(f"{service.url}/subscriptions/{subscription_id or service.subscription_id}"
                        f"?api-version={SUBSCRIPTIONS_VERSION}", headers=headers, verify=service.ca, timeout=30)


@pytest.fixture
def msal_env(monkeypatch, service):
    """MSAL's requests session reads the CA bundle from the environment, which beats its `verify=`."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", service.ca)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def msal_app(service, client_id: str, secret: str, tenant: str | None = None):
    import msal

    return msal.ConfidentialClientApplication(
        client_id, client_credential=secret, authority=f"{service.init['authority']}/{tenant or service.tenant_id}",
        instance_discovery=False)


@pytest.fixture(scope="module")
def discovery(service) -> dict:
    response = requests.get(f"{service.url}/{service.tenant_id}/v2.0/.well-known/openid-configuration",
                            verify=service.ca, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def verify_with_jwks(service, discovery: dict, token: str, audience: str) -> dict:
    """Checks a token the way a relying party would: key from jwks_uri, issuer from the discovery document."""
    client = jwt.PyJWKClient(discovery["jwks_uri"], ssl_context=ssl.create_default_context(cafile=service.ca))
    key = client.get_signing_key_from_jwt(token)
    bare = audience.rstrip("/")
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=[bare, f"{bare}/"], issuer=discovery["issuer"])


# -- the service's own database: its signing key and a second tenant ---------------------------------------


@pytest.fixture(scope="module")
def service_db(service):
    from control_plane.config import Settings
    from control_plane.db import Database

    settings = Settings.from_env(service.env)
    db = Database(settings.database_url)
    yield settings, db
    db.dispose()


@pytest.fixture(scope="module")
def signing_key(service_db):
    """(kid, private key) of the key the service signs with."""
    from control_plane.crypto import load_cipher
    from control_plane.identity.models import SigningKey

    settings, db = service_db
    with db.session() as session:
        key = session.scalars(sa.select(SigningKey).where(SigningKey.retired_at.is_(None))
                              .order_by(SigningKey.created_at.desc())).first()
        kid, encrypted = key.kid, key.private_key_encrypted
    pem = load_cipher(settings.encryption_key, settings.data_dir).decrypt(encrypted)
    return kid, serialization.load_pem_private_key(pem.encode(), password=None)


@pytest.fixture(scope="module")
def second_tenant(service) -> dict:
    """Another tenant, with its own subscription and an admin principal owning it."""
    created = service.cli_json("tenant", "create", "--name", f"second-{uuid.uuid4().hex[:6]}")
    assert created["tenantId"] != service.tenant_id and created["subscriptionId"] != service.subscription_id
    return created


@pytest.fixture(scope="module")
def real_token(service) -> str:
    response = request_token(service)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def real_claims(real_token) -> dict:
    return jwt.decode(real_token, options={"verify_signature": False})


# -- getting tokens ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("msal_env")
def test_msal_gets_tokens_for_both_arm_scopes(service, discovery):
    app = msal_app(service, service.init["clientId"], service.init["clientSecret"])
    for scope in ARM_SCOPES:
        result = app.acquire_token_for_client(scopes=[scope])
        assert "access_token" in result, result
        assert result["token_type"].lower() == "bearer" and result["expires_in"] > 0
        claims = verify_with_jwks(service, discovery, result["access_token"], scope.removesuffix("/.default"))
        assert (claims["tid"], claims["appid"]) == (service.tenant_id, service.init["clientId"])
        assert claims["oid"] == service.init["objectId"]
        response = get_subscription(service, result["access_token"])
        assert response.status_code == 200, response.text


def test_client_secret_credential_gets_tokens_for_both_scopes(service, credential, discovery):
    for scope in ARM_SCOPES:
        token = credential.get_token(scope)
        assert token.expires_on > time.time() + 60
        verify_with_jwks(service, discovery, token.token, scope.removesuffix("/.default"))
        assert get_subscription(service, token.token).status_code == 200


def test_openid_configuration_and_jwks(service, discovery, real_token):
    tenant = service.tenant_id
    assert discovery["issuer"] == f"{service.url}/{tenant}/v2.0"
    assert discovery["token_endpoint"] == f"{service.url}/{tenant}/oauth2/v2.0/token"
    assert discovery["jwks_uri"].startswith(f"{service.url}/")
    assert discovery["authorization_endpoint"].startswith(f"{service.url}/")

    keys = requests.get(discovery["jwks_uri"], verify=service.ca, timeout=30)
    assert keys.status_code == 200, keys.text
    for key in keys.json()["keys"]:
        assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256") and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "the JWKS must hold public keys only"
    claims = verify_with_jwks(service, discovery, real_token, "https://management.azure.com")
    assert claims["iss"] == discovery["issuer"] and claims["exp"] > time.time()


def test_sp_create_makes_a_principal_that_gets_tokens(service, discovery):
    created = service.cli_json("sp", "create", "--name", f"x-{uuid.uuid4().hex[:6]}")
    assert {"appId", "password", "tenant", "id"} <= set(created)
    assert GUID.match(created["appId"]) and GUID.match(created["id"]) and created["appId"] != created["id"]
    assert created["tenant"] == service.tenant_id and len(created["password"]) >= 32

    response = request_token(service, client_id=created["appId"], client_secret=created["password"],
                             scope=ARM_SCOPES[1])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    claims = verify_with_jwks(service, discovery, body["access_token"], "https://management.core.windows.net/")
    assert (claims["appid"], claims["oid"], claims["tid"]) == (created["appId"], created["id"], service.tenant_id)

    wrong = request_token(service, client_id=created["appId"], client_secret=service.init["clientSecret"])
    assert_oauth_error(wrong, 401, "invalid_client", 7000215)


# -- token endpoint errors (OAuth shape) -------------------------------------------------------------------


def test_wrong_client_secret_is_401_invalid_client(service):
    secret = service.init["clientSecret"]
    for wrong in (secret[:-1] + ("a" if secret[-1] != "a" else "b"), "x" * 40, secret[:3]):
        body = assert_oauth_error(request_token(service, client_secret=wrong), 401, "invalid_client", 7000215)
        assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


@pytest.mark.usefixtures("msal_env")
def test_msal_reports_invalid_client(service):
    result = msal_app(service, service.init["clientId"], "not-the-secret").acquire_token_for_client(
        scopes=[ARM_SCOPES[0]])
    assert result["error"] == "invalid_client" and "access_token" not in result


def test_unknown_client_id_is_400_unauthorized_client(service):
    for client_id in (str(uuid.uuid4()), "not-a-guid", service.init["objectId"]):
        assert_oauth_error(request_token(service, client_id=client_id), 400, "unauthorized_client", 700016)


def test_unknown_tenant_is_400_invalid_request(service):
    for tenant in (str(uuid.uuid4()), "contoso.example"):
        assert_oauth_error(request_token(service, tenant=tenant), 400, "invalid_request", 90002)


def test_unsupported_grant_type_is_400(service):
    # password and refresh_token are users' grants (tests/test_users_groups.py), authorization_code and device_code
    # the sign-in flows' (tests/test_signin_flows.py).
    for grant in ("implicit", "urn:ietf:params:oauth:grant-type:saml1_1-bearer"):
        assert_oauth_error(request_token(service, grant_type=grant), 400, "unsupported_grant_type", 70003)
    assert_oauth_error(request_token(service, grant_type=None), 400, "invalid_request", 900144)


def test_missing_or_invalid_scope_is_400(service):
    assert_oauth_error(request_token(service, scope=None), 400, "invalid_request", 900144)
    assert_oauth_error(request_token(service, scope=""), 400, "invalid_request", 900144)
    for scope in ("https://management.azure.com/user_impersonation", "openid"):
        assert_oauth_error(request_token(service, scope=scope), 400, "invalid_scope", 1002012)


def test_missing_client_credentials(service):
    assert_oauth_error(request_token(service, client_id=None), 400, "invalid_request", 900144)
    assert_oauth_error(request_token(service, client_secret=None), 401, "invalid_client", 7000218)


def test_client_secret_basic_works(service):
    response = requests.post(token_url(service), data={"grant_type": "client_credentials", "scope": ARM_SCOPES[0]},
                             auth=(service.init["clientId"], service.init["clientSecret"]), verify=service.ca,
                             timeout=30)
    assert response.status_code == 200, response.text
    assert get_subscription(service, response.json()["access_token"]).status_code == 200


# -- bearer tokens on ARM ----------------------------------------------------------------------------------


def assert_refused(response: requests.Response, code: str = "InvalidAuthenticationToken") -> None:
    assert_arm_error(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_authorization_header_is_401_with_challenge(service):
    assert_refused(get_subscription(service, None), "AuthenticationFailed")
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "token"):
        response = requests.get(f"{service.url}/subscriptions/{service.subscription_id}"
                                f"?api-version={SUBSCRIPTIONS_VERSION}", headers={"Authorization": header},
                                verify=service.ca, timeout=30)
        assert_refused(response, "AuthenticationFailed")


def test_resigned_real_claims_are_accepted(service, signing_key, real_claims):
    """The control for the forgeries below: the helper's tokens pass when nothing is wrong with them."""
    kid, private = signing_key
    token = jwt.encode(real_claims, private, algorithm="RS256", headers={"kid": kid})
    assert get_subscription(service, token).status_code == 200


def test_garbage_tokens_are_refused(service, real_token):
    header, payload, signature = real_token.split(".")
    for token in ("not-a-jwt", "a.b.c", f"{header}.{payload}", f"{header}.{payload}.{signature[:-4]}AAAA",
                  f"{header}.{b64url(b'{}')}.{signature}", "é" * 10):
        assert_refused(get_subscription(service, token.encode("utf-8").decode("latin-1")))


def test_alg_none_is_refused(service, signing_key, real_claims):
    kid, _ = signing_key
    for alg in ("none", "None", "NONE"):
        assert_refused(get_subscription(service, unsigned_jwt({"alg": alg, "typ": "JWT", "kid": kid}, real_claims)
                                        + "."))


def test_token_signed_with_another_rsa_key_is_refused(service, signing_key, real_claims):
    kid, _ = signing_key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for headers in ({"kid": kid}, {"kid": uuid.uuid4().hex}, {}):
        assert_refused(get_subscription(service, jwt.encode(real_claims, other, algorithm="RS256", headers=headers)))


def test_hs256_signed_with_the_public_key_is_refused(service, signing_key, real_claims):
    kid, private = signing_key
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = unsigned_jwt({"alg": "HS256", "typ": "JWT", "kid": kid}, real_claims)
    signature = b64url(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    assert_refused(get_subscription(service, f"{signing_input}.{signature}"))


def test_odd_headers_are_refused(service, signing_key, real_claims):
    kid, _ = signing_key
    for header in ({"alg": "RS256", "kid": [kid]}, {"alg": "RS256", "kid": {"k": kid}}, {"alg": ["RS256"]},
                   {"alg": "RS256", "kid": kid, "crit": ["exp"]}):
        assert_refused(get_subscription(service, unsigned_jwt(header, real_claims) + ".c2ln"))


def forge(signing_key, claims: dict, **changes) -> str:
    kid, private = signing_key
    forged = {**claims, **changes}
    return jwt.encode({k: v for k, v in forged.items() if v is not None}, private, algorithm="RS256",
                      headers={"kid": kid})


def test_expired_token_is_refused(service, signing_key, real_claims):
    now = int(time.time())
    token = forge(signing_key, real_claims, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert_refused(get_subscription(service, token), "ExpiredAuthenticationToken")


def test_not_yet_valid_and_claimless_tokens_are_refused(service, signing_key, real_claims):
    now = int(time.time())
    assert_refused(get_subscription(service, forge(signing_key, real_claims, nbf=now + 3600)))
    for missing in ("exp", "iss", "aud", "tid", "oid"):
        assert_refused(get_subscription(service, forge(signing_key, real_claims, **{missing: None})))
    assert_refused(get_subscription(service, forge(signing_key, real_claims, exp="tomorrow")))
    assert_refused(get_subscription(service, forge(signing_key, real_claims, oid=str(uuid.uuid4()))))


def test_wrong_audience_is_refused(service, signing_key, real_claims):
    for audience in ("https://graph.microsoft.com", "https://management.azure.com.evil.example",
                     ["https://vault.azure.net"], "", "https://management.azure.com/extra"):
        assert_refused(get_subscription(service, forge(signing_key, real_claims, aud=audience)))


def test_wrong_issuer_is_refused(service, signing_key, real_claims):
    tenant = real_claims["tid"]
    for issuer in (f"https://login.microsoftonline.com/{tenant}/v2.0", f"{service.url}/{uuid.uuid4()}/v2.0",
                   f"https://sts.windows.net/{tenant}/", f"{service.url}/{tenant}/v2.0/", ""):
        assert_refused(get_subscription(service, forge(signing_key, real_claims, iss=issuer)))


def test_token_of_another_tenant_cannot_open_this_tenants_subscription(service, arm, group, second_tenant):
    other = second_tenant
    response = request_token(service, tenant=other["tenantId"], client_id=other["clientId"],
                             client_secret=other["clientSecret"])
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["tid"] == other["tenantId"]

    assert_refused(get_subscription(service, token), "InvalidAuthenticationTokenTenant")
    assert get_subscription(service, token, other["subscriptionId"]).status_code == 200
    assert_refused(get_subscription(service, request_token(service).json()["access_token"], other["subscriptionId"]),
                   "InvalidAuthenticationTokenTenant")
    name = unique_registry_name()
    path = f"{arm.registry_path(group, name)}?api-version=2025-11-01"
    put = requests.put(f"{service.url}{path}", json={"location": "eastus", "sku": {"name": "Basic"}},
                       headers={"Authorization": f"Bearer {token}"}, verify=service.ca, timeout=30)
    assert_refused(put, "InvalidAuthenticationTokenTenant")
    assert_arm_error(arm.request("GET", path), 404, "ResourceNotFound")

    listed = requests.get(f"{service.url}/subscriptions?api-version={SUBSCRIPTIONS_VERSION}",
                          headers={"Authorization": f"Bearer {token}"}, verify=service.ca, timeout=30)
    assert listed.status_code == 200, listed.text
    assert [s["subscriptionId"] for s in listed.json()["value"]] == [other["subscriptionId"]]


def test_client_of_one_tenant_cannot_get_a_token_from_another(service, second_tenant):
    assert_oauth_error(request_token(service, tenant=second_tenant["tenantId"]), 400, "unauthorized_client", 700016)
    assert_oauth_error(request_token(service, client_id=second_tenant["clientId"],
                                     client_secret=second_tenant["clientSecret"]), 400, "unauthorized_client",
                       700016)
