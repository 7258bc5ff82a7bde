"""Microsoft.Authorization routes: role definitions and role assignments at any scope."""

from __future__ import annotations

from flask import Blueprint, request

from control_plane.arm import api_versions
from control_plane.arm.errors import NotFound
from control_plane.arm.http import arm_json, base_url, empty, json_body
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.arm.validation import load
from control_plane.authorization import actions, roles, scopes, service
from control_plane.authorization.enforce import current_caller, requires
from control_plane.authorization.schemas import (
    AssignmentCreate,
    assignment_filter,
    assignment_to_arm,
    definition_filter,
    definition_to_arm,
)
from control_plane.context import app_context

bp = Blueprint("authorization", __name__)

NAMESPACE = "/providers/Microsoft.Authorization"
versions = api_versions.require_api_version(api_versions.AUTHORIZATION)


def _definitions(scope: str):
    wanted = definition_filter(request.args.get("$filter"))
    found = [r for r in roles.BUILT_IN_ROLES
             if ("roleName" not in wanted or r.name.lower() == wanted["roleName"].lower())
             and ("type" not in wanted or wanted["type"].lower() == "builtinrole")]
    return arm_json({"value": [definition_to_arm(r, scope) for r in found]})


def _definition(scope: str, role_id: str):
    role = roles.find(role_id)
    if role is None:
        raise NotFound(f"The role definition '{role_id[:100]}' could not be found.", code="RoleDefinitionDoesNotExist")
    return arm_json(definition_to_arm(role, scope))


@bp.route("/<path:scope>" + NAMESPACE + "/roleDefinitions", methods=["GET"])
@versions
@requires(actions.ROLE_DEFINITION_READ, filtered=True)
def list_role_definitions(scope: str):
    return _definitions(scope)


@bp.route(NAMESPACE + "/roleDefinitions", methods=["GET"])
@versions
@requires(actions.ROLE_DEFINITION_READ)
def list_tenant_role_definitions():
    return _definitions("/")


@bp.route("/<path:scope>" + NAMESPACE + "/roleDefinitions/<role_id>", methods=["GET"])
@versions
@requires(actions.ROLE_DEFINITION_READ, filtered=True)
def get_role_definition(scope: str, role_id: str):
    return _definition(scope, role_id)


@bp.route(NAMESPACE + "/roleDefinitions/<role_id>", methods=["GET"])
@versions
@requires(actions.ROLE_DEFINITION_READ)
def get_tenant_role_definition(role_id: str):
    return _definition("/", role_id)


ASSIGNMENT = "/<path:scope>" + NAMESPACE + "/roleAssignments/<assignment_name>"


@bp.route(ASSIGNMENT, methods=["PUT"])
@versions
@requires(actions.ROLE_ASSIGNMENT_WRITE)
def put_role_assignment(scope: str, assignment_name: str):
    service.validate_name(assignment_name)
    body = load(AssignmentCreate(), json_body())["properties"]
    caller = current_caller()
    ctx = app_context()
    with ctx.db.session() as session:
        canonical, _ = scopes.resolve(session, scope)
        assignment, created = service.create(session, caller.tenant_id, canonical, assignment_name,
                                             service.AssignmentRequest(
                                                 role_definition_id=body["roleDefinitionId"],
                                                 principal_id=body["principalId"],
                                                 principal_type=body["principalType"],
                                                 description=body["description"],
                                                 condition=body["condition"],
                                                 condition_version=body["conditionVersion"],
                                                 delegated_managed_identity_resource_id=body[
                                                     "delegatedManagedIdentityResourceId"]),
                                             caller.object_id)
        return arm_json(assignment_to_arm(assignment), 201 if created else 200)


@bp.route(ASSIGNMENT, methods=["GET"])
@versions
@requires(actions.ROLE_ASSIGNMENT_READ)
def get_role_assignment(scope: str, assignment_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        return arm_json(assignment_to_arm(service.get(session, current_caller().tenant_id, "/" + scope,
                                                      assignment_name)))


@bp.route(ASSIGNMENT, methods=["DELETE"])
@versions
@requires(actions.ROLE_ASSIGNMENT_DELETE)
def delete_role_assignment(scope: str, assignment_name: str):
    ctx = app_context()
    with ctx.db.session() as session:
        assignment = service.find(session, current_caller().tenant_id, "/" + scope, assignment_name)
        if assignment is None:
            return empty(204)
        body = assignment_to_arm(assignment)
        service.delete(session, assignment)
    return arm_json(body)


@bp.route("/<path:scope>" + NAMESPACE + "/roleAssignments", methods=["GET"])
@versions
@requires(actions.ROLE_ASSIGNMENT_READ)
def list_role_assignments(scope: str):
    at_scope, principal_id = assignment_filter(request.args.get("$filter"))
    ctx = app_context()
    page = page_request(request.args, 1, ctx.settings.page_size)
    with ctx.db.session() as session:
        found = service.list_for_scope(session, current_caller().tenant_id, "/" + scope, at_scope, principal_id)
    if page.after:
        found = [a for a in found if a.name > page.after[0]]
    more = len(found) > page.size
    found = found[: page.size]
    link = next_link(base_url(), request.path, request.args, (found[-1].name,) if more else None)
    return arm_json(page_body([assignment_to_arm(a) for a in found], link))
