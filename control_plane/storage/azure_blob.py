"""Azure Blob Storage (or Azurite) through azure-storage-blob."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobSasPermissions, BlobServiceClient, LinearRetry, generate_blob_sas

from control_plane.storage.base import (
    ObjectNotFound,
    StorageError,
    StoredObject,
    check_container_name,
    check_key,
    check_prefix,
    check_range,
)

BLOCK_SIZE = 8 * 1024 * 1024  # the most an append or write holds in memory at once
READ_CHUNK = 4 * 1024 * 1024  # each ranged GET of a download (the SDK's default first GET is 32 MiB)
COPY_TIMEOUT_SECONDS = 300
COPY_SAS_SECONDS = COPY_TIMEOUT_SECONDS + 60


def _upload_block_id(offset: int) -> str:
    """Fixed width (Azure wants one id length per blob); the SDK base64-encodes it."""
    return f"{offset:020d}"


def _write_block_id(run: str, offset: int) -> str:
    """As long as an upload's ids, so leftovers of a failed write never clash with a later append to the key;
    the letter keeps them out of a seal's chain. 12 digits reach 931 GiB, past the 50,000 blocks Azure commits."""
    return f"w{run}{offset:012d}"


def _upload_block_offset(block_id: str) -> int | None:
    return int(block_id) if len(block_id) == 20 and block_id.isdigit() else None


class AzureBlobStore:
    def __init__(self, connection_string: str):
        # Few, quick retries: a storage outage must fail the operation in about a second, not hang it for the
        # minute the storage SDK's default policy (15 s, then 45 s back-off) would take.
        retry = LinearRetry(backoff=0.5, random_jitter_range=0.25, retry_total=2)
        self._client = BlobServiceClient.from_connection_string(
            connection_string, retry_policy=retry, connection_timeout=5, read_timeout=30,
            max_single_get_size=READ_CHUNK, max_chunk_get_size=READ_CHUNK,
        )
        self.name = self._client.account_name or "azure"
        # Only a shared key can sign SAS URLs; an account reached with a SAS token streams reads instead.
        self._account_key: str | None = getattr(self._client.credential, "account_key", None)
        self._sas_protocol = "https" if urlparse(self._client.primary_endpoint).scheme == "https" else None

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

    # Objects

    def _blob(self, container: str, key: str) -> BlobClient:
        return self._client.get_blob_client(check_container_name(container), check_key(key))

    def write_object(self, container: str, key: str, chunks: Iterable[bytes]) -> int:
        blob = self._blob(container, key)
        # A run id of its own keeps a concurrent writer's blocks out of this write's commit.
        run = uuid.uuid4().hex[:7]
        block_ids: list[str] = []
        written = 0
        try:
            for block in _blocks(chunks):
                if not block_ids and len(block) < BLOCK_SIZE:  # the whole object: one Put Blob
                    blob.upload_blob(block, overwrite=True)
                    return len(block)
                block_ids.append(_write_block_id(run, written))
                blob.stage_block(block_ids[-1], block)
                written += len(block)
            if block_ids:
                blob.commit_block_list(block_ids)
            else:
                blob.upload_blob(b"", overwrite=True)
            return written
        except AzureError as exc:
            raise StorageError(self._describe("write", f"{container}/{key}", exc)) from None

    def append_object(self, container: str, key: str, chunks: Iterable[bytes], offset: int) -> int:
        blob = self._blob(container, key)
        check_range(offset, None)
        written = 0
        try:
            for block in _blocks(chunks):
                # Re-staging an id replaces that block, so a retried chunk overwrites its failed attempt.
                blob.stage_block(_upload_block_id(offset + written), block)
                written += len(block)
        except AzureError as exc:
            raise StorageError(self._describe("write", f"{container}/{key}", exc)) from None
        return written

    def seal_object(self, container: str, key: str, size: int) -> None:
        blob = self._blob(container, key)
        check_range(size, None)
        try:
            try:
                committed, uncommitted = blob.get_block_list("all")
                missing = False
            except ResourceNotFoundError:
                committed, uncommitted, missing = [], [], True
            # Staged blocks win over committed ones with the same id, as the commit's "latest" does.
            sizes: dict[int, int] = {}
            for block in [*committed, *uncommitted]:
                block_offset = _upload_block_offset(block.id)
                if block_offset is not None:
                    sizes[block_offset] = block.size
            chain: list[str] = []
            position = 0
            while position < size:
                length = sizes.get(position)
                if length is None or position + length > size:
                    if missing:
                        raise ObjectNotFound(f"Object '{key}' does not exist in container '{container}'.")
                    raise StorageError(f"Upload '{key}' in container '{container}' does not hold bytes "
                                       f"[{position}, {size}) as written.")
                chain.append(_upload_block_id(position))
                position += length
            blob.commit_block_list(chain)
        except AzureError as exc:
            raise StorageError(self._describe("seal", f"{container}/{key}", exc)) from None

    def move_object(self, container: str, source: str, target: str) -> None:
        source_blob, target_blob = self._blob(container, source), self._blob(container, target)
        if source == target:
            if self.object_size(container, source) is None:
                raise ObjectNotFound(f"Object '{source}' does not exist in container '{container}'.")
            return
        try:
            try:
                # If-None-Match: * makes "create unless present" one atomic step on the server.
                copy = target_blob.start_copy_from_url(
                    self._signed_url(source_blob, COPY_SAS_SECONDS, BlobSasPermissions(read=True)),
                    match_condition=MatchConditions.IfMissing)
                self._wait_for_copy(target_blob, copy)
            except (ResourceExistsError, ResourceModifiedError):
                pass  # the same content-addressed bytes are there already
            except ResourceNotFoundError:
                if self.object_size(container, target) is None:
                    raise ObjectNotFound(f"Object '{source}' does not exist in container '{container}'.") from None
            source_blob.delete_blob()
        except ResourceNotFoundError:
            pass  # the source went away after the copy: a concurrent mover finished first
        except AzureError as exc:
            raise StorageError(self._describe("move", f"{container}/{source}", exc)) from None

    def _wait_for_copy(self, blob: BlobClient, copy: dict) -> None:
        status, copy_id = copy.get("copy_status"), copy.get("copy_id")
        deadline = time.monotonic() + COPY_TIMEOUT_SECONDS
        pause = 0.05
        while status == "pending":
            if time.monotonic() > deadline:
                blob.abort_copy(copy_id)
                raise StorageError(f"Storage account '{self.name}' did not finish copying '{blob.blob_name}'.")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            properties = blob.get_blob_properties()
            status = properties.copy.status if properties.copy.id == copy_id else "success"
        if status != "success":
            raise StorageError(f"Storage account '{self.name}' could not copy '{blob.blob_name}' ({status}).")

    def read_object(self, container: str, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        blob = self._blob(container, key)
        check_range(start, end)
        if end == start:
            if self.object_size(container, key) is None:
                raise ObjectNotFound(f"Object '{key}' does not exist in container '{container}'.")
            return iter(())
        try:
            # No range for a whole read: the SDK then also handles an empty blob (a ranged GET of one is a 416).
            if start == 0 and end is None:
                download = blob.download_blob(max_concurrency=1)
            else:
                download = blob.download_blob(start, None if end is None else end - start, max_concurrency=1)
        except ResourceNotFoundError:
            raise ObjectNotFound(f"Object '{key}' does not exist in container '{container}'.") from None
        except HttpResponseError as exc:
            if exc.status_code == 416:  # start at or past the end
                return iter(())
            raise StorageError(self._describe("read", f"{container}/{key}", exc)) from None
        except AzureError as exc:
            raise StorageError(self._describe("read", f"{container}/{key}", exc)) from None
        return self._stream(download.chunks(), f"{container}/{key}")

    def _stream(self, chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
        try:
            yield from chunks
        except AzureError as exc:
            raise StorageError(self._describe("read", name, exc)) from None

    def object_size(self, container: str, key: str) -> int | None:
        try:
            return self._blob(container, key).get_blob_properties().size
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(self._describe("read", f"{container}/{key}", exc)) from None

    def local_path(self, container: str, key: str) -> Path | None:
        check_key(key)
        return None

    def read_url(self, container: str, key: str, expires_in: int) -> str | None:
        blob = self._blob(container, key)
        if self._account_key is None:
            return None
        return self._signed_url(blob, expires_in, BlobSasPermissions(read=True))

    def _signed_url(self, blob: BlobClient, expires_in: int, permission: BlobSasPermissions) -> str:
        """The blob's URL with a SAS for `permission` (unsigned when the account has no shared key)."""
        if self._account_key is None:
            return blob.url
        sas = generate_blob_sas(
            self.name, blob.container_name, blob.blob_name, account_key=self._account_key, permission=permission,
            expiry=datetime.now(UTC) + timedelta(seconds=expires_in), protocol=self._sas_protocol)
        return f"{blob.url}?{sas}"

    def delete_object(self, container: str, key: str) -> None:
        # Uncommitted blocks of an upload that was never sealed cannot be deleted; Azure drops them after 7 days.
        try:
            self._blob(container, key).delete_blob()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageError(self._describe("delete", f"{container}/{key}", exc)) from None

    def list_objects(self, container: str, prefix: str = "") -> Iterator[StoredObject]:
        client = self._client.get_container_client(check_container_name(container))
        return self._list(client, check_prefix(prefix), container)

    def _list(self, client, prefix: str, container: str) -> Iterator[StoredObject]:
        try:
            for blob in client.list_blobs(name_starts_with=prefix or None):
                yield StoredObject(blob.name, blob.size, blob.last_modified.astimezone(UTC))
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(self._describe("list", f"{container}/{prefix}*", exc)) from None

    def _describe(self, what: str, name: str, exc: AzureError) -> str:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        return f"Storage account '{self.name}' could not {what} '{name}' ({code})."


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Regroups a stream into blocks of BLOCK_SIZE (the last may be shorter), holding at most one block."""
    pieces: list[memoryview] = []
    held = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            take = min(len(view), BLOCK_SIZE - held)
            pieces.append(view[:take])
            held += take
            view = view[take:]
            if held == BLOCK_SIZE:
                yield b"".join(pieces)
                pieces, held = [], 0
    if held:
        yield b"".join(pieces)
