"""Management locks (Microsoft.Authorization/locks): CanNotDelete and ReadOnly locks on subscriptions, resource
groups and resources

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "management_locks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("scope_key", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=260), nullable=False),
        sa.Column("name_key", sa.String(length=260), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("notes", sa.String(length=512), nullable=True),
        sa.Column("owners", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_management_locks_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_management_locks")),
        sa.UniqueConstraint("scope_key", "name_key", name=op.f("uq_management_locks_scope_key_name_key")),
    )
    op.create_index(op.f("ix_management_locks_subscription_id"), "management_locks", ["subscription_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_management_locks_subscription_id"), table_name="management_locks")
    op.drop_table("management_locks")
