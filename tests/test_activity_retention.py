"""The activity log keeps CONTROL_PLANE_ACTIVITY_LOG_RETENTION_DAYS days (90 by default) and prunes older entries on
write, a bounded batch (control_plane/activity/service.py PRUNE_BATCH) per write.

Old entries are planted with plain SQL (through the models, on the service's own database); the writes that prune
them are real ARM calls: the SDK against `control-plane serve` on both backends, and an in-process app with a
seven-day retention.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from control_plane.activity.service import PRUNE_BATCH
from control_plane.app import create_app
from control_plane.authorization.models import ActivityLogEntry
from control_plane.config import Settings, SettingsError
from control_plane.db import Database, utcnow
from tests.conftest import selected_backends
from tests.support.in_process import owner_headers, prepared_settings

ACTIVITY_VERSION = "2015-04-01"


def plant(db: Database, subscription_id: str, tenant_id: str, group: str, age: timedelta, count: int) -> None:
    """`count` entries for a write to `group`, `age` old."""
    moment = utcnow() - age
    with db.session() as session:
        for _ in range(count):
            session.add(ActivityLogEntry(
                event_data_id=str(uuid.uuid4()), tenant_id=tenant_id, subscription_id=subscription_id,
                resource_group_name=group, resource_id=f"/subscriptions/{subscription_id}/resourceGroups/{group}",
                resource_provider="Microsoft.Resources", resource_type="Microsoft.Resources/resourceGroups",
                operation_name="Microsoft.Resources/subscriptions/resourceGroups/write", status="Succeeded",
                http_status=200, caller_object_id=str(uuid.uuid4()), caller_app_id=None, caller_name="planted",
                correlation_id=str(uuid.uuid4()), operation_id=str(uuid.uuid4()), event_timestamp=moment,
                properties={}))


def count(db: Database, group: str) -> int:
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ActivityLogEntry)
                              .where(ActivityLogEntry.resource_group_name == group))


def test_the_retention_setting():
    assert Settings.from_env({}).activity_log_retention_days == 90
    assert Settings.from_env({"CONTROL_PLANE_ACTIVITY_LOG_RETENTION_DAYS": "7"}).activity_log_retention_days == 7
    for bad in ("0", "-1", "ninety"):
        with pytest.raises(SettingsError):
            Settings.from_env({"CONTROL_PLANE_ACTIVITY_LOG_RETENTION_DAYS": bad})


def test_entries_past_90_days_are_pruned_in_batches_by_writes(service, rmc, arm):
    db = Database(Settings.from_env(service.env).database_url)
    old, kept, busy = (f"rg-ret-{label}-{uuid.uuid4().hex[:6]}" for label in ("old", "kept", "busy"))
    planted = PRUNE_BATCH * 2 + PRUNE_BATCH // 2
    plant(db, service.subscription_id, service.tenant_id, old, timedelta(days=90, minutes=5), planted)
    plant(db, service.subscription_id, service.tenant_id, kept, timedelta(days=89, hours=23), 3)
    try:
        # Each write prunes one bounded batch, and only what is past the retention.
        rmc.resource_groups.create_or_update(busy, {"location": "eastus"})
        assert count(db, old) == planted - PRUNE_BATCH
        rmc.resource_groups.create_or_update(busy, {"location": "eastus", "tags": {"n": "2"}})
        assert count(db, old) == planted - 2 * PRUNE_BATCH
        rmc.resource_groups.create_or_update(busy, {"location": "eastus", "tags": {"n": "3"}})
        assert count(db, old) == 0
        assert count(db, kept) == 3 and count(db, busy) == 3

        # What is kept is what the API serves (az's filter form, §13 of the client notes).
        start = (datetime.now(UTC) - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        response = arm.request("GET", f"/subscriptions/{service.subscription_id}/providers/Microsoft.Insights/"
                                      f"eventtypes/management/values", params={
            "api-version": ACTIVITY_VERSION, "$filter": f"eventTimestamp ge {start} and resourceGroupName eq '{kept}'"})
        events = []
        while True:
            assert response.status_code == 200, response.text
            events += response.json()["value"]
            if not response.json().get("nextLink"):
                break
            response = arm.request("GET", response.json()["nextLink"])
        assert len(events) == 3, events
    finally:
        rmc.resource_groups.begin_delete(busy).result()
        with db.session() as session:
            session.execute(sa.delete(ActivityLogEntry).where(ActivityLogEntry.resource_group_name == kept))
        db.dispose()


@pytest.mark.parametrize("backend", selected_backends())
def test_a_shorter_retention_is_honoured(backend, tmp_path):
    with prepared_settings(backend, tmp_path) as settings:
        app = create_app(dataclasses.replace(settings, activity_log_retention_days=7))
        db = app.extensions["control_plane"].db
        try:
            state, headers = owner_headers(app)
            plant(db, state["subscriptionId"], state["tenantId"], "eight-days", timedelta(days=8), 5)
            plant(db, state["subscriptionId"], state["tenantId"], "six-days", timedelta(days=6), 5)
            response = app.test_client().put(
                f"/subscriptions/{state['subscriptionId']}/resourcegroups/rg1?api-version=2021-04-01",
                json={"location": "eastus"}, headers=headers)
            assert response.status_code in (200, 201), response.get_json()
            assert (count(db, "eight-days"), count(db, "six-days"), count(db, "rg1")) == (0, 5, 1)
        finally:
            db.dispose()
