"""create_app(settings): builds the Flask app, its shared services, and registers each package's routes."""

from __future__ import annotations

from flask import Flask
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
    from control_plane.registries import provisioning
    from control_plane.resource_groups import service as resource_groups

    resource_groups.register()
    provisioning.register()


def create_app(settings: Settings | None = None, *, start_worker: bool = False) -> Flask:
    settings = settings or Settings.from_env()
    # Under `serve`, gunicorn's master already configured logging (JSON by default); this only sets the level.
    logs.configure(settings.log_level, settings.log_format or "text")
    app = Flask(__name__)
    app.json.sort_keys = False
    context = build_context(settings)
    app.extensions["control_plane"] = context

    from control_plane.activity import recorder
    from control_plane.activity.routes import bp as activity_bp
    from control_plane.authorization.routes import bp as authorization_bp
    from control_plane.dataplane.routes import bp as dataplane_bp
    from control_plane.identity.graph import bp as graph_bp
    from control_plane.identity.routes import bp as identity_bp
    from control_plane.observability.routes import bp as observability_bp
    from control_plane.operations.routes import bp as operations_bp
    from control_plane.registries.routes import bp as registries_bp
    from control_plane.resource_groups.routes import bp as resource_groups_bp

    for blueprint in (identity_bp, resource_groups_bp, registries_bp, operations_bp, authorization_bp, activity_bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(dataplane_bp)
    app.register_blueprint(graph_bp)
    app.register_blueprint(observability_bp)
    access.install(app)  # first: its clock starts before, and its log line is written after, every other hook
    http.install(app, settings.max_body_bytes)
    recorder.install(app)

    app.wsgi_app = CanonicalPathMiddleware(app.wsgi_app)
    if not settings.uses_https:
        # Plain http only behind a TLS-terminating proxy: trust its X-Forwarded-Proto/Host for absolute URLs.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    if start_worker:
        context.worker.start()
    return app
