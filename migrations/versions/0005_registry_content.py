"""Registry content: repositories, blobs and their links, manifests and what they reference, tags, upload sessions,
and the events of pushes and deletes

Every table hangs off `registries` (ON DELETE CASCADE), so deleting a registry's row removes its content's index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 19:47:15
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = (
    "tags",
    "manifest_references",
    "repository_blobs",
    "manifests",
    "upload_sessions",
    "repositories",
    "registry_events",
    "blobs",
)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_blobs_registry_id_registries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("registry_id", "digest", name=op.f("pk_blobs")),
    )
    op.create_table(
        "registry_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("repository", sa.String(length=256), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=150), nullable=True),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_host", sa.String(length=256), nullable=True),
        sa.Column("request_method", sa.String(length=16), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_registry_events_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_registry_events_event_id")),
    )
    with op.batch_alter_table("registry_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registry_events_registry_id"), ["registry_id"], unique=False)

    op.create_table(
        "repositories",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delete_enabled", sa.Boolean(), nullable=False),
        sa.Column("write_enabled", sa.Boolean(), nullable=False),
        sa.Column("read_enabled", sa.Boolean(), nullable=False),
        sa.Column("list_enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_repositories_registry_id_registries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
        sa.UniqueConstraint("registry_id", "name", name=op.f("uq_repositories_registry_id_name")),
    )
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("repository", sa.String(length=256), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("claim", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_upload_sessions_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_sessions")),
    )
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_sessions_registry_id"), ["registry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_upload_sessions_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "manifests",
        sa.Column("repository_id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("artifact_type", sa.String(length=255), nullable=True),
        sa.Column("config_media_type", sa.String(length=255), nullable=True),
        sa.Column("subject_digest", sa.String(length=150), nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("image_size", sa.BigInteger(), nullable=False),
        sa.Column("os", sa.String(length=64), nullable=True),
        sa.Column("architecture", sa.String(length=64), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delete_enabled", sa.Boolean(), nullable=False),
        sa.Column("write_enabled", sa.Boolean(), nullable=False),
        sa.Column("read_enabled", sa.Boolean(), nullable=False),
        sa.Column("list_enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_manifests_registry_id_registries"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_manifests_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest", name=op.f("pk_manifests")),
    )
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.create_index("ix_manifests_registry_digest", ["registry_id", "digest"], unique=False)
        batch_op.create_index("ix_manifests_repository_subject", ["repository_id", "subject_digest"], unique=False)

    op.create_table(
        "repository_blobs",
        sa.Column("repository_id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id", "digest"],
            ["blobs.registry_id", "blobs.digest"],
            name=op.f("fk_repository_blobs_registry_id_blobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_repository_blobs_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest", name=op.f("pk_repository_blobs")),
    )
    with op.batch_alter_table("repository_blobs", schema=None) as batch_op:
        batch_op.create_index("ix_repository_blobs_registry_digest", ["registry_id", "digest"], unique=False)

    op.create_table(
        "manifest_references",
        sa.Column("repository_id", sa.String(length=36), nullable=False),
        sa.Column("manifest_digest", sa.String(length=150), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("registry_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_manifest_references_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id", "manifest_digest"],
            ["manifests.repository_id", "manifests.digest"],
            name=op.f("fk_manifest_references_repository_id_manifests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "manifest_digest", "digest", name=op.f("pk_manifest_references")),
    )
    with op.batch_alter_table("manifest_references", schema=None) as batch_op:
        batch_op.create_index("ix_manifest_references_registry_digest", ["registry_id", "digest"], unique=False)

    op.create_table(
        "tags",
        sa.Column("repository_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=150), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delete_enabled", sa.Boolean(), nullable=False),
        sa.Column("write_enabled", sa.Boolean(), nullable=False),
        sa.Column("read_enabled", sa.Boolean(), nullable=False),
        sa.Column("list_enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id", "digest"],
            ["manifests.repository_id", "manifests.digest"],
            name=op.f("fk_tags_repository_id_manifests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "name", name=op.f("pk_tags")),
    )
    with op.batch_alter_table("tags", schema=None) as batch_op:
        batch_op.create_index("ix_tags_repository_digest", ["repository_id", "digest"], unique=False)


def downgrade() -> None:
    for table in TABLES:  # dependents first; their indexes go with them
        op.drop_table(table)
