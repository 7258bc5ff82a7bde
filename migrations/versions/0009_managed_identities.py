"""User-assigned managed identities (Microsoft.ManagedIdentity/userAssignedIdentities)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 23:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_assigned_identities",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("resource_group_id", sa.String(length=36), nullable=False),
        sa.Column("resource_group_name", sa.String(length=90), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("name_key", sa.String(length=128), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_by_type", sa.String(length=32), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=256), nullable=False),
        sa.Column("modified_by_type", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_user_assigned_identities_subscription_id_subscriptions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resource_group_id"], ["resource_groups.id"],
                                name=op.f("fk_user_assigned_identities_resource_group_id_resource_groups"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_assigned_identities")),
        sa.UniqueConstraint("resource_group_id", "name_key",
                            name=op.f("uq_user_assigned_identities_resource_group_id_name_key")),
        sa.UniqueConstraint("principal_id", name=op.f("uq_user_assigned_identities_principal_id")),
        sa.UniqueConstraint("client_id", name=op.f("uq_user_assigned_identities_client_id")),
    )
    op.create_index(op.f("ix_user_assigned_identities_subscription_id"), "user_assigned_identities",
                    ["subscription_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_user_assigned_identities_subscription_id"), table_name="user_assigned_identities")
    op.drop_table("user_assigned_identities")
