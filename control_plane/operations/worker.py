"""The operation worker: a thread in each serving process that leases due operations and runs their handler.

Requests wake it right after they commit a new operation, so work starts at once; it also polls, which is how
operations left behind by a killed process (expired leases) are finished. A request may also run its operation
itself first (`run_inline`): fast work then ends inside the request, which answers with the finished resource.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from control_plane.db import Database
from control_plane.operations import service
from control_plane.operations.models import FAILED, IN_PROGRESS, SUCCEEDED

log = logging.getLogger("control_plane.operations")

# Threads per process that run operations for requests waiting on them (run_inline); more waiters queue.
INLINE_THREADS = 4


class OperationWorker:
    def __init__(self, db: Database, services: Any, poll_seconds: float, lease_seconds: int):
        self._db = db
        self._services = services
        self._poll_seconds = poll_seconds
        self._lease_seconds = lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inline: ThreadPoolExecutor | None = None
        self._inline_lock = threading.Lock()

    def attach(self, services: Any) -> None:
        self._services = services

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="operation-worker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._inline is not None:
            self._inline.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def run_inline(self, operation_id: str, budget_seconds: float) -> bool:
        """Runs a just-committed operation now and waits for it up to the budget; True when it Succeeded in time.

        The work runs on a small pool rather than the request's own thread so the wait can end at the budget: slow
        work then goes on there (under this process's lease, so no other worker runs it twice) and the request
        answers asynchronously as before. Only a process that runs operations (its worker started) runs them here.
        """
        if budget_seconds <= 0 or self._thread is None or self._stop.is_set():
            return False
        try:
            future = self._inline_pool().submit(self._run, operation_id)
        except RuntimeError:  # the pool is shutting down with the process
            return False
        try:
            return future.result(timeout=budget_seconds) == SUCCEEDED
        except TimeoutError:
            return False
        except Exception:  # e.g. the database went away while claiming: the worker's sweep retries it later
            log.exception("inline run of operation %s failed", operation_id)
            return False

    def _inline_pool(self) -> ThreadPoolExecutor:
        with self._inline_lock:
            if self._inline is None:
                self._inline = ThreadPoolExecutor(INLINE_THREADS, thread_name_prefix="operation-inline")
            return self._inline

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # the loop must survive a database outage and try again
                log.exception("operation sweep failed")
            self._wake.wait(self._poll_seconds)
            self._wake.clear()

    def run_due(self) -> int:
        """Runs every operation that is due now; returns how many it ran."""
        ran = 0
        while not self._stop.is_set():
            with self._db.session() as session:
                ids = service.due(session)
            if not ids:
                return ran
            progressed = False
            for operation_id in ids:
                progressed |= self.run_one(operation_id)
                ran += 1
            if not progressed:
                return ran
        return ran

    def run_one(self, operation_id: str) -> bool:
        """Claims and runs one operation; False when another worker holds it or it already ended."""
        return self._run(operation_id) is not None

    def _run(self, operation_id: str) -> str | None:
        """The status the attempt left: SUCCEEDED, FAILED, IN_PROGRESS (to be retried), or None (not claimed)."""
        with self._db.session() as session:
            operation = service.claim(session, operation_id, self.owner, self._lease_seconds)
        if operation is None:
            return None
        handler = service.HANDLERS.get(operation.kind)
        if handler is None:
            self._finish(operation.id, FAILED, "InternalServerError", f"No handler for '{operation.kind}'.")
            return FAILED
        try:
            handler.run(self._services, operation)
        except service.OperationFailed as failure:
            self._fail(handler, operation, failure.code, failure.message)
            return FAILED
        except Exception:
            log.exception("operation %s (%s) attempt %d failed", operation.id, operation.kind, operation.attempts)
            if operation.attempts >= handler.max_attempts:
                self._fail(handler, operation, "InternalServerError", "The operation failed after repeated attempts.")
                return FAILED
            with self._db.session() as session:
                service.retry_later(session, operation.id, self.owner, 2 ** operation.attempts)
            return IN_PROGRESS
        self._finish(operation.id, SUCCEEDED)
        return SUCCEEDED

    def _fail(self, handler: service.Handler, operation, code: str, message: str) -> None:
        if handler.on_failure is not None:
            handler.on_failure(self._services, operation, message)
        self._finish(operation.id, FAILED, code, message)

    def _finish(self, operation_id: str, status: str, code: str | None = None, message: str | None = None):
        with self._db.session() as session:
            service.finish(session, operation_id, self.owner, status, code, message)
