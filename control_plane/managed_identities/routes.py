"""Microsoft.ManagedIdentity routes. Each handler validates, authorises, calls one service function, serialises."""

from __future__ import annotations

from flask import Blueprint, request

from control_plane.arm import api_versions
from control_plane.arm.http import arm_json, base_url, empty, json_body
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.arm.validation import load, validate_location, validate_tags
from control_plane.authorization import actions, policy
from control_plane.authorization.enforce import current_caller, requires, subscription_for_caller, visible_below
from control_plane.context import app_context
from control_plane.managed_identities import service
from control_plane.managed_identities.models import RESOURCE_TYPE
from control_plane.managed_identities.schemas import IdentityPatch, IdentityPut, to_arm
from control_plane.resource_groups import service as resource_groups

bp = Blueprint("managed_identities", __name__)

NAMESPACE = "Microsoft.ManagedIdentity"
PROVIDER = f"/providers/{NAMESPACE}"
GROUP = "/subscriptions/<subscription_id>/resourceGroups/<group_name>"
IDENTITY = GROUP + PROVIDER + "/userAssignedIdentities/<identity_name>"
versions = api_versions.require_api_version(api_versions.MANAGED_IDENTITY)


def _scope(kwargs: dict) -> str:
    """The identity's own id: what its read, write and delete are authorised (and locked) on."""
    return (f"{policy.group_scope(kwargs['subscription_id'], kwargs['group_name'])}"
            f"/providers/{RESOURCE_TYPE}/{kwargs['identity_name']}")


def _location_of(value) -> str:
    return validate_location(value, app_context().settings.locations, f"resource type '{RESOURCE_TYPE}'",
                             "LocationNotAvailableForResourceType")


@bp.route(PROVIDER + "/operations", methods=["GET"])
@versions
@requires(actions.MI_OPERATIONS_READ)
def list_operations():
    return arm_json({"value": [
        {"name": a.name, "isDataAction": a.is_data_action, "origin": a.origin,
         "display": {"provider": a.provider, "resource": a.resource, "operation": a.operation,
                     "description": a.description}}
        for a in actions.provider_operations(NAMESPACE)
    ]})


def _provider(subscription_id: str) -> dict:
    return {
        "id": f"/subscriptions/{subscription_id}{PROVIDER}", "namespace": NAMESPACE,
        "registrationState": "Registered", "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [{"resourceType": "userAssignedIdentities",
                           "locations": list(app_context().settings.locations),
                           "apiVersions": list(api_versions.MANAGED_IDENTITY),
                           "capabilities": "CrossResourceGroupResourceMove, CrossSubscriptionResourceMove"}],
    }


@bp.route("/subscriptions/<subscription_id>" + PROVIDER, methods=["GET"])
@api_versions.require_api_version(api_versions.RESOURCES)
@requires(actions.PROVIDER_READ)
def get_provider(subscription_id: str):
    """Every subscription is registered for the provider; tools that probe registration still get an answer."""
    with app_context().db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
    return arm_json(_provider(subscription.id))


@bp.route("/subscriptions/<subscription_id>" + PROVIDER + "/register", methods=["POST"])
@api_versions.require_api_version(api_versions.RESOURCES)
@requires(actions.MI_REGISTER)
def register_provider(subscription_id: str):
    with app_context().db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
    return arm_json(_provider(subscription.id))


@bp.route(IDENTITY, methods=["PUT"])
@versions
@requires(actions.IDENTITY_WRITE, scope=_scope)
def put_identity(subscription_id: str, group_name: str, identity_name: str):
    service.validate_name(identity_name)
    body = load(IdentityPut(), json_body())
    location, tags = _location_of(body["location"]), validate_tags(body["tags"])
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get_writable(session, subscription.id, group_name)
        identity, created = service.create_or_update(session, group, identity_name, location, tags,
                                                     current_caller(), subscription.tenant_id)
        return arm_json(to_arm(identity), 201 if created else 200)


@bp.route(IDENTITY, methods=["PATCH"])
@versions
@requires(actions.IDENTITY_WRITE, scope=_scope)
def patch_identity(subscription_id: str, group_name: str, identity_name: str):
    body = load(IdentityPatch(), json_body())
    tags = validate_tags(body["tags"]) if "tags" in body else None
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get_writable(session, subscription.id, group_name)
        identity = service.get(session, group, identity_name)
        return arm_json(to_arm(service.update(session, identity, tags, body.get("location"), current_caller())))


@bp.route(IDENTITY, methods=["GET"])
@versions
@requires(actions.IDENTITY_READ, scope=_scope)
def get_identity(subscription_id: str, group_name: str, identity_name: str):
    ctx = app_context()
    with ctx.db.reading() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get(session, subscription.id, group_name)
        return arm_json(to_arm(service.get(session, group, identity_name)))


@bp.route(IDENTITY, methods=["DELETE"])
@versions
@requires(actions.IDENTITY_DELETE, scope=_scope)
def delete_identity(subscription_id: str, group_name: str, identity_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get(session, subscription.id, group_name)
        identity = service.find(session, group, identity_name)
        if identity is None:
            return empty(204)
        service.delete(session, identity)
    return empty(200)


def _list(subscription_id: str, group_name: str | None):
    ctx = app_context()
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.reading() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = resource_groups.get(session, subscription.id, group_name) if group_name else None
        scope = policy.group_scope(subscription.id, group.name) if group else policy.subscription_scope(subscription.id)
        visible = visible_below(actions.IDENTITY_READ, scope)
        found, last = service.list_page(session, page, subscription.id, group,
                                        None if visible is None else [v.lower() for v in visible])
        return arm_json(page_body([to_arm(i) for i in found], next_link(base_url(), request.path, request.args, last)))


@bp.route("/subscriptions/<subscription_id>" + PROVIDER + "/userAssignedIdentities", methods=["GET"])
@versions
@requires(actions.IDENTITY_READ, filtered=True)
def list_identities(subscription_id: str):
    return _list(subscription_id, None)


@bp.route(GROUP + PROVIDER + "/userAssignedIdentities", methods=["GET"])
@versions
@requires(actions.IDENTITY_READ, filtered=True)
def list_identities_by_group(subscription_id: str, group_name: str):
    return _list(subscription_id, group_name)
