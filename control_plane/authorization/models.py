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
    created_on: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_on: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(36))
    updated_by: Mapped[str | None] = mapped_column(sa.String(36))
