"""What every authenticated request needs to decide — does the principal exist (and, for a user, is it enabled),
which tenant owns the subscription, which roles does the principal hold (its own and its groups') — kept per process
and trusted only while the database agrees.

The database keeps one generation number that triggers bump in the same transaction as any change to tenants,
subscriptions, service principals, users, groups, group memberships or role assignments (migrations 0004 and
0007). A request reads that number (one indexed row) and uses what this cache holds for it; any change empties the
cache everywhere at the caller's next request, so a revocation takes effect exactly as soon as it would without the
cache.

Entries are stored only under the generation read *before* they were loaded: loading may see newer data than that
generation (harmless: it is fresher), never older.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from control_plane.authorization.models import AccessGeneration

T = TypeVar("T")

# Plain SQL straight to the driver (still through SQLAlchemy's connection, so errors and disconnects are handled
# as everywhere else): every authenticated request runs it, and the ORM's path costs twice the round trip.
_GENERATION = f"SELECT value FROM {AccessGeneration.__tablename__} WHERE id = 1"


def read_generation(session: Session) -> int | None:
    """None when the row is missing (a schema not made by the migrations): then nothing is cached."""
    return session.connection().exec_driver_sql(_GENERATION).scalar()


class AccessCache:
    def __init__(self, max_entries: int = 20_000):
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._entries: dict[tuple, object] = {}
        self._max_entries = max_entries

    def get(self, generation: int | None, key: tuple, load: Callable[[], T]) -> T:
        """The cached value for `key` at this generation, or `load()` (remembered when the generation allows)."""
        if generation is None:
            return load()
        with self._lock:
            if self._generation is None or generation > self._generation:
                self._entries.clear()
                self._generation = generation
            if generation == self._generation and key in self._entries:
                return self._entries[key]  # type: ignore[return-value]
        value = load()
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
                self._entries[key] = value
        return value
