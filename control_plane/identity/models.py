from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(256))
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
