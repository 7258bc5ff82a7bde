"""The JSON shapes of ACR's `/acr/v1` API (acr-dataplane-api.md §3.1), as the SDK 1.2.0 and az 2.91 parse them.

Two rules the clients depend on: `changeableAttributes` is always present on repository and tag JSON (the SDK
reads it unconditionally), and the list keys (`repositories`, `tags`, `manifests`) are always present, even empty
(az indexes them). A manifest's `tags` is omitted when it has none, as ACR does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from control_plane.acr.service import ManifestEntry, RepositoryInfo
from control_plane.content.models import ChangeableAttributes, Tag


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def changeable_attributes(row: ChangeableAttributes) -> dict[str, bool]:
    return {"deleteEnabled": row.delete_enabled, "writeEnabled": row.write_enabled,
            "readEnabled": row.read_enabled, "listEnabled": row.list_enabled}


def catalog(names: list[str]) -> dict[str, Any]:
    return {"repositories": names}


def repository(login_server: str, image_name: str, info: RepositoryInfo) -> dict[str, Any]:
    row = info.row
    return {
        "registry": login_server,
        "imageName": image_name,
        "createdTime": timestamp(row.created_at),
        "lastUpdateTime": timestamp(row.updated_at),
        "manifestCount": info.manifest_count,
        "tagCount": info.tag_count,
        "changeableAttributes": changeable_attributes(row),
    }


def tag(row: Tag) -> dict[str, Any]:
    return {
        "name": row.name,
        "digest": row.digest,
        "createdTime": timestamp(row.created_at),
        "lastUpdateTime": timestamp(row.updated_at),
        "signed": False,
        "changeableAttributes": changeable_attributes(row),
    }


def tag_list(login_server: str, repository_name: str, rows: list[Tag]) -> dict[str, Any]:
    return {"registry": login_server, "imageName": repository_name, "tags": [tag(row) for row in rows]}


def tag_document(login_server: str, repository_name: str, row: Tag) -> dict[str, Any]:
    return {"registry": login_server, "imageName": repository_name, "tag": tag(row)}


def manifest(entry: ManifestEntry) -> dict[str, Any]:
    row = entry.row
    body: dict[str, Any] = {
        "digest": row.digest,
        "imageSize": row.image_size,
        "createdTime": timestamp(row.created_at),
        "lastUpdateTime": timestamp(row.updated_at),
    }
    if row.architecture:
        body["architecture"] = row.architecture
    if row.os:
        body["os"] = row.os
    body["mediaType"] = row.media_type
    if row.config_media_type:
        body["configMediaType"] = row.config_media_type
    if entry.tags:
        body["tags"] = list(entry.tags)
    if entry.references is not None:
        body["references"] = [
            {key: value for key, value in (("digest", ref.digest), ("architecture", ref.architecture),
                                           ("os", ref.os)) if value}
            for ref in entry.references]
    body["changeableAttributes"] = changeable_attributes(row)
    return body


def manifest_list(login_server: str, repository_name: str, entries: list[ManifestEntry]) -> dict[str, Any]:
    return {"registry": login_server, "imageName": repository_name,
            "manifests": [manifest(entry) for entry in entries]}


def manifest_document(login_server: str, repository_name: str, entry: ManifestEntry) -> dict[str, Any]:
    return {"registry": login_server, "imageName": repository_name, "manifest": manifest(entry)}


def repository_deleted(manifests: list[str], tags: list[str]) -> dict[str, Any]:
    """SPEC-DP's DeleteRepositoryResult (the SDK ignores the body; az prints nothing)."""
    return {"manifestsDeleted": manifests, "tagsDeleted": tags}
