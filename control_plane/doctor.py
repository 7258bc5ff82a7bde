"""`control-plane doctor`: find (and with --repair, fix) drift between registry rows and blob containers.

Drift is a container in a storage account that no registry row names, or a registry whose container is gone.
Both are left alone while an operation on them is still running: the worker will settle them.

Inside each settled registry's container it also compares the content with its index:
- a blob row whose stored object is gone (repair: a manifest's bytes are written again from its row; any other
  blob's row goes, so the next push uploads it again instead of being told it exists);
- an object under `blobs/` that no row names, or under `uploads/` that no live session owns (repair: delete it);
- an upload session idle for longer than `upload_expiry_seconds` (repair: delete it and its bytes);
- a blob that stayed unreferenced for the sweep's grace period (content/service.py SWEEP_GRACE: no manifest references
  it and no repository link was made or touched since — what manifest deletes and abandoned pushes leave; repair:
  `sweep_unreferenced` frees it, rows then objects). Manifest deletes run the same sweep for their registry; this is
  the sweep for every registry, and what frees a registry where nothing is deleted any more.
Objects younger than `grace_seconds` are never judged: a push in flight stores its bytes before it writes the row
(a monolithic upload stages under `uploads/` with no session at all), so only old objects can be leftovers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from control_plane.content import names
from control_plane.content.models import Blob, Manifest, RepositoryBlob, UploadSession
from control_plane.content.service import SWEEP_GRACE, sweep_unreferenced, unreferenced_blobs
from control_plane.db import Database, utcnow
from control_plane.operations.models import IN_PROGRESS, Operation
from control_plane.registries.models import Registry
from control_plane.storage import StorageError, StorageRouter

# Only containers named the way registries/service.py names them are ours to judge; a shared storage account
# may hold anything else.
OUR_CONTAINER = re.compile(r"^[a-z0-9]{5,50}-[0-9a-f]{8}$")
BLOB_KEY = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]{2})/([0-9a-f]+)/data$")
UPLOAD_KEY = re.compile(r"^uploads/([0-9a-f-]{36})/data$")
# How old an object must be before it can be a leftover: longer than any push takes between storing bytes and
# writing their row (a 1 GiB monolithic upload at the slow-client guard's floor of 1 MiB/s takes 17 minutes).
CONTENT_GRACE_SECONDS = 3600
DEFAULT_UPLOAD_EXPIRY_SECONDS = 24 * 3600


@dataclass
class Report:
    orphan_containers: list[tuple[str, str]] = field(default_factory=list)  # (store, container)
    missing_containers: list[tuple[str, str]] = field(default_factory=list)  # (registry id, container)
    unreachable_stores: list[str] = field(default_factory=list)
    blobs_without_objects: list[tuple[str, str]] = field(default_factory=list)  # (container, digest)
    unreferenced_objects: list[tuple[str, str]] = field(default_factory=list)  # (container, key)
    expired_uploads: list[tuple[str, str]] = field(default_factory=list)  # (container, session id)
    unreferenced_blobs: list[tuple[str, str]] = field(default_factory=list)  # (container, digest)
    repaired: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.orphan_containers or self.missing_containers or self.unreachable_stores
                    or self.blobs_without_objects or self.unreferenced_objects or self.expired_uploads
                    or self.unreferenced_blobs)

    def as_dict(self) -> dict:
        return {
            "orphanContainers": [{"store": s, "container": c} for s, c in self.orphan_containers],
            "registriesWithoutContainers": [{"registry": r, "container": c} for r, c in self.missing_containers],
            "unreachableStorageAccounts": self.unreachable_stores,
            "blobsWithoutObjects": [{"container": c, "digest": d} for c, d in self.blobs_without_objects],
            "unreferencedObjects": [{"container": c, "key": k} for c, k in self.unreferenced_objects],
            "expiredUploads": [{"container": c, "upload": u} for c, u in self.expired_uploads],
            "unreferencedBlobs": [{"container": c, "digest": d} for c, d in self.unreferenced_blobs],
            "repaired": self.repaired,
            "drift": self.drift,
        }


def check(db: Database, storage: StorageRouter, locations: tuple[str, ...], repair: bool = False,
          progress: Callable[[str], None] = lambda _: None,
          upload_expiry_seconds: int = DEFAULT_UPLOAD_EXPIRY_SECONDS,
          grace_seconds: int = CONTENT_GRACE_SECONDS, sweep_grace: timedelta = SWEEP_GRACE) -> Report:
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
    settled = [row for row in registries
               if row.container_name not in busy_containers and row.provisioning_state not in ("Creating", "Deleting")
               and id(storage.for_location(row.location)) in present
               and row.container_name in present[id(storage.for_location(row.location))]]
    check_content(db, storage, settled, report, repair, progress, upload_expiry_seconds, grace_seconds, sweep_grace)
    return report


def check_content(db: Database, storage: StorageRouter, registries: list[Registry], report: Report,
                  repair: bool = False, progress: Callable[[str], None] = lambda _: None,
                  upload_expiry_seconds: int = DEFAULT_UPLOAD_EXPIRY_SECONDS,
                  grace_seconds: int = CONTENT_GRACE_SECONDS, sweep_grace: timedelta = SWEEP_GRACE) -> Report:
    """The content drift of `registries` (settled ones, whose containers exist) into `report`; the sweep of
    unreferenced blobs runs first, so the objects it frees are not reported as drift as well."""
    for row in registries:
        progress(f"checking the content of {row.container_name} ...")
        try:
            _sweep(db, storage, row, report, repair, sweep_grace)
            _check_content(db, storage.for_location(row.location), row, report, repair, upload_expiry_seconds,
                           grace_seconds)
        except StorageError as exc:
            report.unreachable_stores.append(str(exc))
    return report


def _check_content(db: Database, store, registry: Registry, report: Report, repair: bool,
                   upload_expiry_seconds: int, grace_seconds: int) -> None:
    """One registry's content against its rows (see the module's docstring)."""
    container = registry.container_name
    now = utcnow()
    expired_before = now - timedelta(seconds=upload_expiry_seconds)
    old_before = now - timedelta(seconds=grace_seconds)
    with db.session() as session:
        blobs = dict(session.execute(sa.select(Blob.digest, Blob.size).where(Blob.registry_id == registry.id)).all())
        uploads = dict(session.execute(sa.select(UploadSession.id, UploadSession.updated_at)
                                       .where(UploadSession.registry_id == registry.id)).all())
    stored = {item.key: item for item in store.list_objects(container, "blobs/")}
    live_uploads = {upload for upload, updated in uploads.items() if updated >= expired_before}

    for digest in sorted(blobs):
        if names.blob_key(digest) in stored:
            continue
        report.blobs_without_objects.append((container, digest))
        if repair:
            _try(report, lambda d=digest: _restore_or_forget(db, store, registry, d),
                 f"repaired blob {digest} in {container}")
    wanted = {names.blob_key(digest) for digest in blobs}
    for key, item in sorted(stored.items()):
        if key not in wanted and item.last_modified < old_before:
            report.unreferenced_objects.append((container, key))
            if repair:
                _try(report, lambda k=key: _delete_unless_claimed(db, store, registry, k), f"deleted {container}/{key}")
    for item in store.list_objects(container, "uploads/"):
        match = UPLOAD_KEY.match(item.key)
        owner = match.group(1) if match else None
        if owner not in uploads and item.last_modified < old_before:  # an expired session's bytes: below
            report.unreferenced_objects.append((container, item.key))
            if repair:
                _try(report, lambda k=item.key: store.delete_object(container, k), f"deleted {container}/{item.key}")
    for upload in sorted(set(uploads) - live_uploads):
        report.expired_uploads.append((container, upload))
        if repair:
            _try(report, lambda u=upload: _expire_upload(db, store, registry, u),
                 f"deleted expired upload {upload} in {container}")


def _sweep(db: Database, storage: StorageRouter, registry: Registry, report: Report, repair: bool,
           older_than: timedelta) -> None:
    """Reports the blobs unreferenced for longer than the grace; with repair, frees them (the content sweep)."""
    container = registry.container_name
    report.unreferenced_blobs += [(container, digest) for digest in unreferenced_blobs(db, registry.id, older_than)]
    if repair:
        report.repaired += [f"freed unreferenced blob {digest} in {container}"
                            for _, digest in sweep_unreferenced(db, storage, registry.id, older_than)]


def _restore_or_forget(db: Database, store, registry: Registry, digest: str) -> None:
    """A lost manifest object is written again from its row's copy; any other lost blob's row goes (with its
    repository links), so clients upload it again instead of being told it exists."""
    with db.session() as session:
        body = session.scalar(sa.select(Manifest.body).where(Manifest.registry_id == registry.id,
                                                             Manifest.digest == digest).limit(1))
        if body is None:
            session.execute(sa.delete(RepositoryBlob).where(RepositoryBlob.registry_id == registry.id,
                                                            RepositoryBlob.digest == digest))
            session.execute(sa.delete(Blob).where(Blob.registry_id == registry.id, Blob.digest == digest))
            return
    staging = f"uploads/doctor-{digest.replace(':', '-')}/data"
    store.write_object(registry.container_name, staging, [body])
    store.move_object(registry.container_name, staging, names.blob_key(digest))


def _delete_unless_claimed(db: Database, store, registry: Registry, key: str) -> None:
    """Deletes an unreferenced blob object, unless a row for it appeared since the listing (a push finished)."""
    match = BLOB_KEY.match(key)
    if match:
        digest = f"{match.group(1)}:{match.group(3)}"
        with db.session() as session:
            if session.scalar(sa.select(Blob.size).where(Blob.registry_id == registry.id, Blob.digest == digest)) \
                    is not None:
                return
    store.delete_object(registry.container_name, key)


def _expire_upload(db: Database, store, registry: Registry, upload: str) -> None:
    with db.session() as session:
        key = session.scalar(sa.delete(UploadSession).where(UploadSession.id == upload)
                             .returning(UploadSession.object_key))
    if key:
        store.delete_object(registry.container_name, key)


def _try(report: Report, action: Callable[[], None], done: str) -> None:
    try:
        action()
        report.repaired.append(done)
    except StorageError as exc:
        report.unreachable_stores.append(str(exc))
