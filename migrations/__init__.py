"""Alembic environment; installed as control_plane.migrations."""
