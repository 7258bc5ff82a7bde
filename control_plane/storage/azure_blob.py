"""Azure Blob Storage (or Azurite) through azure-storage-blob."""

from __future__ import annotations

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, LinearRetry

from control_plane.storage.base import StorageError, check_container_name


class AzureBlobStore:
    def __init__(self, connection_string: str):
        # Few, quick retries: a storage outage must fail the operation in about a second, not hang it for the
        # minute the storage SDK's default policy (15 s, then 45 s back-off) would take.
        retry = LinearRetry(backoff=0.5, random_jitter_range=0.25, retry_total=2)
        self._client = BlobServiceClient.from_connection_string(
            connection_string, retry_policy=retry, connection_timeout=5, read_timeout=30
        )
        self.name = self._client.account_name or "azure"

    def create_container(self, name: str) -> None:
        try:
            self._client.create_container(check_container_name(name))
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise StorageError(self._describe("create container", name, exc)) from None

    def delete_container(self, name: str) -> None:
        try:
            self._client.delete_container(check_container_name(name))
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageError(self._describe("delete container", name, exc)) from None

    def container_exists(self, name: str) -> bool:
        try:
            return self._client.get_container_client(check_container_name(name)).exists()
        except AzureError as exc:
            raise StorageError(self._describe("read container", name, exc)) from None

    def container_size(self, name: str) -> int:
        try:
            blobs = self._client.get_container_client(check_container_name(name)).list_blobs()
            return sum(blob.size or 0 for blob in blobs)
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise StorageError(self._describe("measure container", name, exc)) from None

    def list_containers(self) -> list[str]:
        try:
            return sorted(c.name for c in self._client.list_containers())
        except AzureError as exc:
            raise StorageError(self._describe("list containers", "*", exc)) from None

    def ping(self) -> None:
        try:
            next(iter(self._client.list_containers(results_per_page=1).by_page()), None)
        except AzureError as exc:
            raise StorageError(self._describe("reach account", self.name, exc)) from None


    def _describe(self, what: str, name: str, exc: AzureError) -> str:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        return f"Storage account '{self.name}' could not {what} '{name}' ({code})."
