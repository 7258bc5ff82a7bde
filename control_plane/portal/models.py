"""The portal's one table: server-side sessions. It has its own MetaData (the portal imports nothing from the
rest of control_plane); control_plane/models.py copies it into the schema Alembic and the drift test see."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

portal_sessions = sa.Table(
    "portal_sessions",
    metadata,
    # SHA-256 of the cookie's random value: a copy of the table does not hand out live sessions.
    sa.Column("id", sa.String(64), nullable=False),
    # The session's state (MSAL token cache, sign-in flow, CSRF token, chosen subscription), encrypted.
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_portal_sessions"),
    sa.Index("ix_portal_sessions_expires_at", "expires_at"),
)
