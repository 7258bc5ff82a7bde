"""Who may log in to a registry and what they get: the decisions behind `/oauth2/token`, `/oauth2/exchange` and
HTTP Basic on the data plane itself (control_plane/oci/auth.py).

Every login is decided afresh from the database — admin passwords, role assignments, principals — so regenerating a
password, disabling the admin user, or deleting an assignment or a principal stops new tokens at once (tokens
already issued run out within the access-token lifetime).

* the admin user (the registry name, `password` or `password2`) when `adminUserEnabled`: pull, push and delete on
  that registry;
* a service principal (appId + client secret, or a refresh token from the exchange): what its role assignments at
  the registry or any parent scope allow — the `registries/pull/read`, `push/write` and `artifacts/delete`
  actions, which AcrPull, AcrPush, AcrDelete, Reader, Contributor and Owner grant as Azure's roles do;
* nobody (no credentials): pull when `anonymousPullEnabled`, else nothing.

A `service` is either a registry's login server (host style: every scope names a repository of that registry) or
the service's own public host (path style: a scope's name starts with the registry's name, `myreg/team/app`, so one
token may cover several registries; rights are decided per scope). A login with rights gets a token listing the
requested actions it holds; one without any gets a token with an empty access list (the registry then answers
`insufficient_scope`), as the Docker token specification says. Wrong credentials get 401.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.authorization import actions, policy
from control_plane.crypto import Cipher
from control_plane.dataplane import scopes
from control_plane.dataplane.tokens import AccessToken, RegistryTokens
from control_plane.identity import service as identity
from control_plane.identity.errors import OAuthError
from control_plane.identity.external import ExternalIssuers
from control_plane.identity.models import ServicePrincipal, Subscription
from control_plane.identity.tokens import Caller, InvalidToken, TokenIssuer
from control_plane.registries.models import Registry
from control_plane.registries.serialize import login_server
from control_plane.registries.service import DELETING

# The username `az acr login --expose-token` prints: the password is then a refresh token from the exchange.
REFRESH_TOKEN_USERNAME = "00000000-0000-0000-0000-000000000000"
# The audience `az acr login` asks Entra for (any cloud); ARM tokens are accepted too, as ACR does.
ACR_AUDIENCE = "https://containerregistry.azure.net"

ROLE_ACTIONS = ((scopes.PULL, actions.PULL), (scopes.PUSH, actions.PUSH), (scopes.DELETE, actions.ARTIFACTS_DELETE))
ALL_RIGHTS = frozenset(scopes.RIGHTS)
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
    """Who logged in (the token's `sub`) and how to tell their rights on a registry.

    `admin_of`: the registry id whose admin user this is (all rights there, none elsewhere); `principal`: the
    service principal's (object id, tenant id), whose role assignments decide; neither: anonymous.
    """

    subject: str
    admin_of: str | None = None
    principal: tuple[str, str] | None = None
    _cache: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def anonymous(self) -> bool:
        return self.admin_of is None and self.principal is None

    def rights(self, session: Session, registry: Registry) -> frozenset[str]:
        """A subset of pull, push, delete on the registry (decided once per registry per login)."""
        known = self._cache.get(registry.id)
        if known is None:
            if self.admin_of is not None:
                known = ALL_RIGHTS if registry.id == self.admin_of else frozenset()
            elif self.principal is not None:
                known = principal_rights(session, registry, *self.principal)
            else:
                known = frozenset({scopes.PULL}) if registry.properties.get("anonymousPullEnabled") else frozenset()
            self._cache[registry.id] = known
        return known


ANONYMOUS_SUBJECT = ""


def anonymous() -> Login:
    return Login(ANONYMOUS_SUBJECT)


@dataclass(frozen=True)
class Service:
    """What a token request's `service` names: one registry (its login server), or the path-style public host."""

    audience: str
    registry: Registry | None  # None: path style


def public_host(public_url: str) -> str:
    """The path-style `service`: the public URL's host[:port], what the data plane's own-host challenges name."""
    return urlsplit(public_url).netloc.lower()


def required(value: str | None, name: str) -> str:
    if not value:
        raise TokenServiceError(f"The '{name}' parameter is required.")
    return value


def parse_scopes(values: list[str]) -> list[scopes.Scope]:
    try:
        return scopes.parse(values)
    except scopes.ScopeError as exc:
        raise InvalidScope(str(exc)) from None


def registry_by_name(session: Session, name: str) -> Registry | None:
    """A registry that can be used (any case), None when there is none or it is being deleted."""
    key = name.lower()
    if not key.isalnum() or not key.isascii() or len(key) > 50:
        return None
    registry = session.scalar(sa.select(Registry).where(Registry.name_key == key))
    return None if registry is None or registry.provisioning_state == DELETING else registry


def resolve_service(session: Session, service: str, suffix: str, public_host: str) -> Service:
    """The login server or the public host `service` names (any case); 404 for anything else."""
    key, tail = service.strip().lower(), "." + suffix.lower()
    if key == public_host.lower():
        return Service(public_host.lower(), None)
    name = key[: -len(tail)] if key.endswith(tail) and len(key) <= MAX_SERVICE_LENGTH else ""
    registry = registry_by_name(session, name) if name else None
    if registry is None:
        raise UnknownRegistry(f"The service '{service[:100]}' is not the login server of any registry.")
    return Service(login_server(registry, suffix), registry)


def _tenant_of(session: Session, registry: Registry) -> str:
    return session.get(Subscription, registry.subscription_id).tenant_id


def principal_rights(session: Session, registry: Registry, object_id: str, tenant_id: str) -> frozenset[str]:
    """What a principal's role assignments (at the registry or any parent scope) let it do on the registry."""
    if tenant_id != _tenant_of(session, registry):
        return frozenset()
    permissions = policy.permissions_of(session, object_id, tenant_id)
    return frozenset(right for right, action in ROLE_ACTIONS if permissions.allows(action.name, registry.arm_id))


def password_login(session: Session, cipher: Cipher, tokens: RegistryTokens, target: Service,
                   username: str, password: str) -> Login:
    """Basic credentials: the admin user, a service principal's appId and secret, or the refresh-token username.

    Host style checks them against the registry; path style (no registry) finds the admin user's registry by the
    username and the principal's tenant by its appId.
    """
    if not username or not password:
        raise Unauthorized("Both a username and a password are required.")
    if username == REFRESH_TOKEN_USERNAME:
        return refresh_token_login(session, tokens, target, password)
    if identity.is_guid(username.lower()):
        tenant_id = (_tenant_of(session, target.registry) if target.registry is not None
                     else session.scalar(sa.select(ServicePrincipal.tenant_id)
                                         .where(ServicePrincipal.app_id == username.lower())))
        if tenant_id is None:
            raise Unauthorized("Invalid username or password.")
        try:
            principal = identity.authenticate_client(session, tenant_id, username.lower(), password)
        except OAuthError:
            raise Unauthorized("Invalid username or password.") from None
        return Login(principal.app_id, principal=(principal.object_id, tenant_id))
    registry = target.registry
    if registry is None:
        registry = registry_by_name(session, username)
    if registry is not None and username.lower() == registry.name_key and \
            registry.properties.get("adminUserEnabled") and any(
            hmac.compare_digest(password.encode(), cipher.decrypt(stored).encode())
            for stored in (registry.admin_password_1, registry.admin_password_2)):
        return Login(registry.name, admin_of=registry.id)
    raise Unauthorized("Invalid username or password.")


def refresh_token_login(session: Session, tokens: RegistryTokens, target: Service, refresh_token: str) -> Login:
    try:
        caller, external = tokens.read_refresh_token(refresh_token, target.audience)
    except InvalidToken as exc:
        raise Unauthorized(f"The refresh token is invalid. {exc}") from None
    if external:
        # An external issuer's principal lives in that issuer; its role assignments name its object id.
        if identity.principal_exists(session, caller.object_id):
            raise Unauthorized("The refresh token names a principal of this service's own directory.")
        return Login(caller.display_name or caller.object_id, principal=(caller.object_id, caller.tenant_id))
    principal = identity.directory_caller(session, caller.object_id, caller.tenant_id)
    if principal is None:
        raise Unauthorized("The refresh token belongs to a principal or user that no longer exists or is disabled.")
    # A token's `sub`: the principal's appId, or the user's UPN, as ACR names who pushed.
    subject = principal.app_id if isinstance(principal, ServicePrincipal) else principal.user_principal_name
    return Login(subject, principal=(principal.object_id, principal.tenant_id))


def split_path_style(name: str) -> tuple[str, str] | None:
    """`myreg/team/app` -> ("myreg", "team/app"); None when the name has no repository after the registry."""
    registry, sep, repository = name.partition("/")
    return (registry, repository) if sep and registry and repository else None


def grants(session: Session, login: Login, target: Service, requested: list[scopes.Scope]) -> list[dict]:
    """The token's `access` list: for each requested scope, the actions the login's rights on its registry allow."""
    access = []
    for scope in requested:
        if target.registry is not None:
            access.append(scopes.grant(scope, login.rights(session, target.registry)))
            continue
        # Path style: the registry is the scope name's first segment; the catalog has no registry to name.
        parts = split_path_style(scope.name) if scope.type in scopes.REPOSITORY_TYPES else None
        registry = registry_by_name(session, parts[0]) if parts else None
        rights = login.rights(session, registry) if registry is not None else frozenset()
        access.append(scopes.grant(scope, rights, parts[1] if parts else None))
    return access


def access_token(tokens: RegistryTokens, login: Login, audience: str, access: list[dict]) -> AccessToken:
    return tokens.access_token(login.subject, audience, access)


def exchange_caller(issuer: TokenIssuer, external_issuers: ExternalIssuers, aad_token: str, tenant: str | None,
                    audiences: tuple[str, ...]) -> tuple[Caller, bool]:
    """Who the exchange's Entra access token speaks for, and whether a trusted external issuer (not the built-in
    one) issued it: checked exactly as ARM checks tokens, before any database work (an external issuer's keys may
    need fetching)."""
    external = external_issuers.issuer_of(aad_token)
    try:
        caller = (external_issuers.validate(aad_token, external) if external is not None
                  else issuer.validate(aad_token, (ACR_AUDIENCE, *audiences)))
    except InvalidToken as exc:
        raise Unauthorized(f"The access token is invalid. {exc}") from None
    if tenant and tenant.lower() != caller.tenant_id:
        raise Unauthorized("The access token was issued by another tenant than the one named.")
    return caller, external is not None


def exchange(session: Session, tokens: RegistryTokens, target: Service, caller: Caller, external: bool) -> str:
    """ACR's exchange: the caller's refresh token bound to one service."""
    exists = identity.principal_exists(session, caller.object_id)
    if external and exists:
        # As in ARM: an external issuer cannot speak for (and inherit the grants of) a built-in principal.
        raise Unauthorized("The access token names a principal of this service's own directory; an external issuer "
                           "cannot speak for it.")
    if not external and not exists:
        raise Unauthorized("The access token belongs to a principal or user that no longer exists or is disabled.")
    return tokens.refresh_token(caller, target.audience, external=external)
