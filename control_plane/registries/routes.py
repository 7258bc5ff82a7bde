"""Microsoft.ContainerRegistry routes. Each handler validates, authorises, calls one service function, serialises."""

from __future__ import annotations

from flask import Blueprint, g, request

from control_plane.arm import api_versions
from control_plane.arm.conditional import check_preconditions
from control_plane.arm.http import arm_json, async_operation_headers, base_url, empty, json_body
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.arm.validation import load, validate_location, validate_tags
from control_plane.authorization import actions, policy
from control_plane.authorization.enforce import current_caller, requires, subscription_for_caller, visible_below
from control_plane.content.service import ContentService
from control_plane.context import app_context
from control_plane.managed_identities import service as managed_identities
from control_plane.registries import service
from control_plane.registries.names import validate_name
from control_plane.registries.schemas import NameCheck, RegenerateCredential, RegistryPatch, RegistryPut
from control_plane.registries.serialize import etag, to_arm
from control_plane.resource_groups import service as resource_groups

bp = Blueprint("registries", __name__)

PROVIDER = "/providers/Microsoft.ContainerRegistry"
GROUP = "/subscriptions/<subscription_id>/resourceGroups/<group_name>"
REGISTRY = GROUP + PROVIDER + "/registries/<registry_name>"
versions = api_versions.require_api_version(api_versions.CONTAINER_REGISTRY)


def _finished_inline(registry_id: str, operation_id: str):
    """Runs the request's operation now (up to CONTROL_PLANE_INLINE_OPERATION_MS); the registry as it then is when
    the operation Succeeded, so the request answers with it and no status URL (clients then make no poll), else
    None: the operation goes on and the request answers asynchronously."""
    ctx = app_context()
    if not ctx.worker.run_inline(operation_id, ctx.settings.inline_operation_ms / 1000):
        ctx.worker.wake()
        return None
    with ctx.db.session() as session:
        registry = service.by_id(session, registry_id)
    return registry if registry is not None and registry.provisioning_state == service.SUCCEEDED else None


def _status_urls(registry_arm_id: str, operation_id: str) -> tuple[str, str]:
    """The Azure-AsyncOperation URL and the Location URL of an operation on a registry."""
    query = f"?api-version={request.args['api-version']}"
    prefix = f"{base_url()}{registry_arm_id}"
    return (f"{prefix}/operationStatuses/{operation_id}{query}", f"{prefix}/operationResults/{operation_id}{query}")


@bp.route(PROVIDER + "/operations", methods=["GET"])
@versions
@requires(actions.OPERATIONS_READ)
def list_operations():
    return arm_json({"value": [
        {"name": a.name, "isDataAction": a.is_data_action, "origin": a.origin,
         "display": {"provider": a.provider, "resource": a.resource, "operation": a.operation,
                     "description": a.description}}
        for a in actions.provider_operations(actions.ACR)
    ]})


def _provider(subscription_id: str) -> dict:
    ctx = app_context()
    return {
        "id": f"/subscriptions/{subscription_id}{PROVIDER}",
        "namespace": "Microsoft.ContainerRegistry",
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [{"resourceType": "registries", "locations": list(ctx.settings.locations),
                           "apiVersions": list(api_versions.CONTAINER_REGISTRY),
                           "capabilities": "CrossResourceGroupResourceMove, CrossSubscriptionResourceMove"}],
    }


@bp.route("/subscriptions/<subscription_id>" + PROVIDER, methods=["GET"])
@api_versions.require_api_version(api_versions.RESOURCES)
@requires(actions.PROVIDER_READ)
def get_provider(subscription_id: str):
    """Every subscription is registered for the provider; tools that probe registration still get an answer."""
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
    return arm_json(_provider(subscription.id))


@bp.route("/subscriptions/<subscription_id>" + PROVIDER + "/register", methods=["POST"])
@api_versions.require_api_version(api_versions.RESOURCES)
@requires(actions.REGISTER)
def register_provider(subscription_id: str):
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
    return arm_json(_provider(subscription.id))


@bp.route("/subscriptions/<subscription_id>" + PROVIDER + "/checkNameAvailability", methods=["POST"])
@versions
@requires(actions.CHECK_NAME)
def check_name_availability(subscription_id: str):
    body = load(NameCheck(), json_body())
    ctx = app_context()
    with ctx.db.session() as session:
        subscription_for_caller(session, subscription_id)
        return arm_json(service.check_name_availability(session, body["name"], body["type"]))


def _check_identities_assignable(identity: dict | None, registry_scope: str) -> None:
    """403 LinkedAuthorizationFailed unless the caller may assign every user-assigned identity the body names."""
    denied = [i for i in managed_identities.assigned_identities(identity)
              if not g.permissions.allows(actions.IDENTITY_ASSIGN.name, i)]
    if denied:
        caller = current_caller()
        raise managed_identities.linked_authorization_failed(caller.client_name, caller.object_id,
                                                             actions.REGISTRY_WRITE.name, registry_scope, denied)


@bp.route(REGISTRY, methods=["PUT"])
@versions
@requires(actions.REGISTRY_WRITE)
def put_registry(subscription_id: str, group_name: str, registry_name: str):
    validate_name(registry_name)
    body = load(RegistryPut(), json_body())
    _check_identities_assignable(body.get("identity"),
                                 policy.registry_scope(subscription_id, group_name, registry_name))
    ctx = app_context()
    location = validate_location(body["location"], ctx.settings.locations, "resource type "
                                 "'Microsoft.ContainerRegistry/registries'", "LocationNotAvailableForResourceType")
    tags = validate_tags(body["tags"])
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get_writable(session, subscription.id, group_name)
        existing = service.find(session, group, registry_name)
        check_preconditions(etag(existing) if existing else None)
        change = service.create_or_replace(
            session, ctx.cipher, group, registry_name, location, body["sku"]["name"], tags,
            body["properties"] or {}, body.get("identity"), current_caller(), subscription.tenant_id,
            ctx.settings.login_server_suffix)
        response_body = to_arm(change.registry, ctx.settings.login_server_suffix)
    status = 201 if change.created else 200
    finished = _finished_inline(change.registry.id, change.operation.id)
    if finished is not None:
        response_body = to_arm(finished, ctx.settings.login_server_suffix)
        return arm_json(response_body, status, {"ETag": response_body["etag"]})
    status_url, _ = _status_urls(change.registry.arm_id, change.operation.id)
    return arm_json(response_body, status, {**async_operation_headers(status_url), "ETag": response_body["etag"]})


@bp.route(REGISTRY, methods=["PATCH"])
@versions
@requires(actions.REGISTRY_WRITE)
def patch_registry(subscription_id: str, group_name: str, registry_name: str):
    raw = json_body()
    body = load(RegistryPatch(), raw)
    _check_identities_assignable(body.get("identity"),
                                 policy.registry_scope(subscription_id, group_name, registry_name))
    if "tags" in body:
        body["tags"] = validate_tags(body["tags"])
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get_writable(session, subscription.id, group_name)
        registry = service.get(session, group, registry_name)
        check_preconditions(etag(registry))
        change = service.update(session, registry, body, raw.get("location"), current_caller(),
                                subscription.tenant_id)
        response_body = to_arm(change.registry, ctx.settings.login_server_suffix)
    finished = _finished_inline(change.registry.id, change.operation.id)
    if finished is not None:
        response_body = to_arm(finished, ctx.settings.login_server_suffix)
        return arm_json(response_body, 200, {"ETag": response_body["etag"]})
    status_url, _ = _status_urls(change.registry.arm_id, change.operation.id)
    return arm_json(response_body, 201, {**async_operation_headers(status_url), "ETag": response_body["etag"]})


@bp.route(REGISTRY, methods=["GET"])
@versions
@requires(actions.REGISTRY_READ)
def get_registry(subscription_id: str, group_name: str, registry_name: str):
    ctx = app_context()
    with ctx.db.reading() as session:
        subscription = subscription_for_caller(session, subscription_id)
        registry = service.view_in_group(session, subscription.id, group_name, registry_name)
        body = to_arm(registry, ctx.settings.login_server_suffix)
        return arm_json(body, headers={"ETag": body["etag"]})


@bp.route(REGISTRY, methods=["DELETE"])
@versions
@requires(actions.REGISTRY_DELETE)
def delete_registry(subscription_id: str, group_name: str, registry_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get(session, subscription.id, group_name)
        registry = service.find(session, group, registry_name)
        if registry is None:
            return empty(204)
        check_preconditions(etag(registry))
        operation = service.begin_delete(session, registry)
    if ctx.worker.run_inline(operation.id, ctx.settings.inline_operation_ms / 1000):
        return empty(200)  # deleted within the request: ARM's synchronous delete answer
    ctx.worker.wake()
    status_url, location_url = _status_urls(registry.arm_id, operation.id)
    return empty(202, async_operation_headers(status_url, location_url))


def _list(subscription_id: str, group_name: str | None):
    ctx = app_context()
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.reading() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get(session, subscription.id, group_name) if group_name else None
        scope = policy.group_scope(subscription.id, group.name) if group else policy.subscription_scope(subscription.id)
        visible = visible_below(actions.REGISTRY_READ, scope)
        registries, last = service.list_page(session, page, subscription.id, group, visible)
        items = [to_arm(r, ctx.settings.login_server_suffix) for r in registries]
        return arm_json(page_body(items, next_link(base_url(), request.path, request.args, last)))


@bp.route("/subscriptions/<subscription_id>" + PROVIDER + "/registries", methods=["GET"])
@versions
@requires(actions.REGISTRY_READ, filtered=True)
def list_registries(subscription_id: str):
    return _list(subscription_id, None)


@bp.route(GROUP + PROVIDER + "/registries", methods=["GET"])
@versions
@requires(actions.REGISTRY_READ, filtered=True)
def list_registries_by_group(subscription_id: str, group_name: str):
    return _list(subscription_id, group_name)


def _registry(session, subscription_id: str, group_name: str, registry_name: str):
    subscription = subscription_for_caller(session, subscription_id)
    return service.get_in_group(session, subscription.id, group_name, registry_name)


@bp.route(REGISTRY + "/listCredentials", methods=["POST"])
@versions
@requires(actions.LIST_CREDENTIALS)
def list_credentials(subscription_id: str, group_name: str, registry_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        registry = _registry(session, subscription_id, group_name, registry_name)
        return arm_json(service.credentials(ctx.cipher, registry))


@bp.route(REGISTRY + "/regenerateCredential", methods=["POST"])
@versions
@requires(actions.REGENERATE_CREDENTIAL)
def regenerate_credential(subscription_id: str, group_name: str, registry_name: str):
    body = load(RegenerateCredential(), json_body())
    ctx = app_context()
    with ctx.db.session() as session:
        registry = _registry(session, subscription_id, group_name, registry_name)
        return arm_json(service.regenerate_credential(session, ctx.cipher, registry, body["name"]))


@bp.route(REGISTRY + "/listUsages", methods=["GET"])
@versions
@requires(actions.LIST_USAGES)
def list_usages(subscription_id: str, group_name: str, registry_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        registry = _registry(session, subscription_id, group_name, registry_name)
    # Bytes stored, deduplicated: the registry's distinct verified blobs (layers, configs, manifests).
    size = ContentService(ctx.db, ctx.storage, ctx.settings).storage_used(registry.id)
    return arm_json(service.usages(registry, size))
