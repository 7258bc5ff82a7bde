from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class ManagementLock(Base):
    """A CanNotDelete or ReadOnly lock on a subscription, resource group or resource, inherited by all below it."""

    __tablename__ = "management_locks"
    # ARM names locks case-insensitively within their scope: this index is what makes a second PUT an update.
    __table_args__ = (sa.UniqueConstraint("scope_key", "name_key"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    # Deleting a subscription takes its locks with it; groups and resources cannot be deleted while locked.
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    # The scope in the casing it was created with (what the lock's id shows), and lower-cased for matching.
    scope: Mapped[str] = mapped_column(sa.String(1024))
    scope_key: Mapped[str] = mapped_column(sa.String(1024))
    name: Mapped[str] = mapped_column(sa.String(260))
    name_key: Mapped[str] = mapped_column(sa.String(260))
    level: Mapped[str] = mapped_column(sa.String(16))
    notes: Mapped[str | None] = mapped_column(sa.String(512))
    owners: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(256))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(256))

    @property
    def arm_id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Authorization/locks/{self.name}"
