"""The portal's registration at the built-in issuer, when CONTROL_PLANE_PORTAL_CLIENT_ID/_SECRET do not give one.

The portal is a confidential client: an application with its service principal in the home tenant (the one
`control-plane init` made), the web redirect URI `<public_url>/portal/auth/callback`, and a client secret. The secret
is kept encrypted with the service's cipher in system state, so every worker and replica uses the same one. Workers
starting at once race to create it; the system-state row's primary key picks one winner and the others' transactions
(their application included) roll back, then they read the winner's.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.crypto import Cipher
from control_plane.db import insert_unless_duplicate, utcnow
from control_plane.identity import service
from control_plane.identity.models import Application, ClientSecret, ServicePrincipal, SystemState

PORTAL_KEY = "portal_application"
BOOTSTRAP_KEY = "bootstrap"  # control_plane.bootstrap's: what `init` made
DISPLAY_NAME = "Container Registry Portal"
CALLBACK_PATH = "/portal/auth/callback"
# A secret this close to its end is replaced on the next start, long before the portal could be refused.
RENEW_BEFORE = timedelta(days=30)
ATTEMPTS = 3


class NotInitialised(RuntimeError):
    """There is no home tenant yet: `control-plane init` has not run. Ask again once it has."""


class _LostRace(Exception):
    """Another process registered the portal first; this transaction rolls back."""


def ensure_portal_application(context) -> tuple[str, str, str]:
    """(client_id, client_secret, tenant_id) of the portal's application, made on first use; idempotent."""
    for _ in range(ATTEMPTS):
        try:
            with context.db.session() as session:
                return _ensure(session, context.cipher, context.settings.public_url.rstrip("/") + CALLBACK_PATH)
        except _LostRace:
            continue
    raise RuntimeError("could not register the portal application: other processes kept changing it")


def _ensure(session: Session, cipher: Cipher, redirect_uri: str) -> tuple[str, str, str]:
    bootstrap = session.get(SystemState, BOOTSTRAP_KEY)
    if bootstrap is None:
        raise NotInitialised("run `control-plane init` first: the portal's application lives in its tenant")
    tenant_id = bootstrap.value["tenantId"]
    state = session.get(SystemState, PORTAL_KEY)
    application = None
    if state is not None:
        application = session.scalar(sa.select(Application).where(Application.app_id == state.value["appId"],
                                                                  Application.tenant_id == tenant_id))
    if application is None:
        return _register(session, cipher, tenant_id, redirect_uri, state)
    if redirect_uri not in (application.web_redirect_uris or []):  # the public URL changed
        application.web_redirect_uris = [*(application.web_redirect_uris or []), redirect_uri]
    if session.scalar(sa.select(ServicePrincipal.object_id).where(
            ServicePrincipal.app_id == application.app_id)) is None:
        service.create_principal_for(session, application)
    secret = _current_secret(session, cipher, state.value)
    if secret is None:
        secret, key_id = _new_secret(session, application.app_id)
        state.value = {**state.value, "keyId": key_id, "secret": cipher.encrypt(secret)}
    return application.app_id, secret, tenant_id


def _register(session: Session, cipher: Cipher, tenant_id: str, redirect_uri: str,
              stale: SystemState | None) -> tuple[str, str, str]:
    application = service.create_application(session, tenant_id, DISPLAY_NAME)
    application.web_redirect_uris = [redirect_uri]
    service.create_principal_for(session, application)
    secret, key_id = _new_secret(session, application.app_id)
    value = {"appId": application.app_id, "tenantId": tenant_id, "keyId": key_id, "secret": cipher.encrypt(secret)}
    if stale is not None:  # its application was deleted (through Graph): replace the record
        session.delete(stale)
        session.flush()
    if not insert_unless_duplicate(session, SystemState(key=PORTAL_KEY, value=value)):
        raise _LostRace
    return application.app_id, secret, tenant_id


def _current_secret(session: Session, cipher: Cipher, value: dict) -> str | None:
    """The stored secret while it still works for a while; None when it must be replaced (removed, ending soon, or
    encrypted with a key the service no longer has)."""
    record = session.get(ClientSecret, value.get("keyId", ""))
    if record is None or record.app_id != value["appId"] or record.expires_at <= utcnow() + RENEW_BEFORE:
        return None
    try:
        return cipher.decrypt(value["secret"])
    except ValueError:
        return None


def _new_secret(session: Session, app_id: str) -> tuple[str, str]:
    record, secret = service.add_client_secret_record(session, app_id, "portal")
    return secret, record.key_id
