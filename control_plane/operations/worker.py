"""The operation worker: a thread in each serving process that leases due operations and runs their handler.

Requests wake it right after they commit a new operation, so work starts at once; it also polls, which is how
operations left behind by a killed process (expired leases) are finished.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

from control_plane.db import Database
from control_plane.operations import service
from control_plane.operations.models import FAILED, SUCCEEDED

log = logging.getLogger("control_plane.operations")


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

    def attach(self, services: Any) -> None:
        self._services = services

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="operation-worker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

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
        with self._db.session() as session:
            operation = service.claim(session, operation_id, self.owner, self._lease_seconds)
        if operation is None:
            return False
        handler = service.HANDLERS.get(operation.kind)
        if handler is None:
            self._finish(operation.id, FAILED, "InternalServerError", f"No handler for '{operation.kind}'.")
            return True
        try:
            handler.run(self._services, operation)
        except service.OperationFailed as failure:
            self._fail(handler, operation, failure.code, failure.message)
        except Exception:
            log.exception("operation %s (%s) attempt %d failed", operation.id, operation.kind, operation.attempts)
            if operation.attempts >= handler.max_attempts:
                self._fail(handler, operation, "InternalServerError", "The operation failed after repeated attempts.")
            else:
                with self._db.session() as session:
                    service.retry_later(session, operation.id, self.owner, 2 ** operation.attempts)
        else:
            self._finish(operation.id, SUCCEEDED)
        return True

    def _fail(self, handler: service.Handler, operation, code: str, message: str) -> None:
        if handler.on_failure is not None:
            handler.on_failure(self._services, operation, message)
        self._finish(operation.id, FAILED, code, message)

    def _finish(self, operation_id: str, status: str, code: str | None = None, message: str | None = None):
        with self._db.session() as session:
            service.finish(session, operation_id, self.owner, status, code, message)
