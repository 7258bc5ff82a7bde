"""Probes and metrics, outside ARM's authentication and api-version: orchestrators and Prometheus call them as
they are.

- `GET /healthz`: the process answers (liveness). Touches nothing else, so a database outage never gets every
  replica restarted at once.
- `GET /readyz`: the database and every configured storage account answer (readiness). 503 with the ARM error
  envelope plus `checks`, naming each dependency and what failed, so a load balancer stops sending traffic.
- `GET /metrics`: Prometheus text format.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response

from control_plane.arm.http import arm_json
from control_plane.context import app_context
from control_plane.observability import metrics
from control_plane.storage import StorageError

bp = Blueprint("observability", __name__)
log = logging.getLogger("control_plane.readiness")

NO_STORE = {"Cache-Control": "no-store"}


@bp.route("/healthz", methods=["GET"])
def healthz():
    return arm_json({"status": "ok"}, headers=NO_STORE)


@bp.route("/readyz", methods=["GET"])
def readyz():
    ctx = app_context()
    checks: dict[str, dict] = {"database": _check_database(ctx.db)}
    for store in ctx.storage.all_stores():
        checks[f"storage:{_label(store)}"] = _check_store(store)
    failed = [name for name, check in checks.items() if check["status"] != "ok"]
    if not failed:
        return arm_json({"status": "ready", "checks": checks}, headers=NO_STORE)
    return arm_json({
        "error": {"code": "ServiceUnavailable",
                  "message": f"The service is not ready: {', '.join(failed)} cannot be reached."},
        "status": "unavailable",
        "checks": checks,
    }, status=503, headers={**NO_STORE, "Retry-After": "5"})


def _label(store) -> str:
    """The account name; a local folder's path is nobody's business outside the machine."""
    return "local" if store.name.startswith("local:") else store.name


def _check_database(db) -> dict:
    try:
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        # The type only: a driver's message can carry the connection URL.
        log.warning("readiness: database unavailable: %s", type(exc).__name__)
        return {"status": "failed", "error": f"The database cannot be reached ({type(exc).__name__})."}
    return {"status": "ok"}


def _check_store(store) -> dict:
    try:
        store.ping()
    except StorageError as exc:  # its message is written to be shown to clients
        log.warning("readiness: storage account %s unavailable", _label(store))
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:
        log.warning("readiness: storage account %s unavailable: %s", _label(store), type(exc).__name__)
        return {"status": "failed", "error": f"The storage account cannot be reached ({type(exc).__name__})."}
    return {"status": "ok"}


@bp.route("/metrics", methods=["GET"])
def prometheus_metrics():
    return Response(metrics.exposition(app_context().db), mimetype=None, content_type=metrics.CONTENT_TYPE,
                    headers=NO_STORE)
