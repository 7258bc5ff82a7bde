"""The embedded default: each container is a folder under the data folder's `blobs/`, each object a file in it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG

from control_plane.storage.base import (
    RESERVED_PREFIX,
    ObjectNotFound,
    StorageError,
    StoredObject,
    check_container_name,
    check_key,
    check_prefix,
    check_range,
)

READ_CHUNK = 1024 * 1024


class LocalFolderStore:
    def __init__(self, root: Path):
        self.root = root
        self.name = f"local:{root}"

    def _path(self, name: str) -> Path:
        return self.root / check_container_name(name)

    def create_container(self, name: str) -> None:
        try:
            self._path(name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"Could not create container '{name}': {exc.strerror}") from None

    def delete_container(self, name: str) -> None:
        path = self._path(name)
        try:
            if path.exists():
                # Rename first so a half-finished delete never leaves a container that looks whole.
                doomed = path.with_name(f".deleting-{name}")
                path.rename(doomed)
                shutil.rmtree(doomed)
        except OSError as exc:
            raise StorageError(f"Could not delete container '{name}': {exc.strerror}") from None

    def container_exists(self, name: str) -> bool:
        return self._path(name).is_dir()

    def container_size(self, name: str) -> int:
        path = self._path(name)
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0

    def list_containers(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"The local storage folder is not usable: {exc.strerror}") from None

    # Objects

    def _object(self, container: str, key: str) -> Path:
        return self._path(container) / check_key(key)

    def _container_dir(self, container: str) -> Path:
        """The container's folder, which writes never create: a deleted registry must not come back."""
        path = self._path(container)
        if not path.is_dir():
            raise StorageError(f"Container '{container}' does not exist.")
        return path

    def _place(self, container: str, source: Path, target: Path) -> None:
        """Renames `source` to `target`, creating target's folders (a concurrent delete may prune them)."""
        for _ in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
                return
            except FileNotFoundError:
                if not source.exists():
                    raise
        raise StorageError(f"Could not store '{target.name}' in container '{container}'.")

    def write_object(self, container: str, key: str, chunks: Iterable[bytes]) -> int:
        target = self._object(container, key)
        staging = self._container_dir(container) / RESERVED_PREFIX
        temp = staging / uuid.uuid4().hex
        try:
            staging.mkdir(exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StorageError(f"Could not write '{key}' in container '{container}': {exc.strerror}") from None
        failure = f"Could not write '{key}' in container '{container}'"
        try:
            try:
                written = _write_stream(fd, chunks, failure)
            finally:
                os.close(fd)
            try:
                self._place(container, temp, target)
            except OSError as exc:
                raise StorageError(f"{failure}: {exc.strerror}") from None
            return written
        finally:
            temp.unlink(missing_ok=True)

    def append_object(self, container: str, key: str, chunks: Iterable[bytes], offset: int) -> int:
        path = self._object(container, key)
        check_range(offset, None)
        self._container_dir(container)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"Could not open '{key}' in container '{container}': {exc.strerror}") from None
        failure = f"Could not write '{key}' in container '{container}'"
        try:
            try:
                stored = os.fstat(fd).st_size
                os.lseek(fd, offset, os.SEEK_SET)
            except OSError as exc:
                raise StorageError(f"{failure}: {exc.strerror}") from None
            if stored < offset:
                raise StorageError(f"Upload '{key}' in container '{container}' holds fewer than {offset} bytes.")
            written = _write_stream(fd, chunks, failure)
            try:
                # Drop whatever an earlier, longer attempt left past this one.
                os.ftruncate(fd, offset + written)
            except OSError as exc:
                raise StorageError(f"{failure}: {exc.strerror}") from None
            return written
        finally:
            os.close(fd)

    def seal_object(self, container: str, key: str, size: int) -> None:
        path = self._object(container, key)
        check_range(size, None)
        try:
            with open(path, "r+b") as file:
                stored = os.fstat(file.fileno()).st_size
                if stored < size:
                    raise StorageError(f"Upload '{key}' in container '{container}' holds {stored} of {size} bytes.")
                file.truncate(size)
        except FileNotFoundError:
            if size:
                raise ObjectNotFound(f"Object '{key}' does not exist in container '{container}'.") from None
            self.write_object(container, key, ())
        except OSError as exc:
            raise StorageError(f"Could not seal '{key}' in container '{container}': {exc.strerror}") from None

    def move_object(self, container: str, source: str, target: str) -> None:
        source_path, target_path = self._object(container, source), self._object(container, target)
        self._container_dir(container)
        if source == target:
            if not target_path.is_file():
                raise ObjectNotFound(f"Object '{source}' does not exist in container '{container}'.")
            return
        try:
            if target_path.is_file():
                self.delete_object(container, source)
                return
            self._place(container, source_path, target_path)
            self._prune(container, source_path.parent)
        except FileNotFoundError:
            if not target_path.is_file():  # a concurrent mover of the same bytes may have won
                raise ObjectNotFound(f"Object '{source}' does not exist in container '{container}'.") from None
        except OSError as exc:
            raise StorageError(f"Could not move '{source}' in container '{container}': {exc.strerror}") from None

    def read_object(self, container: str, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._object(container, key)
        check_range(start, end)
        try:
            file = open(path, "rb")  # noqa: SIM115 - the returned generator closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"Object '{key}' does not exist in container '{container}'.") from None
        except OSError as exc:
            raise StorageError(f"Could not read '{key}' in container '{container}': {exc.strerror}") from None
        return _read_file(file, start, end)

    def object_size(self, container: str, key: str) -> int | None:
        try:
            stat = self._object(container, key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"Could not read '{key}' in container '{container}': {exc.strerror}") from None
        return stat.st_size if S_ISREG(stat.st_mode) else None

    def local_path(self, container: str, key: str) -> Path | None:
        path = self._object(container, key)
        return path if path.is_file() else None

    def read_url(self, container: str, key: str, expires_in: int) -> str | None:
        check_key(key)
        return None

    def delete_object(self, container: str, key: str) -> None:
        path = self._object(container, key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"Could not delete '{key}' in container '{container}': {exc.strerror}") from None
        self._prune(container, path.parent)

    def _prune(self, container: str, folder: Path) -> None:
        """Removes the empty folders a deleted object leaves (one per blob and per upload otherwise)."""
        top = self._path(container)
        while folder != top and top in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop
                return
            folder = folder.parent

    def list_objects(self, container: str, prefix: str = "") -> Iterator[StoredObject]:
        check_prefix(prefix)
        top = self._path(container)
        # Walk only the folder the prefix names; the rest of the prefix filters its entries.
        folder, _, _ = prefix.rpartition("/")
        return _walk(top, top / folder if folder else top, prefix)


def _write_stream(fd: int, chunks: Iterable[bytes], failure: str) -> int:
    """Writes the stream at the file's position. Only the file's errors become StorageError: an error of the
    stream itself (a client that went away) reaches the caller unchanged."""
    written = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            try:
                n = os.write(fd, view)
            except OSError as exc:
                raise StorageError(f"{failure}: {exc.strerror}") from None
            view = view[n:]
            written += n
    return written


def _read_file(file, start: int, end: int | None) -> Iterator[bytes]:
    with file:
        file.seek(start)
        remaining = end - start if end is not None else None
        while remaining is None or remaining > 0:
            chunk = file.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _walk(top: Path, folder: Path, prefix: str) -> Iterator[StoredObject]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise StorageError(f"Could not list container '{top.name}': {exc.strerror}") from None
    # Sorting a folder's entries by name, with '/' after folder names, yields the keys in plain string order.
    keyed = []
    for entry in entries:
        key = os.path.relpath(entry.path, top).replace(os.sep, "/")
        if key == RESERVED_PREFIX:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        keyed.append((key + "/" if is_dir else key, is_dir, entry))
    for key, is_dir, entry in sorted(keyed, key=lambda item: item[0]):
        if is_dir:
            if key.startswith(prefix) or prefix.startswith(key):
                yield from _walk(top, Path(entry.path), prefix)
        elif key.startswith(prefix):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            yield StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
