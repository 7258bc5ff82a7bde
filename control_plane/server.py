"""Runs the app under gunicorn, configured from the command line and Settings."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

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

        app = create_app(self.settings, start_worker=self.settings.run_worker)
        # What exists now lives as long as the worker (modules, the app, its pools): move it out of the cyclic
        # collector's reach, whose full passes otherwise walk all of it (~70 ms, every few thousand requests).
        gc.freeze()
        return app


class QuietAccessLogger(Logger):
    """gunicorn's logger, whose access log stays off (the app writes a richer line per request itself).

    With `logconfig_dict` set, gunicorn builds every request's access-log atoms and only then lets the
    `gunicorn.access` logger's level drop the line: a few percent of a small request's CPU, for nothing."""

    def access(self, resp, req, environ, request_time):
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


def _worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    context = getattr(app, "extensions", {}).get("control_plane") if app else None
    if context is not None:
        context.worker.stop()


def _child_exit(server, worker):
    from control_plane.observability import metrics

    metrics.mark_process_dead(worker.pid)


def prepare_metrics_dir(settings: Settings, port: int) -> Path:
    """A fresh folder for this run's per-worker metric files, set as PROMETHEUS_MULTIPROC_DIR before any fork.

    One per host and port, so replicas sharing a data folder keep apart; emptied on start, since counters left by
    an earlier run would otherwise be added to this one's.
    """
    path = settings.data_dir / "metrics" / f"{socket.gethostname()}-{port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)  # prometheus_client's own variable, read in each worker
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before the variable was set: switch it to the multiprocess values now
        values.ValueClass = values.get_value_class()
    return path


def run(settings: Settings, host: str, port: int, workers: int, threads: int) -> int:
    from control_plane.observability import logs

    log_format = settings.log_format or "json"
    logs.configure(settings.log_level, log_format)
    log = logging.getLogger("control_plane.server")
    prepare_metrics_dir(settings, port)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        # gthread with request heads read in its main loop and deadlines on bodies and writes, so that slow
        # clients cannot hold every thread. Also with one thread: gunicorn's sync worker would give the whole
        # process to a single slow client.
        "worker_class": "control_plane.guarded_worker.GuardedThreadWorker",
        "worker_connections": settings.worker_connections,
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "limit_request_line": 8190,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": logs.gunicorn_config(settings.log_level, log_format),
        "logger_class": QuietAccessLogger,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "control_socket_disable": True,
    }
    scheme = "http"
    if settings.uses_https:
        cert = settings.tls_cert_file or settings.data_dir / "tls" / "server.pem"
        key = settings.tls_key_file or settings.data_dir / "tls" / "server-key.pem"
        options.update(certfile=str(cert), keyfile=str(key))
        scheme = "https"
    log.info("serving %s://%s:%s (data folder %s)", scheme, host, port, settings.data_dir)
    if settings.tls == "auto" and settings.tls_cert_file is None:
        log.info("CA certificate: %s", settings.ca_file)
    if not settings.run_worker:
        log.info("in-process operation worker off (CONTROL_PLANE_RUN_WORKER=false): run `control-plane worker`")
    ControlPlaneServer(settings, options).run()
    return 0
