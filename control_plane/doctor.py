"""`control-plane doctor`: find (and with --repair, fix) drift between registry rows and blob containers.

Drift is a container in a storage account that no registry row names, or a registry whose container is gone.
Both are left alone while an operation on them is still running: the worker will settle them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from control_plane.db import Database
from control_plane.operations.models import IN_PROGRESS, Operation
from control_plane.registries.models import Registry
from control_plane.storage import StorageError, StorageRouter

# Only containers named the way registries/service.py names them are ours to judge; a shared storage account
# may hold anything else.
OUR_CONTAINER = re.compile(r"^[a-z0-9]{5,50}-[0-9a-f]{8}$")


@dataclass
class Report:
    orphan_containers: list[tuple[str, str]] = field(default_factory=list)  # (store, container)
    missing_containers: list[tuple[str, str]] = field(default_factory=list)  # (registry id, container)
    unreachable_stores: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.orphan_containers or self.missing_containers or self.unreachable_stores)

    def as_dict(self) -> dict:
        return {
            "orphanContainers": [{"store": s, "container": c} for s, c in self.orphan_containers],
            "registriesWithoutContainers": [{"registry": r, "container": c} for r, c in self.missing_containers],
            "unreachableStorageAccounts": self.unreachable_stores,
            "repaired": self.repaired,
            "drift": self.drift,
        }


def check(db: Database, storage: StorageRouter, locations: tuple[str, ...], repair: bool = False,
          progress: Callable[[str], None] = lambda _: None) -> Report:
    report = Report()
    with db.session() as session:
        registries = list(session.scalars(sa.select(Registry)))
        busy = {resource_id.lower() for resource_id in session.scalars(
            sa.select(Operation.resource_id).where(Operation.status == IN_PROGRESS))}
    busy_containers = {r.container_name for r in registries if r.arm_id.lower() in busy}
    wanted: dict[int, set[str]] = {}
    stores = {}
    for row in registries:
        store = storage.for_location(row.location)
        stores[id(store)] = store
        wanted.setdefault(id(store), set()).add(row.container_name)
    for location in locations:
        store = storage.for_location(location)
        stores[id(store)] = store

    present: dict[int, set[str]] = {}
    for key, store in stores.items():
        progress(f"listing containers in {store.name} ...")
        try:
            present[key] = set(store.list_containers())
        except StorageError as exc:
            report.unreachable_stores.append(f"{store.name}: {exc}")
    progress(f"checking {len(registries)} registries ...")

    for key, store in stores.items():
        if key not in present:
            continue
        for container in sorted(present[key] - wanted.get(key, set())):
            if OUR_CONTAINER.match(container) and container not in busy_containers:
                report.orphan_containers.append((store.name, container))
                if repair:
                    _try(report, lambda s=store, c=container: s.delete_container(c), f"deleted container {container}")
    for row in registries:
        store = storage.for_location(row.location)
        settled = row.container_name not in busy_containers and row.provisioning_state not in ("Creating", "Deleting")
        if id(store) not in present or row.container_name in present[id(store)] or not settled:
            continue
        report.missing_containers.append((row.arm_id, row.container_name))
        if repair:
            _try(report, lambda s=store, c=row.container_name: s.create_container(c),
                 f"recreated container {row.container_name}")
    return report


def _try(report: Report, action: Callable[[], None], done: str) -> None:
    try:
        action()
        report.repaired.append(done)
    except StorageError as exc:
        report.unreachable_stores.append(str(exc))
