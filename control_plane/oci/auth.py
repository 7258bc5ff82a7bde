"""Request auth on the data plane (`/v2/…`, and `/acr/v1/…` through the ACR routes): who is calling and whether
they may do what they ask, answered with Docker's Bearer challenge when they may not.

Credentials, as ACR takes them:
* Bearer: an access token of the token service (control_plane/dataplane/tokens.py): signature by one of the
  issuer's live keys, `iss` = the public URL, `aud` = this target's service (the login server, or the public host
  in path style), not expired, and an `access` entry covering (type, name, action). Verified tokens are kept by
  their hash until they expire, so a client sending the same token costs one dictionary look-up per request.
* Basic: the admin user, a service principal's appId + secret, or the null-GUID user with a refresh token —
  the token service's own decisions (control_plane/dataplane/service.py), made afresh on every request.
* None: pull (and the metadata reads and catalog that come with it) when the registry allows anonymous pull.

Anything missing gets 401 with `WWW-Authenticate: Bearer realm="…",service="…",scope="type:name:actions"` (no
spaces after the commas: az splits the header on spaces) and `error="insufficient_scope"` when a token was sent —
never 403, which az takes for a firewall and the SDK does not retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from dataclasses import dataclass

import jwt
from flask import current_app, request
from jwt.algorithms import RSAAlgorithm

from control_plane.content.service import RegistryRef
from control_plane.context import app_context
from control_plane.dataplane import scopes
from control_plane.dataplane import service as logins
from control_plane.dataplane.tokens import REFRESH_GRANT, RegistryTokens
from control_plane.identity.tokens import ALGORITHM, TokenIssuer
from control_plane.oci.http import OciError
from control_plane.registries.models import Registry

VERIFIER_KEY = "control_plane.oci.verifier"
CLOCK_SKEW_SECONDS = 60
TOKEN_CACHE_SIZE = 4096
KEY_REFRESH_SECONDS = 10.0  # how often, at most, an unknown key id makes this process read the keys afresh
UNAUTHORIZED_MESSAGE = "authentication required, visit https://aka.ms/acr/authorization for more information."


@dataclass(frozen=True)
class RegistryTarget:
    """The registry a data-plane request addresses and how: host style (`<name>.<suffix>`, scopes name
    repositories) or path style (the service's own host, scopes name `<registry>/<repository>`)."""

    registry: RegistryRef | None  # None only for the path-style `/v2/` ping, which names no registry
    style: str  # "host" | "path"
    service: str  # the challenge's `service` and the tokens' `aud`
    prefix: str = ""  # path style: "<registry>/", put before repository names in scopes, Locations and bodies

    def scope_name(self, scope_type: str, name: str) -> str:
        return self.prefix + name if scope_type in scopes.REPOSITORY_TYPES else name


@dataclass(frozen=True)
class Caller:
    """Who made an authorised request: the token's `sub`, the Basic user, or "" for anonymous."""

    subject: str
    method: str  # "bearer" | "basic" | "anonymous"


class OciUnauthorized(OciError):
    """401 with the challenge; rendered like every other OCI error."""

    def __init__(self, target: RegistryTarget, scope: str | None = None, insufficient: bool = False,
                 detail: list[dict] | None = None):
        # The realm is the token endpoint on the host the client called (built only for a challenge).
        realm = f"{request.host_url.rstrip('/')}/oauth2/token"
        challenge = f'Bearer realm="{realm}",service="{target.service}"'
        if scope:
            challenge += f',scope="{scope}"'
        if insufficient:
            challenge += ',error="insufficient_scope"'
        super().__init__(401, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE, detail, {"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class _Verified:
    subject: str
    audience: str
    expires: float
    access: list[dict]


class AccessTokenVerifier:
    """Checks the token service's access tokens against the issuer's live keys, remembering verified ones."""

    def __init__(self, issuer: TokenIssuer, public_url: str):
        self._issuer = issuer
        self._issuer_name = public_url
        self._lock = threading.Lock()
        self._verified: dict[bytes, _Verified] = {}
        self._jwks_seen: list | None = None
        self._keys: dict[str, object] = {}
        self._fresh_keys: dict[str, object] = {}
        self._fresh_at = 0.0

    def verify(self, token: str, audience: str) -> _Verified | None:
        """The token's subject and access if it is valid for `audience` now; None otherwise."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        known = self._verified.get(digest)
        now = time.time()
        if known is None:
            known = self._decode(token)
            if known is None:
                return None
            with self._lock:
                if len(self._verified) >= TOKEN_CACHE_SIZE:
                    self._evict(now)
                self._verified[digest] = known
        if known.expires + CLOCK_SKEW_SECONDS < now or known.audience != audience.lower():
            return None
        return known

    def _evict(self, now: float) -> None:
        for key in [k for k, v in self._verified.items() if v.expires + CLOCK_SKEW_SECONDS < now]:
            del self._verified[key]
        while len(self._verified) >= TOKEN_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]

    def _decode(self, token: str) -> _Verified | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        key = self._key(header.get("kid")) if header.get("alg") == ALGORITHM else None
        if key is None:
            return None
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=self._issuer_name,
                                options={"verify_aud": False, "require": ["exp", "iss", "aud"]},
                                leeway=CLOCK_SKEW_SECONDS)
        except jwt.PyJWTError:
            return None
        access, audience = claims.get("access"), claims.get("aud")
        if (claims.get("grant_type") == REFRESH_GRANT or not isinstance(access, list)
                or not isinstance(audience, str)):
            return None
        return _Verified(str(claims.get("sub") or ""), audience.lower(), float(claims["exp"]),
                         [entry for entry in access if isinstance(entry, dict)])

    def _key(self, kid) -> object | None:
        if not isinstance(kid, str):
            return None
        jwks = self._issuer.jwks()["keys"]
        if jwks is not self._jwks_seen:  # the issuer reloaded its keys: parse what is new, forget what is gone
            self._keys = {k["kid"]: self._keys.get(k["kid"]) or RSAAlgorithm.from_jwk(json.dumps(k)) for k in jwks}
            self._fresh_keys = {}
            self._jwks_seen = jwks
        key = self._keys.get(kid) or self._fresh_keys.get(kid)
        if key is None and time.monotonic() - self._fresh_at > KEY_REFRESH_SECONDS:
            # A key another process made (rotation) before this one's issuer cache noticed: read the keys afresh.
            self._fresh_at = time.monotonic()
            self._fresh_keys = {k: private.public_key() for k, private, _ in self._issuer.live_private_keys()}
            key = self._fresh_keys.get(kid)
        return key


def verifier() -> AccessTokenVerifier:
    return current_app.extensions[VERIFIER_KEY]


def _credentials() -> tuple[str, str | tuple[str, str]] | None:
    """("bearer", token) / ("basic", (user, password)) / None without an Authorization header; other schemes and
    malformed headers count as credentials that open nothing ("invalid", "")."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return "bearer", value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "invalid", ""
        username, sep, password = decoded.partition(":")
        return ("basic", (username, password)) if sep else ("invalid", "")
    return "invalid", ""


def _basic_rights(target: RegistryTarget, username: str, password: str) -> tuple[str, frozenset[str]] | None:
    """(subject, rights on the target's registry) for Basic credentials; None when they are wrong."""
    ctx = app_context()
    tokens = RegistryTokens(ctx.issuer, ctx.settings.public_url, ctx.settings.registry_token_lifetime_seconds)
    with ctx.db.session() as session:
        registry = session.get(Registry, target.registry.id) if target.registry is not None else None
        try:
            login = logins.password_login(session, ctx.cipher, tokens,
                                          logins.Service(target.service, registry), username, password)
        except logins.TokenServiceError:
            return None
        return login.subject, (login.rights(session, registry) if registry is not None else frozenset())


def authorize(target: RegistryTarget, scope_type: str, name: str, actions: tuple[str, ...],
              also_challenge: tuple[str, ...] = ()) -> Caller:
    """The caller, if its credentials allow every one of `actions` on (scope_type, name); else OciUnauthorized.

    `name` is the repository inside the target's registry (or `catalog` for the registry scope). `also_challenge`
    adds scopes to the challenge that the request could use but does not need (a mount's source repository), so a
    client doing the token dance asks for them too, as Distribution's challenge makes it.
    """
    scope_name = target.scope_name(scope_type, name)

    def refused(insufficient: bool = False) -> OciUnauthorized:
        scope = " ".join((f"{scope_type}:{scope_name}:{','.join(actions)}", *also_challenge))
        detail = [{"Type": scope_type, "Name": scope_name, "Action": action} for action in actions]
        return OciUnauthorized(target, scope, insufficient=insufficient, detail=detail)

    credentials = _credentials()
    if credentials is None:
        registry = target.registry
        rights = frozenset({scopes.PULL}) if registry is not None and registry.anonymous_pull else frozenset()
        if rights and set(actions) <= set(scopes.allowed_actions(scope_type, name, rights)):
            return Caller(logins.ANONYMOUS_SUBJECT, "anonymous")
        raise refused()
    kind, value = credentials
    if kind == "bearer":
        verified = verifier().verify(value, target.service)
        if verified is not None and all(scopes.covers(verified.access, scope_type, scope_name, action)
                                        for action in actions):
            return Caller(verified.subject, "bearer")
        raise refused(insufficient=True)
    if kind == "basic":
        known = _basic_rights(target, *value)
        if known is not None and set(actions) <= set(scopes.allowed_actions(scope_type, name, known[1])):
            return Caller(known[0], "basic")
    raise refused()


def authenticate(target: RegistryTarget) -> Caller:
    """For the `/v2/` ping: any valid credentials for this target (or anonymous pull) pass; the challenge names no
    scope (a scope with a comma in it crashes az's parser)."""
    credentials = _credentials()
    if credentials is None:
        if target.registry is not None and target.registry.anonymous_pull:
            return Caller(logins.ANONYMOUS_SUBJECT, "anonymous")
        raise OciUnauthorized(target)
    kind, value = credentials
    if kind == "bearer":
        verified = verifier().verify(value, target.service)
        if verified is not None:
            return Caller(verified.subject, "bearer")
        raise OciUnauthorized(target)
    if kind == "basic":
        known = _basic_rights(target, *value)
        if known is not None:
            return Caller(known[0], "basic")
    raise OciUnauthorized(target)


def may(target: RegistryTarget, scope_type: str, name: str, actions: tuple[str, ...]) -> bool:
    """Whether the request's credentials allow the actions, without challenging (a mount's source repository)."""
    try:
        authorize(target, scope_type, name, actions)
    except OciUnauthorized:
        return False
    return True
