"""Users and security groups, group membership, sign-in failure counters, tenants' default domains

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 09:00:00

Users, groups and memberships decide who may do what, so the access-generation triggers of 0004 watch them too:
removing a member, disabling a user or deleting either applies to the very next request on every replica. The
sign-in failure counters are not watched (a failed sign-in changes nobody's access). Existing tenants get their
default domain (`<letters and digits of the name>.onmicrosoft.local`, made unique with the tenant id when taken).
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WATCHED_TABLES = ("users", "directory_groups", "group_members")
BUMP = "UPDATE access_generation SET value = value + 1 WHERE id = 1"
DOMAIN_SUFFIX = "onmicrosoft.local"


def _default_domains(tenants: list) -> dict[str, str]:
    """The same rule as identity.service.create_tenant, fixed here as it was when this revision was written."""
    domains: dict[str, str] = {}
    for tenant_id, display_name in tenants:
        label = re.sub(r"[^a-z0-9]", "", display_name.lower())[:27] or "tenant"
        domain = f"{label}.{DOMAIN_SUFFIX}"
        domains[tenant_id] = domain if domain not in domains.values() else f"{label}{tenant_id[:8]}.{DOMAIN_SUFFIX}"
    return domains


def upgrade() -> None:
    # ADD COLUMN, not a batch rebuild: rebuilding `tenants` on SQLite would drop its access-generation triggers.
    op.add_column("tenants", sa.Column("default_domain", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    tenants = connection.execute(sa.text("SELECT id, display_name FROM tenants ORDER BY created_at, id")).all()
    for tenant_id, domain in _default_domains([tuple(t) for t in tenants]).items():
        connection.execute(sa.text("UPDATE tenants SET default_domain = :domain WHERE id = :id"),
                           {"domain": domain, "id": tenant_id})
    op.create_index(op.f("ix_tenants_default_domain"), "tenants", ["default_domain"], unique=True)

    op.create_table(
        "users",
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_principal_name", sa.String(length=256), nullable=False),
        sa.Column("upn_key", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("mail_nickname", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("account_enabled", sa.Boolean(), nullable=False),
        sa.Column("security_stamp", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_users_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_users")),
        sa.UniqueConstraint("upn_key", name=op.f("uq_users_upn_key")),
    )
    op.create_index(op.f("ix_users_tenant_id"), "users", ["tenant_id"])

    op.create_table(
        "directory_groups",
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("mail_nickname", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_directory_groups_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_directory_groups")),
    )
    op.create_index(op.f("ix_directory_groups_tenant_id"), "directory_groups", ["tenant_id"])

    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("member_type", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["directory_groups.object_id"],
                                name=op.f("fk_group_members_group_id_directory_groups"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "member_id", name=op.f("pk_group_members")),
    )
    op.create_index(op.f("ix_group_members_member_id"), "group_members", ["member_id"])

    op.create_table(
        "sign_in_failures",
        sa.Column("username_key", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("username_key", "source", name=op.f("pk_sign_in_failures")),
    )

    if connection.dialect.name == "postgresql":
        # bump_access_generation() is 0004's.
        for table in WATCHED_TABLES:
            op.execute(f"CREATE TRIGGER {table}_bump_access_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_access_generation()")
        return
    # SQLite: one trigger per event, and only FOR EACH ROW. A cascade from a deleted group fires them too.
    for table in WATCHED_TABLES:
        for event in ("insert", "update", "delete"):
            op.execute(f"CREATE TRIGGER {table}_{event}_bumps_access_generation AFTER {event.upper()} ON {table} "
                       f"BEGIN {BUMP}; END")


def downgrade() -> None:
    for table in ("sign_in_failures", "group_members", "directory_groups", "users"):
        op.drop_table(table)  # their triggers go with them
    op.drop_index(op.f("ix_tenants_default_domain"), table_name="tenants")
    # Plain DROP COLUMN (SQLite 3.35+) keeps the table, and so its access-generation triggers.
    op.execute("ALTER TABLE tenants DROP COLUMN default_domain")
