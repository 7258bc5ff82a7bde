"""Request throttling the way ARM does it: token buckets per subscription (and per tenant for tenant-level
calls) for reads, writes and deletes, shared by every worker and replica through the database.

A database round trip per request would cost more than the request, so each process leases a few tokens at a
time with one conditional UPDATE and spends them locally. A lease is taken out of the shared bucket when it is
granted, so all processes together never admit more than the bucket allows.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.config import DELETES, READS, WRITES, BucketRule
from control_plane.db import Base, Database, insert_unless_duplicate


class ThrottleBucket(Base):
    __tablename__ = "throttle_buckets"

    key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(sa.Float)
    # Seconds since the epoch as a number, so refill arithmetic is the same SQL on SQLite and PostgreSQL.
    refilled_at: Mapped[float] = mapped_column(sa.Float)


def kind_of(method: str) -> str:
    return READS if method in ("GET", "HEAD", "OPTIONS") else DELETES if method == "DELETE" else WRITES


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: int = 0


class Throttler:
    def __init__(self, db: Database, rules: dict[str, BucketRule]):
        self._db = db
        self._rules = rules
        self._reserve: dict[str, int] = {}
        self._shared_hint: dict[str, int] = {}  # what the shared bucket held after our last lease
        self._lock = threading.Lock()

    def take(self, scope: str, owner_id: str, kind: str) -> Decision:
        """One request of `kind` by the subscription (scope 'subscription') or tenant (scope 'tenant')."""
        rule = self._rules[kind]
        key = f"{scope}:{owner_id}:{kind}"
        with self._lock:
            if self._reserve.get(key, 0) > 0:
                self._reserve[key] -= 1
                return Decision(True, self._reserve[key] + self._shared_hint.get(key, 0))
        for amount in (rule.lease_size, 1):
            left = self._lease(key, rule, amount)
            if left is not None:
                with self._lock:
                    self._shared_hint[key] = int(left)
                    self._reserve[key] = self._reserve.get(key, 0) + amount - 1
                    return Decision(True, self._reserve[key] + int(left))
        available = self._available(key, rule)
        return Decision(False, 0, max(1, math.ceil((1 - available) / rule.refill_per_second)))

    def _refilled(self, now: float, rule: BucketRule):
        refilled = ThrottleBucket.tokens + (now - ThrottleBucket.refilled_at) * rule.refill_per_second
        return sa.case((refilled > rule.capacity, float(rule.capacity)), else_=refilled)

    def _lease(self, key: str, rule: BucketRule, amount: int) -> float | None:
        now = time.time()
        current = self._refilled(now, rule)
        with self._db.session() as session:
            left = session.execute(
                sa.update(ThrottleBucket)
                .where(ThrottleBucket.key == key, current >= amount)
                .values(tokens=current - amount, refilled_at=now)
                .returning(ThrottleBucket.tokens)
            ).scalar()
            if left is not None:
                return left
            if session.get(ThrottleBucket, key) is not None:
                return None
            if not insert_unless_duplicate(
                    session, ThrottleBucket(key=key, tokens=float(rule.capacity - amount), refilled_at=now)):
                return None  # another process created it first: the caller retries with a smaller lease
            return float(rule.capacity - amount)

    def _available(self, key: str, rule: BucketRule) -> float:
        with self._db.session() as session:
            bucket = session.get(ThrottleBucket, key)
        if bucket is None:
            return float(rule.capacity)
        return min(rule.capacity, bucket.tokens + (time.time() - bucket.refilled_at) * rule.refill_per_second)

