"""The interactive sign-in flows of the built-in issuer, as MSAL and az use them: authorization code with PKCE (a
sign-in page at `/oauth2/v2.0/authorize`), the issuer's browser session, and the device code flow.

Codes, device codes and sessions are rows in the database (secrets only as SHA-256 hashes), so any worker or
replica can redeem what another issued. Every one of them stays good only while its user exists, is enabled and
has the security stamp it had at sign-in: a new password or disabling ends them all. The password check itself is
signin.sign_in_with_password's (the same lockout per user and source, the same answer for a wrong name or password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.db import Database, insert_unless_duplicate, utcnow
from control_plane.identity import service
from control_plane.identity.errors import OAuthError
from control_plane.identity.models import Application, AuthorizationCode, DeviceCode, SignInSession, Tenant, User
from control_plane.identity.signin import WELL_KNOWN_PUBLIC_CLIENTS, path_tenant, session_of
from control_plane.identity.tokens import UserSession

CODE_LIFETIME = timedelta(minutes=10)  # Entra's authorization codes live ten minutes at most
SESSION_LIFETIME = timedelta(hours=12)
DEVICE_CODE_LIFETIME = timedelta(minutes=15)  # Entra's `expires_in` for device codes: 900 s
DEVICE_INTERVAL_SECONDS = 5
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_REDIRECT_URI = 2048
MAX_SCOPE = 2048
MAX_NONCE = 512
# Entra-style user codes: nine characters a person can read aloud (no 0/O, 1/I/L).
USER_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
USER_CODE_LENGTH = 9
PKCE_METHODS = ("S256", "plain")
PENDING, APPROVED, DECLINED = "pending", "approved", "declined"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# -- who may ask for a code, and where it may be sent ---------------------------------------------------------


@dataclass(frozen=True)
class AuthorizeClient:
    """A validated authorize request's client: where its code goes, and whether redeeming it needs a secret."""

    client_id: str
    redirect_uri: str
    confidential: bool
    tenant_id: str | None  # the authority's tenant; None for `organizations`/`common`


def is_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS


def _loopback_match(registered: str, requested: str) -> bool:
    """Entra ignores the port of a loopback redirect URI: MSAL's public clients pick a free one each time."""
    if not (is_loopback(registered) and is_loopback(requested)):
        return False
    want, got = urlsplit(registered), urlsplit(requested)
    return (want.hostname, want.path or "/", want.query) == (got.hostname, got.path or "/", got.query)


def check_authorize_client(session: Session, tenant_segment: str, client_id: str,
                           redirect_uri: str) -> AuthorizeClient:
    """The client and redirect URI of an authorize request, or OAuthError (shown on the page, never redirected:
    a redirect URI not known to belong to the client must not receive anything)."""
    tenant = path_tenant(session, tenant_segment)
    tenant_id = tenant.id if tenant is not None else None
    key = client_id.strip().lower()
    if not redirect_uri:
        raise OAuthError("invalid_request", "The request must contain the parameter 'redirect_uri'.", 400,
                         aadsts=900144)
    if len(redirect_uri) > MAX_REDIRECT_URI or "\x00" in redirect_uri:
        raise OAuthError("invalid_request", "The redirect URI is not valid.", 400, aadsts=50011)
    if key in WELL_KNOWN_PUBLIC_CLIENTS:
        if is_loopback(redirect_uri):
            return AuthorizeClient(key, redirect_uri, False, tenant_id)
        raise _redirect_mismatch(redirect_uri, client_id)
    application = session.scalar(sa.select(Application).where(Application.app_id == key)) \
        if service.is_guid(key) else None
    if application is None or (tenant_id is not None and application.tenant_id != tenant_id):
        raise OAuthError("unauthorized_client", f"Application with identifier '{client_id[:100]}' was not found in "
                         f"the directory '{tenant_segment[:100]}'.", 400, aadsts=700016)
    if redirect_uri in (application.web_redirect_uris or []):
        return AuthorizeClient(key, redirect_uri, True, application.tenant_id)
    public = application.public_client_redirect_uris or []
    if redirect_uri in public or any(_loopback_match(uri, redirect_uri) for uri in public):
        return AuthorizeClient(key, redirect_uri, False, application.tenant_id)
    raise _redirect_mismatch(redirect_uri, client_id)


def _redirect_mismatch(redirect_uri: str, client_id: str) -> OAuthError:
    return OAuthError("invalid_request", f"The redirect URI '{redirect_uri[:200]}' specified in the request does not "
                      f"match the redirect URIs configured for the application '{client_id[:100]}'.", 400,
                      aadsts=50011)


def check_pkce(challenge: str | None, method: str | None) -> tuple[str | None, str | None]:
    """(challenge, method) of an authorize request; the method defaults to `plain` (RFC 7636 §4.3)."""
    if not challenge:
        if method:
            raise OAuthError("invalid_request", "code_challenge_method was given without a code_challenge.", 400,
                             aadsts=501491)
        return None, None
    method = method or "plain"
    if method not in PKCE_METHODS:
        raise OAuthError("invalid_request", f"The code_challenge_method '{method[:20]}' is not supported; use S256 "
                         "or plain.", 400, aadsts=501491)
    if not 43 <= len(challenge) <= 128 or not all(c.isalnum() or c in "-._~" for c in challenge):
        raise OAuthError("invalid_request", "The code_challenge is not a valid PKCE challenge (43 to 128 unreserved "
                         "characters).", 400, aadsts=501491)
    return challenge, method


def _pkce_holds(challenge: str, method: str, verifier: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        verifier = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return hmac.compare_digest(verifier.encode("utf-8", "replace"), challenge.encode())


# -- the browser session at the issuer ------------------------------------------------------------------------


def start_session(db: Database, user: UserSession) -> str:
    """A new browser session for the user; returns the cookie's secret. Expired sessions are swept on the way."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    with db.session() as session:
        session.execute(sa.delete(SignInSession).where(SignInSession.expires_at < now))
        session.add(SignInSession(session_hash=_hash(secret), user_object_id=user.object_id,
                                  tenant_id=user.tenant_id, security_stamp=user.security_stamp, created_at=now,
                                  expires_at=now + SESSION_LIFETIME))
    return secret


def session_user(db: Database, secret: str | None, tenant_id: str | None, client_id: str) -> UserSession | None:
    """The user a session cookie signs in, if it is live, its user still valid, and of the authority's tenant."""
    if not secret or len(secret) > 128:
        return None
    with db.reading() as session:
        row = session.get(SignInSession, _hash(secret))
        if row is None or row.expires_at <= utcnow() or (tenant_id is not None and row.tenant_id != tenant_id):
            return None
        user = _valid_user(session, row.user_object_id, row.tenant_id, row.security_stamp)
    return session_of(user, client_id) if user is not None else None


def end_session(db: Database, secret: str | None) -> None:
    if secret and len(secret) <= 128:
        with db.session() as session:
            session.execute(sa.delete(SignInSession).where(SignInSession.session_hash == _hash(secret)))


def _valid_user(session: Session, object_id: str, tenant_id: str, stamp: str) -> User | None:
    user = session.get(User, object_id)
    if user is None or user.tenant_id != tenant_id or not user.account_enabled or user.security_stamp != stamp:
        return None
    return user


# -- authorization codes --------------------------------------------------------------------------------------


def issue_code(db: Database, user: UserSession, client: AuthorizeClient, scope: str, nonce: str | None,
               challenge: str | None, method: str | None) -> str:
    code = secrets.token_urlsafe(48)
    now = utcnow()
    with db.session() as session:
        session.execute(sa.delete(AuthorizationCode).where(AuthorizationCode.expires_at < now))
        session.add(AuthorizationCode(
            code_hash=_hash(code), client_id=client.client_id, redirect_uri=client.redirect_uri,
            code_challenge=challenge, code_challenge_method=method, confidential=client.confidential,
            user_object_id=user.object_id, tenant_id=user.tenant_id, security_stamp=user.security_stamp,
            scope=scope[:MAX_SCOPE], nonce=nonce[:MAX_NONCE] if nonce else None, expires_at=now + CODE_LIFETIME))
    return code


@dataclass(frozen=True)
class Redeemed:
    user: UserSession
    scope: str
    nonce: str | None


def _invalid_code() -> OAuthError:
    return OAuthError("invalid_grant", "The provided authorization code is invalid, expired or already redeemed. "
                      "Send a new interactive authorization request for this user and resource.", 400, aadsts=70008)


def redeem_code(db: Database, tenant_segment: str, code: str, client_id: str, redirect_uri: str,
                verifier: str | None, client_secret: str | None) -> Redeemed:
    """The authorization-code grant. The row is deleted before anything is checked: a code is tried once, so a
    stolen one presented with a wrong verifier, client or redirect URI is spent and useless afterwards."""
    if len(code) > 512:
        raise _invalid_code()
    with db.session() as session:
        row = session.get(AuthorizationCode, _hash(code))
        if row is None:
            raise _invalid_code()
        found = _Code(row.client_id, row.redirect_uri, row.code_challenge, row.code_challenge_method,
                      row.confidential, row.user_object_id, row.tenant_id, row.security_stamp, row.scope,
                      row.nonce, row.expires_at)
        # Whoever deletes the row redeems it: of two concurrent requests with one code, only one goes on.
        if not session.execute(sa.delete(AuthorizationCode).where(
                AuthorizationCode.code_hash == _hash(code)).execution_options(synchronize_session=False)).rowcount:
            raise _invalid_code()
    if found.expires_at <= utcnow():
        raise _invalid_code()
    if found.client_id != client_id.strip().lower():
        raise OAuthError("invalid_grant", "The authorization code was issued to a different client.", 400,
                         aadsts=70000)
    if found.redirect_uri != redirect_uri:
        raise OAuthError("invalid_grant", "The redirect_uri of the token request does not match the one the "
                         "authorization code was issued for.", 400, aadsts=500112)
    if found.challenge is not None:
        if not verifier:
            raise OAuthError("invalid_grant", "The code_verifier is missing; the authorization request sent a "
                             "code_challenge (PKCE).", 400, aadsts=50148)
        if not _pkce_holds(found.challenge, found.method, verifier):
            raise OAuthError("invalid_grant", "The code_verifier does not match the code_challenge supplied in the "
                             "authorization request for PKCE.", 400, aadsts=50148)
    with db.reading() as session:
        tenant = path_tenant(session, tenant_segment)
        if tenant is not None and tenant.id != found.tenant_id:
            raise _invalid_code()
        if found.confidential or client_secret:
            _authenticate_client(session, found.tenant_id, found.client_id, client_secret)
        user = _valid_user(session, found.object_id, found.tenant_id, found.stamp)
        if user is None:
            raise OAuthError("invalid_grant", "The user of this authorization code no longer exists, is disabled, "
                             "or changed password.", 400, aadsts=50173)
        return Redeemed(session_of(user, found.client_id), found.scope, found.nonce)


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str | None
    confidential: bool
    object_id: str
    tenant_id: str
    stamp: str
    scope: str
    nonce: str | None
    expires_at: datetime


def _authenticate_client(session: Session, tenant_id: str, client_id: str, client_secret: str | None) -> None:
    if not client_secret:
        raise OAuthError("invalid_client", "The request body must contain the following parameter: "
                         "'client_assertion' or 'client_secret'.", 401, aadsts=7000218)
    service.authenticate_client(session, tenant_id, client_id, client_secret)


def check_refresh_client(db: Database, client_id: str, client_secret: str | None) -> None:
    """The refresh-token grant's client: a secret sent must be right, and an application that is only a confidential
    client (a `web` redirect URI, no public-client flows) must send one, as Entra requires."""
    key = client_id.strip().lower()
    if key in WELL_KNOWN_PUBLIC_CLIENTS or not service.is_guid(key):
        return
    with db.reading() as session:
        application = session.scalar(sa.select(Application).where(Application.app_id == key))
        if application is None:
            return  # the refresh token itself decides (it names its client)
        confidential_only = bool(application.web_redirect_uris) and not (
            application.public_client_redirect_uris or application.is_fallback_public_client)
        if client_secret or confidential_only:
            _authenticate_client(session, application.tenant_id, key, client_secret)


# -- device codes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    expires_in: int
    interval: int


def start_device_flow(db: Database, tenant_segment: str, client_id: str, scope: str) -> DeviceAuthorization:
    """POST devicecode: the client must be one that may use public-client flows (a well-known one, or an
    application with `isFallbackPublicClient`)."""
    key = client_id.strip().lower()
    with db.reading() as session:
        tenant = path_tenant(session, tenant_segment)
        if key not in WELL_KNOWN_PUBLIC_CLIENTS:
            application = session.scalar(sa.select(Application).where(Application.app_id == key)) \
                if service.is_guid(key) else None
            if application is None or (tenant is not None and application.tenant_id != tenant.id):
                raise OAuthError("unauthorized_client", f"Application with identifier '{client_id[:100]}' was not "
                                 f"found in the directory '{tenant_segment[:100]}'.", 400, aadsts=700016)
            if not application.is_fallback_public_client:
                raise OAuthError("invalid_client", "The request body must contain the following parameter: "
                                 "'client_assertion' or 'client_secret'.", 401, aadsts=7000218)
    device_code = secrets.token_urlsafe(48)
    now = utcnow()
    with db.session() as session:
        session.execute(sa.delete(DeviceCode).where(DeviceCode.expires_at < now - DEVICE_CODE_LIFETIME))
        while True:  # the unique index decides a (rare) clash of user codes
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            if insert_unless_duplicate(session, DeviceCode(
                    device_code_hash=_hash(device_code), user_code=user_code, client_id=key,
                    tenant_segment=tenant_segment.lower()[:64], scope=scope[:MAX_SCOPE], status=PENDING,
                    interval=DEVICE_INTERVAL_SECONDS, expires_at=now + DEVICE_CODE_LIFETIME)):
                break
    return DeviceAuthorization(device_code, user_code, int(DEVICE_CODE_LIFETIME.total_seconds()),
                               DEVICE_INTERVAL_SECONDS)


def normalise_user_code(raw: str) -> str:
    return "".join(c for c in raw.upper() if c.isalnum())[:32]


@dataclass(frozen=True)
class PendingDevice:
    user_code: str
    client_id: str
    tenant_segment: str


def pending_device(db: Database, user_code: str) -> PendingDevice | None:
    """The device request a person's code names, while it waits for them (None when unknown, expired or done)."""
    code = normalise_user_code(user_code)
    if not code:
        return None
    with db.reading() as session:
        row = session.scalar(sa.select(DeviceCode).where(DeviceCode.user_code == code))
        if row is None or row.status != PENDING or row.expires_at <= utcnow():
            return None
        return PendingDevice(row.user_code, row.client_id, row.tenant_segment)


def decide_device(db: Database, user_code: str, user: UserSession | None) -> bool:
    """Approves the waiting request for the user (None: the person declined); False when it no longer waits."""
    now = utcnow()
    values = {"status": APPROVED, "user_object_id": user.object_id} if user else {"status": DECLINED}
    with db.session() as session:
        return bool(session.execute(sa.update(DeviceCode).where(
            DeviceCode.user_code == normalise_user_code(user_code), DeviceCode.status == PENDING,
            DeviceCode.expires_at > now).values(**values)).rowcount)


def redeem_device_code(db: Database, tenant_segment: str, client_id: str, device_code: str) -> tuple[UserSession, str]:
    """The device-code grant's poll: (user, scope) once approved (the row is then spent), otherwise the error Entra
    answers: authorization_pending, slow_down, expired_token, authorization_declined, or bad_verification_code."""
    now = utcnow()
    with db.session() as session:  # decide, and commit what the poll changed, before answering with an error
        row = session.get(DeviceCode, _hash(device_code)) if len(device_code) <= 512 else None
        outcome = _poll(session, row, client_id, now)
        object_id, scope = (row.user_object_id, row.scope) if row is not None else (None, "")
    if outcome is not None:
        raise outcome
    with db.reading() as session:
        tenant = path_tenant(session, tenant_segment)
        user = session.get(User, object_id)
        if user is None or not user.account_enabled or (tenant is not None and user.tenant_id != tenant.id):
            raise OAuthError("invalid_grant", "The user of this device code can no longer sign in here.", 400,
                             aadsts=50173)
        return session_of(user, client_id), scope


def _poll(session: Session, row: DeviceCode | None, client_id: str, now) -> OAuthError | None:
    """One poll's effect on the row and the error to answer (None: approved, and now spent)."""
    if row is None:
        return OAuthError("bad_verification_code", "The device_code is not recognised.", 400, aadsts=70018)
    if row.client_id != client_id.strip().lower():
        return OAuthError("invalid_grant", "The device code was issued to a different client.", 400, aadsts=70000)
    if row.expires_at <= now:
        session.delete(row)
        return OAuthError("expired_token", "The device code has expired; start the device flow again.", 400,
                          aadsts=70019)
    if row.status == DECLINED:
        session.delete(row)
        return OAuthError("authorization_declined", "The end user declined the authorization request.", 400,
                          aadsts=70000)
    if row.status == PENDING:
        too_soon = row.last_polled_at is not None and (now - row.last_polled_at).total_seconds() < row.interval - 1
        row.last_polled_at = now
        if too_soon:
            return OAuthError("slow_down", f"Polled sooner than every {row.interval} seconds; slow down.", 400,
                              aadsts=70016)
        return OAuthError("authorization_pending", "OAuth 2.0 device flow error. Authorization is pending. "
                          "Continue polling.", 400, aadsts=70016)
    # Approved: spent by whoever deletes it first (two concurrent polls get one token).
    if not session.execute(sa.delete(DeviceCode).where(DeviceCode.device_code_hash == row.device_code_hash,
                                                       DeviceCode.status == APPROVED)).rowcount:
        return OAuthError("bad_verification_code", "The device_code is not recognised.", 400, aadsts=70018)
    return None


def client_info(user: UserSession) -> str:
    """The token response's and authorize response's `client_info`: MSAL keys its account cache by `uid.utid`."""
    info = json.dumps({"uid": user.object_id, "utid": user.tenant_id}).encode()
    return base64.urlsafe_b64encode(info).decode().rstrip("=")


def tenant_of_segment(db: Database, segment: str) -> Tenant | None:
    """The tenant an authority segment names; None for `organizations`/`common`; OAuthError (AADSTS90002) if
    it names none."""
    with db.reading() as session:
        return path_tenant(session, segment)
