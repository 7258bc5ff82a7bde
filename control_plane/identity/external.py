"""Access tokens of trusted external OIDC issuers (Entra ID, Keycloak, Dex), listed in CONTROL_PLANE_TRUSTED_ISSUERS.

Each issuer's signing keys come from its JWKS, found through `{issuer}/.well-known/openid-configuration` unless a
`jwksUri` is configured. Keys are cached per process; a token naming an unknown key id (the issuer rotated its keys)
triggers a refetch, but at most once per `minKeyRefreshSeconds` per issuer, so tokens with made-up key ids cannot
make us hammer the issuer. Keys older than KEY_MAX_AGE_SECONDS are refetched on use, so a key the issuer withdrew
stops verifying; if that refetch fails, the keys we have keep working (the issuer being down is not a revocation).

Only http(s) URLs passing config.check_issuer_url are ever fetched (https, or plain http on a loopback host), and
redirects are not followed, so a discovery document cannot send us to an http or unexpected host.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import requests

from control_plane.config import SettingsError, TrustedIssuer, check_issuer_url
from control_plane.identity.tokens import CLOCK_SKEW_SECONDS, Caller, InvalidToken, normalise_audience

log = logging.getLogger("control_plane.identity.external")

# Asymmetric algorithms only: `none` and HS* (a shared secret the issuer's public JWKS could never hold) are refused.
ALGORITHMS = ("RS256", "ES256")
KEY_MAX_AGE_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 10
MAX_DOCUMENT_BYTES = 1024 * 1024


class FetchError(Exception):
    """The issuer's discovery document or JWKS could not be fetched or read."""


@dataclass
class _Keys:
    by_kid: dict[str, jwt.PyJWK]
    fetched_at: float


class IssuerKeys:
    """One trusted issuer's signing keys, fetched lazily and refreshed under the rate limit."""

    def __init__(self, config: TrustedIssuer, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock  # injectable so tests can step past the refresh interval without sleeping
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._keys: _Keys | None = None
        self._last_attempt: float | None = None

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, refetching the JWKS when the id is unknown or the keys are old (rate-limited).

        A known key never waits for a fetch: while another thread refetches, it is used as it is; only a token
        naming an unknown key waits, since the fetch in progress may bring its key.
        """
        keys = self._keys
        if keys is not None and kid in keys.by_kid:
            if self._clock() - keys.fetched_at <= KEY_MAX_AGE_SECONDS or not self._lock.acquire(blocking=False):
                return keys.by_kid[kid]
        else:
            self._lock.acquire()
        try:
            keys, now = self._keys, self._clock()
            current = keys is not None and kid in keys.by_kid and now - keys.fetched_at <= KEY_MAX_AGE_SECONDS
            if not current and self._may_fetch(now):
                self._refresh(now)
            return self._keys.by_kid.get(kid) if self._keys else None
        finally:
            self._lock.release()

    def _may_fetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.config.min_key_refresh_seconds

    def _refresh(self, now: float) -> None:
        self._last_attempt = now
        try:
            self._keys = _Keys(self._fetch_keys(), self._clock())
        except FetchError as exc:
            log.warning("could not refresh the signing keys of trusted issuer %s: %s", self.config.issuer, exc)

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        jwks_uri = self.config.jwks_uri or self._discover_jwks_uri()
        document = self._get_json(jwks_uri)
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise FetchError(f"{jwks_uri} is not a JWKS (no 'keys' list)")
        usable: dict[str, jwt.PyJWK] = {}
        for jwk in keys:
            key = _signing_key(jwk)
            if key is not None:
                usable[jwk["kid"]] = key
        return usable

    def _discover_jwks_uri(self) -> str:
        # OIDC Discovery 1.0 §4: drop a trailing '/' of the issuer before appending the well-known path.
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url)
        if not isinstance(document, dict):
            raise FetchError(f"{url} is not a JSON object")
        # §4.3: the document must name the issuer we asked about, or its keys are not that issuer's.
        if document.get("issuer") != self.config.issuer:
            raise FetchError(f"{url} names issuer {document.get('issuer')!r}, not {self.config.issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError(f"{url} has no jwks_uri")
        try:
            check_issuer_url("jwks_uri", jwks_uri)
        except SettingsError as exc:
            raise FetchError(str(exc)) from None
        return jwks_uri

    def _get_json(self, url: str) -> object:
        verify: bool | str = str(self.config.ca_bundle) if self.config.ca_bundle else True
        try:
            with self._session.get(url, timeout=FETCH_TIMEOUT_SECONDS, verify=verify, allow_redirects=False,
                                   stream=True, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise FetchError(f"{url} answered {response.status_code}")
                body = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise FetchError(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise FetchError(f"{url} is not JSON") from None


def _signing_key(jwk: object) -> jwt.PyJWK | None:
    """A JWKS entry we may verify with: has a kid, is for signatures, and is an RS256 or ES256 key."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("use", "sig") != "sig":
        return None
    if jwk.get("kty") not in ("RSA", "EC"):
        return None
    try:
        key = jwt.PyJWK(jwk)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return key if key.algorithm_name in ALGORITHMS else None


class ExternalIssuers:
    """Routes a token to its trusted issuer by its (unverified) `iss`, then validates it completely."""

    def __init__(self, configs: tuple[TrustedIssuer, ...], clock: Callable[[], float] = time.monotonic):
        self._issuers = {c.issuer: IssuerKeys(c, clock) for c in configs}

    def issuer_of(self, token: str) -> IssuerKeys | None:
        """The trusted issuer the token claims to come from; None for anything else (the built-in issuer's)."""
        if not self._issuers:
            return None
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return self._issuers.get(issuer) if isinstance(issuer, str) else None

    def validate(self, token: str, issuer: IssuerKeys) -> Caller:
        config = issuer.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The access token is not a well-formed JWT.") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken("The access token's signing algorithm is not accepted.")
        kid = header.get("kid")
        key = issuer.key(kid) if isinstance(kid, str) and kid else None
        if key is None:
            raise InvalidToken("The access token is signed with an unknown key.")
        if key.algorithm_name != algorithm:
            raise InvalidToken("The access token's signing algorithm does not match its key.")
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], issuer=config.issuer, leeway=CLOCK_SKEW_SECONDS,
                                options={"verify_aud": False, "require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired.", code="ExpiredAuthenticationToken") from None
        except jwt.PyJWTError:
            raise InvalidToken("The access token's signature or claims are invalid.") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if normalise_audience(config.audience) not in {normalise_audience(str(a)) for a in audiences}:
            raise InvalidToken("The access token has an invalid audience.")
        principal = claims.get("oid") or claims.get("sub")
        if not isinstance(principal, str) or not principal:
            raise InvalidToken("The access token names no principal (no 'oid' or 'sub' claim).")
        return Caller(tenant_id=config.tenant_id, object_id=_canonical_id(principal),
                      app_id=_first_string(claims, "azp", "appid", "client_id"),
                      display_name=_first_string(claims, "name", "preferred_username"))


def _canonical_id(value: str) -> str:
    """GUIDs in lower case, as role assignments store principal ids; anything else (Dex's subjects) as it is."""
    try:
        return str(uuid.UUID(value)) if len(value) == 36 else value
    except ValueError:
        return value


def _first_string(claims: dict, *names: str) -> str:
    return next((str(claims[n]) for n in names if isinstance(claims.get(n), str) and claims[n]), "")
