"""Portal sessions: the web portal's server-side sessions (an encrypted MSAL token cache and state per browser)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 23:40:00

The browser holds only a random id; the row is keyed by its SHA-256. No access decision reads this table (the
portal calls the public API with the person's token), so the access-generation triggers do not watch it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_sessions"),
    )
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_portal_sessions_expires_at", table_name="portal_sessions")
    op.drop_table("portal_sessions")
