"""Server-side sessions: the browser holds only an opaque random id; everything else is an encrypted row."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from control_plane.portal.config import Cipher
from control_plane.portal.models import portal_sessions

COOKIE = "__Host-portal-session"  # __Host-: Secure, Path=/, no Domain, so no sibling host can set or read it


def _key(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


@dataclass
class PortalSession:
    cookie_value: str
    data: dict[str, Any] = field(default_factory=dict)
    dirty: bool = False
    new: bool = False

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.data.get(key) != value:
            self.data[key] = value
            self.dirty = True

    def pop(self, key: str) -> Any:
        if key in self.data:
            self.dirty = True
        return self.data.pop(key, None)

    @property
    def csrf_token(self) -> str:
        token = self.data.get("csrf")
        if not token:
            token = secrets.token_urlsafe(32)
            self.set("csrf", token)
        return token


class SessionStore:
    def __init__(self, engine: Engine, cipher: Cipher, lifetime_seconds: int):
        self.engine = engine
        self.cipher = cipher
        self.lifetime = lifetime_seconds

    def new(self) -> PortalSession:
        return PortalSession(secrets.token_urlsafe(32), {}, new=True)  # stored once something is set

    def load(self, cookie_value: str | None) -> PortalSession | None:
        if not cookie_value or len(cookie_value) > 100:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(portal_sessions.c.data, portal_sessions.c.expires_at)
                               .where(portal_sessions.c.id == _key(cookie_value))).first()
        if row is None or row.expires_at < time.time():
            return None
        try:
            data = json.loads(self.cipher.decrypt(row.data))
        except Exception:  # a row the current key ring cannot read is no session
            return None
        return PortalSession(cookie_value, data)

    def save(self, session: PortalSession) -> None:
        now = int(time.time())
        values = {"data": self.cipher.encrypt(json.dumps(session.data)), "expires_at": now + self.lifetime}
        with self.engine.begin() as conn:
            if session.new:
                conn.execute(sa.delete(portal_sessions).where(portal_sessions.c.expires_at < now))
                conn.execute(sa.insert(portal_sessions).values(id=_key(session.cookie_value), created_at=now,
                                                               **values))
            else:
                conn.execute(sa.update(portal_sessions).where(portal_sessions.c.id == _key(session.cookie_value))
                             .values(**values))
        session.dirty = session.new = False

    def delete(self, session: PortalSession) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(portal_sessions).where(portal_sessions.c.id == _key(session.cookie_value)))
