"""Users signing in at the token endpoint: the username + password grant (ROPC, what `az login -u -p` and MSAL's
`acquire_token_by_username_password` send) and the refresh-token grant, with Entra's errors and its smart lockout.

A failed sign-in never says whether the name or the password was wrong (AADSTS50126 for both; an unknown user's
password is checked against a decoy hash at the same cost). Failures are counted per user name and source address
in the database, so every replica sees them; after `threshold` of them within FAILURE_WINDOW that name is locked
for that address (AADSTS50053) for `seconds`, without the password even being checked. Whether the account is
disabled (AADSTS50057) is only told to someone who knew its password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.db import Database, UtcDateTime, insert_unless_duplicate, utcnow
from control_plane.identity import passwords
from control_plane.identity.errors import OAuthError
from control_plane.identity.models import Application, SignInFailure, Tenant, User
from control_plane.identity.service import is_guid
from control_plane.identity.tokens import InvalidToken, RefreshGrant, TokenIssuer, UserSession

# Public clients every Entra tenant knows without registering them: the Azure CLI and Azure PowerShell.
WELL_KNOWN_PUBLIC_CLIENTS = frozenset({"04b07795-8ddb-461a-bbee-02f9e1bf7b46", "1950a258-227b-4e31-a9cf-717495945fc2"})
# Authority segments that name no tenant: the user's UPN domain says which.
ANY_TENANT = frozenset({"organizations", "common"})
FAILURE_WINDOW = timedelta(minutes=15)
MAX_USERNAME = 256
MAX_SOURCE = 64


@dataclass(frozen=True)
class Lockout:
    threshold: int
    seconds: int


def _invalid_credentials() -> OAuthError:
    return OAuthError("invalid_grant", "Error validating credentials due to invalid username or password.", 400,
                      aadsts=50126)


def _disabled() -> OAuthError:
    return OAuthError("invalid_grant", "The user account is disabled.", 400, aadsts=50057)


def path_tenant(session: Session, segment: str) -> Tenant | None:
    """The tenant an authority path names (its id or its domain); None for `organizations`/`common`."""
    key = segment.lower()
    if key in ANY_TENANT:
        return None
    tenant = (session.get(Tenant, key) if is_guid(key)
              else session.scalar(sa.select(Tenant).where(Tenant.default_domain == key)))
    if tenant is None:
        raise OAuthError("invalid_request", f"Tenant '{segment[:100]}' not found. Check to make sure you have the "
                         "correct tenant ID and are signing into the correct cloud.", 400, aadsts=90002)
    return tenant


def _check_client(session: Session, tenant_id: str | None, client_id: str) -> None:
    """A public client the tenant knows: a well-known one, or one of its applications."""
    key = client_id.lower()
    if key in WELL_KNOWN_PUBLIC_CLIENTS:
        return
    if tenant_id is not None and is_guid(key) and session.scalar(sa.select(Application.object_id).where(
            Application.app_id == key, Application.tenant_id == tenant_id)) is not None:
        return
    raise OAuthError("unauthorized_client", f"Application with identifier '{client_id[:100]}' was not found in the "
                     f"directory '{tenant_id or 'organizations'}'.", 400, aadsts=700016)


def session_of(user: User, client_id: str) -> UserSession:
    return UserSession(user.object_id, user.tenant_id, user.user_principal_name, user.display_name,
                       user.security_stamp, client_id.lower())


def sign_in_with_password(db: Database, tenant_segment: str, client_id: str, username: str, password: str,
                          source: str, lockout: Lockout) -> UserSession:
    """The password grant's decision; OAuthError in Entra's words for every refusal."""
    source = source[:MAX_SOURCE]
    if "\x00" in username:  # no user name holds NUL (PostgreSQL text cannot)
        raise _invalid_credentials()
    with db.reading() as session:
        tenant = path_tenant(session, tenant_segment)
        name = username.strip()[:MAX_USERNAME]
        if "@" not in name and tenant is not None:
            name = f"{name}@{tenant.default_domain}"
        key = name.lower()
        home = tenant or session.scalar(sa.select(Tenant).where(Tenant.default_domain == key.rpartition("@")[2]))
        _check_client(session, home.id if home is not None else None, client_id)
        failures = session.get(SignInFailure, (key, source))
        if failures is not None and failures.locked_until is not None and failures.locked_until > utcnow():
            raise OAuthError("invalid_grant", "Your account is locked because the user tried to sign in too many "
                             "times with an incorrect user ID or password.", 400, aadsts=50053)
        user = session.scalar(sa.select(User).where(User.upn_key == key)) if home is not None else None
        if user is not None and user.tenant_id != home.id:
            user = None
    # Outside the unit of work: the slow hash holds no database connection.
    if not passwords.verify_password(password, user.password_hash if user is not None else None):
        _count_failure(db, key, source, lockout)
        raise _invalid_credentials()
    if failures is not None:
        with db.session() as writing:
            writing.execute(sa.delete(SignInFailure).where(SignInFailure.username_key == key,
                                                           SignInFailure.source == source))
    if not user.account_enabled:
        raise _disabled()
    return session_of(user, client_id)


def _count_failure(db: Database, key: str, source: str, lockout: Lockout) -> None:
    """One more failure (atomically: concurrent attempts each count); the threshold locks the name for the source.
    Counters that no longer count or lock anything are dropped, so guessed names do not pile up."""
    with db.session() as session:
        now = utcnow()
        session.execute(sa.delete(SignInFailure).where(
            SignInFailure.first_failed_at < now - FAILURE_WINDOW,
            sa.or_(SignInFailure.locked_until.is_(None), SignInFailure.locked_until < now)))
        row = sa.and_(SignInFailure.username_key == key, SignInFailure.source == source)
        stale = SignInFailure.first_failed_at < now - FAILURE_WINDOW
        increment = sa.update(SignInFailure).where(row).values(
            failures=sa.case((stale, 1), else_=SignInFailure.failures + 1),
            first_failed_at=sa.case((stale, sa.literal(now, UtcDateTime())), else_=SignInFailure.first_failed_at))
        if not session.execute(increment).rowcount and not insert_unless_duplicate(
                session, SignInFailure(username_key=key, source=source, failures=1, first_failed_at=now)):
            session.execute(increment)  # inserted meanwhile by a concurrent failure
        if session.scalar(sa.select(SignInFailure.failures).where(row)) >= lockout.threshold:
            session.execute(sa.update(SignInFailure).where(row).values(
                failures=0, first_failed_at=now, locked_until=now + timedelta(seconds=lockout.seconds)))


def refresh(db: Database, issuer: TokenIssuer, tenant_segment: str, client_id: str,
            refresh_token: str) -> UserSession:
    """The refresh-token grant: valid while its user exists, is enabled and has not changed password since."""
    try:
        grant: RefreshGrant = issuer.read_refresh_token(refresh_token)
    except InvalidToken as exc:
        raise OAuthError("invalid_grant", f"The provided refresh token is invalid. {exc}", 400,
                         aadsts=9002313) from None
    if grant.client_id != client_id.lower():
        raise OAuthError("invalid_grant", "The refresh token was issued to a different client.", 400, aadsts=70000)
    with db.reading() as session:
        tenant = path_tenant(session, tenant_segment)
        if tenant is not None and tenant.id != grant.tenant_id:
            raise OAuthError("invalid_grant", "The refresh token was issued in another tenant.", 400, aadsts=50020)
        user = session.get(User, grant.object_id)
    if user is None or user.tenant_id != grant.tenant_id:
        raise OAuthError("invalid_grant", "The user account does not exist in the directory.", 400, aadsts=50034)
    if not user.account_enabled:
        raise _disabled()
    if user.security_stamp != grant.security_stamp:
        raise OAuthError("invalid_grant", "The provided grant has been revoked (the password was changed or the "
                         "account disabled); a fresh sign-in is needed.", 400, aadsts=50173)
    return session_of(user, client_id)


def user_realm(db: Database, username: str) -> tuple[str, str | None]:
    """What MSAL's user-realm discovery asks before a password grant: ('Managed', domain) for a domain of this
    service, else ('Unknown', None). It says which domains exist, as Entra's does, never which users."""
    domain = username.rpartition("@")[2].lower()[:MAX_USERNAME]
    if "\x00" in domain:
        return "Unknown", None
    with db.reading() as session:
        known = session.scalar(sa.select(Tenant.default_domain).where(Tenant.default_domain == domain))
    return ("Managed", known) if known else ("Unknown", None)
