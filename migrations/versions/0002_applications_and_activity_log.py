"""Applications (Graph app registrations), client secrets keyed by appId, role-assignment conditions, activity log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:22:51

Every existing service principal gets its application, and its secrets move from the principal's object id to
the shared appId (Graph adds passwords to either object; the token endpoint checks them by appId).
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activity_log",
        sa.Column("event_data_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("resource_group_name", sa.String(length=90), nullable=True),
        sa.Column("resource_id", sa.String(length=1024), nullable=False),
        sa.Column("resource_provider", sa.String(length=128), nullable=False),
        sa.Column("resource_type", sa.String(length=256), nullable=False),
        sa.Column("operation_name", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("caller_object_id", sa.String(length=256), nullable=False),
        sa.Column("caller_app_id", sa.String(length=256), nullable=True),
        sa.Column("caller_name", sa.String(length=256), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("operation_id", sa.String(length=64), nullable=False),
        sa.Column("event_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("event_data_id", name=op.f("pk_activity_log")),
    )
    op.create_index("ix_activity_log_subscription_time", "activity_log", ["subscription_id", "event_timestamp"])

    op.create_table(
        "applications",
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("identifier_uris", sa.JSON(), nullable=False),
        sa.Column("sign_in_audience", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_applications_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_applications")),
        sa.UniqueConstraint("app_id", name=op.f("uq_applications_app_id")),
    )
    op.create_index(op.f("ix_applications_tenant_id"), "applications", ["tenant_id"])

    connection = op.get_bind()
    principals = connection.execute(sa.text(
        "SELECT app_id, tenant_id, display_name, created_at FROM service_principals")).all()
    for principal in principals:  # raw SQL: the stored created_at goes back in exactly as it came out
        connection.execute(sa.text(
            "INSERT INTO applications (object_id, app_id, tenant_id, display_name, identifier_uris, sign_in_audience,"
            " created_at) VALUES (:object_id, :app_id, :tenant_id, :display_name, '[]', 'AzureADMyOrg', :created_at)"
        ), {"object_id": str(uuid.uuid4()), **principal._asdict()})

    with op.batch_alter_table("client_secrets") as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("owner_type", sa.String(length=32), nullable=False,
                                      server_default="servicePrincipal"))
    connection.execute(sa.text(
        "UPDATE client_secrets SET app_id = (SELECT app_id FROM service_principals "
        "WHERE service_principals.object_id = client_secrets.principal_object_id)"))
    with op.batch_alter_table("client_secrets") as batch_op:
        batch_op.alter_column("app_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.alter_column("owner_type", existing_type=sa.String(length=32), server_default=None)
        batch_op.drop_index(op.f("ix_client_secrets_principal_object_id"))
        batch_op.drop_constraint(op.f("fk_client_secrets_principal_object_id_service_principals"),
                                 type_="foreignkey")
        batch_op.drop_column("principal_object_id")
        batch_op.create_index("ix_client_secrets_app_hint", ["app_id", "hint"])

    with op.batch_alter_table("role_assignments") as batch_op:
        batch_op.add_column(sa.Column("condition", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("condition_version", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("delegated_managed_identity_resource_id", sa.String(length=1024),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("role_assignments") as batch_op:
        batch_op.drop_column("delegated_managed_identity_resource_id")
        batch_op.drop_column("condition_version")
        batch_op.drop_column("condition")
    with op.batch_alter_table("client_secrets") as batch_op:
        batch_op.add_column(sa.Column("principal_object_id", sa.String(length=36), nullable=True))
    op.get_bind().execute(sa.text(
        "UPDATE client_secrets SET principal_object_id = (SELECT object_id FROM service_principals "
        "WHERE service_principals.app_id = client_secrets.app_id)"))
    op.get_bind().execute(sa.text("DELETE FROM client_secrets WHERE principal_object_id IS NULL"))
    with op.batch_alter_table("client_secrets") as batch_op:
        batch_op.alter_column("principal_object_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_index("ix_client_secrets_app_hint")
        batch_op.drop_column("owner_type")
        batch_op.drop_column("app_id")
        batch_op.create_foreign_key(op.f("fk_client_secrets_principal_object_id_service_principals"),
                                    "service_principals", ["principal_object_id"], ["object_id"], ondelete="CASCADE")
        batch_op.create_index(op.f("ix_client_secrets_principal_object_id"), ["principal_object_id"])
    op.drop_index(op.f("ix_applications_tenant_id"), table_name="applications")
    op.drop_table("applications")
    op.drop_index("ix_activity_log_subscription_time", table_name="activity_log")
    op.drop_table("activity_log")
