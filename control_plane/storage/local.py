"""The embedded default: each container is a folder under the data folder's `blobs/`."""

from __future__ import annotations

import shutil
from pathlib import Path

from control_plane.storage.base import StorageError, check_container_name


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
