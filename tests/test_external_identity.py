"""Tokens of trusted external OIDC issuers (CONTROL_PLANE_TRUSTED_ISSUERS), driven with the real SDKs.

A test-only OIDC issuer runs in this process on loopback plain http (allowed for loopback hosts only), serving its
discovery document and JWKS and signing tokens with keys the test makes. A dedicated service trusts two of them:
`rotating` (found by discovery, mapped to the first tenant, keys refetched at most every second) and `pinned`
(a configured jwksUri, mapped to a second tenant, keys refetched at most every five minutes).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager

import jwt
import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import Registry, Sku
from azure.mgmt.resource.resources import ResourceManagementClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from control_plane.config import Settings, SettingsError
from control_plane.identity.external import ExternalIssuers
from control_plane.identity.tokens import InvalidToken
from tests.conftest import selected_backends, unique_registry_name
from tests.support import servers

AUDIENCE = "api://control-plane-test"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
WORKERS = 2


# -- a test-only OIDC issuer -----------------------------------------------------------------------------------


class OidcIssuer:
    """Discovery document, JWKS and token signing for one issuer URL on http://127.0.0.1; counts every fetch."""

    def __init__(self, path: str):
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}{path}"
        self.jwks_uri = f"{self.issuer}/protocol/openid-connect/certs"
        self._path = path
        self.hits: Counter[str] = Counter()
        self.private: dict[str, tuple[str, object]] = {}  # kid -> (alg, private key)
        self.published: list[str] = []
        self.discovery_issuer = self.issuer
        self.kid = self.rotate("RS256")

    def rotate(self, algorithm: str = "RS256") -> str:
        """A new key, published alone (the old one withdrawn), used for tokens from now on."""
        kid = uuid.uuid4().hex
        self.private[kid] = (algorithm, make_key(algorithm))
        self.published = [kid]
        self.kid = kid
        return kid

    def jwks(self) -> dict:
        keys = []
        for kid in self.published:
            algorithm, private = self.private[kid]
            to_jwk = RSAAlgorithm.to_jwk if algorithm == "RS256" else ECAlgorithm.to_jwk
            keys.append({**json.loads(to_jwk(private.public_key())), "kid": kid, "use": "sig", "alg": algorithm})
        return {"keys": keys}

    def token(self, oid: str | None = None, kid: str | None = None, headers: dict | None = None,
              sign_with: object = None, algorithm: str | None = None, **claims) -> str:
        kid = kid or self.kid
        key_algorithm, private = self.private.get(kid, self.private[self.kid])
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600, "oid": oid,
                "sub": str(uuid.uuid4()), "azp": "external-client", "name": "External Robot", **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, sign_with or private, algorithm=algorithm or key_algorithm,
                          headers={"kid": kid, **(headers or {})})

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path == f"{self._path}/.well-known/openid-configuration":
            self.hits["discovery"] += 1
            body = {"issuer": self.discovery_issuer, "jwks_uri": self.jwks_uri,
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
        elif request.url.split("?")[0] == self.jwks_uri:
            self.hits["jwks"] += 1
            body = self.jwks()
        else:
            return Response("not found", 404)(environ, start_response)
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)


def make_key(algorithm: str):
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


class StaticToken:
    """A TokenCredential that hands the SDK a token minted elsewhere, as a workload-identity token file would."""

    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 600)


# -- the service that trusts them ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=selected_backends())
def deployment(request, tmp_path_factory):
    """init + tenant create first (the tenant ids go into the configuration), then serve with two trusted issuers."""
    with ExitStack() as stack:
        database_url = None
        if request.param == "postgres-azurite":  # PostgreSQL matters here; storage stays local
            database_url = stack.enter_context(servers.postgres_database())
        rotating = stack.enter_context(OidcIssuer("/realms/rotating").running())
        pinned = stack.enter_context(OidcIssuer("/pinned/v2.0").running())
        svc = servers.make_service(tmp_path_factory.mktemp(f"external-{request.param}"), database_url, "local",
                                   {"CONTROL_PLANE_LOCATIONS": "eastus,westeurope"})
        svc.init = svc.cli_json("init")
        second = svc.cli_json("tenant", "create", "--name", "Fabrikam")
        svc.env["CONTROL_PLANE_TRUSTED_ISSUERS"] = json.dumps([
            {"issuer": rotating.issuer, "audience": AUDIENCE, "tenantId": svc.tenant_id.upper(),
             "minKeyRefreshSeconds": 1},
            {"issuer": pinned.issuer, "audience": AUDIENCE, "tenantId": second["tenantId"],
             "jwksUri": pinned.jwks_uri, "minKeyRefreshSeconds": 300},
        ])
        svc.start(workers=WORKERS)
        stack.callback(svc.stop)
        yield {"service": svc, "rotating": rotating, "pinned": pinned, "second": second}


@pytest.fixture(scope="module")
def svc(deployment):
    return deployment["service"]


def kwargs(svc) -> dict:
    return {"base_url": svc.url, "connection_verify": svc.ca, "polling_interval": 0.2}


def owner_credential(svc, init: dict) -> ClientSecretCredential:
    return ClientSecretCredential(init["tenantId"], init["clientId"], init["clientSecret"], authority=svc.url,
                                  disable_instance_discovery=True, connection_verify=svc.ca)


def acr_for(svc, token: str, subscription_id: str | None = None) -> ContainerRegistryManagementClient:
    return ContainerRegistryManagementClient(StaticToken(token), subscription_id or svc.subscription_id, **kwargs(svc))


def rmc_for(svc, token: str, subscription_id: str | None = None) -> ResourceManagementClient:
    return ResourceManagementClient(StaticToken(token), subscription_id or svc.subscription_id, **kwargs(svc))


def refused(call, status: int, code: str) -> str:
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert raised.value.status_code == status, raised.value
    assert raised.value.error.code == code, raised.value
    return raised.value.error.message


@pytest.fixture(scope="module")
def owned(svc):
    """Two groups with one registry each, made by the built-in owner."""
    credential = owner_credential(svc, svc.init)
    rmc = ResourceManagementClient(credential, svc.subscription_id, **kwargs(svc))
    acr = ContainerRegistryManagementClient(credential, svc.subscription_id, **kwargs(svc))
    made = {}
    for label in ("granted", "other"):
        group, registry = f"rg-ext-{label}-{uuid.uuid4().hex[:6]}", unique_registry_name(label)
        rmc.resource_groups.create_or_update(group, {"location": "eastus"})
        acr.registries.begin_create(group, registry, Registry(location="eastus", sku=Sku(name="Basic"))).result()
        made[label] = (group, registry)
    yield made
    for group, _ in made.values():
        rmc.resource_groups.begin_delete(group).result()


# -- end to end ------------------------------------------------------------------------------------------------


def test_external_principal_needs_a_role_then_reads_only_its_group(deployment, svc, owned):
    issuer = deployment["rotating"]
    oid = str(uuid.uuid4())
    acr = acr_for(svc, issuer.token(oid=oid))
    granted_group, granted_registry = owned["granted"]
    other_group, other_registry = owned["other"]

    message = refused(lambda: list(acr.registries.list_by_resource_group(granted_group)), 403, "AuthorizationFailed")
    assert oid in message and "external-client" in message

    owner = owner_credential(svc, svc.init)
    authz = AuthorizationManagementClient(owner, svc.subscription_id, **kwargs(svc))
    scope = f"/subscriptions/{svc.subscription_id}/resourceGroups/{granted_group}"
    reader = f"/subscriptions/{svc.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    # Not in our directory: without principalType the assignment is refused, as Azure does for an unknown id.
    # (The SDK always sends one, 'User' unless told, so this takes a raw request.)
    response = requests.put(
        f"{svc.url}{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        params={"api-version": "2022-04-01"}, json={"properties": {"roleDefinitionId": reader, "principalId": oid}},
        headers={"Authorization": f"Bearer {owner.get_token('https://management.azure.com/.default').token}"},
        verify=svc.ca, timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "PrincipalNotFound"), response.text
    # With it, the external principal is assigned like any other.
    assignment = authz.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=reader, principal_id=oid.upper(), principal_type="ServicePrincipal"))
    assert (assignment.principal_id, assignment.principal_type) == (oid, "ServicePrincipal")

    assert [r.name for r in acr.registries.list_by_resource_group(granted_group)] == [granted_registry]
    assert acr.registries.get(granted_group, granted_registry).name == granted_registry
    assert [r.name for r in acr.registries.list()] == [granted_registry]
    refused(lambda: acr.registries.get(other_group, other_registry), 403, "AuthorizationFailed")
    refused(lambda: list(acr.registries.list_by_resource_group(other_group)), 403, "AuthorizationFailed")
    refused(lambda: acr.registries.begin_create(granted_group, unique_registry_name("denied"), Registry(
        location="eastus", sku=Sku(name="Basic"))), 403, "AuthorizationFailed")
    # The grant follows the principal id, not the token: another principal of the same issuer has none.
    refused(lambda: list(acr_for(svc, issuer.token()).registries.list_by_resource_group(granted_group)), 403,
            "AuthorizationFailed")


def test_external_principal_belongs_to_its_configured_tenant(deployment, svc):
    second, pinned = deployment["second"], deployment["pinned"]
    token = pinned.token(oid=str(uuid.uuid4()), sub="ignored-when-oid-is-there")
    refused(lambda: list(rmc_for(svc, token).resource_groups.list()), 401, "InvalidAuthenticationTokenTenant")
    # In its own tenant it is authenticated, and refused only for want of a role.
    refused(lambda: list(rmc_for(svc, token, second["subscriptionId"]).resource_groups.list()), 403,
            "AuthorizationFailed")


@pytest.mark.parametrize("case", ["wrong audience", "expired", "not yet valid", "unknown key", "wrong key",
                                  "alg none", "HS256", "wrong issuer", "no principal", "built-in principal"])
def test_bad_external_tokens_are_refused_401(deployment, svc, case):
    issuer = deployment["rotating"]
    now = int(time.time())
    stranger = make_key("RS256")
    token = {
        "wrong audience": lambda: issuer.token(aud="https://management.azure.com"),
        "expired": lambda: issuer.token(exp=now - 600, nbf=now - 1200, iat=now - 1200),
        "not yet valid": lambda: issuer.token(nbf=now + 600),
        "unknown key": lambda: issuer.token(kid=uuid.uuid4().hex, sign_with=stranger),
        "wrong key": lambda: issuer.token(sign_with=stranger),
        "alg none": lambda: jwt.encode({"iss": issuer.issuer, "aud": AUDIENCE, "exp": now + 600, "sub": "x"}, None,
                                       algorithm="none", headers={"kid": issuer.kid}),
        "HS256": lambda: issuer.token(sign_with=b"k" * 32, algorithm="HS256"),
        "wrong issuer": lambda: issuer.token(iss=issuer.issuer + "/other"),
        "no principal": lambda: issuer.token(sub=None),
        "built-in principal": lambda: issuer.token(oid=svc.init["objectId"]),
    }[case]()
    code = "ExpiredAuthenticationToken" if case == "expired" else "InvalidAuthenticationToken"
    refused(lambda: list(rmc_for(svc, token).resource_groups.list()), 401, code)


def test_key_rotation_to_es256_keeps_working(deployment, svc):
    issuer = deployment["rotating"]
    group = f"rg-rotation-{uuid.uuid4().hex[:6]}"
    old = issuer.token()
    refused(lambda: rmc_for(svc, old).resource_groups.get(group), 403, "AuthorizationFailed")  # authenticated
    issuer.rotate("ES256")
    time.sleep(1.5)  # past minKeyRefreshSeconds of every worker
    for _ in range(4):  # whichever worker answers meets the new kid and refetches
        refused(lambda: rmc_for(svc, issuer.token()).resource_groups.get(group), 403, "AuthorizationFailed")


def test_unknown_key_ids_do_not_hammer_the_issuer(deployment, svc):
    pinned = deployment["pinned"]
    subscription = deployment["second"]["subscriptionId"]
    for _ in range(2 * WORKERS):  # every worker has fetched the keys once
        refused(lambda: list(rmc_for(svc, pinned.token(), subscription).resource_groups.list()), 403,
                "AuthorizationFailed")
    before = pinned.hits["jwks"]
    stranger = make_key("RS256")
    for _ in range(20):
        token = pinned.token(kid=uuid.uuid4().hex, sign_with=stranger)
        refused(lambda t=token: list(rmc_for(svc, t, subscription).resource_groups.list()), 401,
                "InvalidAuthenticationToken")
    # At most one fetch per worker that had not fetched yet; none at all per made-up kid. jwksUri skips discovery.
    assert pinned.hits["jwks"] - before <= WORKERS
    assert pinned.hits["discovery"] == 0
    assert deployment["rotating"].hits["discovery"] >= 1


# -- the validator in-process ----------------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand, so refresh intervals pass without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trusted(issuer: OidcIssuer, clock: Clock | None = None, **extra) -> ExternalIssuers:
    entry = {"issuer": issuer.issuer, "audience": AUDIENCE, "tenantId": str(uuid.uuid4()), **extra}
    settings = Settings.from_env({"CONTROL_PLANE_TRUSTED_ISSUERS": json.dumps([entry])})
    return ExternalIssuers(settings.trusted_issuers, clock or Clock())


def validate(issuers: ExternalIssuers, token: str):
    issuer = issuers.issuer_of(token)
    assert issuer is not None
    return issuers.validate(token, issuer)


def test_validator_caller_fields_and_rate_limited_refresh():
    clock = Clock()
    with OidcIssuer("/dex").running() as issuer:
        issuers = trusted(issuer, clock, minKeyRefreshSeconds=30)
        oid = str(uuid.uuid4())
        caller = validate(issuers, issuer.token(oid=oid.upper(), sub="someone", azp=None, appid="app-1",
                                               name=None, preferred_username="robot@example.org"))
        assert (caller.object_id, caller.app_id, caller.display_name) == (oid, "app-1", "robot@example.org")
        assert validate(issuers, issuer.token(sub="CiQwOGE4Njg0Yi1kYjg4")).object_id == "CiQwOGE4Njg0Yi1kYjg4"
        assert issuers.issuer_of(issuer.token(iss="https://elsewhere.example")) is None
        assert issuers.issuer_of("not a jwt") is None
        assert issuer.hits == Counter(discovery=1, jwks=1)

        old, stranger = issuer.token(), make_key("RS256")
        for _ in range(10):
            clock.now += 2
            with pytest.raises(InvalidToken, match="unknown key"):
                validate(issuers, issuer.token(kid=uuid.uuid4().hex, sign_with=stranger))
        assert issuer.hits["jwks"] == 1  # 20 s, less than minKeyRefreshSeconds: made-up kids cost no fetch

        issuer.rotate("ES256")
        with pytest.raises(InvalidToken, match="unknown key"):
            validate(issuers, issuer.token())  # still inside the interval
        clock.now += 10
        assert validate(issuers, issuer.token()).tenant_id == issuers.issuer_of(old).config.tenant_id
        assert issuer.hits["jwks"] == 2
        with pytest.raises(InvalidToken, match="unknown key"):
            validate(issuers, old)  # withdrawn from the JWKS, so no longer trusted
        with pytest.raises(InvalidToken, match="does not match its key"):
            validate(issuers, issuer.token(sign_with=stranger, algorithm="RS256"))

        clock.now += 3601  # keys older than an hour are refetched on use, then used as they were
        assert validate(issuers, issuer.token()).object_id
        assert issuer.hits["jwks"] == 3


def test_validator_keeps_old_keys_while_the_issuer_is_down():
    clock = Clock()
    with OidcIssuer("/flaky").running() as issuer:
        issuers = trusted(issuer, clock)
        assert validate(issuers, issuer.token()).object_id
    clock.now += 7200
    assert validate(issuers, issuer.token()).object_id  # the refetch failed; the issuer being down is no revocation


def test_validator_refuses_a_discovery_document_of_another_issuer():
    with OidcIssuer("/realms/x").running() as issuer:
        issuer.discovery_issuer = "https://evil.example/realms/x"
        issuers = trusted(issuer)
        with pytest.raises(InvalidToken, match="unknown key"):
            validate(issuers, issuer.token())
        assert issuer.hits == Counter(discovery=1)


def test_validator_refuses_tokens_of_an_issuer_it_never_reached():
    with OidcIssuer("/gone").running() as issuer:
        token = issuer.token()
    with pytest.raises(InvalidToken, match="unknown key"):
        validate(trusted(issuer), token)


# -- configuration ---------------------------------------------------------------------------------------------


def parse(value) -> Settings:
    raw = value if isinstance(value, str) else json.dumps(value)
    return Settings.from_env({"CONTROL_PLANE_TRUSTED_ISSUERS": raw,
                              "CONTROL_PLANE_PUBLIC_URL": "https://cp.example:8443"})


TENANT = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"


def test_trusted_issuers_configuration_is_parsed_and_normalised(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = parse([
        {"issuer": f"https://login.microsoftonline.com/{TENANT.lower()}/v2.0", "audience": "api://cp",
         "tenantId": TENANT},
        {"issuer": "https://keycloak.example/realms/acme", "audience": "control-plane", "tenantId": TENANT,
         "jwksUri": "https://keycloak.example/realms/acme/protocol/openid-connect/certs", "caBundle": str(ca),
         "minKeyRefreshSeconds": 30},
        {"issuer": "http://localhost:5556/dex", "audience": "cp", "tenantId": TENANT},
        {"issuer": "http://[::1]:5556", "audience": "cp", "tenantId": TENANT},
    ])
    entra, keycloak, dex, ipv6 = settings.trusted_issuers
    assert entra.tenant_id == TENANT.lower() and entra.jwks_uri is None and entra.ca_bundle is None
    assert entra.min_key_refresh_seconds == 10
    assert (keycloak.ca_bundle, keycloak.min_key_refresh_seconds) == (ca.resolve(), 30)
    assert dex.issuer == "http://localhost:5556/dex" and ipv6.issuer == "http://[::1]:5556"
    assert Settings.from_env({}).trusted_issuers == ()


@pytest.mark.parametrize(("value", "complaint"), [
    ("[{", "not valid JSON"),
    ({"issuer": "https://a.example"}, "JSON list"),
    (["https://a.example"], "must be an object"),
    ([{"audience": "a", "tenantId": TENANT}], "issuer is required"),
    ([{"issuer": "https://a.example", "tenantId": TENANT}], "audience is required"),
    ([{"issuer": "https://a.example", "audience": "a"}], "tenantId is required"),
    ([{"issuer": "https://a.example", "audience": "a", "tenantId": "contoso"}], "tenantId must be a tenant id"),
    ([{"issuer": "https://a.example", "audience": "a", "tenantId": TENANT, "jwks": "x"}], "unknown keys"),
    ([{"issuer": "http://idp.example", "audience": "a", "tenantId": TENANT}], "plain http is allowed only"),
    ([{"issuer": "http://10.0.0.1", "audience": "a", "tenantId": TENANT}], "plain http is allowed only"),
    ([{"issuer": "ftp://idp.example", "audience": "a", "tenantId": TENANT}], "absolute https URL"),
    ([{"issuer": "https://idp.example?x=1", "audience": "a", "tenantId": TENANT}], "without query"),
    ([{"issuer": "https://a.example", "audience": "a", "tenantId": TENANT, "jwksUri": "http://a.example/k"}],
     "jwksUri must use https"),
    ([{"issuer": "https://a.example", "audience": "a", "tenantId": TENANT, "caBundle": "/no/such.pem"}],
     "caBundle must be the path"),
    ([{"issuer": "https://a.example", "audience": "a", "tenantId": TENANT, "minKeyRefreshSeconds": 0}],
     "at least 1"),
    ([{"issuer": "https://a.example", "audience": "a", "tenantId": TENANT}] * 2, "listed twice"),
    ([{"issuer": f"https://cp.example:8443/{TENANT}/v2.0", "audience": "a", "tenantId": TENANT}], "own token issuer"),
])
def test_bad_trusted_issuers_configuration_is_refused_at_start(value, complaint):
    with pytest.raises(SettingsError, match="CONTROL_PLANE_TRUSTED_ISSUERS") as raised:
        parse(value)
    assert complaint in str(raised.value)
