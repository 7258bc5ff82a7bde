"""Who may log in to a registry and what they get: the decisions behind `/oauth2/token` and `/oauth2/exchange`.

Every login is decided afresh from the database — admin passwords, role assignments, principals — so regenerating a
password, disabling the admin user, or deleting an assignment or a principal stops new tokens at once (tokens
already issued run out within the access-token lifetime: Distribution only checks signatures).

* the admin user (the registry name, `password` or `password2`) when `adminUserEnabled`: pull, push and delete;
* a service principal (appId + client secret, or a refresh token from the exchange): what its role assignments at
  the registry or any parent scope allow — the `registries/pull/read`, `push/write` and `artifacts/delete`
  actions, which AcrPull, AcrPush, AcrDelete, Reader, Contributor and Owner grant as Azure's roles do;
* nobody (no credentials): pull when `anonymousPullEnabled`, else nothing.

A login with rights gets a token listing the requested actions it holds; one without any gets a token with an empty
access list (the registry then answers `insufficient_scope`), as the Docker token specification says. Wrong
credentials get 401.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.authorization import actions, policy
from control_plane.crypto import Cipher
from control_plane.dataplane import scopes
from control_plane.dataplane.tokens import AccessToken, RegistryTokens
from control_plane.identity import service as identity
from control_plane.identity.errors import OAuthError
from control_plane.identity.models import ServicePrincipal, Subscription
from control_plane.identity.tokens import InvalidToken, TokenIssuer
from control_plane.registries.models import Registry
from control_plane.registries.serialize import login_server
from control_plane.registries.service import DELETING

# The username `az acr login --expose-token` prints: the password is then a refresh token from the exchange.
REFRESH_TOKEN_USERNAME = "00000000-0000-0000-0000-000000000000"
# The audience `az acr login` asks Entra for (any cloud); ARM tokens are accepted too, as ACR does.
ACR_AUDIENCE = "https://containerregistry.azure.net"

RIGHTS = ((scopes.PULL, actions.PULL), (scopes.PUSH, actions.PUSH), (scopes.DELETE, actions.ARTIFACTS_DELETE))
ALL_RIGHTS = frozenset(scopes.REPOSITORY_ACTIONS)
MAX_SERVICE_LENGTH = 300


class TokenServiceError(Exception):
    """A refused token request: status, a Docker-style error code and a message safe to show."""

    status = 400
    code = "INVALID_REQUEST"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unsupported(TokenServiceError):
    code = "UNSUPPORTED"


class InvalidScope(TokenServiceError):
    code = "INVALID_SCOPE"


class Unauthorized(TokenServiceError):
    status = 401
    code = "UNAUTHORIZED"


class UnknownRegistry(TokenServiceError):
    status = 404
    code = "NOT_FOUND"


@dataclass(frozen=True)
class Login:
    """Who logged in (the token's `sub`) and their rights on the registry: a subset of pull, push, delete."""

    subject: str
    rights: frozenset[str]


def required(value: str | None, name: str) -> str:
    if not value:
        raise TokenServiceError(f"The '{name}' parameter is required.")
    return value


def parse_scopes(values: list[str]) -> list[scopes.Scope]:
    try:
        return scopes.parse(values)
    except scopes.ScopeError as exc:
        raise InvalidScope(str(exc)) from None


def find_registry(session: Session, service: str, suffix: str) -> Registry:
    """The registry whose login server is `service` (the name Distribution puts in its challenge)."""
    key, tail = service.strip().lower(), "." + suffix.lower()
    name = key[: -len(tail)] if key.endswith(tail) and len(key) <= MAX_SERVICE_LENGTH else ""
    registry = (session.scalar(sa.select(Registry).where(Registry.name_key == name))
                if name.isalnum() and name.isascii() else None)
    if registry is None or registry.provisioning_state == DELETING:
        raise UnknownRegistry(f"The service '{service[:100]}' is not the login server of any registry.")
    return registry


def _tenant_of(session: Session, registry: Registry) -> str:
    return session.get(Subscription, registry.subscription_id).tenant_id


def principal_rights(session: Session, registry: Registry, object_id: str, tenant_id: str) -> frozenset[str]:
    """What a principal's role assignments (at the registry or any parent scope) let it do on the registry."""
    if tenant_id != _tenant_of(session, registry):
        return frozenset()
    permissions = policy.permissions_of(session, object_id, tenant_id)
    return frozenset(right for right, action in RIGHTS if permissions.allows(action.name, registry.arm_id))


def anonymous(registry: Registry) -> Login:
    return Login("", frozenset({scopes.PULL}) if registry.properties.get("anonymousPullEnabled") else frozenset())


def password_login(session: Session, cipher: Cipher, tokens: RegistryTokens, registry: Registry, service: str,
                   username: str, password: str) -> Login:
    """Basic credentials: the admin user, a service principal's appId and secret, or the refresh-token username."""
    if not username or not password:
        raise Unauthorized("Both a username and a password are required.")
    if username == REFRESH_TOKEN_USERNAME:
        return refresh_token_login(session, tokens, registry, service, password)
    if username.lower() == registry.name_key:
        if registry.properties.get("adminUserEnabled") and any(
                hmac.compare_digest(password.encode(), cipher.decrypt(stored).encode())
                for stored in (registry.admin_password_1, registry.admin_password_2)):
            return Login(registry.name, ALL_RIGHTS)
        raise Unauthorized("Invalid username or password.")
    if identity.is_guid(username.lower()):
        tenant_id = _tenant_of(session, registry)
        try:
            principal = identity.authenticate_client(session, tenant_id, username.lower(), password)
        except OAuthError:
            raise Unauthorized("Invalid username or password.") from None
        return Login(principal.app_id, principal_rights(session, registry, principal.object_id, tenant_id))
    raise Unauthorized("Invalid username or password.")


def refresh_token_login(session: Session, tokens: RegistryTokens, registry: Registry, service: str,
                        refresh_token: str) -> Login:
    try:
        caller = tokens.read_refresh_token(refresh_token, service)
    except InvalidToken as exc:
        raise Unauthorized(f"The refresh token is invalid. {exc}") from None
    principal = session.get(ServicePrincipal, caller.object_id)
    if principal is None:
        raise Unauthorized("The refresh token belongs to a principal that no longer exists.")
    return Login(principal.app_id, principal_rights(session, registry, principal.object_id, principal.tenant_id))


def access_token(tokens: RegistryTokens, login: Login, service: str, requested: list[scopes.Scope]) -> AccessToken:
    return tokens.access_token(login.subject, service, [scopes.grant(s, login.rights) for s in requested])


def exchange(session: Session, issuer: TokenIssuer, tokens: RegistryTokens, registry: Registry, service: str,
             aad_token: str, tenant: str | None, audiences: tuple[str, ...]) -> str:
    """ACR's exchange: an Entra (here: the issuer's) access token for a refresh token bound to one registry."""
    try:
        caller = issuer.validate(aad_token, (ACR_AUDIENCE, *audiences))
    except InvalidToken as exc:
        raise Unauthorized(f"The access token is invalid. {exc}") from None
    if tenant and tenant.lower() != caller.tenant_id:
        raise Unauthorized("The access token was issued by another tenant than the one named.")
    if identity.principal_by_object_id(session, caller.object_id) is None:
        raise Unauthorized("The access token belongs to a principal that no longer exists.")
    return tokens.refresh_token(caller, service)


def canonical_service(registry: Registry, suffix: str) -> str:
    """The login server as ARM shows it: the `aud` of every token for this registry, whatever case was asked."""
    return login_server(registry, suffix)
