"""The two tokens of the registry token service, signed with the token issuer's keys (kept in the database).

* Access tokens are what Distribution checks: RS256, `kid` = the libtrust id of the signing key (Distribution 2.8
  looks keys up by it in its certificate bundle), `iss` = the service's public URL, `aud` = the registry's login
  server as a JSON string (2.8 refuses an array), and the granted `access` list.
* Refresh tokens are what `POST /oauth2/exchange` hands out (ACR's flow behind `az acr login --expose-token`).
  They are ordinary issuer tokens for the registry's login server plus a `grant_type` claim, so `TokenIssuer.validate`
  checks their signature, issuer, audience and expiry; their `kid` is the issuer's own key id, which Distribution
  cannot resolve, and their issuer differs, so Distribution never accepts one as an access token.

Reusing the issuer's keys (not a dedicated registry key) keeps one set of keys, shared by every worker and replica
through the database, and rotated in one place; a registry process reads the bundle when it starts, so restart it
after adding a signing key.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from control_plane.dataplane.certificates import libtrust_key_id
from control_plane.identity.tokens import ALGORITHM, Caller, InvalidToken, TokenIssuer

REFRESH_TOKEN_SECONDS = 3 * 3600  # ACR's refresh tokens last three hours
REFRESH_GRANT = "refresh_token"
# Issuer kid -> libtrust id of that key: a fixed fact per key, shared by every RegistryTokens of the process.
_LIBTRUST_IDS: dict[str, str] = {}


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int
    issued_at: str


class RegistryTokens:
    def __init__(self, issuer: TokenIssuer, public_url: str, lifetime_seconds: int):
        self._issuer = issuer
        self.issuer_name = public_url  # Distribution's `auth.token.issuer`
        self.lifetime_seconds = lifetime_seconds

    def access_token(self, subject: str, service: str, access: list[dict], now: float | None = None) -> AccessToken:
        """`now` is for tests that need a token already expired."""
        kid, private = self._issuer.signing_key()
        if kid not in _LIBTRUST_IDS:
            _LIBTRUST_IDS[kid] = libtrust_key_id(private.public_key())
        issued = int(time.time() if now is None else now)
        claims = {"iss": self.issuer_name, "sub": subject, "aud": service, "iat": issued, "nbf": issued,
                  "exp": issued + self.lifetime_seconds, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, private, algorithm=ALGORITHM,
                           headers={"kid": _LIBTRUST_IDS[kid], "typ": "JWT"})
        issued_at = datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return AccessToken(token, self.lifetime_seconds, issued_at)

    def refresh_token(self, caller: Caller, service: str, now: float | None = None) -> str:
        kid, private = self._issuer.signing_key()
        issued = int(time.time() if now is None else now)
        claims = {"aud": service, "iss": self._issuer.issuer_for(caller.tenant_id), "iat": issued, "nbf": issued,
                  "exp": issued + REFRESH_TOKEN_SECONDS, "sub": caller.object_id, "oid": caller.object_id,
                  "tid": caller.tenant_id, "appid": caller.app_id, "grant_type": REFRESH_GRANT,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})

    def read_refresh_token(self, token: str, service: str) -> Caller:
        """The principal a refresh token was issued to, if it is valid for this login server (InvalidToken if not)."""
        caller = self._issuer.validate(token, (service,))
        # The signature was just verified; this only tells a refresh token from another issuer token for `service`.
        if jwt.decode(token, options={"verify_signature": False}).get("grant_type") != REFRESH_GRANT:
            raise InvalidToken("The token is not a registry refresh token.")
        return caller
