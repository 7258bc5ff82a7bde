"""Template deployments (Microsoft.Resources/deployments) and their per-resource operations

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 20:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("resource_group_id", sa.String(length=36), nullable=True),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("scope_key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("provisioning_state", sa.String(length=16), nullable=False),
        sa.Column("template", sa.JSON(), nullable=False),
        sa.Column("template_hash", sa.String(length=24), nullable=False),
        sa.Column("input_parameters", sa.JSON(), nullable=False),
        sa.Column("secret_parameters", sa.Text(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("output_resources", sa.JSON(), nullable=False),
        sa.Column("dependencies", sa.JSON(), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=False),
        sa.Column("debug_setting", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.JSON(), nullable=False),
        sa.Column("operation_id", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_deployments_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resource_group_id"], ["resource_groups.id"],
                                name=op.f("fk_deployments_resource_group_id_resource_groups"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("scope_key", "name_key", name=op.f("uq_deployments_scope_key_name_key")),
    )
    op.create_index(op.f("ix_deployments_subscription_id"), "deployments", ["subscription_id"], unique=False)
    op.create_index(op.f("ix_deployments_resource_group_id"), "deployments", ["resource_group_id"], unique=False)
    op.create_index("ix_deployments_scope_key_created_at", "deployments", ["scope_key", "created_at"], unique=False)
    op.create_table(
        "deployment_operations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("provisioning_operation", sa.String(length=32), nullable=False),
        sa.Column("provisioning_state", sa.String(length=16), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("status_code", sa.String(length=32), nullable=True),
        sa.Column("status_message", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"],
                                name=op.f("fk_deployment_operations_deployment_id_deployments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_operations")),
        sa.UniqueConstraint("deployment_id", "operation_id",
                            name=op.f("uq_deployment_operations_deployment_id_operation_id")),
    )
    op.create_index(op.f("ix_deployment_operations_deployment_id"), "deployment_operations", ["deployment_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_deployment_operations_deployment_id"), table_name="deployment_operations")
    op.drop_table("deployment_operations")
    op.drop_index("ix_deployments_scope_key_created_at", table_name="deployments")
    op.drop_index(op.f("ix_deployments_resource_group_id"), table_name="deployments")
    op.drop_index(op.f("ix_deployments_subscription_id"), table_name="deployments")
    op.drop_table("deployments")
