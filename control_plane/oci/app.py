"""The registry app (the data plane as its own Flask app) and the WSGI dispatcher that picks it or the management
app for each request.

The registry app shares the management app's AppContext (database, storage, issuer, settings) but none of its
hooks: no ARM body checks, no ARM envelope, no api-version gate, and no MAX_CONTENT_LENGTH on blob uploads. It
serves `/v2/…` (control_plane/oci/routes.py), the token service (`/oauth2/token`, `/oauth2/exchange`), the probes
and metrics, and whatever blueprints are handed to `create_registry_app` (the ACR API, `/acr/v1/…`).

`DataPlaneDispatcher` sends a request to the registry app when its Host (port ignored) is `<registry>.<suffix host>`
(host style), or when it is on any other host and its path is `/v2` or under it (path style); everything else goes
to the management app; so does `/acr/v1/…` on the service's own host (path style: `/acr/v1/<registry>/<repository>`).
With `serves=registry` there is no management app and everything goes to the registry app.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Blueprint, Flask

from control_plane import cors
from control_plane.content.service import ContentService
from control_plane.context import AppContext
from control_plane.observability import access
from control_plane.oci import http
from control_plane.oci.auth import VERIFIER_KEY, AccessTokenVerifier
from control_plane.oci.targets import CONTENT_KEY, REGISTRY_HOST, registry_host_name


def create_registry_app(context: AppContext, extra_blueprints: Iterable[Blueprint] = ()) -> Flask:
    """The data plane's Flask app; `extra_blueprints` are registered as they are (their routes see the request's
    target through control_plane/oci/targets.py and authorise with control_plane/oci/auth.py)."""
    from control_plane.dataplane.routes import bp as token_bp
    from control_plane.observability.routes import bp as observability_bp
    from control_plane.oci.routes import bp as oci_bp

    settings = context.settings
    app = Flask("control_plane.oci", static_folder=None)
    app.json.sort_keys = False
    app.url_map.merge_slashes = False  # `//` in a repository path is a bad name (400), not a redirect
    # Forms (the token endpoints) are bounded like every management body; blob uploads read the stream directly
    # and manifests check their own limit, so neither meets this.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_body_bytes
    app.extensions["control_plane"] = context
    app.extensions[CONTENT_KEY] = ContentService(context.db, context.storage, settings)
    app.extensions[VERIFIER_KEY] = AccessTokenVerifier(context.issuer, settings.public_url)
    for blueprint in (oci_bp, token_bp, observability_bp, *extra_blueprints):
        app.register_blueprint(blueprint)
    access.install(app)  # first: its clock starts before, and its log line is written after, every other hook
    # Before http.install: for an allowed origin, the data plane's expose list replaces http's fixed one.
    cors.install(app, settings, cors.REGISTRY_EXPOSE_HEADERS)
    http.install(app)
    return app


class DataPlaneDispatcher:
    """WSGI: host-style and `/v2` requests to the registry app, the rest to the management app (when there is one)."""

    def __init__(self, registry_app, management_app, login_server_suffix: str, public_url: str):
        self.registry_app = registry_app
        self.management_app = management_app
        self.suffix_host = login_server_suffix.lower().rsplit(":", 1)[0] if login_server_suffix.count(":") == 1 \
            else login_server_suffix.lower()
        self.own_host = (urlsplit(public_url).hostname or "").lower()

    def __call__(self, environ, start_response):
        name = registry_host_name(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""), self.suffix_host,
                                  self.own_host)
        if name is not None:
            environ[REGISTRY_HOST] = name
            return self.registry_app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        if self.management_app is None or path == "/v2" or path.startswith(("/v2/", "/acr/v1/")):
            return self.registry_app(environ, start_response)
        return self.management_app(environ, start_response)
