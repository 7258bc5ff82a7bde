from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class ResourceGroup(Base):
    __tablename__ = "resource_groups"
    __table_args__ = (sa.UniqueConstraint("subscription_id", "name_key"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(90))
    # ARM matches names case-insensitively and keeps the casing of the first create.
    name_key: Mapped[str] = mapped_column(sa.String(90))
    location: Mapped[str] = mapped_column(sa.String(64))
    tags: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    managed_by: Mapped[str | None] = mapped_column(sa.String(1024))
    provisioning_state: Mapped[str] = mapped_column(sa.String(16), default="Succeeded")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def arm_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.name}"
