"""The two tokens of the registry token service, signed with the token issuer's keys (kept in the database).

* Access tokens are what the data plane (control_plane/oci/auth.py) checks on every request: RS256 with the
  issuer's own `kid`, `iss` = the service's public URL, `aud` = the `service` they were asked for (a registry's
  login server, or the public host for path-style addresses), and the granted `access` list.
* Refresh tokens are what `POST /oauth2/exchange` hands out (ACR's flow behind `az acr login --expose-token`).
  They are ordinary issuer tokens for the same `service` plus a `grant_type` claim, so `TokenIssuer.validate`
  checks their signature, issuer, audience and expiry; their issuer is the tenant's, not the public URL, and they
  carry no `access`, so the data plane never accepts one as an access token.

Both payloads are JSON whose base64 holds no `-` or `_`: the azure-containerregistry SDK decodes the payload with
plain `base64.b64decode`, which fails on base64url's two extra characters. In ASCII JSON only `>`, `?`, `~` and
DEL at every third byte encode to them, so those are written as `\\u` escapes (the same JSON to any parser).

Reusing the issuer's keys (not a dedicated registry key) keeps one set of keys, shared by every worker and replica
through the database, and rotated in one place.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from control_plane.identity.tokens import ALGORITHM, Caller, InvalidToken, TokenIssuer

REFRESH_TOKEN_SECONDS = 3 * 3600  # ACR's refresh tokens last three hours
REFRESH_GRANT = "refresh_token"
ACCESS_GRANT = "access_token"
EXTERNAL_CLAIM = "ext"  # set on refresh tokens of principals a trusted external issuer vouched for
_B64_UNSAFE = {ord(">"): "\\u003e", ord("?"): "\\u003f", ord("~"): "\\u007e", 0x7F: "\\u007f"}


class Base64SafeJSONEncoder(json.JSONEncoder):
    """ASCII JSON without the characters whose base64 can be `-` or `_` (they only occur inside strings)."""

    def encode(self, o) -> str:
        return super().encode(o).translate(_B64_UNSAFE)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int
    issued_at: str


class RegistryTokens:
    def __init__(self, issuer: TokenIssuer, public_url: str, lifetime_seconds: int):
        self._issuer = issuer
        self.issuer_name = public_url  # the `iss` of every access token
        self.lifetime_seconds = lifetime_seconds

    def access_token(self, subject: str, service: str, access: list[dict], now: float | None = None) -> AccessToken:
        """`now` is for tests that need a token already expired."""
        kid, private = self._issuer.signing_key()
        issued = int(time.time() if now is None else now)
        claims = {"iss": self.issuer_name, "sub": subject, "aud": service, "iat": issued, "nbf": issued,
                  "exp": issued + self.lifetime_seconds, "jti": uuid.uuid4().hex, "version": "1.0",
                  "grant_type": ACCESS_GRANT, "access": access}
        token = jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"},
                           json_encoder=Base64SafeJSONEncoder)
        issued_at = datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return AccessToken(token, self.lifetime_seconds, issued_at)

    def refresh_token(self, caller: Caller, service: str, now: float | None = None, external: bool = False) -> str:
        """`external`: the caller came with a trusted external issuer's token; it is no object of the directory,
        so redeeming the refresh token must not look for one (and must refuse one that is)."""
        kid, private = self._issuer.signing_key()
        issued = int(time.time() if now is None else now)
        claims = {"aud": service, "iss": self._issuer.issuer_for(caller.tenant_id), "iat": issued, "nbf": issued,
                  "exp": issued + REFRESH_TOKEN_SECONDS, "sub": caller.object_id, "oid": caller.object_id,
                  "tid": caller.tenant_id, "appid": caller.app_id, "grant_type": REFRESH_GRANT,
                  "jti": uuid.uuid4().hex, "version": "1.0"}
        if external:
            claims.update({EXTERNAL_CLAIM: True, "name": caller.display_name or caller.object_id})
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"},
                          json_encoder=Base64SafeJSONEncoder)

    def read_refresh_token(self, token: str, service: str) -> tuple[Caller, bool]:
        """The principal a refresh token was issued to, if it is valid for this service (InvalidToken if not), and
        whether it is an external issuer's principal."""
        caller = self._issuer.validate(token, (service,))
        # The signature was just verified; this only tells a refresh token from another issuer token for `service`.
        claims = jwt.decode(token, options={"verify_signature": False})
        if claims.get("grant_type") != REFRESH_GRANT:
            raise InvalidToken("The token is not a registry refresh token.")
        external = claims.get(EXTERNAL_CLAIM) is True
        if external:
            caller = Caller(caller.tenant_id, caller.object_id, caller.app_id, str(claims.get("name") or ""))
        return caller, external
