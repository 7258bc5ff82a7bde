from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow

RESOURCE_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"


class UserAssignedIdentity(Base):
    """A user-assigned identity: an ARM resource whose service principal (principal_id, client_id as its appId)
    lives in the directory of the subscription's tenant for as long as the resource does."""

    __tablename__ = "user_assigned_identities"
    # ARM names resources case-insensitively within their group: this index is what makes a second PUT an update.
    __table_args__ = (sa.UniqueConstraint("resource_group_id", "name_key"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    resource_group_id: Mapped[str] = mapped_column(sa.ForeignKey("resource_groups.id", ondelete="CASCADE"))
    resource_group_name: Mapped[str] = mapped_column(sa.String(90))
    name: Mapped[str] = mapped_column(sa.String(128))
    name_key: Mapped[str] = mapped_column(sa.String(128))
    location: Mapped[str] = mapped_column(sa.String(64))
    tags: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    tenant_id: Mapped[str] = mapped_column(sa.String(36))
    principal_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    client_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_by_type: Mapped[str] = mapped_column(sa.String(32))
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    modified_by: Mapped[str] = mapped_column(sa.String(256))
    modified_by_type: Mapped[str] = mapped_column(sa.String(32))

    @property
    def arm_id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group_name}"
                f"/providers/{RESOURCE_TYPE}/{self.name}")
