"""Microsoft.Authorization/locks at any scope: one route per operation serves the subscription, resource-group,
resource and `{scope}` forms of the API alike."""

from __future__ import annotations

from flask import Blueprint, request

from control_plane.arm import api_versions
from control_plane.arm.http import arm_json, base_url, empty, json_body
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.arm.validation import load
from control_plane.authorization import actions
from control_plane.authorization.enforce import current_caller, may_read, requires
from control_plane.context import app_context
from control_plane.locks import service
from control_plane.locks.schemas import LOCK_TYPE, LockPut, at_scope_filter, to_arm

bp = Blueprint("locks", __name__)

LOCKS = "/<path:scope>/providers/Microsoft.Authorization/locks"
LOCK = LOCKS + "/<lock_name>"
versions = api_versions.require_api_version(api_versions.LOCKS)


def _scope(kwargs: dict) -> str:
    """What a lock route acts on, for the authorisation check and the service alike."""
    return service.normalise_scope(kwargs["scope"])


@bp.route(LOCK, methods=["PUT"])
@versions
@requires(actions.LOCK_WRITE, scope=_scope)
def put_lock(scope: str, lock_name: str):
    service.validate_name(lock_name)
    body = load(LockPut(), json_body())["properties"]
    ctx = app_context()
    with ctx.db.session() as session:
        lock, created = service.create_or_update(
            session, service.normalise_scope(scope), lock_name,
            service.LockRequest(level=body["level"], notes=body["notes"], owners=body["owners"] or []),
            current_caller().object_id)
        return arm_json(to_arm(lock), 201 if created else 200)


@bp.route(LOCK, methods=["GET"])
@versions
@requires(actions.LOCK_READ, scope=_scope)
def get_lock(scope: str, lock_name: str):
    ctx = app_context()
    with ctx.db.reading() as session:
        return arm_json(to_arm(service.get(session, service.normalise_scope(scope), lock_name)))


@bp.route(LOCK, methods=["DELETE"])
@versions
@requires(actions.LOCK_DELETE, scope=_scope)
def delete_lock(scope: str, lock_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        lock = service.find(session, service.normalise_scope(scope), lock_name)
        if lock is None:
            return empty(204)
        service.delete(session, lock)
    return empty(200)


@bp.route(LOCKS, methods=["GET"])
@versions
@requires(actions.LOCK_READ, filtered=True, scope=_scope)
def list_locks(scope: str):
    """`az lock list` at each scope, and the subscription-wide list az reads before show and delete; only the locks
    the caller may read."""
    at_scope = at_scope_filter(request.args.get("$filter"))
    ctx = app_context()
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.reading() as session:
        found = service.list_for_scope(session, service.normalise_scope(scope), at_scope)
    found = [lock for lock in found if (not page.after or lock.arm_id.lower() > page.after[0])
             and may_read(LOCK_TYPE, lock.arm_id)]
    more = len(found) > page.size
    found = found[: page.size]
    link = next_link(base_url(), request.path, request.args, (found[-1].arm_id.lower(),) if more else None)
    return arm_json(page_body([to_arm(lock) for lock in found], link))
