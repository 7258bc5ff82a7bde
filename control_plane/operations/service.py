"""Operation records: start, lease, finish, read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import NotFound
from control_plane.db import utcnow
from control_plane.operations.models import IN_PROGRESS, Operation


class OperationFailed(Exception):
    """A handler's clean failure: the operation ends Failed with this code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Handler:
    run: Callable[[Any, Operation], None]
    on_failure: Callable[[Any, Operation, str], None] | None = None
    max_attempts: int = 5


HANDLERS: dict[str, Handler] = {}


def register_handler(kind: str, run: Callable[[Any, Operation], None],
                     on_failure: Callable[[Any, Operation, str], None] | None = None,
                     max_attempts: int = 5) -> None:
    """`run` does the work (and must be safe to repeat); `on_failure` puts the resource into its failed state."""
    HANDLERS[kind] = Handler(run, on_failure, max_attempts)


def start(session: Session, kind: str, subscription_id: str, resource_id: str, prefix: str,
          payload: dict | None = None) -> Operation:
    operation = Operation(id=f"{prefix}-{uuid.uuid4()}", kind=kind, subscription_id=subscription_id,
                          resource_id=resource_id, payload=payload or {})
    session.add(operation)
    session.flush()
    return operation


def get(session: Session, subscription_id: str, operation_id: str) -> Operation:
    operation = session.get(Operation, operation_id)
    if operation is None or operation.subscription_id != subscription_id.lower():
        raise NotFound(f"The operation '{operation_id[:100]}' could not be found.", code="OperationNotFound")
    return operation


def due(session: Session, limit: int = 20) -> list[str]:
    now = utcnow()
    return list(session.scalars(
        sa.select(Operation.id)
        .where(Operation.status == IN_PROGRESS, Operation.not_before <= now,
               sa.or_(Operation.lease_expires_at.is_(None), Operation.lease_expires_at < now))
        .order_by(Operation.created_at)
        .limit(limit)
    ))


def claim(session: Session, operation_id: str, owner: str, lease_seconds: int) -> Operation | None:
    """Takes the lease with one conditional UPDATE (returning the claimed row), so two workers never run an
    operation at once."""
    now = utcnow()
    return session.scalars(
        sa.update(Operation)
        .where(Operation.id == operation_id, Operation.status == IN_PROGRESS,
               sa.or_(Operation.lease_expires_at.is_(None), Operation.lease_expires_at < now))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=Operation.attempts + 1)
        .returning(Operation)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).one_or_none()


def finish(session: Session, operation_id: str, owner: str, status: str, code: str | None = None,
           message: str | None = None) -> None:
    session.execute(
        sa.update(Operation)
        .where(Operation.id == operation_id, Operation.lease_owner == owner)
        .values(status=status, error_code=code, error_message=message, ended_at=utcnow(),
                lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def retry_later(session: Session, operation_id: str, owner: str, delay_seconds: float) -> None:
    session.execute(
        sa.update(Operation)
        .where(Operation.id == operation_id, Operation.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, not_before=utcnow() + timedelta(seconds=delay_seconds))
        .execution_options(synchronize_session=False)
    )


def renew_lease(session: Session, operation_id: str, owner: str, lease_seconds: int) -> bool:
    """Extends a lease its holder still has: work longer than one lease (a template deployment) keeps it."""
    return bool(session.execute(
        sa.update(Operation)
        .where(Operation.id == operation_id, Operation.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount)
