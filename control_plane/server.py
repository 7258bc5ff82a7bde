"""Runs the app under gunicorn, configured from the command line and Settings."""

from __future__ import annotations

import sys

from gunicorn.app.base import BaseApplication

from control_plane.config import Settings


class ControlPlaneServer(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Built in each worker after the fork, so every worker has its own connections and operation thread.
        from control_plane.app import create_app

        return create_app(self.settings, start_worker=True)


def _worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    context = getattr(app, "extensions", {}).get("control_plane") if app else None
    if context is not None:
        context.worker.stop()


def run(settings: Settings, host: str, port: int, workers: int, threads: int) -> int:
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "limit_request_line": 8190,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "worker_exit": _worker_exit,
        "control_socket_disable": True,
    }
    scheme = "http"
    if settings.uses_https:
        cert = settings.tls_cert_file or settings.data_dir / "tls" / "server.pem"
        key = settings.tls_key_file or settings.data_dir / "tls" / "server-key.pem"
        options.update(certfile=str(cert), keyfile=str(key))
        scheme = "https"
    print(f"control-plane: serving {scheme}://{host}:{port} (data folder {settings.data_dir})", file=sys.stderr)
    if settings.tls == "auto" and settings.tls_cert_file is None:
        print(f"control-plane: CA certificate: {settings.ca_file}", file=sys.stderr, flush=True)
    ControlPlaneServer(settings, options).run()
    return 0
