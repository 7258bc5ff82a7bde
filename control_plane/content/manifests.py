"""Parsing and validating a manifest body: the four image media types and OCI artifacts.

Only the shape is checked here (JSON, mediaType, descriptors); whether the referenced blobs and manifests exist is
the service's question, asked inside the transaction that stores the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from control_plane.content import names
from control_plane.content.errors import ContentError, ManifestInvalid

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MEDIA_TYPES = IMAGE_TYPES + INDEX_TYPES

# Configs whose JSON carries the image's os and architecture.
IMAGE_CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
# Layers that registries are not expected to hold (their bytes live at `urls`).
NONDISTRIBUTABLE_PREFIXES = ("application/vnd.oci.image.layer.nondistributable.",
                             "application/vnd.docker.image.rootfs.foreign.")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None

    @property
    def nondistributable(self) -> bool:
        return self.media_type.startswith(NONDISTRIBUTABLE_PREFIXES)


@dataclass
class ParsedManifest:
    media_type: str
    config: Descriptor | None
    layers: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def config_media_type(self) -> str | None:
        return self.config.media_type if self.config else None

    @property
    def blobs(self) -> list[Descriptor]:
        """The blobs this manifest needs in the registry: config and layers (nondistributable ones included)."""
        return ([self.config] if self.config else []) + self.layers

    @property
    def reported_artifact_type(self) -> str | None:
        """What the referrers API lists: `artifactType`, else the config's media type; none for a bare index."""
        return self.artifact_type or self.config_media_type

    def content_size(self) -> int:
        """The bytes this manifest brings along (config + layers, or the index's children), for ACR's imageSize."""
        return sum(d.size for d in self.blobs + self.manifests)


def parse(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validates `body` as a manifest; `content_type`'s parameters are ignored. Raises ManifestInvalid."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ManifestInvalid("manifest is not valid JSON") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    media_type = _media_type(document, content_type)
    schema_version = document.get("schemaVersion")
    if type(schema_version) is not int or schema_version != 2:  # not True, not 2.0: the integer 2
        raise ManifestInvalid("schemaVersion must be 2", detail={"schemaVersion": str(schema_version)[:20]})
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not _is_media_type(artifact_type):
        raise ManifestInvalid("artifactType must be a media type")
    parsed = ParsedManifest(media_type=media_type, config=None, artifact_type=artifact_type,
                            annotations=_annotations(document.get("annotations"), "annotations"))
    if "subject" in document and document["subject"] is not None:
        parsed.subject = _descriptor(document["subject"], "subject")
    if media_type in IMAGE_TYPES:
        if "config" not in document:
            raise ManifestInvalid("an image manifest needs a config")
        parsed.config = _descriptor(document["config"], "config")
        parsed.layers = [_descriptor(d, f"layers[{i}]") for i, d in enumerate(_list(document, "layers"))]
        if "manifests" in document:
            raise ManifestInvalid("an image manifest has no manifests")
    else:
        if "manifests" not in document:
            raise ManifestInvalid("an index needs manifests")
        parsed.manifests = [_descriptor(d, f"manifests[{i}]") for i, d in enumerate(_list(document, "manifests"))]
        if "config" in document or "layers" in document:
            raise ManifestInvalid("an index has no config or layers")
    return parsed


def config_platform(config: bytes) -> tuple[str | None, str | None]:
    """(os, architecture) of an image config; (None, None) when it does not say."""
    try:
        document = json.loads(config)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    found = [document.get(key) for key in ("os", "architecture")]
    return tuple(v[:64] if isinstance(v, str) else None for v in found)  # type: ignore[return-value]


def _media_type(document: dict, content_type: str | None) -> str:
    """The manifest's type: its `mediaType`, which the Content-Type must repeat when both are given, else the
    Content-Type's.

    A Content-Type that names another (or an unknown) type than the body's `mediaType` is refused, as Distribution
    does: the type a client declares is the one every later pull is served with, so the two must not disagree.
    Image-spec only says an OCI manifest or index SHOULD carry `mediaType`, so without one the Content-Type types
    it; Docker's schema 2 manifest and list MUST carry theirs (Distribution refuses them without it). A missing
    Content-Type leaves the body's `mediaType` to decide. Parameters (`; charset=…`) are ignored.
    """
    declared = document.get("mediaType")
    sent = (content_type or "").split(";", 1)[0].strip().lower()
    if declared is not None:
        if not isinstance(declared, str) or declared not in MEDIA_TYPES:
            raise ManifestInvalid("unknown manifest media type", detail={"mediaType": str(declared)[:255]})
        if sent and sent != declared:
            raise ManifestInvalid("the manifest's mediaType does not match its Content-Type",
                                  detail={"mediaType": declared, "contentType": sent[:255]})
        return declared
    if sent in (OCI_MANIFEST, OCI_INDEX):
        return sent
    if sent in (DOCKER_MANIFEST, DOCKER_LIST):
        raise ManifestInvalid("a Docker manifest must declare its mediaType", detail={"contentType": sent})
    raise ManifestInvalid("unknown manifest media type", detail={"contentType": sent[:255]})


def _list(document: dict, key: str) -> list:
    value = document.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestInvalid(f"{key} must be a list")
    return value


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} is not a descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not _is_media_type(media_type):
        raise ManifestInvalid(f"{where}.mediaType is missing or invalid")
    try:
        names.digest(digest)
    except ContentError:
        raise ManifestInvalid(f"{where}.digest is invalid", detail={"digest": str(digest)[:200]}) from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}.size must be a non-negative integer")
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise ManifestInvalid(f"{where}.urls must be a list of strings")
    if value.get("data") is not None and not isinstance(value["data"], str):
        raise ManifestInvalid(f"{where}.data must be base64 text")
    _annotations(value.get("annotations"), f"{where}.annotations")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise ManifestInvalid(f"{where}.platform must be an object")
    return Descriptor(media_type, digest, size, platform)


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ManifestInvalid(f"{where} must map strings to strings")
    return value


def _is_media_type(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and "/" in value
