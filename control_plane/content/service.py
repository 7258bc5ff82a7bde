"""The content service: a registry's blobs, uploads, manifests and tags (the domain of the OCI and ACR routes).

Bytes live in the registry's own container: verified blobs (layers, configs and manifests) under
`blobs/<algorithm>/<2 hex>/<hex>/data`, uploads in progress under `uploads/<session id>/data`. The database rows
are the index and the only thing that makes content visible: a blob row is written only after its digest was
verified and its bytes moved to their content-addressed key, so a crash at any point leaves at worst an unreferenced
object (which `control-plane doctor` removes after a grace period), never a visible partial blob.

Races are decided by the database, never by a check before a write: blob, link, repository and manifest rows are
inserted with `insert_unless_duplicate`, each upload chunk is accepted by the conditional UPDATE that moves the
session's size from the chunk's start, and a finishing upload claims its session by deleting the row.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.config import Settings
from control_plane.content import manifests, names
from control_plane.content.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    Disallowed,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    PaginationNumberInvalid,
    RangeInvalid,
    StorageUnavailable,
    TagUnknown,
)
from control_plane.content.models import (
    Blob,
    Manifest,
    ManifestReference,
    RegistryEvent,
    Repository,
    RepositoryBlob,
    Tag,
    UploadSession,
)
from control_plane.db import Database, insert_unless_duplicate, utcnow
from control_plane.registries.models import Registry
from control_plane.storage import StorageRouter
from control_plane.storage.base import ObjectNotFound, StorageError

DELETING = "Deleting"
CONFIG_READ_LIMIT = 1024 * 1024  # an image config larger than this is not read for its os/architecture
READ_URL_SECONDS = 20 * 60  # ACR's SAS URLs live 20 minutes
# A chunk's claim on its session lapses this long after its last sign of life (a writer killed mid-chunk, whose
# client then retries the chunk), and is renewed while bytes flow: after CLAIM_RENEW_BYTES or CLAIM_RENEW_SECONDS,
# whichever comes first. A live writer's gaps are bounded by the slow-client guard (30 s without a byte cuts it).
CLAIM_LEASE_SECONDS = 60
CLAIM_RENEW_BYTES = 16 * 1024 * 1024
CLAIM_RENEW_SECONDS = 10.0


@dataclass(frozen=True)
class RegistryRef:
    """What the data plane needs of a registry row."""

    id: str
    name: str
    location: str
    container: str
    login_server: str
    anonymous_pull: bool
    sku: str


@dataclass(frozen=True)
class RequestInfo:
    """Who asked and how: the fields every registry event records."""

    actor: str | None = None
    request_id: str | None = None
    host: str | None = None
    method: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


@dataclass(frozen=True)
class UploadState:
    id: str
    size: int


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int
    subject: str | None


@dataclass(frozen=True)
class ManifestContent:
    digest: str
    media_type: str
    body: bytes
    size: int


class BlobLocation:
    """Where a verified blob can be read: a local file to send (`local_path`), a short-lived read-only URL to
    redirect to (`read_url`, Azure with blob_redirect on), or `read(start, end)` streaming it through the service."""

    def __init__(self, info: BlobInfo, store: Any, container: str, key: str, local_path: Path | None,
                 read_url: str | None):
        self.info = info
        self.local_path = local_path
        self.read_url = read_url
        self._store, self._container, self._key = store, container, key

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end). The object is opened by this call, so a vanished one is BlobUnknown and a failing
        account StorageUnavailable before the route answers; a failure mid-stream can only cut the response."""
        try:
            chunks = self._store.read_object(self._container, self._key, start, end)
        except ObjectNotFound:
            raise BlobUnknown(detail={"digest": self.info.digest}) from None
        except StorageError as exc:
            raise StorageUnavailable(detail=str(exc)) from None
        return _storage_stream(chunks)


class _HashCache:
    """Per-process sha256 state of the uploads whose chunks landed here, valid only at the offset it was taken.

    hashlib's state cannot be persisted, so a chunk that lands on another worker or replica (or a restart) leaves no
    usable state, and finishing then re-reads the stored upload to hash it: the measured trade-off for never
    pinning an upload to a process. Bounded, least recently used first out.
    """

    def __init__(self, limit: int = 4096):
        self._entries: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, upload_id: str, offset: int):
        """A copy of the state at exactly `offset`, or None."""
        with self._lock:
            entry = self._entries.get(upload_id)
            if entry is None or entry[0] != offset:
                return None
            self._entries.move_to_end(upload_id)
            return entry[1].copy()

    def put(self, upload_id: str, offset: int, hasher: Any) -> None:
        with self._lock:
            self._entries[upload_id] = (offset, hasher)
            self._entries.move_to_end(upload_id)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


HASH_CACHE = _HashCache()


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}/data"


class ContentService:
    def __init__(self, db: Database, storage: StorageRouter, settings: Settings):
        self.db = db
        self.storage = storage
        self.settings = settings
        self._postgres = db.engine.dialect.name == "postgresql"

    # -- registries -------------------------------------------------------------------------------------------

    def registry(self, name: str) -> RegistryRef | None:
        """The registry by name (any case); None if missing or being deleted."""
        if not isinstance(name, str) or not 0 < len(name) <= 50:
            return None
        with self.db.reading() as session:
            row = session.execute(
                sa.select(Registry.id, Registry.name, Registry.name_key, Registry.location, Registry.container_name,
                          Registry.properties, Registry.sku, Registry.provisioning_state)
                .where(Registry.name_key == name.lower())).first()
        if row is None or row.provisioning_state == DELETING:
            return None
        return RegistryRef(id=row.id, name=row.name, location=row.location, container=row.container_name,
                           login_server=f"{row.name_key}.{self.settings.login_server_suffix}",
                           anonymous_pull=bool((row.properties or {}).get("anonymousPullEnabled")), sku=row.sku)

    def storage_used(self, reg_id: str) -> int:
        """Bytes of the registry's distinct verified blobs (layers, configs and manifests), each counted once."""
        with self.db.reading() as session:
            return int(session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Blob.size), 0))
                                      .where(Blob.registry_id == reg_id)) or 0)

    # -- blobs ------------------------------------------------------------------------------------------------

    def stat_blob(self, reg: RegistryRef, repository: str, digest: str) -> BlobInfo:
        names.repository(repository)
        names.digest(digest)
        with self.db.reading() as session:
            row = session.execute(
                sa.select(Blob.size, Repository.read_enabled)
                .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
                .join(Blob, sa.and_(Blob.registry_id == RepositoryBlob.registry_id,
                                    Blob.digest == RepositoryBlob.digest))
                .where(Repository.registry_id == reg.id, Repository.name == repository,
                       RepositoryBlob.digest == digest)).first()
        if row is None:
            raise BlobUnknown(detail={"digest": digest})
        if not row.read_enabled:
            raise Disallowed()
        return BlobInfo(digest, row.size)

    def open_blob(self, reg: RegistryRef, repository: str, digest: str) -> BlobLocation:
        info = self.stat_blob(reg, repository, digest)
        key = names.blob_key(digest)
        with self._storage(reg) as store:
            local_path = store.local_path(reg.container, key)
            read_url = (store.read_url(reg.container, key, READ_URL_SECONDS)
                        if self.settings.blob_redirect and local_path is None else None)
        return BlobLocation(info, self._store(reg), reg.container, key, local_path, read_url)

    def delete_blob(self, reg: RegistryRef, repository: str, digest: str) -> None:
        """Unlinks the blob from the repository; its bytes go when nothing else in the registry needs them."""
        names.repository(repository)
        names.digest(digest)
        with self.db.session() as session:
            repo = self._repository(session, reg, repository, unknown=BlobUnknown(detail={"digest": digest}))
            _check_deletable(repo)
            unlinked = session.execute(sa.delete(RepositoryBlob).where(
                RepositoryBlob.repository_id == repo.id, RepositoryBlob.digest == digest)).rowcount
            if not unlinked:
                raise BlobUnknown(detail={"digest": digest})
            freed = _free_blobs(session, reg.id, {digest}, ignore_links_of=None)
        self._delete_objects(reg, freed)

    def mount_blob(self, reg: RegistryRef, repository: str, digest: str,
                   from_repository: str | None) -> BlobInfo | None:
        """Links a blob of another repository of this registry; None when it cannot (the route starts an upload)."""
        names.repository(repository)
        names.digest(digest)
        if not from_repository:
            return None
        try:
            names.repository(from_repository)
        except NameInvalid:
            return None
        with self.db.session() as session:
            size = session.scalar(
                sa.select(Blob.size)
                .join(RepositoryBlob, sa.and_(Blob.registry_id == RepositoryBlob.registry_id,
                                              Blob.digest == RepositoryBlob.digest))
                .join(Repository, Repository.id == RepositoryBlob.repository_id)
                .where(Repository.registry_id == reg.id, Repository.name == from_repository,
                       Repository.read_enabled.is_(True), Blob.digest == digest))
            if size is None:
                return None
            repo = self._ensure_repository(session, reg, repository)
            _check_writable(repo)
            insert_unless_duplicate(session, RepositoryBlob(repository_id=repo.id, digest=digest,
                                                            registry_id=reg.id))
        return BlobInfo(digest, size)

    # -- uploads ----------------------------------------------------------------------------------------------

    def start_upload(self, reg: RegistryRef, repository: str) -> UploadState:
        names.repository(repository)
        self._check_repository_writable(reg, repository)
        upload_id = str(uuid.uuid4())
        with self.db.session() as session:
            session.add(UploadSession(id=upload_id, registry_id=reg.id, repository=repository,
                                      object_key=upload_key(upload_id), size=0, chunks=0))
        return UploadState(upload_id, 0)

    def upload_status(self, reg: RegistryRef, repository: str, upload_id: str) -> UploadState:
        session_row = self._upload(reg, repository, upload_id)
        return UploadState(session_row.id, session_row.size)

    def append_upload(self, reg: RegistryRef, repository: str, upload_id: str, chunks: Iterable[bytes],
                      start: int | None) -> UploadState:
        """Writes a chunk at `start` (None: a streamed PATCH, at the current size); an out-of-order, repeated or
        concurrent chunk is RangeInvalid (416).

        The chunk first claims the session (a conditional UPDATE `WHERE size = :start` and no live claim), so no
        other request can write the same bytes meanwhile; its arrival then moves `size` and drops the claim in one
        UPDATE. A failed write drops the claim and leaves `size` as it was: the client sends the chunk again."""
        upload = self._upload(reg, repository, upload_id)
        if start is None:
            start = upload.size
        if start != upload.size:
            raise _range_invalid(upload.size)
        token = str(uuid.uuid4())
        now = utcnow()
        with self.db.session() as session:
            claimed = session.execute(
                sa.update(UploadSession)
                .where(UploadSession.id == upload_id, UploadSession.size == start, _unclaimed(now))
                .values(claim=token, updated_at=now)
                .execution_options(synchronize_session=False)).rowcount
        if not claimed:
            raise _range_invalid(start)
        hasher = HASH_CACHE.get(upload_id, start) or (hashlib.sha256() if start == 0 else None)
        stream = _hashing(chunks, hasher) if hasher is not None else chunks
        try:
            with self._storage(reg) as store:
                written = store.append_object(reg.container, upload.object_key,
                                              self._keeping_claim(stream, upload_id, token), start)
        except BaseException:
            with self.db.session() as session:
                session.execute(sa.update(UploadSession)
                                .where(UploadSession.id == upload_id, UploadSession.claim == token)
                                .values(claim=None).execution_options(synchronize_session=False))
            raise
        with self.db.session() as session:
            moved = session.execute(
                sa.update(UploadSession)
                .where(UploadSession.id == upload_id, UploadSession.claim == token)
                .values(size=start + written, chunks=UploadSession.chunks + 1, claim=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount
        if not moved:  # the claim lapsed and another request took the session over
            HASH_CACHE.drop(upload_id)
            raise _range_invalid(start)
        if hasher is not None:
            HASH_CACHE.put(upload_id, start + written, hasher)
        return UploadState(upload_id, start + written)

    def _keeping_claim(self, chunks: Iterable[bytes], upload_id: str, token: str) -> Iterator[bytes]:
        """Passes the stream on, renewing the claim's lease as bytes flow; a claim that was lost stops the write."""
        since, renewed = 0, time.monotonic()
        for chunk in chunks:
            since += len(chunk)
            if since >= CLAIM_RENEW_BYTES or time.monotonic() - renewed >= CLAIM_RENEW_SECONDS:
                since, renewed = 0, time.monotonic()
                with self.db.session() as session:
                    kept = session.execute(
                        sa.update(UploadSession).where(UploadSession.id == upload_id, UploadSession.claim == token)
                        .values(updated_at=utcnow()).execution_options(synchronize_session=False)).rowcount
                if not kept:
                    raise _range_invalid(0)
            yield chunk

    def finish_upload(self, reg: RegistryRef, repository: str, upload_id: str, digest: str,
                      chunks: Iterable[bytes]) -> BlobInfo:
        """Appends the final body (maybe empty), verifies the digest and publishes the blob.

        The session row is deleted first (the claim: of two concurrent finishes one proceeds). A wrong digest is
        DigestInvalid and discards the stored bytes, so nothing half-stored remains; a storage failure gives the
        session back (StorageUnavailable), so the client's retry of the same PUT can finish it."""
        parsed = names.digest(digest)
        self._upload(reg, repository, upload_id)
        rest = _nonempty(chunks)
        if rest is not None:
            self.append_upload(reg, repository, upload_id, rest, None)
        upload = self._upload(reg, repository, upload_id)
        size = upload.size
        with self.db.session() as session:
            claimed = session.execute(sa.delete(UploadSession).where(
                UploadSession.id == upload_id, UploadSession.size == size, _unclaimed(utcnow()))).rowcount
        if not claimed:
            raise BlobUploadUnknown(detail={"uploadId": upload_id})
        key = upload_key(upload_id)
        try:
            with self._storage(reg) as store:
                if size:
                    store.seal_object(reg.container, key, size)
                hasher = HASH_CACHE.get(upload_id, size) if parsed.algorithm == "sha256" else None
                if hasher is None:
                    hasher = parsed.hasher()
                    if size:
                        for chunk in store.read_object(reg.container, key, 0, size):
                            hasher.update(chunk)
                if hasher.hexdigest() != parsed.hex:
                    raise DigestInvalid(detail={"digest": digest})
                self._publish(store, reg, key, parsed, size)
        except ObjectNotFound:
            self._discard_object(reg, key)
            raise BlobUploadUnknown(detail={"uploadId": upload_id}) from None
        except StorageUnavailable:
            with self.db.session() as session:
                session.add(UploadSession(id=upload.id, registry_id=reg.id, repository=repository,
                                          object_key=upload.object_key, size=size, chunks=upload.chunks,
                                          created_at=upload.created_at))
            raise
        except BaseException:
            self._discard_object(reg, key)
            raise
        finally:
            HASH_CACHE.drop(upload_id)
        self._link(reg, repository, digest, size)
        return BlobInfo(digest, size)

    def upload_blob(self, reg: RegistryRef, repository: str, digest: str, chunks: Iterable[bytes]) -> BlobInfo:
        """A monolithic upload (POST ?digest=): staged under a fresh upload key, verified, then published."""
        names.repository(repository)
        parsed = names.digest(digest)
        self._check_repository_writable(reg, repository)
        key = upload_key(str(uuid.uuid4()))
        hasher = parsed.hasher()
        try:
            with self._storage(reg) as store:
                size = store.write_object(reg.container, key, _hashing(chunks, hasher))
                if hasher.hexdigest() != parsed.hex:
                    raise DigestInvalid(detail={"digest": digest})
                self._publish(store, reg, key, parsed, size)
        except BaseException:
            self._discard_object(reg, key)
            raise
        self._link(reg, repository, digest, size)
        return BlobInfo(digest, size)

    def cancel_upload(self, reg: RegistryRef, repository: str, upload_id: str) -> None:
        upload = self._upload(reg, repository, upload_id)
        with self.db.session() as session:
            session.execute(sa.delete(UploadSession).where(UploadSession.id == upload.id))
        HASH_CACHE.drop(upload_id)
        self._discard_object(reg, upload.object_key)

    # -- manifests and tags -----------------------------------------------------------------------------------

    def put_manifest(self, reg: RegistryRef, repository: str, reference: str, body: bytes, content_type: str,
                     who: RequestInfo) -> ManifestInfo:
        """Validates and stores a manifest (its bytes as a blob in the container and in its row), tags it, and
        records a `push` event in the same transaction."""
        names.repository(repository)
        if len(body) > self.settings.manifest_max_bytes:
            raise ManifestTooLarge(detail={"size": len(body), "limit": self.settings.manifest_max_bytes})
        tag: str | None = None
        if names.is_digest(reference):
            wanted = names.digest(reference)
            if hashlib.new(wanted.algorithm, body).hexdigest() != wanted.hex:
                raise DigestInvalid("the manifest's digest does not match the reference", detail={"digest": reference})
            digest = reference
        else:
            tag = names.tag(reference)
            digest = names.of_bytes(body)
        parsed = manifests.parse(body, content_type)
        self._check_repository_writable(reg, repository)
        os_name, architecture = self._platform(reg, parsed)
        self._store_bytes(reg, digest, body)
        try:
            with self.db.session() as session:
                repo = self._ensure_repository(session, reg, repository)
                _check_writable(repo)
                image_size = len(body) + self._check_references(session, repo, parsed)
                insert_unless_duplicate(session, Blob(registry_id=reg.id, digest=digest, size=len(body)))
                insert_unless_duplicate(session, RepositoryBlob(repository_id=repo.id, digest=digest,
                                                                registry_id=reg.id))
                manifest = Manifest(
                    repository_id=repo.id, digest=digest, registry_id=reg.id, media_type=parsed.media_type,
                    artifact_type=parsed.reported_artifact_type, config_media_type=parsed.config_media_type,
                    subject_digest=parsed.subject.digest if parsed.subject else None,
                    annotations=parsed.annotations, size=len(body), image_size=image_size, os=os_name,
                    architecture=architecture, body=body)
                if insert_unless_duplicate(session, manifest):
                    for kind, descriptors in (("blob", parsed.blobs), ("manifest", parsed.manifests)):
                        for ref in {d.digest for d in descriptors}:
                            session.add(ManifestReference(repository_id=repo.id, manifest_digest=digest, digest=ref,
                                                          registry_id=reg.id, kind=kind))
                if tag is not None:
                    _set_tag(session, repo, tag, digest)
                now = utcnow()
                session.execute(sa.update(Repository).where(Repository.id == repo.id).values(updated_at=now)
                                .execution_options(synchronize_session=False))
                _record(session, reg, "push", repository, who, tag=tag, digest=digest, media_type=parsed.media_type,
                        size=len(body))
        except BaseException:
            self._delete_objects(reg, [digest])
            raise
        return ManifestInfo(digest, parsed.media_type, len(body), parsed.subject.digest if parsed.subject else None)

    def get_manifest(self, reg: RegistryRef, repository: str, reference: str) -> ManifestContent:
        names.repository(repository)
        by_digest = names.is_digest(reference)
        if by_digest:
            names.digest(reference)
        else:
            names.tag(reference)
        with self.db.reading() as session:
            query = sa.select(Manifest.digest, Manifest.media_type, Manifest.body, Manifest.size,
                              Manifest.read_enabled, Repository.read_enabled.label("repository_readable"))
            if by_digest:
                query = (query.join(Repository, Repository.id == Manifest.repository_id)
                         .where(Manifest.digest == reference))
            else:
                query = (query.add_columns(Tag.read_enabled.label("tag_readable"))
                         .select_from(Tag)
                         .join(Repository, Repository.id == Tag.repository_id)
                         .join(Manifest, sa.and_(Manifest.repository_id == Tag.repository_id,
                                                 Manifest.digest == Tag.digest))
                         .where(Tag.name == reference))
            row = session.execute(query.where(Repository.registry_id == reg.id,
                                              Repository.name == repository)).first()
            if row is None:
                self._repository(session, reg, repository)
                raise ManifestUnknown(detail={"reference": reference})
        if not (row.read_enabled and row.repository_readable and (by_digest or row.tag_readable)):
            raise Disallowed()
        return ManifestContent(row.digest, row.media_type, row.body, row.size)

    def delete_manifest(self, reg: RegistryRef, repository: str, digest: str, who: RequestInfo) -> None:
        """Deletes the manifest and its tags, records a `delete` event, and frees the blobs (its config and layers,
        and its own bytes) that no other manifest or repository of the registry references.

        Freeing runs synchronously on delete (ACR frees untagged content the same way): rows go in the deleting
        transaction, the stored objects right after it commits. An object a storage failure leaves behind is
        unreferenced drift that `control-plane doctor` removes."""
        names.repository(repository)
        names.digest(digest)
        with self.db.session() as session:
            repo = self._repository(session, reg, repository)
            manifest = session.scalar(sa.select(Manifest).where(Manifest.repository_id == repo.id,
                                                                Manifest.digest == digest))
            if manifest is None:
                raise ManifestUnknown(detail={"digest": digest})
            _check_deletable(repo)
            _check_deletable(manifest)
            for tag in session.scalars(sa.select(Tag).where(Tag.repository_id == repo.id, Tag.digest == digest)):
                _check_deletable(tag)
            referenced = set(session.scalars(sa.select(ManifestReference.digest).where(
                ManifestReference.repository_id == repo.id, ManifestReference.manifest_digest == digest,
                ManifestReference.kind == "blob")))
            session.execute(sa.delete(Tag).where(Tag.repository_id == repo.id, Tag.digest == digest))
            session.execute(sa.delete(ManifestReference).where(ManifestReference.repository_id == repo.id,
                                                               ManifestReference.manifest_digest == digest))
            session.execute(sa.delete(Manifest).where(Manifest.repository_id == repo.id, Manifest.digest == digest))
            _record(session, reg, "delete", repository, who, digest=digest, media_type=manifest.media_type,
                    size=manifest.size)
            freed = _free_blobs(session, reg.id, referenced | {digest}, ignore_links_of=repo.id)
        self._delete_objects(reg, freed)

    def delete_tag(self, reg: RegistryRef, repository: str, tag: str, who: RequestInfo) -> str:
        """Removes a tag (the manifest stays) and records an `untag` event; returns the digest it pointed at."""
        names.repository(repository)
        names.tag(tag)
        with self.db.session() as session:
            repo = self._repository(session, reg, repository)
            row = session.scalar(sa.select(Tag).where(Tag.repository_id == repo.id, Tag.name == tag))
            if row is None:
                raise TagUnknown(detail={"tag": tag})
            _check_deletable(repo)
            _check_deletable(row)
            digest = row.digest
            deleted = session.execute(sa.delete(Tag).where(Tag.repository_id == repo.id, Tag.name == tag,
                                                           Tag.digest == digest)).rowcount
            if not deleted:
                raise TagUnknown(detail={"tag": tag})
            _record(session, reg, "untag", repository, who, tag=tag, digest=digest)
        return digest

    def list_tags(self, reg: RegistryRef, repository: str, n: int | None,
                  last: str | None) -> tuple[list[str], bool]:
        """Tags in lexical (byte) order after `last` (exclusive), at most `n`; (tags, whether more follow)."""
        names.repository(repository)
        with self.db.reading() as session:
            repo = self._repository(session, reg, repository)
            name = self._lexical(Tag.name)
            query = sa.select(Tag.name).where(Tag.repository_id == repo.id, Tag.list_enabled.is_(True))
            return self._page(session, query, name, n, last)

    def catalog(self, reg: RegistryRef, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """Repositories that hold at least one manifest and are listable, in lexical order, paged like tags."""
        has_manifest = sa.exists().where(Manifest.repository_id == Repository.id)
        with self.db.reading() as session:
            query = sa.select(Repository.name).where(Repository.registry_id == reg.id,
                                                     Repository.list_enabled.is_(True), has_manifest)
            return self._page(session, query, self._lexical(Repository.name), n, last)

    def referrers(self, reg: RegistryRef, repository: str, digest: str,
                  artifact_type: str | None) -> list[dict]:
        """Descriptors of the manifests whose `subject` is `digest` (empty when none, or the subject is unknown)."""
        names.repository(repository)
        names.digest(digest)
        with self.db.reading() as session:
            query = (sa.select(Manifest.media_type, Manifest.digest, Manifest.size, Manifest.artifact_type,
                               Manifest.annotations)
                     .join(Repository, Repository.id == Manifest.repository_id)
                     .where(Repository.registry_id == reg.id, Repository.name == repository,
                            Manifest.subject_digest == digest, Manifest.list_enabled.is_(True))
                     .order_by(Manifest.created_at, Manifest.digest))
            if artifact_type:
                query = query.where(Manifest.artifact_type == artifact_type)
            rows = session.execute(query).all()
        result = []
        for row in rows:
            descriptor: dict[str, Any] = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
            if row.artifact_type:
                descriptor["artifactType"] = row.artifact_type
            if row.annotations:
                descriptor["annotations"] = row.annotations
            result.append(descriptor)
        return result

    # -- helpers ----------------------------------------------------------------------------------------------

    def _store(self, reg: RegistryRef):
        try:
            return self.storage.for_location(reg.location)
        except StorageError as exc:
            raise StorageUnavailable(detail=str(exc)) from None

    @contextlib.contextmanager
    def _storage(self, reg: RegistryRef) -> Iterator[Any]:
        """The registry's store; StorageError inside (but not ObjectNotFound) becomes StorageUnavailable (503)."""
        try:
            yield self._store(reg)
        except ObjectNotFound:
            raise
        except StorageError as exc:
            raise StorageUnavailable(detail=str(exc)) from None

    def _publish(self, store: Any, reg: RegistryRef, key: str, digest: names.Digest, size: int) -> None:
        """Gives verified staged bytes their content-addressed name (an existing copy wins; same bytes)."""
        if size:
            store.move_object(reg.container, key, digest.key)
        else:
            store.write_object(reg.container, digest.key, iter(()))
            store.delete_object(reg.container, key)

    def _link(self, reg: RegistryRef, repository: str, digest: str, size: int) -> None:
        with self.db.session() as session:
            insert_unless_duplicate(session, Blob(registry_id=reg.id, digest=digest, size=size))
            repo = self._ensure_repository(session, reg, repository)
            insert_unless_duplicate(session, RepositoryBlob(repository_id=repo.id, digest=digest,
                                                            registry_id=reg.id))

    def _store_bytes(self, reg: RegistryRef, digest: str, body: bytes) -> None:
        """A manifest's bytes under its digest's key (staged, then moved, so the key never holds part of them)."""
        with self.db.reading() as session:
            if session.scalar(sa.select(Blob.size).where(Blob.registry_id == reg.id, Blob.digest == digest)) \
                    is not None:
                return
        key = upload_key(str(uuid.uuid4()))
        try:
            with self._storage(reg) as store:
                store.write_object(reg.container, key, [body])
                store.move_object(reg.container, key, names.blob_key(digest))
        except BaseException:
            self._discard_object(reg, key)
            raise

    def _platform(self, reg: RegistryRef, parsed: manifests.ParsedManifest) -> tuple[str | None, str | None]:
        """The os and architecture an image's config declares (what ACR lists); unknown when unreadable."""
        config = parsed.config
        if config is None or config.media_type not in manifests.IMAGE_CONFIG_TYPES or config.size > CONFIG_READ_LIMIT:
            return None, None
        try:
            data = b"".join(self._store(reg).read_object(reg.container, names.blob_key(config.digest)))
        except (StorageError, StorageUnavailable):
            return None, None
        return manifests.config_platform(data)

    def _check_references(self, session: Session, repo: Repository, parsed: manifests.ParsedManifest) -> int:
        """Every distributable blob must be in the repository with the declared size, every child manifest too;
        returns the bytes they add (ACR's imageSize less the manifest). A `subject` need not exist."""
        wanted = {d.digest: d.size for d in parsed.blobs if not d.nondistributable}
        if wanted:
            found = dict(session.execute(
                sa.select(Blob.digest, Blob.size)
                .join(RepositoryBlob, sa.and_(RepositoryBlob.registry_id == Blob.registry_id,
                                              RepositoryBlob.digest == Blob.digest))
                .where(RepositoryBlob.repository_id == repo.id, Blob.digest.in_(wanted))).all())
            for digest, size in wanted.items():
                if digest not in found:
                    raise ManifestBlobUnknown(detail={"digest": digest})
                if found[digest] != size:
                    raise ManifestInvalid("a descriptor's size does not match its blob",
                                          detail={"digest": digest, "size": size})
        children = {d.digest for d in parsed.manifests}
        if children:
            present = set(session.scalars(sa.select(Manifest.digest).where(
                Manifest.repository_id == repo.id, Manifest.digest.in_(children))))
            for digest in sorted(children - present):
                raise ManifestBlobUnknown("the index references an unknown manifest", detail={"digest": digest})
        return parsed.content_size()

    def _check_repository_writable(self, reg: RegistryRef, repository: str) -> None:
        with self.db.reading() as session:
            writable = session.scalar(sa.select(Repository.write_enabled).where(
                Repository.registry_id == reg.id, Repository.name == repository))
        if writable is False:
            raise Disallowed()

    def _repository(self, session: Session, reg: RegistryRef, repository: str,
                    unknown: Exception | None = None) -> Repository:
        repo = session.scalar(sa.select(Repository).where(Repository.registry_id == reg.id,
                                                          Repository.name == repository))
        if repo is None:
            raise unknown or NameUnknown(detail={"name": repository})
        return repo

    def _ensure_repository(self, session: Session, reg: RegistryRef, repository: str) -> Repository:
        """The repository row, created on first link (the unique index decides a race)."""
        query = sa.select(Repository).where(Repository.registry_id == reg.id, Repository.name == repository)
        repo = session.scalar(query)
        if repo is None:
            insert_unless_duplicate(session, Repository(id=str(uuid.uuid4()), registry_id=reg.id, name=repository))
            repo = session.scalar(query)
        return repo

    def _upload(self, reg: RegistryRef, repository: str, upload_id: str) -> UploadSession:
        names.repository(repository)
        unknown = BlobUploadUnknown(detail={"uploadId": str(upload_id)[:64]})
        try:
            uuid.UUID(upload_id)
        except (TypeError, ValueError, AttributeError):
            raise unknown from None
        with self.db.reading() as session:
            upload = session.get(UploadSession, upload_id)
        expired = utcnow() - timedelta(seconds=self.settings.upload_expiry_seconds)
        if (upload is None or upload.registry_id != reg.id or upload.repository != repository
                or upload.updated_at < expired):
            raise unknown
        return upload

    def _discard_object(self, reg: RegistryRef, key: str) -> None:
        """Best effort: staged bytes a failure leaves behind are unreferenced, and the doctor removes them."""
        with contextlib.suppress(StorageError, StorageUnavailable):
            self._store(reg).delete_object(reg.container, key)

    def _delete_objects(self, reg: RegistryRef, digests: Iterable[str]) -> None:
        """Deletes the stored objects of blobs that have no row (again) — a push that re-created one keeps it."""
        digests = list(digests)
        if not digests:
            return
        with self.db.reading() as session:
            alive = set(session.scalars(sa.select(Blob.digest).where(Blob.registry_id == reg.id,
                                                                     Blob.digest.in_(digests))))
        for digest in digests:
            if digest not in alive:
                self._discard_object(reg, names.blob_key(digest))

    def _lexical(self, column):
        """Byte order on both databases (PostgreSQL's default collation ignores punctuation)."""
        return column.collate("C") if self._postgres else column

    def _page(self, session: Session, query, column, n: int | None, last: str | None) -> tuple[list[str], bool]:
        if n is not None and n < 0:
            raise PaginationNumberInvalid(detail={"n": n})
        if n == 0:
            return [], False
        if last:
            query = query.where(column > last)
        query = query.order_by(column)
        if n is not None:
            query = query.limit(n + 1)
        items = list(session.scalars(query))
        if n is not None and len(items) > n:
            return items[:n], True
        return items, False


def _unclaimed(now: datetime):
    """No chunk is being written: no claim, or one whose lease lapsed (its writer died)."""
    return sa.or_(UploadSession.claim.is_(None),
                  UploadSession.updated_at < now - timedelta(seconds=CLAIM_LEASE_SECONDS))


def _range_invalid(size: int) -> RangeInvalid:
    error = RangeInvalid(detail={"size": size})
    error.size = size
    return error


def _storage_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except StorageError as exc:
        raise StorageUnavailable(detail=str(exc)) from None


def _hashing(chunks: Iterable[bytes], hasher: Any) -> Iterator[bytes]:
    for chunk in chunks:
        if chunk:
            hasher.update(chunk)
            yield chunk


def _nonempty(chunks: Iterable[bytes]) -> Iterator[bytes] | None:
    """The stream again if it holds any byte; None for an empty body (nothing to append)."""
    stream = iter(chunks)
    for chunk in stream:
        if chunk:
            return itertools.chain([chunk], stream)
    return None


def _check_writable(item: Any) -> None:
    if not item.write_enabled:
        raise Disallowed()


def _check_deletable(item: Any) -> None:
    """ACR: deleteEnabled=false refuses deletes, and so does writeEnabled=false."""
    if not (item.delete_enabled and item.write_enabled):
        raise Disallowed()


def _set_tag(session: Session, repo: Repository, tag: str, digest: str) -> None:
    """Points the tag at `digest`; a write-locked tag may only be pushed again unchanged."""
    if insert_unless_duplicate(session, Tag(repository_id=repo.id, name=tag, digest=digest)):
        return
    moved = session.execute(
        sa.update(Tag)
        .where(Tag.repository_id == repo.id, Tag.name == tag, sa.or_(Tag.write_enabled.is_(True), Tag.digest == digest))
        .values(digest=digest, updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if not moved:
        raise Disallowed()


def _free_blobs(session: Session, registry_id: str, candidates: set[str], ignore_links_of: str | None) -> list[str]:
    """Deletes the blob rows among `candidates` that nothing keeps: no manifest of the registry references or is
    them, and no repository links them (other than `ignore_links_of`, the repository whose manifest went).
    Returns the digests freed; their objects are deleted once the transaction committed."""
    if not candidates:
        return []
    kept = set(session.scalars(sa.select(ManifestReference.digest).where(
        ManifestReference.registry_id == registry_id, ManifestReference.digest.in_(candidates))))
    kept |= set(session.scalars(sa.select(Manifest.digest).where(
        Manifest.registry_id == registry_id, Manifest.digest.in_(candidates))))
    links = sa.select(RepositoryBlob.digest).where(RepositoryBlob.registry_id == registry_id,
                                                   RepositoryBlob.digest.in_(candidates))
    if ignore_links_of is not None:
        links = links.where(RepositoryBlob.repository_id != ignore_links_of)
    kept |= set(session.scalars(links))
    freed = sorted(candidates - kept)
    if freed:
        session.execute(sa.delete(RepositoryBlob).where(RepositoryBlob.registry_id == registry_id,
                                                        RepositoryBlob.digest.in_(freed)))
        session.execute(sa.delete(Blob).where(Blob.registry_id == registry_id, Blob.digest.in_(freed)))
    return freed


def _record(session: Session, reg: RegistryRef, action: str, repository: str, who: RequestInfo,
            tag: str | None = None, digest: str | None = None, media_type: str | None = None,
            size: int | None = None) -> None:
    """The event of a push or delete, in the transaction that makes it (the seam webhooks and replication read)."""
    session.add(RegistryEvent(
        event_id=str(uuid.uuid4()), registry_id=reg.id, action=action, repository=repository, tag=tag,
        digest=digest, media_type=media_type, size=size, actor=_clip(who.actor, 256),
        request_id=_clip(who.request_id, 64), request_host=_clip(who.host, 256),
        request_method=_clip(who.method, 16), user_agent=_clip(who.user_agent, 512)))


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value else value
