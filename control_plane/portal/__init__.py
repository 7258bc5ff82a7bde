"""The web portal at `/portal`: a back end that signs people in (MSAL, authorization code + PKCE) and calls the
service's public HTTP API — ARM, Graph and the registries' data plane — with their tokens.

It imports nothing from the rest of control_plane: the composition root hands it the service's public URL and CA,
its client registration, a database engine for its sessions and a cipher for them.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint
from sqlalchemy.engine import Engine

from control_plane.portal import views
from control_plane.portal.auth import SignIn
from control_plane.portal.config import Cipher, PortalClient, PortalConfig
from control_plane.portal.sessions import SessionStore

__all__ = ["PortalClient", "PortalConfig", "create_portal_blueprint"]


def create_portal_blueprint(config: PortalConfig, client: PortalClient | Callable[[], PortalClient], engine: Engine,
                            cipher: Cipher) -> Blueprint:
    """`client` may be a function: the registration is then looked up (once) at the first sign-in."""
    bp = Blueprint("portal", __name__, url_prefix="/portal", template_folder="templates", static_folder="static")
    views.register(bp, config, SessionStore(engine, cipher, config.session_lifetime_seconds), SignIn(config, client))
    return bp
