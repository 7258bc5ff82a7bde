"""Blob storage for registries: one container per registry, in the account configured for its location.

The domain sees only `ContainerStore` (create, delete, exists, list) and `StorageRouter.for_location`; which
backend sits behind it — a local folder or Azure Blob Storage — is configuration.
"""

from __future__ import annotations

from pathlib import Path

from control_plane.storage.base import ContainerStore, StorageError
from control_plane.storage.local import LocalFolderStore

__all__ = ["ContainerStore", "StorageError", "StorageRouter"]


class StorageRouter:
    def __init__(self, storage: str | dict[str, str], data_dir: Path):
        self._stores: dict[str, ContainerStore] = {}
        self._default: ContainerStore | None = None
        if storage == "local":
            self._default = LocalFolderStore(data_dir / "blobs")
        elif isinstance(storage, str):
            self._default = _azure_store(storage)
        else:
            by_connection: dict[str, ContainerStore] = {}
            for location, connection in storage.items():
                if connection not in by_connection:
                    by_connection[connection] = _azure_store(connection)
                self._stores[location] = by_connection[connection]

    def for_location(self, location: str) -> ContainerStore:
        store = self._stores.get(location, self._default)
        if store is None:
            raise StorageError(f"No storage account is configured for location '{location}'.")
        return store

    def all_stores(self) -> list[ContainerStore]:
        stores = list({id(s): s for s in self._stores.values()}.values())
        return [self._default, *stores] if self._default else stores


def _azure_store(connection_string: str) -> ContainerStore:
    from control_plane.storage.azure_blob import AzureBlobStore

    return AzureBlobStore(connection_string)
