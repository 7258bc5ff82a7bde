from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
    # The verified domain of its users' UPNs (`alice@<domain>`), lower-case; set when the tenant is made (migration
    # 0007 gave existing tenants theirs). Unique: a UPN names one user in the whole service.
    default_domain: Mapped[str | None] = mapped_column(sa.String(64), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
    state: Mapped[str] = mapped_column(sa.String(16), default="Enabled")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ServicePrincipal(Base):
    __tablename__ = "service_principals"

    object_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
    is_tenant_admin: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Application(Base):
    """An app registration (Graph `applications`); its service principal shares the appId."""

    __tablename__ = "applications"

    object_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
    identifier_uris: Mapped[list] = mapped_column(sa.JSON, default=list)
    sign_in_audience: Mapped[str] = mapped_column(sa.String(64), default="AzureADMyOrg")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Where the authorization-code flow may send codes: `web` ones are for confidential clients (the token request
    # must carry a secret), `publicClient` ones for native apps; `isFallbackPublicClient` allows the device flow.
    web_redirect_uris: Mapped[list] = mapped_column(sa.JSON, default=list, server_default=sa.text("'[]'"))
    public_client_redirect_uris: Mapped[list] = mapped_column(sa.JSON, default=list, server_default=sa.text("'[]'"))
    is_fallback_public_client: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())


class ClientSecret(Base):
    """A client secret of an application; Graph adds them to the application or to its service principal."""

    __tablename__ = "client_secrets"

    key_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.String(36))
    # 'application' or 'servicePrincipal': which Graph object's passwordCredentials list shows it.
    owner_type: Mapped[str] = mapped_column(sa.String(32), default="application")
    secret_hash: Mapped[str] = mapped_column(sa.String(128))
    hint: Mapped[str] = mapped_column(sa.String(8))
    display_name: Mapped[str | None] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (sa.Index("ix_client_secrets_app_hint", "app_id", "hint"),)


class SigningKey(Base):
    """Token-signing keys live in the database so every worker and replica signs and verifies alike."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    private_key_encrypted: Mapped[str] = mapped_column(sa.Text)
    public_jwk: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SystemState(Base):
    """Small named facts about this installation, such as what `control-plane init` created."""

    __tablename__ = "system_state"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(sa.JSON)


class User(Base):
    """A person of the directory: signs in with UPN and password, gets roles directly or through groups."""

    __tablename__ = "users"

    object_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_principal_name: Mapped[str] = mapped_column(sa.String(256))
    # The UPN lower-cased: Entra compares UPNs case-insensitively, and the database keeps them unique.
    upn_key: Mapped[str] = mapped_column(sa.String(256), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
    mail_nickname: Mapped[str] = mapped_column(sa.String(64))
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    account_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # Changes with the password and with disabling: refresh tokens carry it, so either revokes them all.
    security_stamp: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DirectoryGroup(Base):
    """A security group (Graph `groups`); its role assignments reach its members, nested groups' too."""

    __tablename__ = "directory_groups"

    object_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
    mail_nickname: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str | None] = mapped_column(sa.String(1024))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class GroupMember(Base):
    """One direct member of a group: a user, a service principal or another group (the key makes it unique)."""

    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(sa.ForeignKey("directory_groups.object_id", ondelete="CASCADE"),
                                          primary_key=True)
    member_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, index=True)
    # `user`, `servicePrincipal` or `group`: Graph's type of the member, so listing needs no guessing.
    member_type: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SignInFailure(Base):
    """Failed password sign-ins per user name and source address, shared by every replica: the lockout counter.

    Kept apart from `users` so that counting never bumps the access generation (or needs the user to exist).
    """

    __tablename__ = "sign_in_failures"

    username_key: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(sa.Integer)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuthorizationCode(Base):
    """An authorization code, by its hash: single use (redeeming deletes the row), short-lived, and bound to the
    client, the redirect URI and the PKCE challenge it was issued for. In the database so any worker redeems it."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(36))
    redirect_uri: Mapped[str] = mapped_column(sa.String(2048))
    code_challenge: Mapped[str | None] = mapped_column(sa.String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(sa.String(8))
    # Issued to a `web` redirect URI: the token request must authenticate the client.
    confidential: Mapped[bool] = mapped_column(sa.Boolean)
    user_object_id: Mapped[str] = mapped_column(sa.String(36))
    tenant_id: Mapped[str] = mapped_column(sa.String(36))
    security_stamp: Mapped[str] = mapped_column(sa.String(32))
    scope: Mapped[str] = mapped_column(sa.String(2048))
    nonce: Mapped[str | None] = mapped_column(sa.String(512))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class DeviceCode(Base):
    """A device-flow request: the device polls with the device code (kept hashed), a person enters the user code
    at `/devicelogin` and signs in (status `approved`, with the user) or cancels (`declined`)."""

    __tablename__ = "device_codes"

    device_code_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    client_id: Mapped[str] = mapped_column(sa.String(36))
    # The authority's tenant segment as the device sent it (an id, a domain, `organizations`).
    tenant_segment: Mapped[str] = mapped_column(sa.String(64))
    scope: Mapped[str] = mapped_column(sa.String(2048))
    status: Mapped[str] = mapped_column(sa.String(16))
    user_object_id: Mapped[str | None] = mapped_column(sa.String(36))
    interval: Mapped[int] = mapped_column(sa.Integer)
    last_polled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class SignInSession(Base):
    """A browser's session at the issuer (its cookie holds the secret, this row its hash): a second authorize
    needs no password. Valid while the user is enabled and has the same security stamp; sign-out deletes it."""

    __tablename__ = "signin_sessions"

    session_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_object_id: Mapped[str] = mapped_column(sa.String(36))
    tenant_id: Mapped[str] = mapped_column(sa.String(36))
    security_stamp: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
