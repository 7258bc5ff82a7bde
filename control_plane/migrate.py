"""Schema changes only through Alembic: `upgrade()` is what `serve`, `init` and `db upgrade` run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

# Any fixed number: PostgreSQL advisory lock taken around migrations so replicas starting together take turns.
MIGRATION_LOCK_ID = 7_317_001


def script_location() -> str:
    spec = importlib.util.find_spec("control_plane.migrations")
    if spec and spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))))
    return str(Path(__file__).resolve().parent.parent / "migrations")


def alembic_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        command.upgrade(alembic_config(connection), revision)
