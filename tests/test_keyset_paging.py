"""Listing a big resource group page by page is keyset paging at every depth: each page is one range scan that
starts after the previous page's last name (never OFFSET, never a sort of the whole group).

A small-scale version of the benchmark's 100,000-registry walk (bench/): 2,000 rows, asserting on the SQL the
walk runs rather than on timings.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from control_plane.app import create_app
from control_plane.db import utcnow
from control_plane.registries.models import Registry
from control_plane.registries.schemas import with_defaults
from control_plane.resource_groups.models import ResourceGroup
from tests.conftest import selected_backends
from tests.support.in_process import owner_headers, prepared_settings

ROWS, PAGE = 2000, 100


@pytest.fixture(params=selected_backends())
def deep_group(request, tmp_path):
    """An app (in-process) whose resource group 'deep' holds ROWS registries, and a bystander group with a few."""
    with prepared_settings(request.param, tmp_path) as settings:
        app = create_app(settings, start_worker=False)
        ctx = app.extensions["control_plane"]
        state, headers = owner_headers(app)
        client = app.test_client()
        base = f"/subscriptions/{state['subscriptionId']}/resourceGroups"
        for group in ("deep", "bystander"):
            assert client.put(f"{base}/{group}?api-version=2025-04-01", json={"location": "eastus"},
                              headers=headers).status_code == 201
        names = _insert(ctx, state["subscriptionId"], "deep", ROWS)
        _insert(ctx, state["subscriptionId"], "bystander", 5)
        try:
            yield ctx, client, headers, f"{base}/deep/providers/Microsoft.ContainerRegistry/registries", names
        finally:
            ctx.db.dispose()


def _insert(ctx, subscription_id: str, group: str, count: int) -> list[str]:
    """Rows straight into the table (what the API would take minutes to make), in random name order."""
    with ctx.db.engine.begin() as conn:
        group_id = conn.scalar(sa.select(ResourceGroup.id).where(ResourceGroup.name_key == group))
        now, rows = utcnow(), []
        for _ in range(count):
            registry_id = str(uuid.uuid4())
            name = f"r{uuid.uuid4().hex[:16]}"
            rows.append({"id": registry_id, "subscription_id": subscription_id, "resource_group_id": group_id,
                         "resource_group_name": group, "name": name, "name_key": name, "location": "eastus",
                         "sku": "Basic", "tags": {}, "identity": None, "properties": with_defaults({}),
                         "provisioning_state": "Succeeded", "container_name": f"{name}-{registry_id[:8]}",
                         "admin_password_1": "x", "admin_password_2": "x", "created_at": now, "created_by": "t",
                         "created_by_type": "Application", "modified_at": now, "modified_by": "t",
                         "modified_by_type": "Application"})
        conn.execute(sa.insert(Registry.__table__), rows)
    return [row["name"] for row in rows]


def test_walking_a_deep_group_is_keyset_paging_to_the_last_page(deep_group):
    ctx, client, headers, path, names = deep_group
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        if "FROM registries" in statement and "ORDER BY registries.name_key" in statement:
            statements.append((statement, parameters))

    event.listen(ctx.db.engine, "before_cursor_execute", capture)
    try:
        seen, url, pages = [], f"{path}?api-version=2025-11-01&$top={PAGE}", 0
        while url:
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)
            body = response.get_json()
            seen += [item["name"] for item in body["value"]]
            url, pages = body.get("nextLink"), pages + 1
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", capture)

    assert seen == sorted(names), "every registry of the group exactly once, in name order"
    assert pages == ROWS // PAGE
    assert len(statements) == pages, [s for s, _ in statements]
    for index, (statement, parameters) in enumerate(statements):
        text = " ".join(statement.split()).upper()
        # SQLAlchemy's SQLite dialect always writes `LIMIT ? OFFSET ?`; the offset must then be 0 on every page.
        assert "OFFSET" not in text or (text.endswith("LIMIT ? OFFSET ?") and parameters[-1] == 0), statement
        assert "LIMIT" in text and "ORDER BY REGISTRIES.NAME_KEY" in text
        assert ("REGISTRIES.NAME_KEY >" in text) == (index > 0), "pages after the first start after a key"
    if ctx.db.engine.dialect.name == "sqlite":
        _assert_range_scan(ctx, *statements[-1])


def _assert_range_scan(ctx, statement: str, parameters) -> None:
    """SQLite's plan for the deepest page: a search of the group's (group, name) index, with no sort step."""
    with ctx.db.engine.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "USING INDEX ix_registries_group_name" in plan and "name_key>?" in plan.replace(" ", ""), plan
    assert "TEMP B-TREE" not in plan, plan
