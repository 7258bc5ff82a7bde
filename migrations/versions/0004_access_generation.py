"""A generation number that every change to who-may-do-what bumps, kept by database triggers

Each process caches principals, subscriptions and role assignments, and reads this one row per request to know
whether its cache still holds. Triggers (not application code) bump it, in the writing transaction, so no write
path — a cascade, a bulk delete, a hand-run SQL statement — can leave a process deciding on revoked access.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 07:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WATCHED_TABLES = ("role_assignments", "service_principals", "subscriptions", "tenants")
BUMP = "UPDATE access_generation SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "access_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_generation")),
    )
    op.execute("INSERT INTO access_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE FUNCTION bump_access_generation() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   f"BEGIN {BUMP}; RETURN NULL; END $$")
        for table in WATCHED_TABLES:
            op.execute(f"CREATE TRIGGER {table}_bump_access_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_access_generation()")
        return
    # SQLite: one trigger per event, and only FOR EACH ROW.
    for table in WATCHED_TABLES:
        for event in ("insert", "update", "delete"):
            op.execute(f"CREATE TRIGGER {table}_{event}_bumps_access_generation AFTER {event.upper()} ON {table} "
                       f"BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED_TABLES:
            op.execute(f"DROP TRIGGER {table}_bump_access_generation ON {table}")
        op.execute("DROP FUNCTION bump_access_generation()")
    else:
        for table in WATCHED_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{event}_bumps_access_generation")
    op.drop_table("access_generation")
