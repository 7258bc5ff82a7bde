"""Sign-in flows: authorization codes, device codes, browser sessions at the issuer, applications' redirect URIs,
and the activity log's age index

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 23:10:00

Codes and sessions live in the database so that whichever worker or replica a client reaches can redeem them. None
of these tables decides who may do what (a session or code is only good while its user is), so none is watched by
the access-generation triggers. The applications table gets columns by ADD COLUMN, not a batch rebuild, so its
triggers stay. The index on the activity log's timestamp makes pruning old entries an index range scan.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("applications", sa.Column("web_redirect_uris", sa.JSON(), nullable=False,
                                            server_default=sa.text("'[]'")))
    op.add_column("applications", sa.Column("public_client_redirect_uris", sa.JSON(), nullable=False,
                                            server_default=sa.text("'[]'")))
    op.add_column("applications", sa.Column("is_fallback_public_client", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))
    op.create_table(
        "authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
        sa.Column("confidential", sa.Boolean(), nullable=False),
        sa.Column("user_object_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("security_stamp", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=2048), nullable=False),
        sa.Column("nonce", sa.String(length=512), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_authorization_codes")),
    )
    op.create_index(op.f("ix_authorization_codes_expires_at"), "authorization_codes", ["expires_at"])
    op.create_table(
        "device_codes",
        sa.Column("device_code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_segment", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=2048), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("user_object_id", sa.String(length=36), nullable=True),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_code_hash", name=op.f("pk_device_codes")),
        sa.UniqueConstraint("user_code", name=op.f("uq_device_codes_user_code")),
    )
    op.create_index(op.f("ix_device_codes_expires_at"), "device_codes", ["expires_at"])
    op.create_table(
        "signin_sessions",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("user_object_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("security_stamp", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_hash", name=op.f("pk_signin_sessions")),
    )
    op.create_index(op.f("ix_signin_sessions_expires_at"), "signin_sessions", ["expires_at"])
    op.create_index("ix_activity_log_event_timestamp", "activity_log", ["event_timestamp"])


def downgrade() -> None:
    op.drop_index("ix_activity_log_event_timestamp", table_name="activity_log")
    op.drop_index(op.f("ix_signin_sessions_expires_at"), table_name="signin_sessions")
    op.drop_table("signin_sessions")
    op.drop_index(op.f("ix_device_codes_expires_at"), table_name="device_codes")
    op.drop_table("device_codes")
    op.drop_index(op.f("ix_authorization_codes_expires_at"), table_name="authorization_codes")
    op.drop_table("authorization_codes")
    for column in ("is_fallback_public_client", "public_client_redirect_uris", "web_redirect_uris"):
        op.execute(f"ALTER TABLE applications DROP COLUMN {column}")
