"""The app in this process (Flask's test client, no server): bootstrap it and act as its owner."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from control_plane import bootstrap
from control_plane.config import Settings
from tests.support import servers


def owner_headers(app) -> tuple[dict, dict[str, str]]:
    """Runs `init` on the app's database; returns its state and a bearer header for the owner principal."""
    with app.extensions["control_plane"].db.session() as session:
        state, secret = bootstrap.init(session)
    token = app.test_client().post(f"/{state['tenantId']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": state["clientId"], "client_secret": secret,
        "scope": "https://management.azure.com/.default"}).get_json()["access_token"]
    return state, {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def prepared_settings(backend: str, data_dir: Path) -> Iterator[Settings]:
    """Settings for an in-process app on the test backend's database (SQLite in `data_dir`, or a fresh PostgreSQL
    database dropped afterwards), migrated and with its signing key."""
    from control_plane.cli import _prepare

    with contextlib.ExitStack() as stack:
        env = {"CONTROL_PLANE_DATA_DIR": str(data_dir), "CONTROL_PLANE_TLS": "off"}
        if backend != "sqlite-local":
            env["CONTROL_PLANE_DATABASE_URL"] = stack.enter_context(servers.postgres_database())
        settings = Settings.from_env(env)
        _prepare(settings)
        yield settings
