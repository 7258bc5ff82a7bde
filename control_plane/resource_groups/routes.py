"""Microsoft.Resources routes: resource groups and the generic resource lists (subscription, group)."""

from __future__ import annotations

import re

from flask import Blueprint, request

from control_plane.arm import api_versions
from control_plane.arm.errors import BadRequest, Conflict
from control_plane.arm.http import arm_json, base_url, empty, json_body
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.arm.validation import load, validate_location, validate_tags
from control_plane.authorization import actions, policy
from control_plane.authorization.enforce import may_read, requires, subscription_for_caller, visible_below
from control_plane.context import app_context
from control_plane.resource_groups import service
from control_plane.resource_groups.schemas import ResourceGroupPatch, ResourceGroupPut, to_arm

bp = Blueprint("resource_groups", __name__)

GROUP = "/subscriptions/<subscription_id>/resourceGroups/<group_name>"
versions = api_versions.require_api_version(api_versions.RESOURCES)


@bp.route(GROUP, methods=["PUT"])
@versions
@requires(actions.GROUP_WRITE)
def put_group(subscription_id: str, group_name: str):
    body = load(ResourceGroupPut(), json_body())
    ctx = app_context()
    service.validate_name(group_name)
    location = validate_location(body["location"], ctx.settings.locations, "resource group",
                                 "LocationNotAvailableForResourceGroup")
    tags = validate_tags(body["tags"])
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group, created = service.create_or_update(session, subscription.id, group_name, location, tags,
                                                  body["managed_by"])
        return arm_json(to_arm(group), 201 if created else 200)


@bp.route(GROUP, methods=["GET"])
@versions
@requires(actions.GROUP_READ)
def get_group(subscription_id: str, group_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        if request.method == "HEAD":
            return empty(204 if service.find(session, subscription.id, group_name) else 404)
        return arm_json(to_arm(service.get(session, subscription.id, group_name)))


@bp.route(GROUP, methods=["PATCH"])
@versions
@requires(actions.GROUP_WRITE)
def patch_group(subscription_id: str, group_name: str):
    body = load(ResourceGroupPatch(), json_body())
    tags = validate_tags(body["tags"]) if body["tags"] is not None else None
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = service.get_writable(session, subscription.id, group_name)
        return arm_json(to_arm(service.update(session, group, tags, body["managed_by"])))


@bp.route(GROUP, methods=["DELETE"])
@versions
@requires(actions.GROUP_DELETE)
def delete_group(subscription_id: str, group_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = service.get(session, subscription.id, group_name)
        if group.provisioning_state == "Deleting":
            raise Conflict(f"The resource group '{group.name}' is already being deleted.",
                           code="ResourceGroupBeingDeleted")
        operation_id = service.begin_delete(session, group).id
    ctx.worker.wake()
    location = (f"{base_url()}/subscriptions/{subscription.id}/operationResults/{operation_id}"
                f"?api-version={request.args['api-version']}")
    return empty(202, {"Location": location, "Retry-After": "1"})


@bp.route("/subscriptions/<subscription_id>/resourceGroups", methods=["GET"])
@versions
@requires(actions.GROUP_READ, filtered=True)
def list_groups(subscription_id: str):
    tag = _tag_filter(request.args.get("$filter"))
    ctx = app_context()
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        visible = visible_below(actions.GROUP_READ, policy.subscription_scope(subscription.id))
        names = None if visible is None else {k.split("/")[4] for k in visible if k.count("/") == 4}
        groups, last = service.list_page(session, subscription.id, page, names)
        if tag is not None:
            groups = [g for g in groups if tag[0] in (g.tags or {}) and tag[1] in (None, g.tags[tag[0]])]
        link = next_link(base_url(), request.path, request.args, last)
        return arm_json(page_body([to_arm(g) for g in groups], link))


TAG_FILTER = re.compile(r"^\s*tagName\s+eq\s+'([^']{1,512})'(?:\s+and\s+tagValue\s+eq\s+'([^']{0,256})')?\s*$",
                        re.IGNORECASE)


def _tag_filter(raw: str | None) -> tuple[str, str | None] | None:
    """The one filter ARM's group list takes: `tagName eq 'x' [and tagValue eq 'y']`."""
    if not raw:
        return None
    match = TAG_FILTER.match(raw)
    if not match:
        raise BadRequest(f"The $filter '{raw[:200]}' is not supported. Supported: tagName eq '<name>' [and tagValue "
                         "eq '<value>'].", code="InvalidFilterInQueryString", target="$filter")
    return match.group(1), match.group(2)


FILTER_CLAUSE = re.compile(r"^\s*(resourceType|resourceGroup|name)\s+eq\s+'([^']{1,256})'\s*$", re.IGNORECASE)
AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _resources_filter(raw_filter: str | None) -> dict[str, str]:
    """The clauses of a generic resource list's `$filter` this service answers: `resourceType`, `resourceGroup` and
    `name eq '…'` joined by `and` (what `az resource list -g/--resource-type/-n` builds)."""
    if not raw_filter:
        return {}
    clauses: dict[str, str] = {}
    for clause in AND.split(raw_filter.strip()):
        match = FILTER_CLAUSE.match(clause)
        if not match or match.group(1).lower() in clauses:
            raise BadRequest(f"The $filter '{raw_filter[:200]}' is not supported. Supported: resourceType, "
                             "resourceGroup and name eq '<value>', joined by and.",
                             code="InvalidFilterInQueryString", target="$filter")
        clauses[match.group(1).lower()] = match.group(2)
    return clauses


def _matching(resources: list[dict], clauses: dict[str, str]) -> list[dict]:
    name = clauses.get("name")
    return [r for r in resources
            if (name is None or r["name"].lower() == name.lower()) and may_read(r["type"], r["id"])]


@bp.route("/subscriptions/<subscription_id>/resources", methods=["GET"])
@versions
@requires(actions.RESOURCES_READ, filtered=True)
def list_resources(subscription_id: str):
    ctx = app_context()
    clauses = _resources_filter(request.args.get("$filter"))
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        resources, last = service.list_resources(session, subscription.id, clauses.get("resourcetype"), page,
                                                 clauses.get("resourcegroup"))
        return arm_json(page_body(_matching(resources, clauses),
                                  next_link(base_url(), request.path, request.args, last)))


@bp.route(GROUP + "/resources", methods=["GET"])
@versions
@requires(actions.RESOURCES_READ, filtered=True)
def list_group_resources(subscription_id: str, group_name: str):
    """Resources_ListByResourceGroup: Ansible's azure_rm_resourcegroup asks it whether a group is empty."""
    ctx = app_context()
    clauses = _resources_filter(request.args.get("$filter"))
    if "resourcegroup" in clauses:
        raise BadRequest(f"The $filter '{request.args['$filter'][:200]}' is not supported here: the group is in "
                         "the path.", code="InvalidFilterInQueryString", target="$filter")
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        group = service.get(session, subscription.id, group_name)
        resources, last = service.list_resources(session, subscription.id, clauses.get("resourcetype"), page,
                                                 group.name)
        return arm_json(page_body(_matching(resources, clauses),
                                  next_link(base_url(), request.path, request.args, last)))
