"""Each process caches who may do what (principals, subscriptions, role assignments) and must never decide on
stale access: database triggers bump a generation with every change, however it is made, and each request checks it.

Two apps on one database stand for two processes (each has its own cache); changes are made through the other
app, and by plain SQL that no application code sees.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from control_plane import bootstrap
from control_plane.authorization import roles
from control_plane.authorization import service as authorization
from control_plane.authorization.models import RoleAssignment
from control_plane.identity import service as identity
from tests.support.in_process import owner_headers

API = "api-version=2025-04-01"


def _reader(app) -> tuple[str, dict[str, str], str]:
    """A second principal with Reader on the subscription: (its object id, its bearer header, the group URL)."""
    ctx = app.extensions["control_plane"]
    state, owner = owner_headers(app)
    client = app.test_client()
    group = f"/subscriptions/{state['subscriptionId']}/resourceGroups/rg1"
    assert client.put(f"{group}?{API}", json={"location": "eastus"}, headers=owner).status_code == 201
    with ctx.db.session() as session:
        created = identity.create_service_principal(session, state["tenantId"], "reader")
        authorization.assign(session, state["tenantId"], f"/subscriptions/{state['subscriptionId']}",
                             roles.READER, created.principal.object_id)
    token = client.post(f"/{state['tenantId']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": created.principal.app_id, "client_secret": created.secret,
        "scope": "https://management.azure.com/.default"}).get_json()["access_token"]
    return created.principal.object_id, {"Authorization": f"Bearer {token}"}, group


def test_a_revocation_by_another_process_applies_at_the_next_request(two_processes):
    first, second = two_processes
    object_id, reader, group = _reader(first)
    client = first.test_client()
    for _ in range(3):  # cached after the first
        assert client.get(f"{group}?{API}", headers=reader).status_code == 200
    with second.extensions["control_plane"].db.session() as session:
        assignment = session.scalars(sa.select(RoleAssignment).where(RoleAssignment.principal_id == object_id)).one()
    revoked = second.test_client().delete(
        f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.name}"
        "?api-version=2022-04-01", headers=owner_headers_for(second))
    assert revoked.status_code == 200
    refused = client.get(f"{group}?{API}", headers=reader)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "AuthorizationFailed"


def owner_headers_for(app) -> dict[str, str]:
    """The owner's bearer header on an app whose database `init` already ran (a fresh secret)."""
    with app.extensions["control_plane"].db.session() as session:
        state, secret = bootstrap.init(session, reset_secret=True)
    token = app.test_client().post(f"/{state['tenantId']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": state["clientId"], "client_secret": secret,
        "scope": "https://management.azure.com/.default"}).get_json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("change", ["delete the assignment", "move the assignment", "delete the principal"])
def test_plain_sql_changes_reach_every_cache(two_processes, change):
    """No application code runs here: only the triggers can tell the caches."""
    first, _ = two_processes
    object_id, reader, group = _reader(first)
    client = first.test_client()
    assert client.get(f"{group}?{API}", headers=reader).status_code == 200
    with first.extensions["control_plane"].db.engine.begin() as connection:
        if change == "delete the assignment":
            connection.execute(sa.text("DELETE FROM role_assignments WHERE principal_id = :p"), {"p": object_id})
        elif change == "move the assignment":
            connection.execute(sa.text("UPDATE role_assignments SET scope_key = '/subscriptions/elsewhere' "
                                       "WHERE principal_id = :p"), {"p": object_id})
        else:
            connection.execute(sa.text("DELETE FROM role_assignments WHERE principal_id = :p"), {"p": object_id})
            connection.execute(sa.text("DELETE FROM service_principals WHERE object_id = :p"), {"p": object_id})
    after = client.get(f"{group}?{API}", headers=reader)
    expected = (401, "InvalidAuthenticationToken") if change == "delete the principal" else (403, "AuthorizationFailed")
    assert (after.status_code, after.get_json()["error"]["code"]) == expected


def test_a_grant_applies_at_once_too(two_processes):
    first, second = two_processes
    object_id, reader, group = _reader(first)
    client = first.test_client()
    registry = f"{group}/providers/Microsoft.ContainerRegistry/registries/cachedgrant1?api-version=2023-07-01"
    body = {"location": "eastus", "sku": {"name": "Basic"}}
    assert client.put(registry, json=body, headers=reader).status_code == 403
    ctx = second.extensions["control_plane"]
    with ctx.db.session() as session:
        state = bootstrap.require_bootstrap(session)
        authorization.assign(session, state["tenantId"], group.split("?")[0], roles.CONTRIBUTOR, object_id)
    assert client.put(registry, json=body, headers=reader).status_code in (200, 201)


def test_only_access_changes_move_the_generation(two_processes):
    first, _ = two_processes
    engine = first.extensions["control_plane"].db.engine

    def generation() -> int:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT value FROM access_generation WHERE id = 1")).scalar_one()

    before = generation()
    _reader(first)  # a principal and a role assignment: moved
    moved = generation()
    assert moved > before
    with engine.begin() as connection:  # resources are not access: left alone
        connection.execute(sa.text("UPDATE resource_groups SET tags = tags"))
    assert generation() == moved
