"""The token issuer's endpoints (OIDC discovery, token, JWKS) and the tenant-level ARM reads az needs."""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

from flask import Blueprint, g, request

from control_plane.arm import api_versions
from control_plane.arm.http import arm_json, base_url
from control_plane.authorization import actions, policy
from control_plane.authorization.enforce import current_caller, requires, subscription_for_caller
from control_plane.context import app_context
from control_plane.identity import flows, service, signin
from control_plane.identity.errors import OAuthError
from control_plane.identity.models import Subscription
from control_plane.identity.tokens import audience_for_scope

bp = Blueprint("identity", __name__)


# -- the token issuer ----------------------------------------------------------------------------------------


def _oauth_error(error: OAuthError):
    body = {"error": error.error, "error_description": error.description,
            "error_codes": [error.aadsts] if error.aadsts else [], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}
    return arm_json(body, error.status)


def _missing_parameter(name: str) -> OAuthError:
    return OAuthError("invalid_request", f"The request body must contain the following parameter: '{name}'.", 400,
                      aadsts=900144)


def _tenant_segment(tenant: str) -> str:
    """The tenant as a URL path segment: whatever a client put there comes back as a valid URL (a GUID is
    unchanged)."""
    return quote(tenant, safe="")


@bp.route("/<tenant_id>/v2.0/.well-known/openid-configuration", methods=["GET"])
@bp.route("/<tenant_id>/.well-known/openid-configuration", methods=["GET"])
def openid_configuration(tenant_id: str):
    """Entra's discovery document; a tenant that does not exist gets 400 AADSTS90002, as Entra answers it."""
    ctx = app_context()
    host = base_url()
    try:
        flows.tenant_of_segment(ctx.db, tenant_id)
    except OAuthError as error:
        return _oauth_error(OAuthError("invalid_tenant", error.description.partition(": ")[2], 400, error.aadsts))
    tenant = _tenant_segment(tenant_id)
    return arm_json({
        "issuer": ctx.issuer.issuer_for(tenant),
        "authorization_endpoint": f"{host}/{tenant}/oauth2/v2.0/authorize",
        "token_endpoint": f"{host}/{tenant}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{host}/{tenant}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{host}/{tenant}/oauth2/v2.0/logout",
        "jwks_uri": f"{host}/{tenant}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": list(flows.PKCE_METHODS),
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name", "preferred_username", "oid",
                             "tid", "ver"],
        "tenant_region_scope": None,
        "cloud_instance_name": "control-plane",
    })


@bp.route("/<tenant_id>/discovery/v2.0/keys", methods=["GET"])
@bp.route("/discovery/v2.0/keys", methods=["GET"])
def jwks(tenant_id: str | None = None):
    return arm_json(app_context().issuer.jwks())


@bp.route("/common/discovery/instance", methods=["GET"])
def instance_discovery():
    tenant = "common"
    endpoint = request.args.get("authorization_endpoint", "")
    parts = endpoint.split("/")
    if len(parts) > 3 and parts[3]:
        tenant = parts[3]
    return arm_json({
        "tenant_discovery_endpoint": f"{base_url()}/{_tenant_segment(tenant)}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [],
    })


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = ("client_credentials", "password", "refresh_token", "authorization_code", DEVICE_CODE_GRANT)
# Scopes that ask for the sign-in itself (ID token, refresh token), not for a resource.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})


@bp.route("/<tenant_id>/oauth2/v2.0/token", methods=["POST"])
def token(tenant_id: str):
    form = request.form
    try:
        # Each missing or wrong parameter gets Entra's own error and AADSTS code; clients branch on them.
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing_parameter("grant_type")
        if grant_type not in GRANT_TYPES:
            raise OAuthError("unsupported_grant_type", f"The grant type '{grant_type[:64]}' is not supported. Use "
                             f"one of: {', '.join(GRANT_TYPES)}.", 400, aadsts=70003)
        if grant_type == "client_credentials":
            return _client_credentials(tenant_id, form)
        return _user_grant(tenant_id, grant_type, form)
    except OAuthError as error:
        return _oauth_error(error)


def _client_of(form) -> tuple[str, str]:
    """(client_id, client_secret) from the form or HTTP Basic (client_secret_post or client_secret_basic)."""
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    if request.authorization and request.authorization.type == "basic":
        client_id = client_id or request.authorization.username or ""
        client_secret = client_secret or request.authorization.password or ""
    return client_id, client_secret


def _client_credentials(tenant_id: str, form):
    client_id, client_secret = _client_of(form)
    if not client_id:
        raise _missing_parameter("client_id")
    if not client_secret:
        raise OAuthError("invalid_client", "The request body must contain the following parameter: "
                         "'client_assertion' or 'client_secret'.", 401, aadsts=7000218)
    if not form.get("scope", "").strip():
        raise _missing_parameter("scope")
    audience = audience_for_scope(form["scope"])
    if not audience:
        raise OAuthError("invalid_scope", f"The provided value for scope {form['scope'][:200]} is not valid. "
                         "Client credential flows must have a scope value with /.default suffixed to the "
                         "resource identifier (application ID URI).", 400, aadsts=1002012)
    ctx = app_context()
    with ctx.db.reading() as session:
        principal = service.authenticate_client(session, tenant_id.lower(), client_id, client_secret)
    access_token, lifetime = ctx.issuer.issue(principal, audience)
    return arm_json({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                     "access_token": access_token})


def _user_scopes(scope: str) -> tuple[str, str]:
    """(audience, the resource scopes to answer with) for a user's token request. `https://x//.default` and
    `https://x//user_impersonation` are both for `https://x/`; only OIDC scopes (or a bare `User.Read`) ask for
    Graph, which is this service's own URL."""
    resource = [s for s in scope.split() if s.lower() not in OIDC_SCOPES]
    if resource and "://" in resource[0]:
        return resource[0].rsplit("/", 1)[0], " ".join(resource)
    return f"{base_url()}/", " ".join(resource) or f"{base_url()}//.default"


def _user_grant(tenant_id: str, grant_type: str, form):
    """The user grants (password, refresh token, authorization code, device code): a user's access, ID and refresh
    tokens, as MSAL caches them."""
    client_id, client_secret = _client_of(form)
    if not client_id:
        raise _missing_parameter("client_id")
    ctx = app_context()
    settings = ctx.settings
    scope, nonce = form.get("scope", ""), None
    if grant_type == "authorization_code":
        for name in ("code", "redirect_uri"):
            if not form.get(name):
                raise _missing_parameter(name)
        redeemed = flows.redeem_code(ctx.db, tenant_id, form["code"], client_id, form["redirect_uri"],
                                     form.get("code_verifier"), client_secret or None)
        user, nonce = redeemed.user, redeemed.nonce
        scope = scope or redeemed.scope
    elif grant_type == DEVICE_CODE_GRANT:
        device_code = form.get("device_code") or form.get("code")
        if not device_code:
            raise _missing_parameter("device_code")
        user, granted = flows.redeem_device_code(ctx.db, tenant_id, client_id, device_code)
        scope = scope or granted
    elif grant_type == "password":
        for name in ("username", "password"):
            if not form.get(name):
                raise _missing_parameter(name)
        user = signin.sign_in_with_password(
            ctx.db, tenant_id, client_id, form["username"], form["password"], request.remote_addr or "",
            signin.Lockout(settings.signin_lockout_threshold, settings.signin_lockout_seconds))
    else:
        if not form.get("refresh_token"):
            raise _missing_parameter("refresh_token")
        flows.check_refresh_client(ctx.db, client_id, client_secret or None)
        user = signin.refresh(ctx.db, ctx.issuer, tenant_id, client_id, form["refresh_token"])
    audience, scopes = _user_scopes(scope)
    body = ctx.issuer.issue_for_user(user, audience, scopes, nonce)
    if form.get("client_info") == "1":
        body["client_info"] = flows.client_info(user)
    return arm_json(body)


@bp.route("/<tenant_id>/oauth2/v2.0/devicecode", methods=["POST"])
def devicecode(tenant_id: str):
    """The device authorization request (RFC 8628 §3.1) as Entra answers it; the person goes to `/devicelogin`."""
    form = request.form
    try:
        if not form.get("client_id"):
            raise _missing_parameter("client_id")
        if not form.get("scope", "").strip():
            raise _missing_parameter("scope")
        if "\x00" in form["scope"]:
            raise OAuthError("invalid_scope", "The scope holds a NUL character.", 400, aadsts=70011)
        ctx = app_context()
        started = flows.start_device_flow(ctx.db, tenant_id, form["client_id"], form["scope"])
    except OAuthError as error:
        return _oauth_error(error)
    verification_uri = f"{base_url()}/devicelogin"
    return arm_json({
        "user_code": started.user_code, "device_code": started.device_code, "verification_uri": verification_uri,
        "expires_in": started.expires_in, "interval": started.interval,
        "message": f"To sign in, use a web browser to open the page {verification_uri} and enter the code "
                   f"{started.user_code} to authenticate.",
    }, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})


@bp.route("/common/userrealm/<path:username>", methods=["GET"])
def user_realm(username: str):
    """MSAL's user-realm discovery before a password grant: `Managed` sends it on to the token endpoint.

    MSAL asks `https://<authority host>/common/userrealm/...` on port 443 whatever port the authority has, so a
    password sign-in needs this service (or a forward to it) on 443; see the README.
    """
    account_type, domain = signin.user_realm(app_context().db, username)
    body = {"ver": "1.0", "account_type": account_type, "cloud_instance_name": "control-plane",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline"}
    if domain:
        body["domain_name"] = domain
    return arm_json(body)


# -- tenant-level ARM reads ----------------------------------------------------------------------------------


def subscription_to_arm(subscription: Subscription) -> dict:
    return {
        "id": f"/subscriptions/{subscription.id}",
        "subscriptionId": subscription.id,
        "tenantId": subscription.tenant_id,
        "displayName": subscription.display_name,
        "state": subscription.state,
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "tags": {},
    }


@bp.route("/subscriptions", methods=["GET"])
@api_versions.require_api_version(api_versions.SUBSCRIPTIONS)
@requires(actions.SUBSCRIPTION_READ)
def list_subscriptions():
    ctx = app_context()
    with ctx.db.session() as session:
        subscriptions = service.subscriptions_of_tenant(session, current_caller().tenant_id)
        return arm_json({"value": [subscription_to_arm(s) for s in subscriptions
                                   if g.permissions.touches(policy.subscription_scope(s.id))]})


@bp.route("/subscriptions/<subscription_id>", methods=["GET"])
@api_versions.require_api_version(api_versions.SUBSCRIPTIONS)
@requires(actions.SUBSCRIPTION_READ, filtered=True)
def get_subscription(subscription_id: str):
    ctx = app_context()
    with ctx.db.session() as session:
        return arm_json(subscription_to_arm(subscription_for_caller(session, subscription_id)))


@bp.route("/tenants", methods=["GET"])
@api_versions.require_api_version(api_versions.SUBSCRIPTIONS)
@requires(actions.SUBSCRIPTION_READ)
def list_tenants():
    tenant_id = current_caller().tenant_id
    return arm_json({"value": [{"id": f"/tenants/{tenant_id}", "tenantId": tenant_id,
                                "tenantCategory": "Home", "displayName": tenant_id}]})


@bp.route("/subscriptions/<subscription_id>/locations", methods=["GET"])
@api_versions.require_api_version(api_versions.SUBSCRIPTIONS)
@requires(actions.SUBSCRIPTION_READ, filtered=True)
def list_locations(subscription_id: str):
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
    return arm_json({"value": [
        {"id": f"/subscriptions/{subscription.id}/locations/{loc}", "name": loc, "displayName": loc,
         "regionalDisplayName": loc, "type": "Region"}
        for loc in ctx.settings.locations
    ]})


METADATA_LIST_VERSIONS = frozenset({"2019-05-01", "2020-06-01"})


@bp.route("/metadata/endpoints", methods=["GET"])
@api_versions.require_api_version(api_versions.METADATA)
def metadata_endpoints():
    """What `az cloud register` reads to learn every endpoint of this cloud.

    Keys follow the 2022-09-01 document (`portal`, `gallery`, `graph`); az ignores the older `*Endpoint` names.
    2019-05-01 and 2020-06-01 answer, as ARM does, a list of clouds: azure-cli-core's `ARM_CLOUD_METADATA_URL`
    (what Ansible's azure.azcollection resolves a custom cloud through) iterates it.
    """
    ctx = app_context()
    host = base_url()
    cloud = {
        "gallery": f"{host}/",
        "graph": f"{host}/",
        "graphAudience": f"{host}/",
        "microsoftGraphResourceId": f"{host}/",
        "portal": f"{host}/",
        "name": "ControlPlane",
        "authentication": {"loginEndpoint": host, "audiences": ["https://management.core.windows.net/",
                                                                "https://management.azure.com/"],
                           "tenant": "common", "identityProvider": "AAD"},
        "suffixes": {"acrLoginServer": f".{ctx.settings.login_server_suffix}", "storage": "core.windows.net",
                     "keyVaultDns": "vault.azure.net"},
        "resourceManager": f"{host}/",
        "batch": f"{host}/",
        "sqlManagement": f"{host}/",
        "vmImageAliasDoc": f"{host}/",
        "media": f"{host}/",
    }
    return arm_json([cloud] if request.args["api-version"] in METADATA_LIST_VERSIONS else cloud)
