"""The deployment history: create-or-replace (starting the durable deploy operation), read, list, cancel, delete,
the per-resource operation records, and ARM's automatic trimming of a scope's history.

Applying a template is applier.py's job; this module only keeps records.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import ArmError, BadRequest, Conflict, NotFound
from control_plane.arm.paging import PageRequest
from control_plane.authorization.policy import scope_key
from control_plane.crypto import Cipher
from control_plane.db import insert_unless_duplicate, utcnow
from control_plane.deployments.models import Deployment, DeploymentOperation
from control_plane.identity.tokens import Caller
from control_plane.locks import service as locks
from control_plane.operations import service as operations
from control_plane.operations.models import SUCCEEDED as OPERATION_SUCCEEDED
from control_plane.operations.models import Operation
from control_plane.resource_groups.models import ResourceGroup

DEPLOY_KIND = "deployments/deploy"
ACCEPTED, RUNNING, SUCCEEDED, FAILED, CANCELED = "Accepted", "Running", "Succeeded", "Failed", "Canceled"
ACTIVE = (ACCEPTED, RUNNING)
NAME = re.compile(r"[-\w._()]+")
MAX_NAME = 64
# ARM's history rules (docs: deployment-history-deletions): past 700 deployments in a scope the oldest are deleted
# until 600 remain; 800 is the hard limit a new deployment cannot pass.
HISTORY_LIMIT = 800
TRIM_ABOVE = 700
TRIM_TO = 600


class DeploymentError(ArmError):
    """An ARM error whose envelope carries `details` (DeploymentFailed, InvalidTemplateDeployment, ...)."""

    def __init__(self, message: str, *, code: str, status: int = 400, target: str | None = None,
                 details: list[dict[str, Any]] | None = None):
        super().__init__(message, code=code, status=status, target=target)
        self.details = details or []

    def envelope(self) -> dict[str, Any]:
        body = super().envelope()
        if self.details:
            body["error"]["details"] = self.details
        return body


class DeploymentNotFound(NotFound):
    code = "DeploymentNotFound"

    def __init__(self, name: str):
        super().__init__(f"Deployment '{name[:MAX_NAME * 2]}' could not be found.")


@dataclass(frozen=True)
class Target:
    """Where a deployment lives: a resource group, or (group None) the subscription itself."""

    subscription_id: str
    tenant_id: str
    group: ResourceGroup | None

    @property
    def scope(self) -> str:
        return self.group.arm_id if self.group else f"/subscriptions/{self.subscription_id}"


@dataclass(frozen=True)
class DeploymentRequest:
    """A validated PUT: the template, the parameters split into plain and secure, and what the plan said."""

    mode: str
    location: str | None
    tags: dict[str, str]
    template: dict[str, Any]
    input_parameters: dict[str, Any]
    secure_parameters: dict[str, Any]
    parameters_echo: dict[str, Any]
    providers: list[dict[str, Any]]
    dependencies: list[dict[str, Any]]
    debug_setting: dict[str, Any] | None
    correlation_id: str
    # The deployment's clock (utcNow()): planned at the PUT, applied in the worker with the same time.
    now: datetime


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME:
        raise BadRequest(f"The deployment name '{name[:100]}' exceeds the maximum length of '{MAX_NAME}' characters.",
                         code="DeploymentNameLengthLimitExceeded", target="deploymentName")
    if not NAME.fullmatch(name):
        raise BadRequest(f"The deployment name '{name[:100]}' is invalid. The deployment name can only contain "
                         "alphanumeric, underscore, parentheses, hyphen and period characters.",
                         code="DeploymentNameInvalidCharacters", target="deploymentName")
    return name


def template_hash(template: dict[str, Any]) -> str:
    """A decimal u64 of the canonical template, as ARM's `templateHash` looks (clients never check its value)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return str(int.from_bytes(hashlib.sha256(canonical).digest()[:8], "big"))


def caller_record(caller: Caller) -> dict[str, str]:
    return {"tenantId": caller.tenant_id, "objectId": caller.object_id, "appId": caller.app_id,
            "displayName": caller.display_name, "principalType": caller.principal_type}


def caller_of(deployment: Deployment) -> Caller:
    record = deployment.caller
    return Caller(tenant_id=record["tenantId"], object_id=record["objectId"], app_id=record["appId"],
                  display_name=record["displayName"], principal_type=record["principalType"])


def find(session: Session, scope: str, name: str) -> Deployment | None:
    return session.scalar(sa.select(Deployment).where(Deployment.scope_key == scope_key(scope),
                                                      Deployment.name_key == name.lower()))


def get(session: Session, scope: str, name: str) -> Deployment:
    deployment = find(session, scope, name)
    if deployment is None:
        raise DeploymentNotFound(name)
    return deployment


def by_id(session: Session, deployment_id: str) -> Deployment | None:
    return session.get(Deployment, deployment_id)


def _refuse_active(deployment: Deployment, verb: str) -> None:
    if deployment.provisioning_state in ACTIVE:
        raise Conflict(f"Unable to {verb} deployment '{deployment.name}': the deployment is still active (state "
                       f"'{deployment.provisioning_state}'). Wait for it to finish or cancel it, then retry.",
                       code="DeploymentActive")


def record(session: Session, cipher: Cipher, target: Target, name: str, request: DeploymentRequest,
           caller: Caller) -> tuple[Deployment, bool]:
    """A new deployment record (or the replacement of a finished one under the same name), Accepted.

    Returns (deployment, created). A name still deploying is refused with DeploymentActive; the history is trimmed
    as ARM trims it before a new name is added.
    """
    validate_name(name)
    deployment = find(session, target.scope, name)
    if deployment is None:
        _trim_history(session, target.scope)
        deployment = Deployment(id=str(uuid.uuid4()), subscription_id=target.subscription_id,
                                resource_group_id=target.group.id if target.group else None, scope=target.scope,
                                scope_key=scope_key(target.scope), name=name, name_key=name.lower())
        _fill(deployment, cipher, request, caller)
        if insert_unless_duplicate(session, deployment):
            return deployment, True
        deployment = get(session, target.scope, name)
    _refuse_active(deployment, "edit or replace")
    session.execute(sa.delete(DeploymentOperation).where(DeploymentOperation.deployment_id == deployment.id))
    _fill(deployment, cipher, request, caller)
    session.flush()
    return deployment, False


def _fill(deployment: Deployment, cipher: Cipher, request: DeploymentRequest, caller: Caller) -> None:
    now = request.now
    deployment.location, deployment.tags, deployment.mode = request.location, request.tags, request.mode
    deployment.provisioning_state = ACCEPTED
    deployment.template, deployment.template_hash = request.template, template_hash(request.template)
    deployment.input_parameters = request.input_parameters
    deployment.secret_parameters = (cipher.encrypt(json.dumps(request.secure_parameters))
                                    if request.secure_parameters else None)
    deployment.parameters, deployment.outputs, deployment.output_resources = request.parameters_echo, None, []
    deployment.providers, deployment.dependencies = request.providers, request.dependencies
    deployment.debug_setting, deployment.error = request.debug_setting, None
    deployment.correlation_id, deployment.caller = request.correlation_id, caller_record(caller)
    deployment.created_at = deployment.started_at = now
    deployment.ended_at = None


def begin(session: Session, cipher: Cipher, target: Target, name: str, request: DeploymentRequest,
          caller: Caller) -> tuple[Deployment, Operation, bool]:
    """PUT: the record and the durable operation the worker applies it in, committed together."""
    deployment, created = record(session, cipher, target, name, request, caller)
    operation = operations.start(session, DEPLOY_KIND, target.subscription_id, deployment.arm_id, prefix="deployment",
                                 payload={"deploymentId": deployment.id})
    deployment.operation_id = operation.id
    session.flush()
    return deployment, operation, created


def secure_parameters(cipher: Cipher, deployment: Deployment) -> dict[str, Any]:
    return json.loads(cipher.decrypt(deployment.secret_parameters)) if deployment.secret_parameters else {}


def _trim_history(session: Session, scope: str) -> None:
    """ARM's automatic deletion: above TRIM_ABOVE the oldest finished deployments go until TRIM_TO remain, unless a
    lock forbids deleting in the scope; at HISTORY_LIMIT a new one is refused (DeploymentQuotaExceeded)."""
    key = scope_key(scope)
    count = session.scalar(sa.select(sa.func.count()).select_from(Deployment).where(Deployment.scope_key == key))
    if count < TRIM_ABOVE:
        return
    try:
        locks.refuse_if_locked(session, scope, locks.DELETE)
    except locks.ScopeLocked:
        locked = True
    else:
        locked = False
        oldest = sa.select(Deployment.id).where(Deployment.scope_key == key,
                                                Deployment.provisioning_state.not_in(ACTIVE)) \
            .order_by(Deployment.created_at).limit(count - TRIM_TO + 1)
        session.execute(sa.delete(Deployment).where(Deployment.id.in_(oldest.scalar_subquery()))
                        .execution_options(synchronize_session=False))
        count = session.scalar(sa.select(sa.func.count()).select_from(Deployment).where(Deployment.scope_key == key))
    if count >= HISTORY_LIMIT:
        reason = " A lock on the scope prevents the automatic deletion of old deployments." if locked else ""
        raise BadRequest(f"Creating the deployment would exceed the quota of '{HISTORY_LIMIT}' deployments in "
                         f"scope '{scope}'. Please delete some deployments from the history.{reason}",
                         code="DeploymentQuotaExceeded")


STATE_FILTER = re.compile(r"^\s*provisioningState\s+eq\s+'([A-Za-z]{1,32})'\s*$", re.IGNORECASE)


def state_filter(raw: str | None) -> str | None:
    """The one `$filter` ARM's deployment list takes: `provisioningState eq '<state>'`."""
    if not raw:
        return None
    match = STATE_FILTER.match(raw)
    if not match:
        raise BadRequest(f"The $filter '{raw[:200]}' is not supported. Supported: provisioningState eq '<state>'.",
                         code="InvalidFilterInQueryString", target="$filter")
    return match.group(1)


def list_page(session: Session, scope: str, state: str | None, page: PageRequest
              ) -> tuple[list[Deployment], tuple | None]:
    query = sa.select(Deployment).where(Deployment.scope_key == scope_key(scope))
    if state is not None:
        query = query.where(sa.func.lower(Deployment.provisioning_state) == state.lower())
    if page.after:
        query = query.where(Deployment.name_key > page.after[0])
    found = list(session.scalars(query.order_by(Deployment.name_key).limit(page.size + 1)))
    more = len(found) > page.size
    found = found[: page.size]
    return found, ((found[-1].name_key,) if more else None)


def cancel(session: Session, deployment: Deployment) -> None:
    """Only Accepted or Running deployments can be canceled; the applier stops before its next resource."""
    if deployment.provisioning_state not in ACTIVE:
        raise Conflict(f"The deployment '{deployment.name}' cannot be canceled: it is in state "
                       f"'{deployment.provisioning_state}'. Only Accepted or Running deployments can be canceled.",
                       code="DeploymentCannotBeCanceled")
    deployment.provisioning_state = CANCELED
    deployment.ended_at = utcnow()
    deployment.error = {"code": "DeploymentCanceled", "message": f"The deployment '{deployment.name}' was canceled."}
    deployment.secret_parameters = None
    session.flush()


def delete(session: Session, deployment: Deployment) -> Operation:
    """Removes the record and its operations (never the resources it deployed); a finished operation record gives
    the client the Location to poll, as ARM's delete is asynchronous."""
    _refuse_active(deployment, "delete")
    operation = operations.start(session, "deployments/delete", deployment.subscription_id, deployment.arm_id,
                                 prefix="deployment")
    operation.status, operation.ended_at = OPERATION_SUCCEEDED, utcnow()
    session.delete(deployment)
    session.flush()
    return operation


def finished_operation(session: Session, subscription_id: str, resource_id: str, result: dict[str, Any]
                       ) -> Operation:
    """An operation record that is already done and carries its result: the Location of what-if's 202."""
    operation = operations.start(session, "deployments/whatIf", subscription_id, resource_id, prefix="whatif",
                                 payload={"result": result})
    operation.status, operation.ended_at = OPERATION_SUCCEEDED, utcnow()
    session.flush()
    return operation


def operations_of(session: Session, deployment: Deployment) -> list[DeploymentOperation]:
    return list(session.scalars(sa.select(DeploymentOperation)
                                .where(DeploymentOperation.deployment_id == deployment.id)
                                .order_by(DeploymentOperation.sequence)))


def operation_of(session: Session, deployment: Deployment, operation_id: str) -> DeploymentOperation:
    found = session.scalar(sa.select(DeploymentOperation).where(DeploymentOperation.deployment_id == deployment.id,
                                                                DeploymentOperation.operation_id == operation_id))
    if found is None:
        raise NotFound(f"The deployment operation '{operation_id[:64]}' could not be found.",
                       code="DeploymentOperationNotFound")
    return found


# --- what the applier records -------------------------------------------------------------------------------------


def start_running(session: Session, deployment_id: str) -> Deployment | None:
    """Accepted -> Running; None when it was canceled (or replaced, or deleted) before the worker reached it."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.provisioning_state not in ACTIVE:
        return None
    deployment.provisioning_state = RUNNING
    session.flush()
    return deployment


def is_canceled(session: Session, deployment_id: str) -> bool:
    state = session.scalar(sa.select(Deployment.provisioning_state).where(Deployment.id == deployment_id))
    return state is None or state == CANCELED


def open_operation(session: Session, deployment_id: str, sequence: int, provisioning_operation: str,
                   target: dict[str, Any]) -> str:
    """A Running operation record; returns its id. ARM's operation ids are 16 upper-case hex digits."""
    operation = DeploymentOperation(id=str(uuid.uuid4()), deployment_id=deployment_id,
                                    operation_id=secrets.token_hex(8).upper(), sequence=sequence,
                                    provisioning_operation=provisioning_operation, provisioning_state=RUNNING,
                                    target=target)
    session.add(operation)
    session.flush()
    return operation.id


def close_operation(session: Session, record_id: str, state: str, status_code: str,
                    error: dict[str, Any] | None = None) -> None:
    operation = session.get(DeploymentOperation, record_id)
    if operation is None:  # the deployment was deleted meanwhile
        return
    operation.provisioning_state, operation.status_code, operation.ended_at = state, status_code, utcnow()
    operation.status_message = {"status": state, "error": error} if error else None
    session.flush()


def finish(session: Session, deployment_id: str, state: str, *, outputs: dict | None = None,
           output_resources: list[dict] | None = None, error: dict | None = None,
           ended_at: datetime | None = None) -> None:
    """The deployment's end; a deployment canceled meanwhile stays Canceled. Secure parameters are dropped."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return
    deployment.secret_parameters = None
    if deployment.provisioning_state == CANCELED:
        return
    deployment.provisioning_state = state
    deployment.outputs = outputs
    deployment.output_resources = output_resources or []
    deployment.error = error
    deployment.ended_at = ended_at or utcnow()
    session.flush()
