from __future__ import annotations

import re
from typing import Protocol

CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


class StorageError(Exception):
    """The storage account could not do what was asked; the message is safe to show a client."""


class ContainerStore(Protocol):
    """One storage account."""

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


def check_container_name(name: str) -> str:
    if not CONTAINER_NAME.match(name):
        raise ValueError(f"'{name}' is not a valid blob container name")
    return name
