"""A minimal Microsoft Graph v1.0 under `/v1.0`: applications, service principals, their passwords, users, groups
and their members, `me`, getByIds, getMemberGroups and checkMemberGroups.

az uses the cloud's `microsoftGraphResourceId` both as Graph's base URL and as the token audience, and users set
it to this service's own URL; so Graph accepts tokens for this service's URL (public or as reached), nothing else.
Any principal or enabled user of a tenant may read its directory; only the tenant administrator
(`control-plane init`'s principal) may create, change or delete objects — others get Graph's 403.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import Blueprint, g, request

from control_plane.arm.errors import BadRequest, InvalidRequestContent
from control_plane.arm.http import arm_json, base_url, empty, json_body
from control_plane.arm.paging import SKIP_TOKEN_PARAMS, decode_token, encode_token
from control_plane.context import app_context
from control_plane.identity import directory, service
from control_plane.identity import graph_schemas as schemas
from control_plane.identity.errors import GraphBadRequest, GraphForbidden, GraphUnauthorized
from control_plane.identity.models import ServicePrincipal, User
from control_plane.identity.tokens import InvalidToken

bp = Blueprint("graph", __name__, url_prefix="/v1.0")


# -- who is calling ----------------------------------------------------------------------------------------------


def graph_audiences() -> tuple[str, ...]:
    """The Graph resource id is this service's URL: the configured public one, or the one the client reached."""
    return app_context().settings.public_url, base_url()


@bp.before_request
def authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GraphUnauthorized("Access token is empty.")
    ctx = app_context()
    try:
        caller = ctx.issuer.validate(token.strip(), graph_audiences())
    except InvalidToken as exc:
        raise GraphUnauthorized(f"Access token validation failure. {exc}") from None
    with ctx.db.session() as session:
        principal = service.directory_caller(session, caller.object_id, caller.tenant_id)
    if principal is None:
        raise GraphUnauthorized("Access token validation failure. The token's principal no longer exists or is "
                                "disabled.")
    g.graph_principal = principal


def _caller() -> ServicePrincipal | User:
    return g.graph_principal


def _require_admin() -> None:
    caller = _caller()
    if not (isinstance(caller, ServicePrincipal) and caller.is_tenant_admin):
        raise GraphForbidden()


# -- plumbing ------------------------------------------------------------------------------------------------------


def _body(required: bool = True) -> dict:
    try:
        return json_body(required)
    except InvalidRequestContent as exc:
        raise GraphBadRequest(exc.message) from None


def _context(fragment: str) -> str:
    return f"{base_url()}/v1.0/$metadata#{fragment}"


def _entity(collection: str, item: dict, status: int = 200):
    return arm_json({"@odata.context": _context(f"{collection}/$entity"), **item}, status)


def _paging() -> tuple[str | None, int]:
    token = next((request.args.get(name) for name in SKIP_TOKEN_PARAMS if request.args.get(name)), None)
    try:
        after = decode_token(token, 1)[0] if token else None
    except BadRequest as exc:
        raise GraphBadRequest(exc.message) from None
    return after, schemas.parse_top(request.args.get("$top"), app_context().settings.page_size)


def _list(collection: str, items: list[dict], last_id: str | None):
    """A Graph page; `@odata.nextLink` keeps the caller's query and adds `$skiptoken` (az follows it verbatim)."""
    body = {"@odata.context": _context(collection), "value": items}
    if last_id is not None:
        query = [(k, v) for k, v in request.args.items(multi=True) if k not in SKIP_TOKEN_PARAMS]
        query.append(("$skiptoken", encode_token((last_id,))))
        body["@odata.nextLink"] = f"{base_url()}{request.path}?{urlencode(query, quote_via=quote, safe='$')}"
    return arm_json(body)


# -- applications --------------------------------------------------------------------------------------------------


@bp.route("/applications", methods=["GET"])
def list_applications():
    clauses = schemas.parse_filter(request.args.get("$filter"), schemas.APPLICATION_FILTERS)
    after, top = _paging()
    with app_context().db.session() as session:
        views, more = service.list_applications(session, _caller().tenant_id, clauses, after, top)
        items = [schemas.application_to_graph(v) for v in views]
    return _list("applications", items, views[-1].application.object_id if more else None)


@bp.route("/applications", methods=["POST"])
def create_application():
    changes = schemas.application_changes(_body(), create=True)
    _require_admin()
    with app_context().db.session() as session:
        view = service.create_graph_application(session, _caller().tenant_id, changes["display_name"],
                                                changes["identifier_uris"], changes.get("sign_in_audience"),
                                                changes)
        item = schemas.application_to_graph(view)
    return _entity("applications", item, 201)


@bp.route("/applications/<object_id>", methods=["GET"])
def get_application(object_id: str):
    with app_context().db.session() as session:
        item = schemas.application_to_graph(service.get_application(session, _caller().tenant_id, object_id))
    return _entity("applications", item)


@bp.route("/applications/<object_id>", methods=["PATCH"])
def update_application(object_id: str):
    changes = schemas.application_changes(_body(), create=False)
    _require_admin()
    with app_context().db.session() as session:
        service.update_application(session, _caller().tenant_id, object_id, changes)
    return empty(204)


@bp.route("/applications/<object_id>", methods=["DELETE"])
def delete_application(object_id: str):
    _require_admin()
    with app_context().db.session() as session:
        service.delete_application(session, _caller().tenant_id, object_id)
    return empty(204)


# -- service principals --------------------------------------------------------------------------------------------


@bp.route("/servicePrincipals", methods=["GET"])
def list_service_principals():
    clauses = schemas.parse_filter(request.args.get("$filter"), schemas.PRINCIPAL_FILTERS)
    after, top = _paging()
    with app_context().db.session() as session:
        views, more = service.list_service_principals(session, _caller().tenant_id, clauses, after, top)
        items = [schemas.principal_to_graph(v) for v in views]
    return _list("servicePrincipals", items, views[-1].principal.object_id if more else None)


@bp.route("/servicePrincipals", methods=["POST"])
def create_service_principal():
    app_id = schemas.principal_app_id(_body())
    _require_admin()
    with app_context().db.session() as session:
        item = schemas.principal_to_graph(service.create_principal_for_app_id(session, _caller().tenant_id, app_id))
    return _entity("servicePrincipals", item, 201)


@bp.route("/servicePrincipals/<object_id>", methods=["GET"])
def get_service_principal(object_id: str):
    with app_context().db.session() as session:
        item = schemas.principal_to_graph(service.get_service_principal(session, _caller().tenant_id, object_id))
    return _entity("servicePrincipals", item)


@bp.route("/servicePrincipals/<object_id>", methods=["DELETE"])
def delete_service_principal(object_id: str):
    _require_admin()
    with app_context().db.session() as session:
        service.delete_service_principal(session, _caller().tenant_id, object_id)
    return empty(204)


# -- password credentials (the same two actions on both object types) ---------------------------------------------

OWNER_TYPES = {"applications": service.APPLICATION, "servicePrincipals": service.SERVICE_PRINCIPAL}


@bp.route("/<any(applications, servicePrincipals):collection>/<object_id>/addPassword", methods=["POST"])
def add_password(collection: str, object_id: str):
    display_name, start, end = schemas.password_request(_body(required=False))
    _require_admin()
    with app_context().db.session() as session:
        record, secret = service.add_password(session, _caller().tenant_id, OWNER_TYPES[collection], object_id,
                                              display_name, start, end)
        item = schemas.password_credential(record, secret)
    return arm_json({"@odata.context": _context("microsoft.graph.passwordCredential"), **item})


@bp.route("/<any(applications, servicePrincipals):collection>/<object_id>/removePassword", methods=["POST"])
def remove_password(collection: str, object_id: str):
    key_id = schemas.key_id(_body())
    _require_admin()
    with app_context().db.session() as session:
        service.remove_password(session, _caller().tenant_id, OWNER_TYPES[collection], object_id, key_id)
    return empty(204)


# -- users ---------------------------------------------------------------------------------------------------------


@bp.route("/users", methods=["GET"])
def list_users():
    clauses = schemas.parse_filter(request.args.get("$filter"), schemas.USER_FILTERS)
    after, top = _paging()
    with app_context().db.session() as session:
        users, more = directory.list_users(session, _caller().tenant_id, clauses, after, top)
        items = [schemas.user_to_graph(u) for u in users]
    return _list("users", items, users[-1].object_id if more else None)


@bp.route("/users", methods=["POST"])
def create_user():
    """`az ad user create`: the password comes in `passwordProfile` and is never returned."""
    changes = schemas.user_changes(_body(), create=True)
    _require_admin()
    with app_context().db.session() as session:
        new = directory.create_user(session, _caller().tenant_id, changes["user_principal_name"],
                                    changes["display_name"], changes["password"], changes.get("mail_nickname"),
                                    changes.get("account_enabled", True))
        item = schemas.user_to_graph(new.user)
    return _entity("users", item, 201)


@bp.route("/users/<id_or_upn>", methods=["GET"])
def get_user(id_or_upn: str):
    with app_context().db.session() as session:
        item = schemas.user_to_graph(directory.get_user(session, _caller().tenant_id, id_or_upn))
    return _entity("users", item)


@bp.route("/users/<id_or_upn>", methods=["PATCH"])
def update_user(id_or_upn: str):
    """`az ad user update`: accountEnabled false refuses the user's tokens at once; a new password revokes its
    refresh tokens."""
    changes = schemas.user_changes(_body(), create=False)
    _require_admin()
    with app_context().db.session() as session:
        directory.update_user(session, _caller().tenant_id, id_or_upn, changes)
    return empty(204)


@bp.route("/users/<id_or_upn>", methods=["DELETE"])
def delete_user(id_or_upn: str):
    _require_admin()
    with app_context().db.session() as session:
        directory.delete_user(session, _caller().tenant_id, id_or_upn)
    return empty(204)


@bp.route("/me", methods=["GET"])
def me():
    """`az ad signed-in-user show`: only a user has a `me`, as in Graph."""
    caller = _caller()
    if not isinstance(caller, User):
        raise GraphBadRequest("/me request is only valid with delegated authentication flow.")
    return _entity("users", schemas.user_to_graph(caller))


# -- groups and members ------------------------------------------------------------------------------------------


@bp.route("/groups", methods=["GET"])
def list_groups():
    clauses = schemas.parse_filter(request.args.get("$filter"), schemas.GROUP_FILTERS)
    after, top = _paging()
    with app_context().db.session() as session:
        groups, more = directory.list_groups(session, _caller().tenant_id, clauses, after, top)
        items = [schemas.group_to_graph(group) for group in groups]
    return _list("groups", items, groups[-1].object_id if more else None)


@bp.route("/groups", methods=["POST"])
def create_group():
    display_name, mail_nickname, description = schemas.group_request(_body())
    _require_admin()
    with app_context().db.session() as session:
        group = directory.create_group(session, _caller().tenant_id, display_name, mail_nickname, description)
        item = schemas.group_to_graph(group)
    return _entity("groups", item, 201)


@bp.route("/groups/<object_id>", methods=["GET"])
def get_group(object_id: str):
    with app_context().db.session() as session:
        item = schemas.group_to_graph(directory.get_group(session, _caller().tenant_id, object_id))
    return _entity("groups", item)


@bp.route("/groups/<object_id>", methods=["DELETE"])
def delete_group(object_id: str):
    _require_admin()
    with app_context().db.session() as session:
        directory.delete_group(session, _caller().tenant_id, object_id)
    return empty(204)


@bp.route("/groups/<object_id>/members", methods=["GET"])
def list_members(object_id: str):
    after, top = _paging()
    with app_context().db.session() as session:
        members, last_id = directory.list_members(session, _caller().tenant_id, object_id, after, top)
        items = [schemas.directory_object_to_graph(kind, item) for kind, item in members]
    return _list("directoryObjects", items, last_id)


@bp.route("/groups/<object_id>/members/$ref", methods=["POST"])
def add_member(object_id: str):
    """`az ad group member add`: a user, service principal or group (not one that contains this group)."""
    member_id = schemas.member_reference(_body())
    _require_admin()
    with app_context().db.session() as session:
        directory.add_member(session, _caller().tenant_id, object_id, member_id)
    return empty(204)


@bp.route("/groups/<object_id>/members/<member_id>/$ref", methods=["DELETE"])
def remove_member(object_id: str, member_id: str):
    """`az ad group member remove`: what the group gave the member stops at the member's next request."""
    _require_admin()
    with app_context().db.session() as session:
        directory.remove_member(session, _caller().tenant_id, object_id, member_id)
    return empty(204)


MEMBER_COLLECTIONS = "any(users, groups, servicePrincipals, directoryObjects)"


@bp.route(f"/<{MEMBER_COLLECTIONS}:collection>/<object_id>/getMemberGroups", methods=["POST"])
def get_member_groups(collection: str, object_id: str):
    """`az ad user|group get-member-groups`: the groups the object is in, nested ones included."""
    schemas.security_enabled_only(_body(required=False))
    with app_context().db.session() as session:
        ids = directory.member_groups(session, _caller().tenant_id, _user_key(session, collection, object_id))
    return arm_json({"@odata.context": _context("Collection(Edm.String)"), "value": ids})


@bp.route(f"/<{MEMBER_COLLECTIONS}:collection>/<object_id>/checkMemberGroups", methods=["POST"])
def check_member_groups(collection: str, object_id: str):
    """`az ad group member check`: which of the given groups the object is in, nested ones included."""
    wanted = schemas.group_ids(_body())
    with app_context().db.session() as session:
        ids = directory.check_member_groups(session, _caller().tenant_id,
                                            _user_key(session, collection, object_id), wanted)
    return arm_json({"@odata.context": _context("Collection(Edm.String)"), "value": ids})


def _user_key(session, collection: str, object_id: str) -> str:
    """`users/{upn}` names a user by UPN; every other path by object id."""
    if collection == "users":
        return directory.get_user(session, _caller().tenant_id, object_id).object_id
    return object_id


# -- directory objects ---------------------------------------------------------------------------------------------


@bp.route("/directoryObjects/getByIds", methods=["POST"])
def get_by_ids():
    ids, types = schemas.get_by_ids_request(_body())
    with app_context().db.session() as session:
        items = [schemas.directory_object_to_graph(kind, item)
                 for kind, item in directory.objects_by_ids(session, _caller().tenant_id, ids, types)]
    return arm_json({"@odata.context": _context("directoryObjects"), "value": items})


SERVED_SEGMENTS = ("applications", "servicePrincipals", "directoryObjects", "users", "groups", "me")


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unsupported(rest: str):
    """What this Graph does not serve, answered as Graph does: JSON errors, which az prints (never HTML)."""
    segment = rest.split("/")[0]
    if segment in SERVED_SEGMENTS:
        raise GraphBadRequest(f"Specified HTTP method is not allowed for the request uri: '{request.method} "
                              f"/v1.0/{rest[:200]}' is not supported by this service.", status=405)
    raise BadRequest(f"Resource not found for the segment '{segment[:100]}'.")
