"""The token issuer: RS256 JWTs signed with keys kept (encrypted) in the database, and their validation.

Keys are shared through the database so every worker and replica signs and verifies alike; each process caches
them briefly and reloads when it meets a key id it does not know.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from control_plane.crypto import Cipher
from control_plane.db import Database, utcnow
from control_plane.identity.models import ServicePrincipal, SigningKey

ALGORITHM = "RS256"
KEY_CACHE_SECONDS = 60
CLOCK_SKEW_SECONDS = 60
# Tokens this process has fully validated, by their text: a client sends the same token for its whole lifetime.
VALIDATED_CACHE_SIZE = 1024


class InvalidToken(Exception):
    """The bearer token is not one this service accepts; the message says why (never the token).

    `code` is the ARM error code: clients tell an expired token (get a new one) from a bad one by it.
    """

    def __init__(self, message: str, code: str = "InvalidAuthenticationToken"):
        super().__init__(message)
        self.code = code


USER_TYPE = "User"
# A refresh token's audience: no resource's, so no route accepts one as an access token.
REFRESH_AUDIENCE = "urn:control-plane:refresh-token"
REFRESH_TOKEN_USE = "refresh"
REFRESH_LIFETIME_SECONDS = 90 * 24 * 3600  # Entra's default for refresh tokens
USER_SCOPE = "user_impersonation"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the validated token says. For a user, `app_id` is the client it signed in with and
    `display_name` its UPN."""

    tenant_id: str
    object_id: str
    app_id: str
    display_name: str
    principal_type: str = "ServicePrincipal"

    @property
    def client_name(self) -> str:
        """How Azure's messages and systemData name the caller: a user by UPN, an application by its appId."""
        return self.display_name if self.principal_type == "User" else self.app_id


@dataclass(frozen=True)
class UserSession:
    """What user tokens say about a signed-in user and the client acting for them."""

    object_id: str
    tenant_id: str
    user_principal_name: str
    display_name: str
    security_stamp: str
    client_id: str


@dataclass(frozen=True)
class RefreshGrant:
    """A valid refresh token's content: whom it was issued to, through which client, under which security stamp."""

    object_id: str
    tenant_id: str
    client_id: str
    security_stamp: str


@dataclass(frozen=True)
class _Validated:
    """What a full validation established about a token; only the time- and key-dependent parts are re-checked."""

    caller: Caller
    kid: str
    expires: float
    audiences: frozenset[str]


def audience_for_scope(scope: str) -> str:
    """`https://management.core.windows.net//.default` -> `https://management.core.windows.net/`.

    "" for anything else: the client-credentials flow only grants `<resource>/.default`, as Entra does.
    """
    first = scope.split()[0] if scope.split() else ""
    return first[: -len("/.default")] if first.endswith("/.default") else ""


def normalise_audience(audience: str) -> str:
    return audience.rstrip("/").lower()


class TokenIssuer:
    def __init__(self, db: Database, cipher: Cipher, public_url: str, lifetime_seconds: int):
        self._db = db
        self._cipher = cipher
        self.public_url = public_url
        self.lifetime_seconds = lifetime_seconds
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._signing: tuple[str, object] | None = None
        self._public: dict[str, object] = {}
        self._retires: dict[str, datetime | None] = {}
        self._jwks: list[dict] = []
        self._private: dict[str, object] = {}  # parsed private keys by kid: parsing one costs ~30 ms
        self._validated: dict[str, _Validated] = {}
        self._validated_lock = threading.Lock()

    def issuer_for(self, tenant_id: str) -> str:
        return f"{self.public_url}/{tenant_id}/v2.0"

    # -- keys ------------------------------------------------------------------------------------------------

    def ensure_signing_key(self) -> None:
        """Creates the first signing key; called once by `serve`/`init` before workers start."""
        with self._db.session() as session:
            if session.scalar(sa.select(SigningKey).where(SigningKey.retired_at.is_(None)).limit(1)) is None:
                session.add(self._new_key())
        self._loaded_at = 0.0

    def rotate(self, grace_seconds: float | None = None) -> str:
        """Adds a new signing key, which signs from now on (other processes switch within KEY_CACHE_SECONDS).

        With `grace_seconds`, every older key is retired that long from now: until then tokens already handed out
        keep verifying, after that they are refused. Keys whose retirement has passed are deleted: nothing may
        use them any more, and a private key kept for nothing is only a liability.
        """
        key = self._new_key()
        with self._db.session() as session:
            session.add(key)
            session.flush()
            if grace_seconds is not None:
                now = utcnow()
                retire_at = now + timedelta(seconds=max(0.0, grace_seconds))
                # Only keys older than this one: two rotations at once never retire each other's new key.
                session.execute(
                    sa.update(SigningKey)
                    .where(SigningKey.kid != key.kid, SigningKey.created_at <= key.created_at,
                           sa.or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > retire_at))
                    .values(retired_at=retire_at)
                    .execution_options(synchronize_session=False)
                )
                session.execute(sa.delete(SigningKey).where(SigningKey.retired_at <= now)
                                .execution_options(synchronize_session=False))
        self._loaded_at = 0.0
        return key.kid

    def key_status(self) -> list[dict]:
        """Every stored key, newest first, read afresh: kid, createdAt, retiresAt, and which one signs."""
        with self._db.session() as session:
            keys = list(session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at.desc())))
        now = utcnow()
        live = [k for k in keys if k.retired_at is None or k.retired_at > now]
        return [{"kid": k.kid, "createdAt": k.created_at.isoformat(),
                 "retiresAt": k.retired_at.isoformat() if k.retired_at else None,
                 "state": "signing" if live and k is live[0] else "verifying" if k in live else "retired"}
                for k in keys]

    def _new_key(self) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = uuid.uuid4().hex
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
        return SigningKey(kid=kid, private_key_encrypted=self._cipher.encrypt(pem), public_jwk=jwk)

    def _fresh(self) -> bool:
        return (time.monotonic() - self._loaded_at < KEY_CACHE_SECONDS and self._signing is not None
                and not self._retired(self._signing[0]))

    def _load(self, force: bool = False) -> None:
        if not force and self._fresh():
            return
        with self._lock:
            if not force and self._fresh():  # another thread reloaded while this one waited for the lock
                return
            with self._db.session() as session:
                keys = list(session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at.desc())))
            now = utcnow()
            live = [k for k in keys if k.retired_at is None or k.retired_at > now]
            if not live:
                raise RuntimeError("no token-signing key: run `control-plane init` or `control-plane serve`")
            newest = live[0]
            private = self._private.get(newest.kid) or serialization.load_pem_private_key(
                self._cipher.decrypt(newest.private_key_encrypted).encode(), password=None
            )
            self._private = {newest.kid: private}
            self._signing = (newest.kid, private)
            self._public = {k.kid: self._public.get(k.kid) or RSAAlgorithm.from_jwk(json.dumps(k.public_jwk))
                            for k in live}
            self._retires = {k.kid: k.retired_at for k in live}
            self._jwks = [k.public_jwk for k in live]
            self._loaded_at = time.monotonic()

    def _retired(self, kid: str) -> bool:
        """Retirement is checked per use, not per load: a cached key stops verifying the moment it retires."""
        retires = self._retires.get(kid)
        return retires is not None and retires <= utcnow()

    def jwks(self) -> dict:
        self._load()
        return {"keys": self._jwks}

    def signing_key(self) -> tuple[str, object]:
        """(kid, private key) that signs new tokens: for token formats this class does not build (the registry's)."""
        self._load()
        return self._signing

    def live_private_keys(self) -> list[tuple[str, object, datetime]]:
        """Every live key as (kid, private key, created_at), newest first, read afresh from the database.

        For consumers that need more than the JWKS: the registry's certificate bundle is self-signed by each key.
        """
        with self._db.session() as session:
            keys = list(session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at.desc())))
        now = utcnow()
        return [(k.kid, serialization.load_pem_private_key(self._cipher.decrypt(k.private_key_encrypted).encode(),
                                                            password=None), k.created_at)
                for k in keys if k.retired_at is None or k.retired_at > now]

    # -- issue and validate ----------------------------------------------------------------------------------

    def issue(self, principal: ServicePrincipal, audience: str) -> tuple[str, int]:
        self._load()
        kid, private = self._signing
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": self.issuer_for(principal.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_seconds,
            "sub": principal.object_id,
            "oid": principal.object_id,
            "tid": principal.tenant_id,
            "appid": principal.app_id,
            "azp": principal.app_id,
            "app_displayname": principal.display_name,
            "idtyp": "app",
            "ver": "2.0",
            "uti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})
        return token, self.lifetime_seconds

    def issue_for_user(self, user: UserSession, audience: str, scopes: str,
                       nonce: str | None = None) -> dict[str, str | int]:
        """An access token for `audience`, an ID token for the client and a refresh token: the token response's
        fields (without `client_info`), as Entra answers a user's sign-in. `nonce`: the authorize request's, which
        the ID token must repeat (OIDC Core §3.1.3.7)."""
        self._load()
        kid, private = self._signing
        now = int(time.time())
        common = {"iss": self.issuer_for(user.tenant_id), "iat": now, "nbf": now, "sub": user.object_id,
                  "oid": user.object_id, "tid": user.tenant_id}
        access = {**common, "aud": audience, "exp": now + self.lifetime_seconds, "appid": user.client_id,
                  "azp": user.client_id, "name": user.display_name, "upn": user.user_principal_name,
                  "unique_name": user.user_principal_name, "scp": USER_SCOPE, "idtyp": "user", "ver": "2.0",
                  "uti": uuid.uuid4().hex}
        # MSAL reads `preferred_username` and `tid` of the ID token; az names the account by them.
        identity = {**common, "aud": user.client_id, "exp": now + self.lifetime_seconds, "ver": "2.0",
                    "name": user.display_name, "preferred_username": user.user_principal_name}
        if nonce:
            identity["nonce"] = nonce
        refresh = {**common, "aud": REFRESH_AUDIENCE, "exp": now + REFRESH_LIFETIME_SECONDS, "azp": user.client_id,
                   "token_use": REFRESH_TOKEN_USE, "stamp": user.security_stamp, "jti": uuid.uuid4().hex}
        headers = {"kid": kid, "typ": "JWT"}
        return {"token_type": "Bearer", "scope": scopes, "expires_in": self.lifetime_seconds,
                "ext_expires_in": self.lifetime_seconds,
                "access_token": jwt.encode(access, private, algorithm=ALGORITHM, headers=headers),
                "refresh_token": jwt.encode(refresh, private, algorithm=ALGORITHM, headers=headers),
                "id_token": jwt.encode(identity, private, algorithm=ALGORITHM, headers=headers)}

    def read_refresh_token(self, token: str) -> RefreshGrant:
        """A refresh token this issuer made and that has not expired (InvalidToken otherwise); whether its user may
        still use it is the caller's question."""
        claims, _ = self._verified_claims(token, require=["exp", "iss", "aud", "tid", "oid", "azp", "stamp"])
        if claims.get("token_use") != REFRESH_TOKEN_USE or claims["aud"] != REFRESH_AUDIENCE:
            raise InvalidToken("The token is not a refresh token.")
        return RefreshGrant(str(claims["oid"]), str(claims["tid"]), str(claims["azp"]), str(claims["stamp"]))

    def _verified_claims(self, token: str, require: list[str]) -> tuple[dict, str]:
        """The claims of a token signed by a live key of this issuer, unexpired, with its own `iss`; and the key id."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The access token is not a well-formed JWT.") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("The access token's signing algorithm is not accepted.")
        kid = header.get("kid")
        self._load()
        if kid not in self._public:
            self._load(force=True)
        key = self._public.get(kid)
        if key is None or self._retired(kid):
            raise InvalidToken("The access token is signed with an unknown key.")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"verify_aud": False, "require": require},
                                leeway=CLOCK_SKEW_SECONDS)
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired.", code="ExpiredAuthenticationToken") from None
        except jwt.PyJWTError:
            raise InvalidToken("The access token's signature or claims are invalid.") from None
        if claims["iss"] != self.issuer_for(str(claims["tid"])):
            raise InvalidToken("The access token's issuer is not valid.")
        return claims, kid

    def validate(self, token: str, accepted_audiences: tuple[str, ...]) -> Caller:
        accepted = {normalise_audience(a) for a in accepted_audiences}
        known = self._validated.get(token)
        if known is not None and self._still_valid(known, accepted):
            return known.caller
        claims, kid = self._verified_claims(token, require=["exp", "iss", "aud", "tid", "oid"])
        if claims.get("token_use") == REFRESH_TOKEN_USE:
            raise InvalidToken("A refresh token is not an access token.")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not any(normalise_audience(str(a)) in accepted for a in audiences):
            raise InvalidToken("The access token has an invalid audience.")
        app_id = str(claims.get("appid") or claims.get("azp") or "")
        if claims.get("idtyp") == "user":
            caller = Caller(tenant_id=str(claims["tid"]), object_id=str(claims["oid"]), app_id=app_id,
                            display_name=str(claims.get("upn") or claims["oid"]), principal_type=USER_TYPE)
        else:
            caller = Caller(tenant_id=str(claims["tid"]), object_id=str(claims["oid"]), app_id=app_id,
                            display_name=str(claims.get("app_displayname") or app_id))
        self._remember(token, _Validated(caller, kid, float(claims["exp"]),
                                         frozenset(normalise_audience(str(a)) for a in audiences)))
        return caller

    def _still_valid(self, known: _Validated, accepted: set[str]) -> bool:
        """A remembered token is valid while unexpired and its key is live (retirement and deletion count at once,
        as for a token validated afresh) and it is for one of the audiences this caller accepts."""
        self._load()
        return (time.time() < known.expires + CLOCK_SKEW_SECONDS and known.kid in self._public
                and not self._retired(known.kid) and not known.audiences.isdisjoint(accepted))

    def _remember(self, token: str, validated: _Validated) -> None:
        with self._validated_lock:
            if len(self._validated) >= VALIDATED_CACHE_SIZE:
                del self._validated[next(iter(self._validated))]  # the oldest
            self._validated[token] = validated
