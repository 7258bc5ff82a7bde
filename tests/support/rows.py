"""Rows a data-plane test needs beneath a registry, written as plain SQL (no ARM call, no provisioning)."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

from control_plane.db import Database
from control_plane.storage import StorageRouter


def seed_registry(db: Database, storage: StorageRouter, prefix: str, location: str = "eastus") -> tuple[str, str]:
    """Tenant, subscription, group and a Standard registry without anonymous pull, and the registry's container:
    (registry name, container name)."""
    ids = {k: str(uuid.uuid4()) for k in ("tenant", "subscription", "group", "registry")}
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    container = f"{name}-{ids['registry'][:8]}"
    now = sa.func.current_timestamp()
    with db.session() as session:
        for table, values in (
            ("tenants", {"id": ids["tenant"], "display_name": "t", "created_at": now}),
            ("subscriptions", {"id": ids["subscription"], "tenant_id": ids["tenant"], "display_name": "s",
                               "state": "Enabled", "created_at": now}),
            ("resource_groups", {"id": ids["group"], "subscription_id": ids["subscription"], "name": "rg",
                                 "name_key": "rg", "location": location, "tags": "{}",
                                 "provisioning_state": "Succeeded", "created_at": now}),
            ("registries", {"id": ids["registry"], "subscription_id": ids["subscription"],
                            "resource_group_id": ids["group"], "resource_group_name": "rg", "name": name,
                            "name_key": name, "location": location, "sku": "Standard", "tags": "{}",
                            "properties": json.dumps({"anonymousPullEnabled": False}),
                            "provisioning_state": "Succeeded", "container_name": container,
                            "admin_password_1": "x", "admin_password_2": "x", "created_at": now, "created_by": "t",
                            "created_by_type": "Application", "modified_at": now, "modified_by": "t",
                            "modified_by_type": "Application"}),
        ):
            session.execute(sa.insert(sa.table(table, *(sa.column(c) for c in values))).values(**values))
    storage.for_location(location).create_container(container)
    return name, container
