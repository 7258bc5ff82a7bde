"""What a registry holds: repositories, blobs, manifests, tags, upload sessions, and the events of its changes.

The bytes live in the registry's own blob container (`storage/`); these rows are the index over them and the
only thing that makes content visible: a blob exists under its digest once its row exists, and its row is written
only after the digest was verified.

Every table hangs off `registries` with ON DELETE CASCADE, so deleting a registry's row deletes its metadata in the
same statement; its container (and with it every stored byte) goes with the registry's delete operation.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db import Base, UtcDateTime, utcnow

DIGEST_LENGTH = 150  # sha512:<128 hex> with room to spare
REPOSITORY_NAME_LENGTH = 256
TAG_LENGTH = 128
MEDIA_TYPE_LENGTH = 255


class ChangeableAttributes:
    """ACR's locks on a repository, tag or manifest (`changeableAttributes`), all on by default."""

    delete_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    write_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    read_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    list_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class Repository(ChangeableAttributes, Base):
    __tablename__ = "repositories"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    registry_id: Mapped[str] = mapped_column(sa.ForeignKey("registries.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(REPOSITORY_NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("registry_id", "name"),)


class Blob(Base):
    """A verified blob, stored once per registry under a content-addressed key."""

    __tablename__ = "blobs"

    registry_id: Mapped[str] = mapped_column(sa.ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RepositoryBlob(Base):
    """A blob readable through one repository (uploaded or mounted there): a blob of one repository is not
    readable through another by guessing its digest, as in Distribution."""

    __tablename__ = "repository_blobs"

    repository_id: Mapped[str] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                                               primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)
    registry_id: Mapped[str] = mapped_column(sa.String(36))
    # Also touched when the blob is pushed or mounted again and when a manifest referencing it is deleted: the
    # sweep's grace period counts from the newest link's value.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        sa.ForeignKeyConstraint(["registry_id", "digest"], ["blobs.registry_id", "blobs.digest"], ondelete="CASCADE"),
        sa.Index("ix_repository_blobs_registry_digest", "registry_id", "digest"),
    )


class Manifest(ChangeableAttributes, Base):
    __tablename__ = "manifests"

    repository_id: Mapped[str] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                                               primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)
    registry_id: Mapped[str] = mapped_column(sa.ForeignKey("registries.id", ondelete="CASCADE"))
    media_type: Mapped[str] = mapped_column(sa.String(MEDIA_TYPE_LENGTH))
    # The manifest's `artifactType`, else its config's media type (what the referrers API reports); None for an
    # index without one.
    artifact_type: Mapped[str | None] = mapped_column(sa.String(MEDIA_TYPE_LENGTH))
    config_media_type: Mapped[str | None] = mapped_column(sa.String(MEDIA_TYPE_LENGTH))
    subject_digest: Mapped[str | None] = mapped_column(sa.String(DIGEST_LENGTH))
    annotations: Mapped[dict | None] = mapped_column(sa.JSON)
    size: Mapped[int] = mapped_column(sa.BigInteger)  # of the manifest's own bytes
    image_size: Mapped[int] = mapped_column(sa.BigInteger)  # manifest + config + layers (ACR's imageSize)
    os: Mapped[str | None] = mapped_column(sa.String(64))
    architecture: Mapped[str | None] = mapped_column(sa.String(64))
    # A copy of the bytes stored in the container, so a manifest GET needs no storage round trip.
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_manifests_repository_subject", "repository_id", "subject_digest"),
                      sa.Index("ix_manifests_registry_digest", "registry_id", "digest"))


class ManifestReference(Base):
    """What a manifest points at: its config and layers (`blob`) or, for an index, its manifests (`manifest`).

    A blob is kept while any manifest of the registry references it; once none does (and no link was touched for
    the grace period), `sweep_unreferenced` frees it."""

    __tablename__ = "manifest_references"

    repository_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    manifest_digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)
    registry_id: Mapped[str] = mapped_column(sa.ForeignKey("registries.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(8))  # "blob" or "manifest"

    __table_args__ = (
        sa.ForeignKeyConstraint(["repository_id", "manifest_digest"], ["manifests.repository_id", "manifests.digest"],
                                ondelete="CASCADE"),
        sa.Index("ix_manifest_references_registry_digest", "registry_id", "digest"),
    )


class Tag(ChangeableAttributes, Base):
    __tablename__ = "tags"

    repository_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(TAG_LENGTH), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        # Deleting a manifest deletes the tags that point at it.
        sa.ForeignKeyConstraint(["repository_id", "digest"], ["manifests.repository_id", "manifests.digest"],
                                ondelete="CASCADE"),
        sa.Index("ix_tags_repository_digest", "repository_id", "digest"),
    )


class UploadSession(Base):
    """A blob upload in progress. Its bytes sit under `object_key` in the registry's container until the digest
    is verified; `size` is what has arrived, and a chunk is accepted only by the conditional UPDATE that moves it
    from the chunk's start offset, so concurrent or repeated chunks on any worker or replica cannot both land.

    `claim` is the token of the one request writing a chunk right now (taken by a conditional UPDATE before any
    byte is written, kept alive through `updated_at`): a second writer at the same offset is refused before it can
    overwrite bytes the first one hashed, so what is verified is always what is stored."""

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    registry_id: Mapped[str] = mapped_column(sa.ForeignKey("registries.id", ondelete="CASCADE"), index=True)
    repository: Mapped[str] = mapped_column(sa.String(REPOSITORY_NAME_LENGTH))
    object_key: Mapped[str] = mapped_column(sa.String(512))
    size: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(sa.Integer, default=0)
    claim: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class RegistryEvent(Base):
    """One push or delete of a manifest or tag, written in the transaction that made it: the seam webhooks,
    replication and retention consume (in `id` order) through the operations worker."""

    __tablename__ = "registry_events"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    registry_id: Mapped[str] = mapped_column(sa.ForeignKey("registries.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(sa.String(16))  # push, delete (manifest or repository), untag
    repository: Mapped[str] = mapped_column(sa.String(REPOSITORY_NAME_LENGTH))
    tag: Mapped[str | None] = mapped_column(sa.String(TAG_LENGTH))
    digest: Mapped[str | None] = mapped_column(sa.String(DIGEST_LENGTH))
    media_type: Mapped[str | None] = mapped_column(sa.String(MEDIA_TYPE_LENGTH))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    actor: Mapped[str | None] = mapped_column(sa.String(256))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    request_host: Mapped[str | None] = mapped_column(sa.String(256))
    request_method: Mapped[str | None] = mapped_column(sa.String(16))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
