from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class Registry(Base):
    __tablename__ = "registries"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    resource_group_id: Mapped[str] = mapped_column(sa.ForeignKey("resource_groups.id", ondelete="CASCADE"))
    resource_group_name: Mapped[str] = mapped_column(sa.String(90))
    name: Mapped[str] = mapped_column(sa.String(50))
    # Registry names are global DNS labels: this unique index is what makes a name taken, race-free.
    name_key: Mapped[str] = mapped_column(sa.String(50), unique=True)
    location: Mapped[str] = mapped_column(sa.String(64))
    sku: Mapped[str] = mapped_column(sa.String(16))
    tags: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    identity: Mapped[dict | None] = mapped_column(sa.JSON)
    # The user-settable properties exactly as accepted (defaults filled in), so GET returns what PUT took.
    properties: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    provisioning_state: Mapped[str] = mapped_column(sa.String(16))
    container_name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    admin_password_1: Mapped[str] = mapped_column(sa.Text)
    admin_password_2: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_by_type: Mapped[str] = mapped_column(sa.String(32))
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    modified_by: Mapped[str] = mapped_column(sa.String(256))
    modified_by_type: Mapped[str] = mapped_column(sa.String(32))

    __table_args__ = (sa.Index("ix_registries_group_name", "resource_group_id", "name_key"),
                      sa.Index("ix_registries_subscription_name", "subscription_id", "name_key"))
    # Optimistic concurrency: every ORM UPDATE says "WHERE modified_at = <what I read>", so of two writers that
    # read the same row, the second fails (StaleDataError -> 409) instead of silently undoing the first.
    __mapper_args__ = {"version_id_col": modified_at, "version_id_generator": False}

    @property
    def arm_id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group_name}"
                f"/providers/Microsoft.ContainerRegistry/registries/{self.name}")


class RegistryView:
    """A registries row read as plain SQL, with the model's derived attributes: what serialising needs, read-only.

    The row's values are copied into the instance once: serialising reads some twenty of them, and a Row's own
    attribute look-up costs several times a plain attribute's."""

    def __init__(self, row: sa.Row):
        self.__dict__.update(row._asdict())

    arm_id = Registry.arm_id
