"""The models and the Alembic migrations must describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

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


def test_0002_moves_existing_secrets_to_the_application(database_url):
    """A principal made before applications existed keeps logging in with its secret after the upgrade."""
    from control_plane.crypto import hash_secret
    from control_plane.db import Database
    from control_plane.identity import service as identity

    engine = create_engine(database_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO tenants (id, display_name, created_at) VALUES "
                             "('11111111-1111-1111-1111-111111111111', 't', CURRENT_TIMESTAMP)")
        conn.exec_driver_sql("INSERT INTO service_principals (object_id, app_id, tenant_id, display_name, "
                             "is_tenant_admin, created_at) VALUES ('22222222-2222-2222-2222-222222222222', "
                             "'33333333-3333-3333-3333-333333333333', '11111111-1111-1111-1111-111111111111', 'old', "
                             "false, CURRENT_TIMESTAMP)")
        conn.exec_driver_sql(
            "INSERT INTO client_secrets (key_id, principal_object_id, secret_hash, hint, created_at, expires_at) "
            "VALUES ('44444444-4444-4444-4444-444444444444', '22222222-2222-2222-2222-222222222222', %s, 'sec', "
            "CURRENT_TIMESTAMP, '2099-01-01 00:00:00+00')" % ("'" + hash_secret("secret-of-old") + "'"))
    engine.dispose()
    db = Database(database_url)
    migrate.upgrade(db.engine)
    with db.session() as session:
        principal = identity.authenticate_client(session, "11111111-1111-1111-1111-111111111111",
                                                 "33333333-3333-3333-3333-333333333333", "secret-of-old")
        assert principal.display_name == "old"
        application_names = session.execute(text("SELECT display_name FROM applications")).scalars().all()
    db.dispose()
    assert application_names == ["old"]
