"""Alembic environment: runs migrations on the connection `control_plane.migrate` hands over."""

from __future__ import annotations

from alembic import context

from control_plane.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
