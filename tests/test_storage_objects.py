"""Object operations of both storage backends, against a real folder and a real Azurite (no mocks).

Every scenario runs on the local-folder store and on an Azurite account, each test in a container of its own.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from control_plane.storage.azure_blob import BLOCK_SIZE, AzureBlobStore
from control_plane.storage.base import ObjectNotFound, StorageError
from control_plane.storage.local import LocalFolderStore
from tests.conftest import AZURITE_ACCOUNTS, selected_backends
from tests.support.servers import AZURITE_KEY

MIB = 1024 * 1024
STORES = [name for name, backend in (("local", "sqlite-local"), ("azurite", "postgres-azurite"))
          if backend in selected_backends()]


class ClientGone(ConnectionResetError):
    """What a request body raises when its client disconnects (an OSError: it must not become StorageError)."""


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    if request.param == "local":
        backend = LocalFolderStore(tmp_path / "blobs")
    else:
        server = request.getfixturevalue("azurite_server")
        backend = AzureBlobStore(server.connection_string(AZURITE_ACCOUNTS[0]))
        backend.connection_string = server.connection_string(AZURITE_ACCOUNTS[0])
    container = f"t{uuid.uuid4().hex[:20]}"
    backend.create_container(container)
    backend.container = container
    yield backend
    backend.delete_container(container)


def read(store, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.read_object(store.container, key, start, end))


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes whose every position differs from its neighbours', so a misplaced block shows."""
    return bytes((i * 7 + seed) % 251 for i in range(size))


def stream(total: int, chunk: int, seed: int = 0, fail_after: int | None = None) -> Iterator[bytes]:
    """A request body: `total` bytes in `chunk`-sized pieces, generated as they are consumed."""
    block = pattern(chunk + 251, seed)
    sent = 0
    while sent < total:
        if fail_after is not None and sent >= fail_after:
            raise ClientGone("client went away")
        size = min(chunk, total - sent)
        yield block[sent % 251:sent % 251 + size]
        sent += size


def digest(chunks) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


def test_write_then_read_whole_and_ranges(store):
    data = pattern(10_000)
    assert store.write_object(store.container, "blobs/a/data", [data[:3], b"", data[3:5000], data[5000:]]) == 10_000
    assert store.object_size(store.container, "blobs/a/data") == 10_000
    assert read(store, "blobs/a/data") == data
    assert read(store, "blobs/a/data", 0, 1) == data[:1]
    assert read(store, "blobs/a/data", 3, 7) == data[3:7]
    assert read(store, "blobs/a/data", 9000) == data[9000:]
    assert read(store, "blobs/a/data", 9990, 20_000) == data[9990:]  # an end past the object is its end
    assert read(store, "blobs/a/data", 10_000) == b""
    assert read(store, "blobs/a/data", 12_000) == b""
    assert read(store, "blobs/a/data", 5, 5) == b""
    with pytest.raises(ValueError):
        store.read_object(store.container, "blobs/a/data", 7, 3)

    store.write_object(store.container, "blobs/a/data", [b"replaced"])
    assert read(store, "blobs/a/data") == b"replaced"

    assert store.write_object(store.container, "empty", iter(())) == 0
    assert store.object_size(store.container, "empty") == 0
    assert read(store, "empty") == b""


def test_a_failing_body_leaves_the_old_object_and_reaches_the_caller_unchanged(store):
    store.write_object(store.container, "manifest", [b"old"])
    with pytest.raises(ClientGone):
        store.write_object(store.container, "manifest", stream(2 * MIB, 64 * 1024, fail_after=MIB))
    assert read(store, "manifest") == b"old"
    assert [o.key for o in store.list_objects(store.container)] == ["manifest"]
    # A failed write that got past a whole block leaves nothing that disturbs later appends to the key.
    with pytest.raises(ClientGone):
        store.write_object(store.container, "manifest", stream(12 * MIB, MIB, fail_after=9 * MIB))
    assert read(store, "manifest") == b"old"
    store.append_object(store.container, "manifest", [b"new"], 0)
    store.seal_object(store.container, "manifest", 3)
    assert read(store, "manifest") == b"new"


def test_append_retry_failed_attempt_and_seal(store):
    key = "uploads/s1/data"
    first, second = pattern(1000, 1), pattern(700, 2)
    assert store.append_object(store.container, key, [first[:400], first[400:]], 0) == 1000
    # The client retries the same chunk (its answer was lost): same offset, same ids, same bytes.
    assert store.append_object(store.container, key, [first], 0) == 1000
    # An attempt at the recorded size dies half-way; its bytes past 1000 are not recorded...
    with pytest.raises(ClientGone):
        store.append_object(store.container, key, stream(5000, 300, seed=9, fail_after=2000), 1000)
    # ...and the retry (different, shorter bytes) takes their place.
    assert store.append_object(store.container, key, [second], 1000) == 700
    assert store.append_object(store.container, key, [], 1700) == 0
    store.seal_object(store.container, key, 1700)
    assert store.object_size(store.container, key) == 1700
    assert read(store, key) == first + second
    store.seal_object(store.container, key, 1700)  # repeating a seal changes nothing
    assert read(store, key) == first + second


def test_seal_refuses_a_size_the_upload_does_not_hold(store):
    store.append_object(store.container, "uploads/s2/data", [b"x" * 100], 0)
    with pytest.raises(StorageError) as caught:
        store.seal_object(store.container, "uploads/s2/data", 150)
    assert not isinstance(caught.value, ObjectNotFound)
    with pytest.raises(ObjectNotFound):
        store.seal_object(store.container, "uploads/never/data", 10)


def test_an_empty_upload_seals_to_an_empty_object(store):
    store.seal_object(store.container, "uploads/nothing/data", 0)
    assert store.object_size(store.container, "uploads/nothing/data") == 0
    assert read(store, "uploads/nothing/data") == b""


def test_twenty_mib_streams_through_blocks(store):
    total = 20 * MIB + 12_345
    expected = digest(stream(total, MIB + 7, seed=3))
    # A first attempt dies after one whole block was staged; the retry is shorter, then the upload goes on.
    with pytest.raises(ClientGone):
        store.append_object(store.container, "uploads/big/data", stream(total, MIB + 7, seed=3, fail_after=9 * MIB), 0)
    head = b"".join(stream(total, MIB + 7, seed=3))[: 3 * MIB]
    assert store.append_object(store.container, "uploads/big/data", [head], 0) == 3 * MIB
    rest = b"".join(stream(total, MIB + 7, seed=3))[3 * MIB:]
    assert store.append_object(store.container, "uploads/big/data", iter([rest]), 3 * MIB) == total - 3 * MIB
    store.seal_object(store.container, "uploads/big/data", total)
    assert store.object_size(store.container, "uploads/big/data") == total
    chunks = list(store.read_object(store.container, "uploads/big/data"))
    assert digest(chunks) == expected
    assert max(len(c) for c in chunks) <= 4 * MIB  # streamed, not read whole
    del chunks
    if isinstance(store, AzureBlobStore):
        service = BlobServiceClient.from_connection_string(store.connection_string)
        committed, _ = service.get_blob_client(store.container, "uploads/big/data").get_block_list()
        assert [b.size for b in committed] == [3 * MIB, BLOCK_SIZE, BLOCK_SIZE, total - 3 * MIB - 2 * BLOCK_SIZE]

    # A whole-object write of the same stream, and a move of the sealed upload to its content address.
    assert store.write_object(store.container, "copy", stream(total, 256 * 1024, seed=3)) == total
    assert digest(store.read_object(store.container, "copy")) == expected
    store.move_object(store.container, "uploads/big/data", f"blobs/sha256/{expected[:2]}/{expected}/data")
    assert store.object_size(store.container, "uploads/big/data") is None
    assert digest(store.read_object(store.container, f"blobs/sha256/{expected[:2]}/{expected}/data")) == expected
    assert digest(store.read_object(store.container, "copy", 5 * MIB, 13 * MIB)) == digest(
        [b"".join(stream(total, MIB + 7, seed=3))[5 * MIB:13 * MIB]])


def test_move(store):
    store.write_object(store.container, "uploads/m/data", [b"content"])
    store.move_object(store.container, "uploads/m/data", "blobs/sha256/ab/abc/data")
    assert store.object_size(store.container, "uploads/m/data") is None
    assert read(store, "blobs/sha256/ab/abc/data") == b"content"
    # The target exists already (the same digest pushed twice): the source just goes away, the target is
    # left alone (different bytes here only to show that it is not rewritten).
    store.write_object(store.container, "uploads/n/data", [b"CONTENT"])
    store.move_object(store.container, "uploads/n/data", "blobs/sha256/ab/abc/data")
    assert store.object_size(store.container, "uploads/n/data") is None
    assert read(store, "blobs/sha256/ab/abc/data") == b"content"
    # A repeated move (its answer was lost) finds the work done.
    store.move_object(store.container, "uploads/n/data", "blobs/sha256/ab/abc/data")
    with pytest.raises(ObjectNotFound):
        store.move_object(store.container, "uploads/none/data", "blobs/sha256/cd/cde/data")
    assert [o.key for o in store.list_objects(store.container)] == ["blobs/sha256/ab/abc/data"]


def test_move_of_a_sealed_upload(store):
    store.append_object(store.container, "uploads/u/data", [b"abc", b"def"], 0)
    store.append_object(store.container, "uploads/u/data", [b"ghi"], 6)
    store.seal_object(store.container, "uploads/u/data", 9)
    store.move_object(store.container, "uploads/u/data", "blobs/sha256/00/00ff/data")
    assert read(store, "blobs/sha256/00/00ff/data") == b"abcdefghi"
    assert store.object_size(store.container, "uploads/u/data") is None


def test_read_url_and_local_path(store):
    store.write_object(store.container, "blobs/sha256/ab/abc/data", [b"layer bytes"])
    url = store.read_url(store.container, "blobs/sha256/ab/abc/data", 60)
    path = store.local_path(store.container, "blobs/sha256/ab/abc/data")
    if isinstance(store, LocalFolderStore):
        assert url is None
        assert path.read_bytes() == b"layer bytes"
        assert store.local_path(store.container, "blobs/missing") is None
        return
    assert path is None
    assert url.startswith("http://") and "sp=r&" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"layer bytes"
    ranged = requests.get(url, headers={"Range": "bytes=6-10"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == b"bytes"
    refused = requests.put(url, data=b"evil", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert refused.status_code == 403
    assert requests.delete(url, timeout=10).status_code == 403
    assert read(store, "blobs/sha256/ab/abc/data") == b"layer bytes"
    # The URL names this blob only.
    other = url.replace("/blobs/sha256/ab/abc/data?", "/blobs/sha256/ab/abd/data?")
    store.write_object(store.container, "blobs/sha256/ab/abd/data", [b"other"])
    assert requests.get(other, timeout=10).status_code == 403


def test_read_url_is_https_only_for_an_https_account():
    # The endpoint is never contacted: a SAS is signed locally.
    store = AzureBlobStore(f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURITE_KEY};"
                           "EndpointSuffix=core.windows.net")
    url = store.read_url("registry1", "blobs/sha256/ab/abc/data", 300)
    assert url.startswith("https://acct.blob.core.windows.net/registry1/blobs/sha256/ab/abc/data?")
    assert "spr=https" in url and "sp=r&" in url
    expiry = requests.utils.unquote(url.split("se=")[1].split("&")[0])
    expires = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(seconds=301)


def test_delete(store):
    store.write_object(store.container, "blobs/sha256/ab/abc/data", [b"x"])
    store.delete_object(store.container, "blobs/sha256/ab/abc/data")
    assert store.object_size(store.container, "blobs/sha256/ab/abc/data") is None
    store.delete_object(store.container, "blobs/sha256/ab/abc/data")  # missing is fine
    assert list(store.list_objects(store.container)) == []
    if isinstance(store, LocalFolderStore):  # no empty folder per deleted blob is left behind
        assert [p.name for p in (store.root / store.container).iterdir()] in ([], [".staging"])


def test_list_with_prefix(store):
    before = datetime.now(UTC) - timedelta(seconds=5)
    keys = ["blobs/sha256/ab/abc/data", "blobs/sha256/cd/cde/data", "blobsx", "blobs-a", "uploads/1/data",
            "uploads/10/data", "uploads/2/data"]
    for i, key in enumerate(keys):
        store.write_object(store.container, key, [b"z" * i])
    listed = list(store.list_objects(store.container))
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: o.size for o in listed} == {key: i for i, key in enumerate(keys)}
    for item in listed:
        assert item.last_modified.tzinfo is not None and item.last_modified.utcoffset() == timedelta(0)
        assert before <= item.last_modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert [o.key for o in store.list_objects(store.container, "blobs/")] == keys[:2]
    assert [o.key for o in store.list_objects(store.container, "blobs")] == sorted(keys[:4])
    assert [o.key for o in store.list_objects(store.container, "uploads/1")] == ["uploads/1/data", "uploads/10/data"]
    assert list(store.list_objects(store.container, "nothing/")) == []
    assert list(store.list_objects("no-such-container", "")) == []


@pytest.mark.parametrize("key", ["", "/etc/passwd", "..", "a/../../b", "a/./b", "a//b", "a/", "a\x00b", "a\\b",
                                 "x" * 1025, "a/" + "y" * 256, ".staging/x", "line\nbreak"])
def test_invalid_keys_are_refused(store, key):
    c = store.container
    for call in (lambda: store.write_object(c, key, [b"x"]), lambda: store.append_object(c, key, [b"x"], 0),
                 lambda: store.seal_object(c, key, 0), lambda: store.move_object(c, key, "ok"),
                 lambda: store.move_object(c, "ok", key), lambda: store.read_object(c, key),
                 lambda: store.object_size(c, key), lambda: store.local_path(c, key),
                 lambda: store.read_url(c, key, 60), lambda: store.delete_object(c, key)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        store.write_object("../escape", "ok", [b"x"])
    assert list(store.list_objects(c)) == []


def test_missing_objects(store):
    with pytest.raises(ObjectNotFound):
        store.read_object(store.container, "blobs/missing")  # raised by the call, before any chunk
    with pytest.raises(ObjectNotFound):
        store.read_object(store.container, "blobs/missing", 3, 3)
    with pytest.raises(ObjectNotFound):
        store.read_object("no-such-container", "blobs/missing")
    assert store.object_size(store.container, "blobs/missing") is None
    assert store.local_path(store.container, "blobs/missing") is None
    store.write_object(store.container, "blobs/dir/data", [b"x"])
    with pytest.raises(ObjectNotFound):
        store.read_object(store.container, "blobs/dir")  # a "folder" is not an object
    assert store.object_size(store.container, "blobs/dir") is None


def test_writes_into_a_missing_container_fail_cleanly(store):
    with pytest.raises(StorageError):
        store.write_object("no-such-container", "blobs/a", [b"x"])
    with pytest.raises(StorageError):
        store.append_object("no-such-container", "uploads/a/data", [b"x"], 0)
    assert not store.container_exists("no-such-container")

