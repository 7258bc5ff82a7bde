"""The models and the Alembic migrations must describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from control_plane import migrate
from control_plane.config import Settings
from control_plane.models import metadata
from tests.support import servers


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'drift.db'}"
    else:
        with servers.postgres_database() as url:
            yield Settings.from_env({"CONTROL_PLANE_DATABASE_URL": url}).database_url


def test_migrations_match_models(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == [], f"models and migrations drifted apart: {differences}"


def test_upgrade_is_repeatable_and_reaches_every_table(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables
