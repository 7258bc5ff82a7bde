"""The app in this process (Flask's test client, no server): bootstrap it and act as its owner."""

from __future__ import annotations

from control_plane import bootstrap


def owner_headers(app) -> tuple[dict, dict[str, str]]:
    """Runs `init` on the app's database; returns its state and a bearer header for the owner principal."""
    with app.extensions["control_plane"].db.session() as session:
        state, secret = bootstrap.init(session)
    token = app.test_client().post(f"/{state['tenantId']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": state["clientId"], "client_secret": secret,
        "scope": "https://management.azure.com/.default"}).get_json()["access_token"]
    return state, {"Authorization": f"Bearer {token}"}
