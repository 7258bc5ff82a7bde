"""ACR's metadata API over the content models: repositories, tags and manifests with their `changeableAttributes`.

Reads are plain queries over the content tables. Attribute updates are written here; deletes go through the
content service (`delete_repository`, `delete_tag`), which enforces the locks and records the events in the same
transaction as the change; a repository delete frees at once the blobs nothing else keeps.

Listing rules: `listEnabled=false` hides a repository from the catalog and a tag or manifest from its list (a GET
by name still finds it). A repository is visible once it holds a manifest: upload sessions and mounted blobs alone
do not make it appear, as in Distribution. Pages are keyset ranges: `last` is the last name (or digest) served;
with a time order the position is that item's (lastUpdateTime, name), so a page never repeats or skips an item
that did not change in between.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, defer

from control_plane.content import names
from control_plane.content.errors import (
    ContentError,
    ManifestUnknown,
    NameUnknown,
    PaginationNumberInvalid,
    TagUnknown,
)
from control_plane.content.models import Manifest, Repository, Tag
from control_plane.content.service import ContentService, RegistryRef, RepositoryDeleted, RequestInfo
from control_plane.db import Database

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
ORDERS = ("timedesc", "timeasc")
MAX_POSITION_LENGTH = 512  # longer than any repository name (256), tag (128) or digest (sha512: 135)
INDEX_MEDIA_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                               "application/vnd.docker.distribution.manifest.list.v2+json"})
# The JSON name of each writeable property -> the column it sets (the same four on repository, tag and manifest).
WRITEABLE = {"deleteEnabled": "delete_enabled", "writeEnabled": "write_enabled",
             "readEnabled": "read_enabled", "listEnabled": "list_enabled"}


class RequestInvalid(ContentError):
    """A query parameter or PATCH body this API does not take."""

    status, code, default_message = 400, "INVALID_REQUEST", "the request is not valid"


@dataclass(frozen=True)
class Page:
    items: list[Any]
    more: bool  # a next page exists: the route adds `Link`


@dataclass(frozen=True)
class RepositoryInfo:
    row: Repository
    manifest_count: int
    tag_count: int


@dataclass(frozen=True)
class PlatformReference:
    """An index's child as ACR's `references` shows it."""

    digest: str
    architecture: str | None
    os: str | None


@dataclass(frozen=True)
class ManifestEntry:
    row: Manifest  # loaded without its body
    tags: tuple[str, ...]
    references: tuple[PlatformReference, ...] | None  # None unless the manifest is an index


# -- parameters -------------------------------------------------------------------------------------------------


def page_size(raw: str | None) -> int:
    """`n`: absent -> the default; larger than the cap -> the cap (the client follows `Link`); else 400."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise PaginationNumberInvalid(detail={"n": raw[:32]})
    return min(int(raw), MAX_PAGE_SIZE)


def order(raw: str | None) -> str | None:
    """`orderby`: `timedesc`, `timeasc`, or none (empty, as ACR's own `Link` sends it)."""
    if raw is None or raw == "":
        return None
    if raw not in ORDERS:
        raise RequestInvalid(f"orderby must be one of {', '.join(ORDERS)}", detail={"orderby": raw[:64]})
    return raw


def position(raw: str | None) -> str | None:
    """`last`: the name or digest the previous page ended with. Any text sorts somewhere, so only what no name can
    hold is refused (NUL, which PostgreSQL text cannot even compare, and lengths beyond any name or digest)."""
    if raw is None or raw == "":
        return None
    if "\x00" in raw or len(raw) > MAX_POSITION_LENGTH:
        raise RequestInvalid("last is not a name or digest of this list", detail={"last": raw[:64]})
    return raw


def attribute_changes(body: Any) -> dict[str, bool]:
    """A PATCH body: a flat object of writeable properties, only those being set (SPEC-DP, the SDK, az)."""
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object of writeable properties")
    unknown = sorted(set(body) - set(WRITEABLE))
    if unknown:
        raise RequestInvalid(f"unknown or read-only properties: {', '.join(unknown)[:200]}",
                             detail={"properties": [key[:64] for key in unknown[:20]]})
    wrong = sorted(key for key, value in body.items() if not isinstance(value, bool))
    if wrong:
        raise RequestInvalid(f"these properties take true or false: {', '.join(wrong)}",
                             detail={"properties": wrong})
    return {WRITEABLE[key]: value for key, value in body.items()}


# -- the service ------------------------------------------------------------------------------------------------


class AcrMetadata:
    """One per app: `db` for the metadata, `content` (the ContentService) for deletes."""

    def __init__(self, db: Database, content: ContentService):
        self.db = db
        self.content = content

    # catalog and repositories

    def catalog(self, registry_id: str, n: int, last: str | None) -> Page:
        if n == 0:
            return Page([], False)
        with self.db.reading() as session:
            name = _bytewise(session, Repository.name)
            query = (sa.select(Repository.name)
                     .where(Repository.registry_id == registry_id, Repository.list_enabled.is_(True),
                            _has_manifest())
                     .order_by(name).limit(n + 1))
            if last:
                query = query.where(name > last)
            found = list(session.scalars(query))
        return Page(found[:n], len(found) > n)

    def repository(self, registry_id: str, name: str) -> RepositoryInfo:
        with self.db.reading() as session:
            row = _repository(session, registry_id, name)
            return _repository_info(session, row)

    def update_repository(self, registry_id: str, name: str, changes: dict[str, bool]) -> RepositoryInfo:
        with self.db.session() as session:
            row = _repository(session, registry_id, name, for_update=True)
            _apply(row, changes)
            session.flush()
            return _repository_info(session, row)

    def delete_repository(self, reg: RegistryRef, name: str, who: RequestInfo) -> RepositoryDeleted:
        """The content service deletes it whole, in one transaction, or refuses it whole when anything is locked."""
        return self.content.delete_repository(reg, name, who)

    # tags

    def tags(self, registry_id: str, repository: str, n: int, last: str | None, orderby: str | None,
             digest: str | None) -> Page:
        with self.db.reading() as session:
            repo = _repository(session, registry_id, repository)
            if n == 0:
                return Page([], False)
            query = sa.select(Tag).where(Tag.repository_id == repo.id, Tag.list_enabled.is_(True))
            if digest:
                query = query.where(Tag.digest == str(names.digest(digest)))
            query = _keyset(session, query, Tag, Tag.name, repo.id, last, orderby)
            found = list(session.scalars(query.limit(n + 1)))
        return Page(found[:n], len(found) > n)

    def tag(self, registry_id: str, repository: str, tag: str) -> Tag:
        with self.db.reading() as session:
            repo = _repository(session, registry_id, repository)
            return _tag(session, repo.id, tag)

    def update_tag(self, registry_id: str, repository: str, tag: str, changes: dict[str, bool]) -> Tag:
        with self.db.session() as session:
            repo = _repository(session, registry_id, repository)
            row = _tag(session, repo.id, tag, for_update=True)
            _apply(row, changes)
        return row

    def delete_tag(self, reg: RegistryRef, repository: str, tag: str, who: RequestInfo) -> str:
        """Untags (the manifest stays) through the content service: it enforces the tag's and repository's locks
        and records the `untag` event."""
        return self.content.delete_tag(reg, repository, tag, who)

    # manifests

    def manifests(self, registry_id: str, repository: str, n: int, last: str | None, orderby: str | None) -> Page:
        with self.db.reading() as session:
            repo = _repository(session, registry_id, repository)
            if n == 0:
                return Page([], False)
            query = (sa.select(Manifest).options(defer(Manifest.body))
                     .where(Manifest.repository_id == repo.id, Manifest.list_enabled.is_(True)))
            query = _keyset(session, query, Manifest, Manifest.digest, repo.id, last, orderby)
            found = list(session.scalars(query.limit(n + 1)))
            entries = _entries(session, repo.id, found[:n])
        return Page(entries, len(found) > n)

    def manifest(self, registry_id: str, repository: str, digest: str) -> ManifestEntry:
        with self.db.reading() as session:
            repo = _repository(session, registry_id, repository)
            return _entries(session, repo.id, [_manifest(session, repo.id, digest)])[0]

    def update_manifest(self, registry_id: str, repository: str, digest: str,
                        changes: dict[str, bool]) -> ManifestEntry:
        with self.db.session() as session:
            repo = _repository(session, registry_id, repository)
            row = _manifest(session, repo.id, digest, for_update=True)
            _apply(row, changes)
            session.flush()
            return _entries(session, repo.id, [row])[0]


# -- helpers ----------------------------------------------------------------------------------------------------


def _has_manifest() -> sa.ColumnElement[bool]:
    return sa.exists().where(Manifest.repository_id == Repository.id)


def _bytewise(session: Session, column: sa.ColumnElement) -> sa.ColumnElement:
    """Byte order on both databases, as the OCI catalog and tag lists use (PostgreSQL's default collation can
    ignore punctuation)."""
    return column.collate("C") if session.get_bind().dialect.name == "postgresql" else column


def _repository(session: Session, registry_id: str, name: str, for_update: bool = False) -> Repository:
    names.repository(name)
    query = sa.select(Repository).where(Repository.registry_id == registry_id, Repository.name == name,
                                        _has_manifest())
    row = session.scalars(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NameUnknown(detail={"name": name})
    return row


def _repository_info(session: Session, row: Repository) -> RepositoryInfo:
    manifests = session.scalar(sa.select(sa.func.count()).select_from(Manifest)
                               .where(Manifest.repository_id == row.id)) or 0
    tags = session.scalar(sa.select(sa.func.count()).select_from(Tag).where(Tag.repository_id == row.id)) or 0
    return RepositoryInfo(row, manifests, tags)


def _tag(session: Session, repository_id: str, tag: str, for_update: bool = False) -> Tag:
    names.tag(tag)
    query = sa.select(Tag).where(Tag.repository_id == repository_id, Tag.name == tag)
    row = session.scalars(query.with_for_update() if for_update else query).first()
    if row is None:
        raise TagUnknown(detail={"tag": tag})
    return row


def _manifest(session: Session, repository_id: str, digest: str, for_update: bool = False) -> Manifest:
    names.digest(digest)
    query = (sa.select(Manifest).options(defer(Manifest.body))
             .where(Manifest.repository_id == repository_id, Manifest.digest == digest))
    row = session.scalars(query.with_for_update() if for_update else query).first()
    if row is None:
        raise ManifestUnknown(detail={"digest": digest})
    return row


def _apply(row: Repository | Tag | Manifest, changes: dict[str, bool]) -> None:
    for column, value in changes.items():
        setattr(row, column, value)


def _keyset(session: Session, query: sa.Select, model: type[Tag] | type[Manifest], key: sa.ColumnElement,
            repository_id: str, last: str | None, orderby: str | None) -> sa.Select:
    """Orders by `key` (name or digest), or by (updated_at, key) for a time order, and starts after `last`."""
    key = _bytewise(session, key)
    if orderby is None:
        query = query.order_by(key)
        return query.where(key > last) if last else query
    time = model.updated_at
    query = query.order_by(time.desc() if orderby == "timedesc" else time.asc(), key)
    if not last:
        return query
    after = session.scalar(sa.select(time).where(model.repository_id == repository_id, key == last))
    if after is None:
        # The item the previous page ended on is gone: nothing identifies the position any more.
        return query.where(sa.false())
    beyond = time < after if orderby == "timedesc" else time > after
    return query.where(sa.or_(beyond, sa.and_(time == after, key > last)))


def _entries(session: Session, repository_id: str, rows: Sequence[Manifest]) -> list[ManifestEntry]:
    """The manifests with their tags and, for an index, the platforms of its children (read from its body)."""
    digests = [row.digest for row in rows]
    tags: dict[str, list[str]] = {}
    if digests:
        for name, digest in session.execute(sa.select(Tag.name, Tag.digest).where(
                Tag.repository_id == repository_id, Tag.digest.in_(digests)).order_by(Tag.name)):
            tags.setdefault(digest, []).append(name)
    indexes = [row.digest for row in rows if row.media_type in INDEX_MEDIA_TYPES]
    bodies: dict[str, bytes] = {}
    if indexes:
        bodies = {digest: body for digest, body in session.execute(sa.select(Manifest.digest, Manifest.body).where(
            Manifest.repository_id == repository_id, Manifest.digest.in_(indexes)))}
    return [ManifestEntry(row, tuple(tags.get(row.digest, ())),
                          _platforms(bodies[row.digest]) if row.digest in bodies else None)
            for row in rows]


def _platforms(body: bytes) -> tuple[PlatformReference, ...]:
    try:
        children = json.loads(body).get("manifests") or []
    except (ValueError, AttributeError):
        return ()
    found = []
    for child in children:
        if not isinstance(child, dict) or not isinstance(child.get("digest"), str):
            continue
        platform = child.get("platform") if isinstance(child.get("platform"), dict) else {}
        found.append(PlatformReference(child["digest"], _text(platform.get("architecture")),
                                       _text(platform.get("os"))))
    return tuple(found)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

