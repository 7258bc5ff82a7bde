"""Microsoft.Resources/deployments at resource-group and subscription scope. Each handler validates, authorises,
calls one service (or applier) function, serialises.

PUT answers as ARM does: 201 (200 when replacing) with `Accepted` and an Azure-AsyncOperation URL; the worker
applies the template. whatIf answers 202 with a Location whose GET returns the result; DELETE answers 202 with a
Location that returns 204.
"""

from __future__ import annotations

from flask import Blueprint, g, request

from control_plane.arm import api_versions
from control_plane.arm.errors import BadRequest, InvalidRequestContent
from control_plane.arm.http import RETRY_AFTER_SECONDS, arm_json, async_operation_headers, base_url, empty, json_body
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.arm.validation import load, validate_location, validate_tags
from control_plane.authorization import actions, policy
from control_plane.authorization.enforce import current_caller, requires, subscription_for_caller
from control_plane.context import app_context
from control_plane.db import utcnow
from control_plane.deployments import applier
from control_plane.deployments import service as deployments
from control_plane.deployments.resources import Env
from control_plane.deployments.schemas import (
    DeploymentPut,
    operation_to_arm,
    timestamp,
    to_arm,
    validate_result,
)
from control_plane.deployments.template import Plan, TemplateError, jsonc, plan
from control_plane.operations import service as operations
from control_plane.operations.models import IN_PROGRESS
from control_plane.resource_groups import service as resource_groups

bp = Blueprint("deployments", __name__)

# What az 2.91 sends (azure-mgmt-resource-deployments 1.0.0b1: 2025-04-01), the latest package's default
# (2.0.0: 2026-06-01), and the versions older SDKs and Ansible pin.
API_VERSIONS = ("2026-06-01", "2025-04-01", "2025-03-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-07-01",
                "2022-09-01", "2021-04-01", "2021-01-01", "2020-10-01", "2020-08-01", "2020-06-01", "2019-10-01",
                "2019-08-01", "2019-07-01", "2019-05-10", "2019-05-01", "2018-05-01", "2018-02-01", "2017-05-10",
                "2016-09-01", "2016-02-01")
versions = api_versions.require_api_version(API_VERSIONS)

GROUP = "/subscriptions/<subscription_id>/resourceGroups/<group_name>"
SUBSCRIPTION = "/subscriptions/<subscription_id>"
PROVIDER = "/providers/Microsoft.Resources/deployments"
IN_GROUP = GROUP + PROVIDER + "/<deployment_name>"
IN_SUBSCRIPTION = SUBSCRIPTION + PROVIDER + "/<deployment_name>"


def _scope_of(kwargs: dict) -> str:
    """The deployment's own id (or its scope, for a list): what every deployments action is checked on."""
    base = (policy.group_scope(kwargs["subscription_id"], kwargs["group_name"]) if kwargs.get("group_name")
            else policy.subscription_scope(kwargs["subscription_id"]))
    name = kwargs.get("deployment_name")
    return f"{base}{PROVIDER}/{name}" if name else base


def _by_operation_id(kwargs: dict) -> None:
    """Status URLs are authorised by their operation id, as control_plane/operations/routes.py explains."""
    return None


def _target(session, subscription_id: str, group_name: str | None, writable: bool = False) -> deployments.Target:
    subscription = subscription_for_caller(session, subscription_id)
    group = None
    if group_name is not None:
        find = resource_groups.get_writable if writable else resource_groups.get
        group = find(session, subscription.id, group_name)
    return deployments.Target(subscription.id, subscription.tenant_id, group)


def _body() -> dict:
    """The request body; az sends the template as raw JSONC under an unquoted key (docs/iac-deployments.md §2.2),
    which the template engine's lenient reader parses, pointing at the line and position of a malformed one."""
    try:
        raw = json_body()
    except InvalidRequestContent:
        text = request.get_data(cache=True).decode("utf-8-sig", errors="replace")
        if not text.strip():
            raise
        try:
            raw = jsonc.loads(text)
        except TemplateError as exc:
            raise applier.template_error(exc) from None
        if not isinstance(raw, dict):
            raise
    return load(DeploymentPut(), raw)


def _planned(session, target: deployments.Target, name: str, body: dict, now) -> tuple[Plan, str | None, dict]:
    """The template planned for this scope: (plan, location, tags), or ARM's 400 naming what is wrong."""
    deployments.validate_name(name)
    properties = body["properties"]
    if properties["templateLink"] or properties["parametersLink"]:
        raise BadRequest("Linked templates and parameter files (templateLink, parametersLink) are not supported by "
                         "this service; send the template and parameters inline.", code="InvalidContentLink")
    if properties["template"] is None:
        raise InvalidRequestContent("The request content was invalid and could not be deserialized: "
                                    "'properties.template' is required.", target="properties.template")
    location = None
    if target.group is None or body["location"] is not None:
        location = validate_location(body["location"], app_context().settings.locations, "deployments",
                                     "LocationNotAvailableForDeployment")
    tags = validate_tags(body["tags"])
    context = applier.context_for(app_context(), session, target, name, properties["mode"], location, now)
    try:
        return plan(properties["template"], properties["parameters"] or {}, context), location, tags
    except TemplateError as exc:
        raise applier.template_error(exc) from None


def _request(deployment_plan: Plan, body: dict, location: str | None, tags: dict, now) -> deployments.DeploymentRequest:
    properties = body["properties"]
    plain, secure = applier.split_parameters(deployment_plan, properties["parameters"] or {})
    return deployments.DeploymentRequest(
        mode=properties["mode"], location=location, tags=tags, template=deployment_plan.template,
        input_parameters=plain, secure_parameters=secure, parameters_echo=deployment_plan.parameters,
        providers=deployment_plan.providers(), dependencies=deployment_plan.dependencies(),
        debug_setting=properties["debugSetting"], correlation_id=_correlation_id(), now=now)


def _correlation_id() -> str:
    return g.correlation_id


def _status_url(arm_id: str, kind: str, operation_id: str) -> str:
    return f"{base_url()}{arm_id}/{kind}/{operation_id}?api-version={request.args['api-version']}"


@bp.route(IN_GROUP, methods=["PUT"])
@bp.route(IN_SUBSCRIPTION, methods=["PUT"])
@versions
@requires(actions.DEPLOYMENT_WRITE, scope=_scope_of)
def put_deployment(subscription_id: str, deployment_name: str, group_name: str | None = None):
    deployments.validate_name(deployment_name)
    body = _body()
    ctx = app_context()
    caller = current_caller()
    now = utcnow()
    with ctx.db.session() as session:
        target = _target(session, subscription_id, group_name, writable=True)
        deployment_plan, location, tags = _planned(session, target, deployment_name, body, now)
        applier.preflight(ctx, session, deployment_plan, caller, deployment_name)
        deployment, operation, created = deployments.begin(
            session, ctx.cipher, target, deployment_name, _request(deployment_plan, body, location, tags, now), caller)
        response = to_arm(deployment, now)
    ctx.worker.wake()
    return arm_json(response, 201 if created else 200,
                    async_operation_headers(_status_url(deployment.arm_id, "operationStatuses", operation.id)))


@bp.route(IN_GROUP, methods=["GET"])
@bp.route(IN_SUBSCRIPTION, methods=["GET"])
@versions
@requires(actions.DEPLOYMENT_READ, scope=_scope_of)
def get_deployment(subscription_id: str, deployment_name: str, group_name: str | None = None):
    ctx = app_context()
    with ctx.db.reading() as session:
        target = _target(session, subscription_id, group_name)
        if request.method == "HEAD":
            return empty(204 if deployments.find(session, target.scope, deployment_name) else 404)
        return arm_json(to_arm(deployments.get(session, target.scope, deployment_name), utcnow()))


@bp.route(GROUP + PROVIDER + "/", methods=["GET"], strict_slashes=False)
@bp.route(SUBSCRIPTION + PROVIDER + "/", methods=["GET"], strict_slashes=False)
@versions
@requires(actions.DEPLOYMENT_READ, scope=_scope_of)
def list_deployments(subscription_id: str, group_name: str | None = None):
    """`$filter=provisioningState eq '<state>'` and `$top`, as the SDK's list_by_resource_group sends them."""
    state = deployments.state_filter(request.args.get("$filter"))
    ctx = app_context()
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.reading() as session:
        target = _target(session, subscription_id, group_name)
        found, last = deployments.list_page(session, target.scope, state, page)
        now = utcnow()
        return arm_json(page_body([to_arm(d, now) for d in found],
                                  next_link(base_url(), request.path, request.args, last)))


@bp.route(IN_GROUP, methods=["DELETE"])
@bp.route(IN_SUBSCRIPTION, methods=["DELETE"])
@versions
@requires(actions.DEPLOYMENT_DELETE, scope=_scope_of)
def delete_deployment(subscription_id: str, deployment_name: str, group_name: str | None = None):
    ctx = app_context()
    with ctx.db.session() as session:
        target = _target(session, subscription_id, group_name)
        deployment = deployments.find(session, target.scope, deployment_name)
        if deployment is None:
            return empty(204)
        arm_id = deployment.arm_id
        operation = deployments.delete(session, deployment)
    return empty(202, {"Location": _status_url(arm_id, "operationResults", operation.id),
                       "Retry-After": RETRY_AFTER_SECONDS})


@bp.route(IN_GROUP + "/cancel", methods=["POST"])
@bp.route(IN_SUBSCRIPTION + "/cancel", methods=["POST"])
@versions
@requires(actions.DEPLOYMENT_CANCEL, scope=_scope_of)
def cancel_deployment(subscription_id: str, deployment_name: str, group_name: str | None = None):
    ctx = app_context()
    with ctx.db.session() as session:
        target = _target(session, subscription_id, group_name)
        deployments.cancel(session, deployments.get(session, target.scope, deployment_name))
    return empty(204)


@bp.route(IN_GROUP + "/validate", methods=["POST"])
@bp.route(IN_SUBSCRIPTION + "/validate", methods=["POST"])
@versions
@requires(actions.DEPLOYMENT_VALIDATE, scope=_scope_of)
def validate_deployment(subscription_id: str, deployment_name: str, group_name: str | None = None):
    """200 with what the deployment would hold, or the error (400 InvalidTemplate/InvalidTemplateDeployment, 403)."""
    deployments.validate_name(deployment_name)
    body = _body()
    ctx = app_context()
    with ctx.db.session() as session:
        target = _target(session, subscription_id, group_name)
        deployment_plan, location, _ = _planned(session, target, deployment_name, body, utcnow())
        applier.preflight(ctx, session, deployment_plan, current_caller(), deployment_name)
    return arm_json(validate_result(
        f"{target.scope}{PROVIDER}/{deployment_name}", deployment_name, location, deployment_plan.parameters,
        body["properties"]["mode"], deployments.template_hash(deployment_plan.template), _correlation_id(),
        deployment_plan.providers(), deployment_plan.dependencies(),
        [{"id": r.id} for r in applier.all_resources(deployment_plan)]))


@bp.route(IN_GROUP + "/whatIf", methods=["POST"])
@bp.route(IN_SUBSCRIPTION + "/whatIf", methods=["POST"])
@versions
@requires(actions.DEPLOYMENT_WHAT_IF, scope=_scope_of)
def what_if(subscription_id: str, deployment_name: str, group_name: str | None = None):
    """202 + Location; the result says `Failed` with the error for a bad template (az reads it from a 200)."""
    deployments.validate_name(deployment_name)
    body = _body()
    ctx = app_context()
    settings = body["properties"]["whatIfSettings"] or {}
    with ctx.db.session() as session:
        target = _target(session, subscription_id, group_name)
        try:
            deployment_plan, _, _ = _planned(session, target, deployment_name, body, utcnow())
            applier.preflight(ctx, session, deployment_plan, current_caller(), deployment_name)
            result = applier.what_if(Env(ctx, current_caller()), session, deployment_plan, target,
                                     body["properties"]["mode"], settings.get("resultFormat", "FullResourcePayloads"))
        except deployments.DeploymentError as exc:
            result = {"status": "Failed", **exc.envelope()}
        arm_id = f"{target.scope}{PROVIDER}/{deployment_name}"
        operation = deployments.finished_operation(session, target.subscription_id, arm_id, result)
    return empty(202, {"Location": _status_url(arm_id, "operationResults", operation.id),
                       "Retry-After": RETRY_AFTER_SECONDS})


@bp.route(IN_GROUP + "/exportTemplate", methods=["POST"])
@bp.route(IN_SUBSCRIPTION + "/exportTemplate", methods=["POST"])
@versions
@requires(actions.DEPLOYMENT_EXPORT, scope=_scope_of)
def export_template(subscription_id: str, deployment_name: str, group_name: str | None = None):
    ctx = app_context()
    with ctx.db.reading() as session:
        target = _target(session, subscription_id, group_name)
        return arm_json({"template": deployments.get(session, target.scope, deployment_name).template})


@bp.route(GROUP + "/deployments/<deployment_name>/operations", methods=["GET"])
@bp.route(IN_GROUP + "/operations", methods=["GET"])
@bp.route(IN_SUBSCRIPTION + "/operations", methods=["GET"])
@versions
@requires(actions.DEPLOYMENT_OPERATIONS_READ, scope=_scope_of)
def list_deployment_operations(subscription_id: str, deployment_name: str, group_name: str | None = None):
    ctx = app_context()
    with ctx.db.reading() as session:
        target = _target(session, subscription_id, group_name)
        deployment = deployments.get(session, target.scope, deployment_name)
        found = deployments.operations_of(session, deployment)
        return arm_json({"value": [operation_to_arm(deployment, o) for o in found]})


@bp.route(GROUP + "/deployments/<deployment_name>/operations/<operation_id>", methods=["GET"])
@bp.route(IN_GROUP + "/operations/<operation_id>", methods=["GET"])
@bp.route(IN_SUBSCRIPTION + "/operations/<operation_id>", methods=["GET"])
@versions
@requires(actions.DEPLOYMENT_OPERATIONS_READ, scope=_scope_of)
def get_deployment_operation(subscription_id: str, deployment_name: str, operation_id: str,
                             group_name: str | None = None):
    ctx = app_context()
    with ctx.db.reading() as session:
        target = _target(session, subscription_id, group_name)
        deployment = deployments.get(session, target.scope, deployment_name)
        return arm_json(operation_to_arm(deployment, deployments.operation_of(session, deployment, operation_id)))


@bp.route(IN_GROUP + "/operationStatuses/<operation_id>", methods=["GET"])
@bp.route(IN_SUBSCRIPTION + "/operationStatuses/<operation_id>", methods=["GET"])
@versions
@requires(actions.DEPLOYMENT_OPERATION_STATUS, scope=_by_operation_id)
def operation_status(subscription_id: str, deployment_name: str, operation_id: str, group_name: str | None = None):
    """The Azure-AsyncOperation document of a PUT: the deployment's state, and its error with every failed
    resource's error in `details` (what az prints)."""
    ctx = app_context()
    with ctx.db.reading() as session:
        subscription = subscription_for_caller(session, subscription_id)
        operation = operations.get(session, subscription.id, operation_id)
        deployment = deployments.by_id(session, (operation.payload or {}).get("deploymentId", ""))
        if deployment is not None and deployment.operation_id == operation.id:
            state, error, ended = deployment.provisioning_state, deployment.error, deployment.ended_at
        else:
            state, ended = operation.status, operation.ended_at
            error = {"code": operation.error_code, "message": operation.error_message} if operation.error_code else None
    status = "Running" if state in (*deployments.ACTIVE, IN_PROGRESS) else state
    document = {"id": request.path, "name": operation.id, "status": status,
                "startTime": timestamp(operation.created_at)}
    if status != "Running":
        document["endTime"] = timestamp(ended)
    if error and status in (deployments.FAILED, deployments.CANCELED):
        document["error"] = error
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == "Running" else None
    return arm_json(document, headers=headers)


@bp.route(IN_GROUP + "/operationResults/<operation_id>", methods=["GET"])
@bp.route(IN_SUBSCRIPTION + "/operationResults/<operation_id>", methods=["GET"])
@versions
@requires(actions.DEPLOYMENT_OPERATION_STATUS, scope=_by_operation_id)
def operation_result(subscription_id: str, deployment_name: str, operation_id: str, group_name: str | None = None):
    """The Location of whatIf (200 with its result) and DELETE (204)."""
    ctx = app_context()
    with ctx.db.reading() as session:
        subscription = subscription_for_caller(session, subscription_id)
        operation = operations.get(session, subscription.id, operation_id)
        if operation.status == IN_PROGRESS:
            return empty(202, {"Location": f"{base_url()}{request.full_path.rstrip('?')}",
                               "Retry-After": RETRY_AFTER_SECONDS})
        result = (operation.payload or {}).get("result")
    return arm_json(result) if result is not None else empty(204)
