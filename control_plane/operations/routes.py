"""Status URLs of long-running operations.

`.../operationStatuses/{id}` (Azure-AsyncOperation) always answers 200 with a status document;
`.../operationResults/{id}` (Location) answers 202 while running, then the final result. Both are found by the
operation id alone, so they keep answering after the resource they were about is gone.

Polls are not authorised by RBAC again: the start was, and the grant it used may be gone by the end (deleting a
group or registry removes the role assignments on it, so its own Owner would be refused the last poll and the
SDK would report a failed delete). As with ARM's own operation tokens, the operation id (a random GUID handed only
to the caller that started it) is the capability; the token and the subscription's tenant are still checked.
"""

from __future__ import annotations

from flask import Blueprint, request

from control_plane.arm import api_versions
from control_plane.arm.errors import ArmError
from control_plane.arm.http import RETRY_AFTER_SECONDS, arm_json, base_url, empty
from control_plane.authorization import actions
from control_plane.authorization.enforce import requires, subscription_for_caller
from control_plane.context import app_context
from control_plane.operations import service
from control_plane.operations.models import FAILED, IN_PROGRESS, Operation

bp = Blueprint("operations", __name__)

ANY_VERSION = api_versions.CONTAINER_REGISTRY + tuple(
    v for v in api_versions.RESOURCES if v not in api_versions.CONTAINER_REGISTRY)


def _by_operation_id(kwargs: dict) -> None:
    """No RBAC scope: the operation id authorises the poll (see the module docstring)."""
    return None


def _timestamp(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def status_document(operation: Operation) -> dict:
    document = {
        "id": request.path,
        "name": operation.id,
        "status": operation.status,
        "startTime": _timestamp(operation.created_at),
        "resourceId": operation.resource_id,
    }
    if operation.status != IN_PROGRESS:
        document["endTime"] = _timestamp(operation.ended_at)
        document["percentComplete"] = 100
    if operation.status == FAILED:
        document["error"] = {"code": operation.error_code or "InternalServerError",
                             "message": operation.error_message or "The operation failed."}
    return document


def _load(subscription_id: str, operation_id: str) -> Operation:
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        return service.get(session, subscription.id, operation_id)


@bp.route("/subscriptions/<subscription_id>/<path:scope>/operationStatuses/<operation_id>", methods=["GET"])
@api_versions.require_api_version(ANY_VERSION)
@requires(actions.REGISTRY_OPERATION_STATUS, scope=_by_operation_id)
def operation_status(subscription_id: str, scope: str, operation_id: str):
    """Retry-After while running: without it clients wait their default (30 s for az and the mgmt SDK)."""
    operation = _load(subscription_id, operation_id)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if operation.status == IN_PROGRESS else None
    return arm_json(status_document(operation), headers=headers)


def _result(subscription_id: str, operation_id: str):
    operation = _load(subscription_id, operation_id)
    if operation.status == IN_PROGRESS:
        return empty(202, {"Location": f"{base_url()}{request.full_path.rstrip('?')}", "Retry-After": "1"})
    if operation.status == FAILED:
        code = operation.error_code or "InternalServerError"
        # A failure with a known cause is the resource's state, not a server fault: 409, as ARM reports conflicts.
        raise ArmError(operation.error_message or "The operation failed.", code=code,
                       status=500 if code == "InternalServerError" else 409)
    return empty(200)


@bp.route("/subscriptions/<subscription_id>/<path:scope>/operationResults/<operation_id>", methods=["GET"])
@api_versions.require_api_version(ANY_VERSION)
@requires(actions.REGISTRY_OPERATION_STATUS, scope=_by_operation_id)
def operation_result(subscription_id: str, scope: str, operation_id: str):
    return _result(subscription_id, operation_id)


@bp.route("/subscriptions/<subscription_id>/operationResults/<operation_id>", methods=["GET"])
@api_versions.require_api_version(ANY_VERSION)
@requires(actions.GROUP_OPERATION_RESULT, scope=_by_operation_id)
def subscription_operation_result(subscription_id: str, operation_id: str):
    return _result(subscription_id, operation_id)
