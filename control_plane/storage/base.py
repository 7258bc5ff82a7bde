from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
# Azure's limits: 1024 characters per blob name; 255 keeps every segment a legal file name on the local backend.
KEY_MAX_LENGTH = 1024
KEY_SEGMENT_MAX_BYTES = 255
# The local backend stages whole-object writes under this top-level folder of the container; no key may use it.
RESERVED_PREFIX = ".staging"
_FORBIDDEN_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class StorageError(Exception):
    """The storage account could not do what was asked; the message is safe to show a client."""


class ObjectNotFound(StorageError):
    """The object (or its container) does not exist."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime  # aware, UTC


class ContainerStore(Protocol):
    """One storage account.

    Objects are addressed by a '/'-separated key inside a container. Upload objects are written with
    `append_object` and become readable only after `seal_object` (on Azure they are uncommitted blocks until then);
    other objects are written whole with `write_object`. Every read of a missing object raises ObjectNotFound, every
    other failure StorageError with a message safe to show a client.
    """

    name: str

    def create_container(self, name: str) -> None:
        """Creates the container; succeeds if it already exists (operations are retried)."""

    def delete_container(self, name: str) -> None:
        """Deletes the container and every blob in it; succeeds if it does not exist."""

    def container_exists(self, name: str) -> bool: ...

    def list_containers(self) -> list[str]: ...

    def container_size(self, name: str) -> int:
        """Bytes stored in the container (0 when it does not exist)."""

    def ping(self) -> None:
        """Raises StorageError when the account cannot be reached."""

    def write_object(self, container: str, key: str, chunks: Iterable[bytes]) -> int:
        """Replaces the object with the stream; readers see the old or the new object, never a part.

        Returns the bytes written. Concurrent writers of one key must write the same bytes (content-addressed keys).
        """

    def append_object(self, container: str, key: str, chunks: Iterable[bytes], offset: int) -> int:
        """Writes the stream at `offset` of an upload object; returns the bytes written.

        Bytes past `offset` left by an earlier failed attempt are overwritten or discarded, so a retried chunk is
        safe. The stream is never buffered whole (Azure: blocks of at most 8 MiB whose ids encode their offset).
        """

    def seal_object(self, container: str, key: str, size: int) -> None:
        """Makes exactly bytes [0, size) of an upload object readable.

        ObjectNotFound when nothing was written (and size > 0); StorageError when the written bytes do not reach
        `size`. Safe to repeat.
        """

    def move_object(self, container: str, source: str, target: str) -> None:
        """Atomically gives `source`'s bytes the name `target`; if `target` exists already, just deletes `source`.

        Keys are content-addressed, so an existing target holds the same bytes. ObjectNotFound when neither exists.
        """

    def read_object(self, container: str, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) in chunks (end None or past the object = to its end).

        Opens the object before returning, so ObjectNotFound is raised by the call, not by the first chunk.
        """

    def object_size(self, container: str, key: str) -> int | None:
        """The object's size; None when missing (an unsealed upload object counts as missing on Azure)."""

    def local_path(self, container: str, key: str) -> Path | None:
        """The object's file when the backend is a local folder (to send with sendfile), else None."""

    def read_url(self, container: str, key: str, expires_in: int) -> str | None:
        """A read-only URL a client can fetch the object from for `expires_in` seconds, or None (stream it).

        Does not check that the object exists.
        """

    def delete_object(self, container: str, key: str) -> None:
        """Deletes the object; a missing object is fine."""

    def list_objects(self, container: str, prefix: str = "") -> Iterator[StoredObject]:
        """Objects whose key starts with `prefix`, in key order (sealed objects only)."""


def check_container_name(name: str) -> str:
    if not CONTAINER_NAME.match(name):
        raise ValueError(f"'{name}' is not a valid blob container name")
    return name


def check_key(key: str) -> str:
    """Refuses any key that could leave its container or mean different things to the two backends."""
    if not isinstance(key, str) or not key or len(key) > KEY_MAX_LENGTH:
        raise ValueError("An object key must be 1 to 1024 characters long")
    if _FORBIDDEN_KEY_CHARS.search(key):
        raise ValueError("An object key must not contain control characters or backslashes")
    segments = key.split("/")
    if any(s in ("", ".", "..") or len(s.encode()) > KEY_SEGMENT_MAX_BYTES for s in segments):
        raise ValueError(f"'{key}' is not a valid object key")
    if segments[0] == RESERVED_PREFIX:
        raise ValueError(f"Object keys must not start with '{RESERVED_PREFIX}/'")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: any beginning of a valid key (it may end with '/')."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"Invalid byte range [{start}, {end})")
