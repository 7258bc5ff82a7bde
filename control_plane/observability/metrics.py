"""Prometheus metrics: requests, latency, token issuance and throttling counted as they happen; operations by
state and the worker's queue depth read from the database when scraped.

Under gunicorn every worker is its own process, so counters live in prometheus_client's multiprocess mode: each
worker writes its own files in PROMETHEUS_MULTIPROC_DIR (set per run by control_plane/server.py) and a scrape,
answered by any one worker, adds them all up. The database figures are the same whoever answers, so they are
computed at scrape time rather than kept per process.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from control_plane.db import Database, utcnow
from control_plane.operations.models import IN_PROGRESS, Operation

log = logging.getLogger("control_plane.metrics")
# `*_created` series double every counter's output and mean nothing once several worker processes are summed.
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Methods a client may send are unbounded strings; label values must not be.
KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"})
CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

REQUESTS = Counter("control_plane_http_requests", "HTTP requests answered, by operation (the route's ARM action, "
                   "else its endpoint), method and status.", ("operation", "method", "status"))
LATENCY = Histogram("control_plane_http_request_duration_seconds", "Time from the request reaching the app to its "
                    "response being ready, by operation and method.", ("operation", "method"),
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
TOKENS = Counter("control_plane_token_requests", "Requests to a token endpoint, by endpoint and outcome "
                 "('issued', else the OAuth/registry error code).", ("endpoint", "outcome"))
THROTTLED = Counter("control_plane_throttled_requests", "Requests refused with 429 by ARM-style throttling, by "
                    "bucket scope (subscription or tenant) and kind (reads, writes, deletes).", ("scope", "kind"))


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


def code_label(value: object, fallback: str) -> str:
    return value if isinstance(value, str) and CODE.fullmatch(value) else fallback


class OperationsCollector(Collector):
    """Durable operations by kind and state, and how many are due now (the worker's queue), from the database."""

    def __init__(self, db: Database):
        self._db = db

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("control_plane_database_up", "1 when the scrape could read the database.")
        try:
            with self._db.session() as session:
                by_state = session.execute(
                    sa.select(Operation.kind, Operation.status, sa.func.count()).group_by(Operation.kind,
                                                                                            Operation.status)
                ).all()
                now = utcnow()
                due = session.scalar(sa.select(sa.func.count()).select_from(Operation).where(
                    Operation.status == IN_PROGRESS, Operation.not_before <= now,
                    sa.or_(Operation.lease_expires_at.is_(None), Operation.lease_expires_at < now)))
        except Exception as exc:  # a scrape during an outage still answers, and says so
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        operations = GaugeMetricFamily("control_plane_operations", "Durable operations in the database, by kind "
                                       "and state.", labels=("kind", "state"))
        for kind, state, count in by_state:
            operations.add_metric([kind, state], count)
        yield operations
        queue = GaugeMetricFamily("control_plane_operations_due", "Operations due to run now and not leased by a "
                                  "worker: the worker queue's depth.")
        queue.add_metric([], due or 0)
        yield queue


class _ThisProcess(Collector):
    """Single-process mode (an app built in-process, not under `serve`): the default registry's metrics."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


def exposition(db: Database) -> bytes:
    """The text format: every worker's counters (multiprocess mode) or this process's, plus the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(OperationsCollector(db))
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live-gauge files (its counters stay in the sums)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
