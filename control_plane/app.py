"""create_app(settings): builds the Flask apps (management and registry), their shared services, and registers each
package's routes."""

from __future__ import annotations

from flask import Blueprint, Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from control_plane.arm import http
from control_plane.arm.paths import CanonicalPathMiddleware
from control_plane.config import Settings
from control_plane.context import AppContext
from control_plane.crypto import load_cipher
from control_plane.db import Database
from control_plane.identity.external import ExternalIssuers
from control_plane.identity.tokens import TokenIssuer
from control_plane.observability import access, logs
from control_plane.oci.app import DataPlaneDispatcher, create_registry_app
from control_plane.operations.worker import OperationWorker
from control_plane.storage import StorageRouter
from control_plane.throttling import Throttler


def build_context(settings: Settings) -> AppContext:
    db = Database(settings.database_url)
    cipher = load_cipher(settings.encryption_key, settings.data_dir)
    context = AppContext(
        settings=settings,
        db=db,
        cipher=cipher,
        issuer=TokenIssuer(db, cipher, settings.public_url, settings.token_lifetime_seconds),
        external_issuers=ExternalIssuers(settings.trusted_issuers),
        storage=StorageRouter(settings.storage, settings.data_dir),
        worker=None,  # type: ignore[arg-type]
    )
    if settings.throttle_rules is not None:
        context.throttler = Throttler(db, settings.throttle_rules)
    context.worker = OperationWorker(db, context, settings.worker_poll_seconds, settings.operation_lease_seconds)
    _register_handlers()
    return context


def _register_handlers() -> None:
    from control_plane.deployments import applier as deployments_applier
    from control_plane.managed_identities import service as managed_identities
    from control_plane.registries import provisioning
    from control_plane.resource_groups import service as resource_groups

    resource_groups.register()
    provisioning.register()
    managed_identities.register()
    deployments_applier.register()


def create_app(settings: Settings | None = None, *, start_worker: bool = False) -> Flask:
    """The app gunicorn serves: the management (ARM) app, whose WSGI entry first sends data-plane requests to the
    registry app (control_plane/oci/app.py); with `serves=registry`, the registry app alone."""
    settings = settings or Settings.from_env()
    # Under `serve`, gunicorn's master already configured logging (JSON by default); this only sets the level.
    logs.configure(settings.log_level, settings.log_format or "text")
    context = build_context(settings)
    registry = create_registry_app(context, _registry_blueprints()) if settings.serves_registry else None
    if settings.serves_management:
        app = _management_app(context)
        if registry is not None:
            app.wsgi_app = DataPlaneDispatcher(registry.wsgi_app, app.wsgi_app, settings.login_server_suffix,
                                               settings.public_url)
    else:
        app = registry
        app.wsgi_app = DataPlaneDispatcher(registry.wsgi_app, None, settings.login_server_suffix,
                                           settings.public_url)
    if not settings.uses_https:
        # Plain http only behind a TLS-terminating proxy: trust its X-Forwarded-Proto/Host for absolute URLs (and
        # for the Host that picks a registry), so ProxyFix goes outside the dispatcher.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    if start_worker:
        context.worker.start()
    return app


def _registry_blueprints() -> list[Blueprint]:
    """The ACR API (`/acr/v1/…`) rides on the registry app."""
    from control_plane.acr.routes import bp as acr_bp

    return [acr_bp]


def _management_app(context: AppContext) -> Flask:
    settings = context.settings
    app = Flask(__name__)
    app.json.sort_keys = False
    app.extensions["control_plane"] = context

    from control_plane.activity import recorder
    from control_plane.activity.routes import bp as activity_bp
    from control_plane.authorization.routes import bp as authorization_bp
    from control_plane.batch.routes import bp as batch_bp
    from control_plane.dataplane.routes import bp as dataplane_bp
    from control_plane.identity.graph import bp as graph_bp
    from control_plane.identity.pages import bp as identity_pages_bp
    from control_plane.identity.routes import bp as identity_bp
    from control_plane.locks.routes import bp as locks_bp
    from control_plane.managed_identities.routes import bp as managed_identities_bp
    from control_plane.observability.routes import bp as observability_bp
    from control_plane.operations.routes import bp as operations_bp
    from control_plane.registries.routes import bp as registries_bp
    from control_plane.resource_groups.routes import bp as resource_groups_bp

    for blueprint in (identity_bp, identity_pages_bp, resource_groups_bp, registries_bp, operations_bp,
                      authorization_bp, activity_bp, locks_bp, batch_bp, managed_identities_bp):
        app.register_blueprint(blueprint)
    from control_plane.deployments.routes import bp as deployments_bp

    app.register_blueprint(deployments_bp)
    app.register_blueprint(dataplane_bp)  # the token service also answers on the service's own host
    app.register_blueprint(graph_bp)
    app.register_blueprint(observability_bp)
    app.register_blueprint(_portal_blueprint(context))
    access.install(app)  # first: its clock starts before, and its log line is written after, every other hook
    http.install(app, settings.max_body_bytes)
    from control_plane import cors

    cors.install(app, settings)  # CONTROL_PLANE_CORS_ORIGINS: preflights need no token, api-version or budget
    recorder.install(app)

    app.wsgi_app = CanonicalPathMiddleware(app.wsgi_app)
    return app


def _portal_blueprint(context: AppContext) -> Blueprint:
    """The portal (control_plane/portal/): a client of this service's public API, handed its URL and CA, its client
    registration (configured, or registered here on first sign-in: `init` may not have run yet at start), the
    database for its sessions and the cipher that encrypts them."""
    from control_plane.bootstrap import require_bootstrap
    from control_plane.identity.portal_client import ensure_portal_application
    from control_plane.portal import PortalClient, PortalConfig, create_portal_blueprint

    settings = context.settings
    local_ca = settings.uses_https and settings.tls_cert_file is None
    # An external authority is one of the trusted issuers: the portal asks it for tokens of that issuer's audience.
    trusted = next((t for t in settings.trusted_issuers
                    if settings.portal_authority and t.issuer.rstrip("/") == settings.portal_authority), None)
    config = PortalConfig(public_url=settings.public_url, ca_bundle=str(settings.ca_file) if local_ca else None,
                          external_authority=settings.portal_authority,
                          external_audience=trusted.audience if trusted else None,
                          external_ca_bundle=str(trusted.ca_bundle) if trusted and trusted.ca_bundle else None)

    def client() -> PortalClient:
        if settings.portal_client_id and settings.portal_client_secret:
            with context.db.session() as session:
                tenant_id = require_bootstrap(session)["tenantId"]  # the built-in authority: the home tenant
            return PortalClient(settings.portal_client_id, settings.portal_client_secret, tenant_id)
        return PortalClient(*ensure_portal_application(context))

    return create_portal_blueprint(config, client, context.db.engine, context.cipher)
