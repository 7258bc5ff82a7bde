"""Template deployments (Microsoft.Resources/deployments) and the per-resource operations each one ran."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow


class Deployment(Base):
    """One deployment in a resource group's or subscription's history; re-PUT under the same name replaces it."""

    __tablename__ = "deployments"
    # ARM names deployments case-insensitively within their scope: this index is what makes a second PUT a replace.
    __table_args__ = (sa.UniqueConstraint("scope_key", "name_key"),
                      sa.Index("ix_deployments_scope_key_created_at", "scope_key", "created_at"))

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    # A group's history goes with the group (NULL: a subscription-scope deployment).
    resource_group_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("resource_groups.id", ondelete="CASCADE"), index=True)
    # `/subscriptions/{s}[/resourceGroups/{g}]` in the casing of its resources, and lower-cased for matching.
    scope: Mapped[str] = mapped_column(sa.String(200))
    scope_key: Mapped[str] = mapped_column(sa.String(200))
    name: Mapped[str] = mapped_column(sa.String(64))
    name_key: Mapped[str] = mapped_column(sa.String(64))
    location: Mapped[str | None] = mapped_column(sa.String(64))
    tags: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    mode: Mapped[str] = mapped_column(sa.String(16))
    provisioning_state: Mapped[str] = mapped_column(sa.String(16))
    template: Mapped[dict] = mapped_column(sa.JSON)
    template_hash: Mapped[str] = mapped_column(sa.String(24))
    # What the caller sent, minus secure parameters; those are in `secret_parameters`, encrypted, until the
    # deployment ends (then dropped: nothing can need them again).
    input_parameters: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    secret_parameters: Mapped[str | None] = mapped_column(sa.Text)
    # The echo clients read (`{name: {type, value}}`, secure ones without a value).
    parameters: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    outputs: Mapped[dict | None] = mapped_column(sa.JSON)
    output_resources: Mapped[list] = mapped_column(sa.JSON, default=list)
    dependencies: Mapped[list] = mapped_column(sa.JSON, default=list)
    providers: Mapped[list] = mapped_column(sa.JSON, default=list)
    debug_setting: Mapped[dict | None] = mapped_column(sa.JSON)
    error: Mapped[dict | None] = mapped_column(sa.JSON)
    correlation_id: Mapped[str] = mapped_column(sa.String(64))
    # Who deployed: the worker applies and authorises every resource as this caller.
    caller: Mapped[dict] = mapped_column(sa.JSON)
    operation_id: Mapped[str | None] = mapped_column(sa.String(80))
    # History order: a re-PUT moves the deployment to the newest place, as in ARM.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @property
    def arm_id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Resources/deployments/{self.name}"


class DeploymentOperation(Base):
    """One resource write (or delete, in Complete mode) a deployment made: `deployments/{name}/operations`."""

    __tablename__ = "deployment_operations"
    __table_args__ = (sa.UniqueConstraint("deployment_id", "operation_id"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(sa.ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    operation_id: Mapped[str] = mapped_column(sa.String(32))
    sequence: Mapped[int] = mapped_column(sa.Integer)
    provisioning_operation: Mapped[str] = mapped_column(sa.String(32))
    provisioning_state: Mapped[str] = mapped_column(sa.String(16))
    target: Mapped[dict] = mapped_column(sa.JSON)
    status_code: Mapped[str | None] = mapped_column(sa.String(32))
    status_message: Mapped[dict | None] = mapped_column(sa.JSON)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
