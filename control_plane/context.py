"""The objects one running app shares between requests: settings, database, cipher, issuer, storage, worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from control_plane.authorization.access_cache import AccessCache
from control_plane.config import Settings
from control_plane.crypto import Cipher
from control_plane.db import Database
from control_plane.identity.external import ExternalIssuers
from control_plane.identity.tokens import TokenIssuer
from control_plane.operations.worker import OperationWorker
from control_plane.storage import StorageRouter
from control_plane.throttling import Throttler


@dataclass
class AppContext:
    settings: Settings
    db: Database
    cipher: Cipher
    issuer: TokenIssuer
    external_issuers: ExternalIssuers
    storage: StorageRouter
    worker: OperationWorker
    throttler: Throttler | None = None
    access_cache: AccessCache = field(default_factory=AccessCache)


def app_context() -> AppContext:
    return current_app.extensions["control_plane"]
