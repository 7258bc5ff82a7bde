from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class RoleAssignment(Base):
    """A role granted to a principal at a scope (subscription, resource group or resource id)."""

    __tablename__ = "role_assignments"
    __table_args__ = (
        sa.UniqueConstraint("scope_key", "role_definition_id", "principal_id"),
    )

    name: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(sa.String(1024))
    # The scope lower-cased: ARM compares scopes case-insensitively, and prefix matches find parents.
    scope_key: Mapped[str] = mapped_column(sa.String(1024), index=True)
    role_definition_id: Mapped[str] = mapped_column(sa.String(36))
    principal_id: Mapped[str] = mapped_column(sa.String(36), index=True)
    principal_type: Mapped[str] = mapped_column(sa.String(32), default="ServicePrincipal")
    description: Mapped[str | None] = mapped_column(sa.Text)
    condition: Mapped[str | None] = mapped_column(sa.Text)
    condition_version: Mapped[str | None] = mapped_column(sa.String(16))
    delegated_managed_identity_resource_id: Mapped[str | None] = mapped_column(sa.String(1024))
    created_on: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_on: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(36))
    updated_by: Mapped[str | None] = mapped_column(sa.String(36))


class ActivityLogEntry(Base):
    """One mutating call (or credential read), in the Azure Activity Log's terms. Never holds a secret."""

    __tablename__ = "activity_log"
    __table_args__ = (sa.Index("ix_activity_log_subscription_time", "subscription_id", "event_timestamp"),
                      sa.Index("ix_activity_log_event_timestamp", "event_timestamp"))

    event_data_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(36))
    subscription_id: Mapped[str] = mapped_column(sa.String(36))
    resource_group_name: Mapped[str | None] = mapped_column(sa.String(90))
    resource_id: Mapped[str] = mapped_column(sa.String(1024))
    resource_provider: Mapped[str] = mapped_column(sa.String(128))
    resource_type: Mapped[str] = mapped_column(sa.String(256))
    operation_name: Mapped[str] = mapped_column(sa.String(256))
    status: Mapped[str] = mapped_column(sa.String(32))
    http_status: Mapped[int] = mapped_column(sa.Integer)
    caller_object_id: Mapped[str] = mapped_column(sa.String(256))
    caller_app_id: Mapped[str | None] = mapped_column(sa.String(256))
    caller_name: Mapped[str | None] = mapped_column(sa.String(256))
    correlation_id: Mapped[str] = mapped_column(sa.String(64))
    operation_id: Mapped[str] = mapped_column(sa.String(64))
    event_timestamp: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    properties: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class AccessGeneration(Base):
    """One row whose value database triggers bump on every change to tenants, subscriptions, principals or role
    assignments (migration 0004): what tells each process's access cache that it is out of date."""

    __tablename__ = "access_generation"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(sa.BigInteger)
