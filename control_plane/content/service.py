"""The content service: a registry's blobs, uploads, manifests and tags (the domain of the OCI and ACR routes).

Bytes live in the registry's own container: verified blobs (layers, configs and manifests) under
`blobs/<algorithm>/<2 hex>/<hex>/data`, uploads in progress under `uploads/<session id>/data`. The database rows
are the index and the only thing that makes content visible: a blob row is written only after its digest was
verified and its bytes moved to their content-addressed key, so a crash at any point leaves at worst an unreferenced
object (which `control-plane doctor` removes after a grace period), never a visible partial blob.

Freeing is deferred, as in ACR: deleting a manifest removes it and its tags but leaves the repository's blob links,
so a client may still DELETE (or pull) the config and layers it just orphaned. `sweep_unreferenced` frees the blobs
that stayed unreferenced for SWEEP_GRACE; it runs right after every manifest delete (for that registry) and from
`control-plane doctor --repair` (for all of them). A blob DELETE frees at once what nothing else references or links.

Races are decided by the database, never by a check before a write: blob, link, repository and manifest rows are
inserted with `insert_unless_duplicate`, each upload chunk is accepted by the conditional UPDATE that moves the
session's size from the chunk's start, and a finishing upload claims its session by deleting the row.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
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

log = logging.getLogger("control_plane.content")

DELETING = "Deleting"
CONFIG_READ_LIMIT = 1024 * 1024  # an image config larger than this is not read for its os/architecture
READ_URL_SECONDS = 20 * 60  # ACR's SAS URLs live 20 minutes
# A chunk's claim on its session lapses CLAIM_LEASE_SECONDS after its last sign of life, and is renewed (one UPDATE)
# whenever CLAIM_RENEW_SECONDS passed since the last renewal while bytes flow, and once more at the end of the body.
# The trade-off: a short lease means a writer killed mid-chunk (kill -9, a lost replica) stops blocking its session
# within seconds, so the client's resume works right after a restart; the price is one UPDATE per upload every
# CLAIM_RENEW_SECONDS, and a live writer stalled longer than the lease loses the session to a retry of the same
# chunk (it then stops: every chunk is checked before it is written). The check-before-write holds as long as the
# store writes a chunk within CLAIM_LEASE_SECONDS - CLAIM_RENEW_SECONDS of receiving it.
# A chunk or finish that finds the session claimed at its offset waits (polling) up to one lease for the claim to
# lapse or the size to move, so a resume right after a restart is not refused while the dead claim runs out.
CLAIM_LEASE_SECONDS = 6
CLAIM_RENEW_SECONDS = 2.0
CLAIM_POLL_SECONDS = 0.25
# How long a blob must have gone unreferenced before `sweep_unreferenced` frees it: longer than a push takes from
# uploading (or finding by HEAD) a blob to putting the manifest that references it, and long enough for a client
# that deleted a manifest to delete its blobs too. Measured from the blob's newest repository link (created, or
# touched by a re-push, a mount or the delete of a manifest that referenced it).
SWEEP_GRACE = timedelta(minutes=15)
SWEEP_BATCH = 500


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
class RepositoryDeleted:
    manifests: list[str]
    tags: list[str]


@dataclass(frozen=True)
class ManifestContent:
    digest: str
    media_type: str
    body: bytes
    size: int


@dataclass(frozen=True)
class ManifestRead:
    """A manifest GET's one database read: the registry (None: unknown or being deleted) and what it holds under
    the repository and reference. `content()` gives the manifest or raises what the read found, so the route can
    authorise the caller on the registry between the read and the answer."""

    registry: RegistryRef | None
    repository: str
    reference: str
    repository_known: bool
    manifest: ManifestContent | None
    readable: bool

    def content(self) -> ManifestContent:
        """A reference made of tag characters that breaks the tag grammar (such as the conformance suite's
        `.INVALID_MANIFEST_NAME`) names nothing the registry could hold: MANIFEST_UNKNOWN (404), as Distribution
        answers; one with other characters is TAG_INVALID, a malformed digest DIGEST_INVALID."""
        names.repository(self.repository)
        reference = self.reference
        if names.is_digest(reference):
            names.digest(reference)
        elif not names.TAG.fullmatch(reference):
            if not names.TAG_CHARACTERS.fullmatch(reference):
                names.tag(reference)  # raises TagInvalid
            reference = reference[:200]
        if self.manifest is None:
            if not self.repository_known:
                raise NameUnknown(detail={"name": self.repository})
            raise ManifestUnknown(detail={"reference": reference})
        if not self.readable:
            raise Disallowed()
        return self.manifest


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


class _DriverStatement:
    """A Core statement compiled once for the engine's dialect and run on a driver cursor of a pooled connection.

    For the reads every pull makes, SQLAlchemy's per-call work (building the statement and its cache key, a
    session, result metadata and row objects) costs several times the query itself: about 60 µs against 15 on
    SQLite. Failures still go through SQLAlchemy's own handling (`_handle_dbapi_exception`): the error becomes
    SQLAlchemy's (503 for OperationalError), and a disconnect invalidates the pool as any statement's would."""

    def __init__(self, statement: sa.Select, dialect: sa.Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup if compiled.positional else None

    def first(self, engine: sa.Engine, **params: Any) -> tuple | None:
        """The first row as the driver returns it (SQLite: JSON as text, booleans as 0/1)."""
        values = tuple(params[name] for name in self.order) if self.order is not None else params
        with engine.connect() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(self.sql, values)
                return cursor.fetchone()
            except Exception as error:
                connection._handle_dbapi_exception(error, self.sql, values, cursor, None)
            finally:
                cursor.close()


_REGISTRY_COLUMNS = (Registry.id, Registry.name, Registry.name_key, Registry.location, Registry.container_name,
                     Registry.properties, Registry.sku, Registry.provisioning_state)


def _registry_statement() -> sa.Select:
    return sa.select(*_REGISTRY_COLUMNS).where(Registry.name_key == sa.bindparam("registry"))


def _blob_statement() -> sa.Select:
    """A blob's size and its repository's readEnabled, if the blob is linked to the repository."""
    return (sa.select(Blob.size, Repository.read_enabled)
            .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
            .join(Blob, sa.and_(Blob.registry_id == RepositoryBlob.registry_id, Blob.digest == RepositoryBlob.digest))
            .where(Repository.registry_id == sa.bindparam("registry_id"),
                   Repository.name == sa.bindparam("repository"), RepositoryBlob.digest == sa.bindparam("digest")))


def _manifest_read_statement(by_digest: bool, key: Any) -> sa.Select:
    """The registry (by `key` = :registry), its repository, and the manifest by digest or tag, in one statement:
    outer joins, so a row exists whenever the registry does and says how far the path led."""
    registries, repositories = Registry.__table__, Repository.__table__
    tags, manifests_ = Tag.__table__, Manifest.__table__
    joined = registries.outerjoin(repositories, sa.and_(repositories.c.registry_id == registries.c.id,
                                                        repositories.c.name == sa.bindparam("repository")))
    if by_digest:
        joined = joined.outerjoin(manifests_, sa.and_(manifests_.c.repository_id == repositories.c.id,
                                                      manifests_.c.digest == sa.bindparam("reference")))
        tag_readable = sa.true()
    else:
        joined = (joined.outerjoin(tags, sa.and_(tags.c.repository_id == repositories.c.id,
                                                 tags.c.name == sa.bindparam("reference")))
                  .outerjoin(manifests_, sa.and_(manifests_.c.repository_id == tags.c.repository_id,
                                                 manifests_.c.digest == tags.c.digest)))
        tag_readable = tags.c.read_enabled
    return (sa.select(*(c.label(f"registry_{c.key}") for c in _REGISTRY_COLUMNS),
                      repositories.c.id.label("repository_id"), repositories.c.read_enabled.label("repository_read"),
                      tag_readable.label("tag_read"), manifests_.c.digest, manifests_.c.media_type,
                      manifests_.c.body, manifests_.c.size, manifests_.c.read_enabled.label("manifest_read"))
            .select_from(joined).where(key == sa.bindparam("registry")))


class _Statements:
    """The hot reads, compiled for one database."""

    def __init__(self, dialect: sa.Dialect):
        self.registry = _DriverStatement(_registry_statement(), dialect)
        self.blob = _DriverStatement(_blob_statement(), dialect)
        self.manifest = {(by_digest, by_id): _DriverStatement(
            _manifest_read_statement(by_digest, Registry.id if by_id else Registry.name_key), dialect)
            for by_digest in (False, True) for by_id in (False, True)}


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}/data"


class ContentService:
    def __init__(self, db: Database, storage: StorageRouter, settings: Settings):
        self.db = db
        self.storage = storage
        self.settings = settings
        self._postgres = db.engine.dialect.name == "postgresql"
        self._statements = _Statements(db.engine.dialect)
        # Reads in autocommit, as Database.reading() does: no BEGIN and COMMIT round trips on PostgreSQL.
        self._read_engine = db.engine if db.engine.dialect.name == "sqlite" else \
            db.engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- registries -------------------------------------------------------------------------------------------

    def registry(self, name: str) -> RegistryRef | None:
        """The registry by name (any case); None if missing or being deleted."""
        if not isinstance(name, str) or not 0 < len(name) <= 50:
            return None
        return self._registry_ref(self._statements.registry.first(self._read_engine, registry=name.lower()))

    def _registry_ref(self, row: tuple | None) -> RegistryRef | None:
        """The RegistryRef of a row starting with _REGISTRY_COLUMNS (plain driver values); None when there is no
        registry or it is being deleted."""
        if row is None or row[0] is None:
            return None
        reg_id, name, name_key, location, container, properties, sku, state = row[:8]
        if state == DELETING:
            return None
        if isinstance(properties, str | bytes):  # SQLite hands JSON over as text
            properties = json.loads(properties)
        return RegistryRef(id=reg_id, name=name, location=location, container=container,
                           login_server=f"{name_key}.{self.settings.login_server_suffix}",
                           anonymous_pull=bool((properties or {}).get("anonymousPullEnabled")), sku=sku)

    def storage_used(self, reg_id: str) -> int:
        """Bytes of the registry's distinct verified blobs (layers, configs and manifests), each counted once."""
        with self.db.reading() as session:
            return int(session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Blob.size), 0))
                                      .where(Blob.registry_id == reg_id)) or 0)

    # -- blobs ------------------------------------------------------------------------------------------------

    def stat_blob(self, reg: RegistryRef, repository: str, digest: str) -> BlobInfo:
        names.repository(repository)
        names.digest(digest)
        row = self._statements.blob.first(self._read_engine, registry_id=reg.id, repository=repository,
                                          digest=digest)
        if row is None:
            raise BlobUnknown(detail={"digest": digest})
        size, readable = row
        if not readable:
            raise Disallowed()
        return BlobInfo(digest, size)

    def open_blob(self, reg: RegistryRef, repository: str, digest: str) -> BlobLocation:
        info = self.stat_blob(reg, repository, digest)
        key = names.blob_key(digest)
        with self._storage(reg) as store:
            local_path = store.local_path(reg.container, key)
            read_url = (store.read_url(reg.container, key, READ_URL_SECONDS)
                        if self.settings.blob_redirect and local_path is None else None)
        return BlobLocation(info, self._store(reg), reg.container, key, local_path, read_url)

    def delete_blob(self, reg: RegistryRef, repository: str, digest: str) -> None:
        """Unlinks the blob from the repository, and frees it at once (row now, bytes after the commit) when no
        manifest of the registry references or is it and no other repository links it; otherwise the sweep frees
        it once nothing needs it any more."""
        names.repository(repository)
        names.digest(digest)
        with self.db.session() as session:
            repo = self._repository(session, reg, repository, unknown=BlobUnknown(detail={"digest": digest}))
            _check_deletable(repo)
            unlinked = session.execute(sa.delete(RepositoryBlob).where(
                RepositoryBlob.repository_id == repo.id, RepositoryBlob.digest == digest)).rowcount
            if not unlinked:
                raise BlobUnknown(detail={"digest": digest})
            freed = _delete_unkept(session, reg.id, [digest], cutoff=None)
        _delete_objects(self.db, self._store(reg), reg.id, reg.container, freed)

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
            # FOR SHARE (PostgreSQL): a sweep freeing this blob either finished (no row: a plain upload) or waits.
            size = session.scalar(
                sa.select(Blob.size)
                .join(RepositoryBlob, sa.and_(Blob.registry_id == RepositoryBlob.registry_id,
                                              Blob.digest == RepositoryBlob.digest))
                .join(Repository, Repository.id == RepositoryBlob.repository_id)
                .where(Repository.registry_id == reg.id, Repository.name == from_repository,
                       Repository.read_enabled.is_(True), Blob.digest == digest)
                .with_for_update(read=True, of=Blob))
            if size is None:
                return None
            repo = self._ensure_repository(session, reg, repository)
            _check_writable(repo)
            try:
                _link_blob(session, repo.id, reg.id, digest)
            except sa.exc.IntegrityError:  # SQLite: the blob was freed between the read and the link
                return None
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
        UPDATE. A failed write drops the claim and leaves `size` as it was: the client sends the chunk again. A
        claim held at `start` (a concurrent chunk, or a dead writer's) is waited out for up to one lease, so the
        offset `upload_status` reports is the one a chunk can be sent at, right after a restart too."""
        upload = self._upload(reg, repository, upload_id)
        if start is None:
            start = upload.size
        if start != upload.size:
            raise _range_invalid(upload.size)
        token = str(uuid.uuid4())

        def claim() -> bool:
            now = utcnow()
            with self.db.session() as session:
                return bool(session.execute(
                    sa.update(UploadSession)
                    .where(UploadSession.id == upload_id, UploadSession.size == start, _unclaimed(now))
                    .values(claim=token, updated_at=now)
                    .execution_options(synchronize_session=False)).rowcount)

        won, size = self._claiming(upload_id, start, claim)
        if not won:
            if size is None:
                raise BlobUploadUnknown(detail={"uploadId": upload_id})
            raise _range_invalid(size)
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

    def _claiming(self, upload_id: str, start: int, attempt: Callable[[], bool]) -> tuple[bool, int | None]:
        """Runs `attempt` (a conditional claim of the session at `start`) until it wins, the session leaves `start`
        or goes, or a claim outlives one lease (a live writer): (won, the session's size — None when it is gone).

        Polling, not a lock: the claim is a row value any replica may hold, and a dead writer's lapses by time."""
        deadline = time.monotonic() + CLAIM_LEASE_SECONDS + CLAIM_POLL_SECONDS
        while True:
            if attempt():
                return True, start
            with self.db.reading() as session:
                size = session.scalar(sa.select(UploadSession.size).where(UploadSession.id == upload_id))
            if size != start or time.monotonic() >= deadline:
                return False, size
            time.sleep(CLAIM_POLL_SECONDS)

    def _keeping_claim(self, chunks: Iterable[bytes], upload_id: str, token: str) -> Iterator[bytes]:
        """Passes the stream on, renewing the claim's lease every CLAIM_RENEW_SECONDS while bytes flow and once more
        when the body ends late (the store writes its last block then); a claim that was lost stops the write
        before another byte reaches the store."""
        renewed = time.monotonic()

        def renew() -> None:
            nonlocal renewed
            renewed = time.monotonic()
            with self.db.session() as session:
                kept = session.execute(
                    sa.update(UploadSession).where(UploadSession.id == upload_id, UploadSession.claim == token)
                    .values(updated_at=utcnow()).execution_options(synchronize_session=False)).rowcount
            if not kept:
                raise _range_invalid(0)

        for chunk in chunks:
            if time.monotonic() - renewed >= CLAIM_RENEW_SECONDS:
                renew()
            yield chunk
        if time.monotonic() - renewed >= CLAIM_RENEW_SECONDS:
            renew()

    def finish_upload(self, reg: RegistryRef, repository: str, upload_id: str, digest: str,
                      chunks: Iterable[bytes]) -> BlobInfo:
        """Appends the final body (maybe empty), verifies the digest and publishes the blob.

        The session row is deleted first (the claim: of two concurrent finishes one proceeds; a chunk's claim
        still held at the final size is waited out as in `append_upload`). A wrong digest is
        DigestInvalid and discards the stored bytes, so nothing half-stored remains; a storage failure gives the
        session back (StorageUnavailable), so the client's retry of the same PUT can finish it."""
        parsed = names.digest(digest)
        self._upload(reg, repository, upload_id)
        rest = _nonempty(chunks)
        if rest is not None:
            self.append_upload(reg, repository, upload_id, rest, None)
        upload = self._upload(reg, repository, upload_id)
        size = upload.size

        def claim() -> bool:
            with self.db.session() as session:
                return bool(session.execute(sa.delete(UploadSession).where(
                    UploadSession.id == upload_id, UploadSession.size == size, _unclaimed(utcnow()))).rowcount)

        if not self._claiming(upload_id, size, claim)[0]:
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
                # The writes come before the reference check: on SQLite the first write takes the database's write
                # lock, so no sweep can free a checked blob before this commits (PostgreSQL: the check's FOR SHARE).
                insert_unless_duplicate(session, Blob(registry_id=reg.id, digest=digest, size=len(body)))
                _link_blob(session, repo.id, reg.id, digest)
                image_size = len(body) + self._check_references(session, repo, parsed)
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
        """The manifest by digest or tag (errors as `ManifestRead.content` raises them)."""
        names.repository(repository)
        return self._read_manifest(reg.id, True, repository, reference).content()

    def read_manifest(self, registry_name: str, repository: str, reference: str) -> ManifestRead:
        """The registry by name and its manifest by digest or tag, in one statement (what every pull starts with;
        a manifest GET needs nothing else from the database)."""
        if not isinstance(registry_name, str) or not 0 < len(registry_name) <= 50:
            return ManifestRead(None, repository, reference, False, None, False)
        return self._read_manifest(registry_name.lower(), False, repository, reference)

    def _read_manifest(self, registry: str, by_id: bool, repository: str, reference: str) -> ManifestRead:
        by_digest = names.is_digest(reference)
        row = self._statements.manifest[by_digest, by_id].first(self._read_engine, registry=registry,
                                                                repository=repository, reference=reference)
        reg = self._registry_ref(row)
        if reg is None:
            return ManifestRead(None, repository, reference, False, None, False)
        repository_id, repository_read, tag_read, digest, media_type, body, size, manifest_read = row[8:]
        manifest = ManifestContent(digest, media_type, bytes(body), size) if digest is not None else None
        return ManifestRead(reg, repository, reference, repository_id is not None, manifest,
                            bool(repository_read and tag_read and manifest_read))

    def delete_manifest(self, reg: RegistryRef, repository: str, digest: str, who: RequestInfo) -> None:
        """Deletes the manifest and its tags and records a `delete` event; its blobs (config, layers and its own
        bytes) stay linked to the repository, so the client may still delete (or pull) them.

        Freeing is deferred, as in ACR: the links of the blobs it referenced are touched, and once they stayed
        unreferenced for SWEEP_GRACE, a sweep frees them (rows, then stored objects). That sweep runs for the
        registry right after this delete commits — freeing what earlier deletes and abandoned pushes left past
        the grace — and for every registry from `control-plane doctor --repair`. Until then listUsages' Size counts
        their bytes."""
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
            # The grace of what this delete may orphan counts from now, not from when it was pushed.
            session.execute(sa.update(RepositoryBlob)
                            .where(RepositoryBlob.repository_id == repo.id,
                                   RepositoryBlob.digest.in_(referenced | {digest}))
                            .values(created_at=utcnow()).execution_options(synchronize_session=False))
            session.execute(sa.delete(Tag).where(Tag.repository_id == repo.id, Tag.digest == digest))
            session.execute(sa.delete(ManifestReference).where(ManifestReference.repository_id == repo.id,
                                                               ManifestReference.manifest_digest == digest))
            session.execute(sa.delete(Manifest).where(Manifest.repository_id == repo.id, Manifest.digest == digest))
            _record(session, reg, "delete", repository, who, digest=digest, media_type=manifest.media_type,
                    size=manifest.size)
        try:
            self.sweep_unreferenced(reg.id)
        except (sa.exc.SQLAlchemyError, StorageError, StorageUnavailable):  # the delete stands; the next sweep frees
            log.warning("sweeping registry %s after a manifest delete failed", reg.id, exc_info=True)

    def sweep_unreferenced(self, registry_id: str | None = None,
                           older_than: timedelta = SWEEP_GRACE) -> list[tuple[str, str]]:
        """See the module-level `sweep_unreferenced`; this service's database and storage."""
        return sweep_unreferenced(self.db, self.storage, registry_id, older_than)

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

    def delete_repository(self, reg: RegistryRef, repository: str, who: RequestInfo) -> RepositoryDeleted:
        """Deletes every manifest and tag of the repository and unlinks its blobs, recording a `delete` event per
        manifest, all in one transaction: a failure leaves the repository whole. Refused whole (nothing deleted)
        when the repository or any of its manifests or tags is locked. Blobs nothing else keeps are freed at once
        (rows in the transaction, stored objects after it commits).

        The repository row stays, emptied and with fresh attributes and times, so it reads as a new repository on
        the next push: a push racing the delete either committed first (and is deleted with the rest) or lands in
        the row after, never against a row that vanished under it. An empty row is invisible to every list."""
        names.repository(repository)
        with self.db.session() as session:
            # FOR UPDATE (PostgreSQL): concurrent deletes of the repository and pushes into it wait for this one.
            repo = session.scalar(sa.select(Repository).where(Repository.registry_id == reg.id,
                                                              Repository.name == repository).with_for_update())
            if repo is None:
                raise NameUnknown(detail={"name": repository})
            held = session.execute(sa.select(Manifest.digest, Manifest.media_type, Manifest.size,
                                             Manifest.delete_enabled, Manifest.write_enabled)
                                   .where(Manifest.repository_id == repo.id)).all()
            if not held:
                raise NameUnknown(detail={"name": repository})
            tags = session.execute(sa.select(Tag.name, Tag.delete_enabled, Tag.write_enabled)
                                   .where(Tag.repository_id == repo.id)).all()
            for item in (repo, *held, *tags):
                _check_deletable(item)
            linked = set(session.scalars(sa.select(RepositoryBlob.digest)
                                         .where(RepositoryBlob.repository_id == repo.id)))
            for model in (Tag, ManifestReference, Manifest, RepositoryBlob):
                session.execute(sa.delete(model).where(model.repository_id == repo.id)
                                .execution_options(synchronize_session=False))
            now = utcnow()
            session.execute(sa.update(Repository).where(Repository.id == repo.id)
                            .values(delete_enabled=True, write_enabled=True, read_enabled=True, list_enabled=True,
                                    created_at=now, updated_at=now)
                            .execution_options(synchronize_session=False))
            for row in held:
                _record(session, reg, "delete", repository, who, digest=row.digest, media_type=row.media_type,
                        size=row.size)
            freed = _delete_unkept(session, reg.id, sorted(linked | {row.digest for row in held}), cutoff=None)
        self._delete_objects(reg, freed)
        return RepositoryDeleted(sorted(row.digest for row in held), sorted(row.name for row in tags))

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
        """The verified blob's row (the insert comes first: on SQLite it takes the write lock, so no sweep can free
        the blob between it and the link) and its link to the repository."""
        with self.db.session() as session:
            insert_unless_duplicate(session, Blob(registry_id=reg.id, digest=digest, size=size))
            repo = self._ensure_repository(session, reg, repository)
            _link_blob(session, repo.id, reg.id, digest)

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
                .where(RepositoryBlob.repository_id == repo.id, Blob.digest.in_(wanted))
                .order_by(Blob.digest)
                .with_for_update(read=True, of=Blob)).all())
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
        _delete_objects(self.db, self._store(reg), reg.id, reg.container, digests)

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


def _link_blob(session: Session, repository_id: str, registry_id: str, digest: str) -> None:
    """Links a blob to a repository, or touches an existing link: the sweep's grace counts from its `created_at`,
    so a blob pushed again (or mounted) is not freed right after a client was told it is there."""
    if not insert_unless_duplicate(session, RepositoryBlob(repository_id=repository_id, digest=digest,
                                                           registry_id=registry_id)):
        session.execute(sa.update(RepositoryBlob)
                        .where(RepositoryBlob.repository_id == repository_id, RepositoryBlob.digest == digest)
                        .values(created_at=utcnow()).execution_options(synchronize_session=False))


def _unkept(registry_id: str, cutoff: datetime | None):
    """The blobs of the registry nothing keeps: no manifest references or is them, and no repository links them —
    or, with a cutoff, none linked (or touched a link) since it, the blob itself being older than it too."""
    referenced = sa.exists().where(ManifestReference.registry_id == registry_id,
                                   ManifestReference.digest == Blob.digest)
    is_manifest = sa.exists().where(Manifest.registry_id == registry_id, Manifest.digest == Blob.digest)
    linked = sa.exists().where(RepositoryBlob.registry_id == registry_id, RepositoryBlob.digest == Blob.digest)
    conditions = [Blob.registry_id == registry_id, ~referenced, ~is_manifest]
    if cutoff is None:
        conditions.append(~linked)
    else:
        conditions += [Blob.created_at < cutoff, ~linked.where(RepositoryBlob.created_at >= cutoff)]
    return sa.and_(*conditions)


def _delete_unkept(session: Session, registry_id: str, digests: list[str], cutoff: datetime | None) -> list[str]:
    """Deletes the rows (blob, and by cascade its links) of those `digests` that `_unkept` still holds for, and
    returns them; their objects go once the transaction committed.

    Race-safe against a push referencing or linking one of them: on PostgreSQL the rows are locked first (in digest
    order) and the condition is evaluated by the DELETE after the lock, so a concurrent manifest PUT (its check
    holds FOR SHARE) or link (its foreign key holds KEY SHARE) either committed before — and is seen — or waits and
    then finds no row. On SQLite the one DELETE statement is atomic and pushes check after taking the write lock."""
    if not digests:
        return []
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(Blob.digest).where(Blob.registry_id == registry_id, Blob.digest.in_(digests))
                        .order_by(Blob.digest).with_for_update()).all()
    return list(session.scalars(sa.delete(Blob).where(_unkept(registry_id, cutoff), Blob.digest.in_(digests))
                                .returning(Blob.digest)))


def _delete_objects(db: Database, store: Any, registry_id: str, container: str, digests: Iterable[str]) -> None:
    """Deletes the stored objects of blobs that have no row (again) — a push that re-created one keeps it. Best
    effort: an object a storage failure leaves behind is unreferenced drift that `control-plane doctor` removes."""
    digests = list(digests)
    if not digests:
        return
    with db.reading() as session:
        alive = set(session.scalars(sa.select(Blob.digest).where(Blob.registry_id == registry_id,
                                                                 Blob.digest.in_(digests))))
    for digest in digests:
        if digest not in alive:
            with contextlib.suppress(StorageError):
                store.delete_object(container, names.blob_key(digest))


def unreferenced_blobs(db: Database, registry_id: str, older_than: timedelta = SWEEP_GRACE) -> list[str]:
    """The digests `sweep_unreferenced` would free in the registry now (what `control-plane doctor` reports)."""
    with db.reading() as session:
        return list(session.scalars(sa.select(Blob.digest).where(_unkept(registry_id, utcnow() - older_than))
                                    .order_by(Blob.digest)))


def sweep_unreferenced(db: Database, storage: StorageRouter, registry_id: str | None = None,
                       older_than: timedelta = SWEEP_GRACE) -> list[tuple[str, str]]:
    """Frees the blobs that stayed unreferenced for `older_than`: no manifest of the registry references or is
    them, and no repository linked them (or had a link touched) within it — blobs whose last manifest went, blobs
    a repository DELETE unlinked, and blobs pushed but never referenced (an abandoned push does not leak).

    Rows go in batches of SWEEP_BATCH (one transaction each), the stored objects after each commits. Runs for a
    registry right after each manifest delete in it (ContentService.delete_manifest), and for every registry (or
    `registry_id`) from `control-plane doctor --repair`. Registries being deleted are skipped (their container
    goes with them). Returns (registry id, digest) of what it freed."""
    query = sa.select(Registry.id, Registry.location, Registry.container_name).where(
        Registry.provisioning_state != DELETING)
    if registry_id is not None:
        query = query.where(Registry.id == registry_id)
    with db.reading() as session:
        registries = session.execute(query).all()
    freed: list[tuple[str, str]] = []
    for row in registries:
        cutoff = utcnow() - older_than
        while True:
            with db.reading() as session:
                candidates = list(session.scalars(sa.select(Blob.digest).where(_unkept(row.id, cutoff))
                                                  .order_by(Blob.digest).limit(SWEEP_BATCH)))
            with db.session() as session:
                batch = _delete_unkept(session, row.id, candidates, cutoff)
            if batch:
                _delete_objects(db, storage.for_location(row.location), row.id, row.container_name, batch)
                freed += [(row.id, digest) for digest in batch]
            if len(candidates) < SWEEP_BATCH or not batch:
                break
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
