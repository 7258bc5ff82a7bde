"""Planning a deployment (preflight), previewing it (what-if), and applying it in the operation worker.

The applier walks the engine's Plan wave by wave: the resources of a wave depend only on earlier waves and are
applied concurrently, each through resources.py (the REST routes' own service functions) and authorised for the
deploying caller with the routes' policy. A resource whose dependency failed is not attempted; the others go on.

What a failed deployment leaves is what ARM leaves: no rollback. Every resource that succeeded before (or
independently of) the failure stays deployed, in the state its own operation left it; the failed resource is in
whatever state its service left it (a registry whose container could not be made is `Failed`); nothing that
depends on it is touched. Template errors, unknown resource types and missing permissions are found by the
preflight before anything is written, so those leave nothing at all.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from control_plane.activity import service as activity
from control_plane.arm.errors import ArmError, Forbidden
from control_plane.authorization import policy
from control_plane.db import utcnow
from control_plane.deployments import resources
from control_plane.deployments import service as deployments
from control_plane.deployments.resources import Env, ResourceId
from control_plane.deployments.template import (
    Deferred,
    DeploymentContext,
    Plan,
    PlannedResource,
    TemplateError,
    plan,
)
from control_plane.identity import service as identity
from control_plane.identity.tokens import Caller
from control_plane.managed_identities import service as managed_identities
from control_plane.operations import service as operations
from control_plane.operations.models import Operation
from control_plane.resource_groups import service as resource_groups

log = logging.getLogger("control_plane.deployments")

# Resources of one wave applied at once, per deployment.
CONCURRENCY = 8
FAILED_MESSAGE = ("At least one resource deployment operation failed. Please list deployment operations for details. "
                  "Please see https://aka.ms/arm-deployment-operations for usage details.")


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, TemplateError):
        return exc.to_error()
    if isinstance(exc, deployments.DeploymentError):
        return exc.envelope()["error"]
    if isinstance(exc, ArmError):
        return exc.envelope()["error"]
    log.exception("deployment step failed unexpectedly")
    return {"code": "InternalServerError", "message": "The resource operation failed unexpectedly."}


def template_error(exc: TemplateError) -> deployments.DeploymentError:
    return deployments.DeploymentError(exc.message, code=exc.code, target=exc.target, details=exc.details)


# --- planning -----------------------------------------------------------------------------------------------------


def _environment(services: Any) -> dict[str, Any]:
    """`environment()`: this cloud's metadata, as `/metadata/endpoints` describes it."""
    url = services.settings.public_url.rstrip("/")
    return {"name": "ControlPlane", "gallery": f"{url}/", "graph": f"{url}/", "portal": f"{url}/",
            "graphAudience": f"{url}/", "resourceManager": f"{url}/",
            "authentication": {"loginEndpoint": url, "audiences": ["https://management.core.windows.net/",
                                                                   "https://management.azure.com/"],
                               "tenant": "common", "identityProvider": "AAD"},
            "suffixes": {"acrLoginServer": f".{services.settings.login_server_suffix}",
                         "storage": "core.windows.net", "keyvaultDns": ".vault.azure.net"}}


def context_for(services: Any, session: Session, target: deployments.Target, name: str, mode: str,
                location: str | None, now: datetime) -> DeploymentContext:
    group = target.group
    subscription = identity.get_subscription(session, target.subscription_id)

    def lookup_group(subscription_id: str, group_name: str) -> dict[str, Any] | None:
        with services.db.session() as inner:
            found = resource_groups.find(inner, subscription_id, group_name)
            return {"name": found.name, "location": found.location, "tags": found.tags or {},
                    "managedBy": found.managed_by} if found else None

    return DeploymentContext(
        subscription_id=target.subscription_id, tenant_id=target.tenant_id, deployment_name=name,
        resource_group=group.name if group else None, resource_group_location=group.location if group else None,
        resource_group_tags=(group.tags or {}) if group else None,
        resource_group_managed_by=group.managed_by if group else None, location=location,
        subscription_display_name=subscription.display_name, mode=mode, environment=_environment(services), now=now,
        lookup_resource_group=lookup_group)


def all_resources(deployment_plan: Plan) -> Iterator[PlannedResource]:
    """Every resource of the plan and of the nested plans that could be planned up front."""
    for resource in deployment_plan.resources:
        yield resource
        if resource.is_deployment and resource.nested is not None:
            yield from all_resources(resource.nested)


def preflight(services: Any, session: Session, deployment_plan: Plan, caller: Caller, name: str) -> None:
    """ARM's validation before anything is written: every type hosted (NoRegisteredProviderFound, inside
    InvalidTemplateDeployment), and the caller allowed to write every resource (403 AuthorizationFailed naming it)."""
    missing = [resources.no_provider(r.type, r.api_version, r.location, r.id)
               for r in all_resources(deployment_plan) if resources.kind_of(r.type) is None]
    if missing:
        raise deployments.DeploymentError(
            f"The template deployment '{name}' is not valid according to the validation procedure. See inner errors "
            "for details.", code="InvalidTemplateDeployment", details=missing)
    permissions = policy.permissions_of(session, caller.object_id, caller.tenant_id)
    for resource in all_resources(deployment_plan):
        authorize(permissions, caller, resources.kind_of(resource.type).write_action.name, resource.id)


def authorize(permissions: policy.Permissions, caller: Caller, action: str, resource_id: str) -> None:
    if not permissions.allows(action, resource_id):
        raise Forbidden(policy.denial_message(caller.client_name, caller.object_id, action, resource_id))


def split_parameters(deployment_plan: Plan, supplied: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, secure) parameters as supplied; secure ones (by the template's declared type) are never stored plain."""
    secure = {n.lower() for n, p in deployment_plan.parameters.items()
              if str(p.get("type", "")).lower().startswith("secure")}
    plain = {k: v for k, v in supplied.items() if k.lower() not in secure}
    return plain, {k: v for k, v in supplied.items() if k.lower() in secure}


# --- the Runtime the engine calls for reference() and list*() ----------------------------------------------------


@dataclass
class Run:
    """One deployment being applied (a nested one gets its own, sharing the rest)."""

    env: Env
    deployment_id: str
    permissions: policy.Permissions
    correlation_id: str
    sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    depth: int = 0

    def reference(self, resource_id: str, api_version: str | None, full: bool) -> Any:
        rid = resources.parse(resource_id)
        kind = resources.kind_of(rid.type)
        if kind is None:
            raise resources.unsupported(rid.type)
        authorize(self.permissions, self.env.caller, f"{rid.type}/read", resource_id)
        with self.env.services.db.session() as session:
            body = kind.read(self.env, session, rid)
        if body is None:
            raise ArmError(f"The Resource '{rid.type}/{rid.name}' was not found. For more details please go to "
                           "https://aka.ms/ARMResourceNotFoundFix", code="ResourceNotFound", status=404)
        return body if full else body.get("properties", {})

    def invoke_list(self, resource_id: str, action: str, api_version: str | None, body: Any) -> Any:
        rid = resources.parse(resource_id)
        if rid.type.lower() != resources.REGISTRY or action.lower() != "listcredentials":
            raise resources.unsupported(f"{rid.type}/{action}")
        authorize(self.permissions, self.env.caller, f"{rid.type}/listCredentials/action", resource_id)
        return resources.list_credentials(self.env, rid)


# --- applying -----------------------------------------------------------------------------------------------------


def _target_of(resource: PlannedResource) -> dict[str, Any]:
    target = {"id": resource.id, "resourceName": resource.name, "resourceType": resource.type,
              "apiVersion": resource.api_version}
    if resource.symbolic_name:
        target["symbolicName"] = resource.symbolic_name
    return target


def _unchanged(env: Env, kind: resources.Kind, rid: ResourceId, body: dict[str, Any]) -> bool:
    """Re-deploying what is already there changes nothing (the write is skipped, as what-if says NoChange)."""
    with env.services.db.session() as session:
        current = kind.read(env, session, rid)
    if current is None or current.get("properties", {}).get("provisioningState", "Succeeded") != "Succeeded":
        return False
    try:
        desired = kind.desired(env, body)
    except ArmError:
        return False  # invalid: the apply reports it
    return not delta(kind.current(current), desired, complete=kind.complete)


def _apply_resource(run: Run, resource: PlannedResource) -> dict[str, Any] | None:
    """Applies one resource; None when it succeeded, else its error object (also recorded as its operation)."""
    db = run.env.services.db
    with db.session() as session:
        if deployments.is_canceled(session, run.deployment_id):
            return {"code": "DeploymentCanceled", "message": "The deployment was canceled."}
        record = deployments.open_operation(session, run.deployment_id, next(run.sequence), "Create",
                                            _target_of(resource))
    status = "OK"
    try:
        kind = resources.kind_of(resource.type)
        if kind is None:
            raise deployments.DeploymentError(**_as_kwargs(resources.no_provider(
                resource.type, resource.api_version, resource.location, resource.id)))
        authorize(run.permissions, run.env.caller, kind.write_action.name, resource.id)
        if resource.is_deployment:
            _apply_nested(run, resource)
        else:
            body = resource.resolve(run)
            denied = [i for i in managed_identities.assigned_identities(body.get("identity"))
                      if not run.permissions.allows(managed_identities.ASSIGN_ACTION, i)]
            if denied:
                raise managed_identities.linked_authorization_failed(
                    run.env.caller.client_name, run.env.caller.object_id, kind.write_action.name, resource.id, denied)
            rid = resources.parse(resource.id)
            if not _unchanged(run.env, kind, rid, body) and kind.apply(run.env, rid, body):
                status = "Created"
    except Exception as exc:  # every failure becomes the resource's error, never the worker's crash
        error = _error(exc)
        with db.session() as session:
            deployments.close_operation(session, record, deployments.FAILED, _status_code(exc), error)
        _log_activity(run, resource, getattr(exc, "status", 500), error["code"])
        return {**error, "target": error.get("target") or resource.id}
    with db.session() as session:
        deployments.close_operation(session, record, deployments.SUCCEEDED, status)
    _log_activity(run, resource, 201 if status == "Created" else 200, None)
    return None


def _log_activity(run: Run, resource: PlannedResource, http_status: int, error_code: str | None) -> None:
    """The activity log entry the REST route would have written for this resource's PUT."""
    kind = resources.kind_of(resource.type)
    if kind is None:
        return
    caller = run.env.caller
    try:
        activity.record(run.env.services.db, activity.Call(
            tenant_id=caller.tenant_id, caller_object_id=caller.object_id, caller_app_id=caller.app_id,
            caller_name=caller.display_name, action=kind.write_action, method="PUT", path=resource.id,
            http_status=http_status, correlation_id=run.correlation_id, request_id=str(uuid.uuid4()),
            error_code=error_code, caller_type=caller.principal_type))
    except Exception as exc:  # as the recorder: the log never turns a deployment into a failure
        log.warning("activity log entry not written for a deployed resource: %s", type(exc).__name__)


def _as_kwargs(error: dict[str, Any]) -> dict[str, Any]:
    return {"message": error["message"], "code": error["code"], "target": error.get("target")}


def _status_code(exc: Exception) -> str:
    status = getattr(exc, "status", 400)
    return {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}.get(status,
                                                                                      "InternalServerError")


def apply_plan(run: Run, deployment_plan: Plan) -> list[dict[str, Any]]:
    """Every resource, wave by wave; returns the errors of those that failed (skipping what depends on them)."""
    failed: set[str] = set()
    errors: list[dict[str, Any]] = []
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="deployment") as pool:
        for wave in deployment_plan.waves():
            ready = [r for r in wave if not any(d.lower() in failed for d in r.depends_on)]
            failed |= {r.id.lower() for r in wave if r not in ready}
            for resource, error in zip(ready, pool.map(lambda r: _apply_resource(run, r), ready), strict=True):
                if error is not None:
                    failed.add(resource.id.lower())
                    errors.append(error)
    return errors


def _apply_nested(run: Run, resource: PlannedResource) -> None:
    """A nested deployment: its own record at its own scope, applied here, failing the outer resource if it fails."""
    if run.depth >= 10:
        raise deployments.DeploymentError("Nested deployments are limited to 10 levels.", code="InvalidTemplate")
    nested_plan = resource.plan_nested(run)
    body = resource.resolve(run)
    properties = body.get("properties") or {}
    env = run.env
    with env.services.db.session() as session:
        group = resource_groups.get(session, resource.subscription_id, resource.resource_group) \
            if resource.resource_group else None
        target = deployments.Target(resource.subscription_id, env.caller.tenant_id, group)
        # Secure values stay in the plan in memory: a nested deployment is applied here, never resumed.
        plain, _ = split_parameters(nested_plan, properties.get("parameters") or {})
        request = deployments.DeploymentRequest(
            mode=str(properties.get("mode") or "Incremental").capitalize(), location=resource.location,
            tags={}, template=nested_plan.template, input_parameters=plain, secure_parameters={},
            parameters_echo=nested_plan.parameters, providers=nested_plan.providers(),
            dependencies=nested_plan.dependencies(), debug_setting=None,
            correlation_id=run.correlation_id, now=utcnow())
        nested, _ = deployments.record(session, env.services.cipher, target, resource.name.rsplit("/", 1)[-1],
                                       request, env.caller)
        deployments.start_running(session, nested.id)
        nested_id = nested.id
    inner = replace(run, deployment_id=nested_id, sequence=itertools.count(1), depth=run.depth + 1)
    errors = apply_plan(inner, nested_plan)
    _conclude(env, nested_id, nested_plan, inner, errors)
    with env.services.db.session() as session:
        state = deployments.by_id(session, nested_id).provisioning_state
        error = deployments.by_id(session, nested_id).error
    if state != deployments.SUCCEEDED:
        raise deployments.DeploymentError(error["message"], code=error["code"], status=409,
                                          details=error.get("details"))


def _conclude(env: Env, deployment_id: str, deployment_plan: Plan | None, run: Run,
              errors: list[dict[str, Any]]) -> None:
    """Outputs after the last resource, then the deployment's end state."""
    outputs = None
    if not errors and deployment_plan is not None:
        try:
            outputs = deployment_plan.outputs(run)
        except Exception as exc:
            errors = [_error(exc)]
    with env.services.db.session() as session:
        if errors:
            deployments.finish(session, deployment_id, deployments.FAILED, error={
                "code": "DeploymentFailed", "message": FAILED_MESSAGE, "details": errors})
        else:
            deployments.finish(session, deployment_id, deployments.SUCCEEDED, outputs=outputs, output_resources=[
                {"id": r.id} for r in deployment_plan.resources if not r.is_deployment] if deployment_plan else [])


def _complete_mode(run: Run, deployment: deployments.Deployment, deployment_plan: Plan) -> list[dict[str, Any]]:
    """Complete mode: the group's registries and identities the template no longer declares are deleted (locks
    still hold)."""
    declared = {r.id.lower() for r in all_resources(deployment_plan)}
    env = run.env
    errors = []
    with env.services.db.session() as session:
        group = resource_groups.find(session, deployment.subscription_id, deployment.scope.rsplit("/", 1)[-1])
        found = resources.resources_in_group(env, session, deployment.subscription_id, group.name) if group else []
    for resource_id in (i for i in found if i.lower() not in declared):
        rid = resources.parse(resource_id)
        with env.services.db.session() as session:
            record = deployments.open_operation(session, run.deployment_id, next(run.sequence), "Delete", {
                "id": resource_id, "resourceName": rid.name, "resourceType": rid.type})
        try:
            authorize(run.permissions, env.caller, f"{rid.type}/delete", resource_id)
            resources.delete_resource(env, rid)
        except Exception as exc:
            error = _error(exc)
            errors.append({**error, "target": resource_id})
            with env.services.db.session() as session:
                deployments.close_operation(session, record, deployments.FAILED, _status_code(exc), error)
            continue
        with env.services.db.session() as session:
            deployments.close_operation(session, record, deployments.SUCCEEDED, "OK")
    return errors


def _lease_keeper(services: Any, operation: Operation, stop: threading.Event) -> None:
    """Keeps the deploy operation's lease while it runs, so no other worker starts it again meanwhile."""
    lease = services.settings.operation_lease_seconds
    while not stop.wait(max(lease / 3, 1)):
        with services.db.session() as session:
            operations.renew_lease(session, operation.id, operation.lease_owner, lease)


def run_deployment(services: Any, operation: Operation) -> None:
    """The worker's handler for DEPLOY_KIND: plan again (same inputs, same clock), apply, conclude."""
    deployment_id = operation.payload["deploymentId"]
    with services.db.session() as session:
        deployment = deployments.start_running(session, deployment_id)
        if deployment is None:
            return  # canceled, replaced or deleted before it started
        caller = deployments.caller_of(deployment)
        group = resource_groups.find(session, deployment.subscription_id, deployment.scope.rsplit("/", 1)[-1]) \
            if deployment.resource_group_id else None
        target = deployments.Target(deployment.subscription_id, caller.tenant_id, group)
        parameters = {**deployment.input_parameters, **deployments.secure_parameters(services.cipher, deployment)}
        context = context_for(services, session, target, deployment.name, deployment.mode, deployment.location,
                              deployment.created_at)
        permissions = policy.permissions_of(session, caller.object_id, caller.tenant_id)
    stop = threading.Event()
    keeper = threading.Thread(target=_lease_keeper, args=(services, operation, stop), daemon=True)
    keeper.start()
    try:
        run = Run(Env(services, caller), deployment_id, permissions, deployment.correlation_id)
        try:
            deployment_plan = plan(deployment.template, parameters, context)
        except TemplateError as exc:
            _conclude(run.env, deployment_id, None, run, [exc.to_error()])
        else:
            errors = apply_plan(run, deployment_plan)
            if not errors and deployment.mode == "Complete" and group is not None:
                errors = _complete_mode(run, deployment, deployment_plan)
            _conclude(run.env, deployment_id, deployment_plan, run, errors)
    finally:
        stop.set()
    with services.db.session() as session:
        ended = deployments.by_id(session, deployment_id)
        state, error = (ended.provisioning_state, ended.error) if ended else (deployments.CANCELED, None)
    if state != deployments.SUCCEEDED:
        code = (error or {}).get("code", "DeploymentCanceled")
        raise operations.OperationFailed(code, (error or {}).get("message", "The deployment was canceled."))


def mark_failed(services: Any, operation: Operation, _message: str) -> None:
    """The worker gave up after repeated crashes: the deployment ends Failed instead of Running forever (one that
    already ended, with its own error, keeps it)."""
    with services.db.session() as session:
        deployment = deployments.by_id(session, operation.payload["deploymentId"])
        if deployment is not None and deployment.provisioning_state in deployments.ACTIVE:
            deployments.finish(session, deployment.id, deployments.FAILED, error={
                "code": "InternalServerError", "message": "The deployment failed after repeated attempts."})


def register() -> None:
    operations.register_handler(deployments.DEPLOY_KIND, run_deployment, on_failure=mark_failed, max_attempts=3)


# --- what-if ------------------------------------------------------------------------------------------------------


def delta(before: Any, after: Any, path: str = "", *, complete: bool = True) -> list[dict[str, Any]]:
    """Property-level changes from `before` to `after`, in what-if's shape. Deferred values (known only when
    deployed) are not compared; with `complete=False` properties the template does not name are left alone."""
    if isinstance(after, Deferred):
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[dict[str, Any]] = []
        for key in list(before) + [k for k in after if k not in before]:
            child = f"{path}.{key}" if path else str(key)
            if key not in after:
                if complete:
                    changes.append({"path": child, "propertyChangeType": "Delete", "before": before[key]})
            elif key not in before:
                if after[key] is not None and not isinstance(after[key], Deferred):
                    changes.append({"path": child, "propertyChangeType": "Create", "after": after[key]})
            else:
                changes += delta(before[key], after[key], child, complete=complete)
        return changes
    if before == after or (isinstance(before, str) and isinstance(after, str) and before.lower() == after.lower()
                           and path.lower().endswith(("location", "type", "level"))):
        return []
    return [{"path": path, "propertyChangeType": "Modify", "before": before, "after": after}]


def _preview(resource: PlannedResource) -> dict[str, Any]:
    return {"id": resource.id, "name": resource.name.rsplit("/", 1)[-1], "type": resource.type,
            "apiVersion": resource.api_version, **resource.preview()}


def what_if(env: Env, session: Session, deployment_plan: Plan, target: deployments.Target, mode: str,
            result_format: str) -> dict[str, Any]:
    """The changes a deployment would make, by comparing each planned body with the resource as it is."""
    changes: list[dict[str, Any]] = []
    for resource in all_resources(deployment_plan):
        kind = resources.kind_of(resource.type)
        if resource.is_deployment or kind is None:
            continue
        rid = resources.parse(resource.id)
        current = kind.read(env, session, rid)
        change: dict[str, Any] = {"resourceId": resource.id}
        if resource.symbolic_name:
            change["symbolicName"] = resource.symbolic_name
        if current is None:
            change["changeType"] = "Create"
            if result_format != "ResourceIdOnly":
                change["after"] = _preview(resource)
        elif result_format == "ResourceIdOnly":
            change["changeType"] = "Deploy"
        else:
            try:
                desired, complete = kind.desired(env, resource.body), kind.complete
            except ArmError:  # deferred or invalid values: compare only what the template names
                desired, complete = resource.body, False
            found = delta(kind.current(current), desired, complete=complete)
            change.update(changeType="Modify" if found else "NoChange", before={**current,
                          "apiVersion": resource.api_version}, after=_preview(resource))
            if found:
                change["delta"] = found
        changes.append(change)
    if target.group is not None:
        declared = {r.id.lower() for r in all_resources(deployment_plan)}
        for resource_id in resources.resources_in_group(env, session, target.subscription_id, target.group.name):
            if resource_id.lower() not in declared:
                rid = resources.parse(resource_id)
                before = resources.kind_of(rid.type).read(env, session, rid)
                change = {"resourceId": resource_id, "changeType": "Delete" if mode == "Complete" else "Ignore"}
                if result_format != "ResourceIdOnly" and before is not None:
                    change["before"] = before
                changes.append(change)
    return {"status": "Succeeded", "properties": {"changes": changes}}
