"""A minimal Microsoft Graph v1.0 under `/v1.0`: applications, service principals, their passwords, getByIds.

az uses the cloud's `microsoftGraphResourceId` both as Graph's base URL and as the token audience, and users set
it to this service's own URL; so Graph accepts tokens for this service's URL (public or as reached), nothing else.
Any principal of a tenant may read its directory; only the tenant administrator (`control-plane init`'s
principal) may create, change credentials of, or delete objects — others get Graph's 403.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import Blueprint, g, request

from control_plane.arm.errors import BadRequest, InvalidRequestContent
from control_plane.arm.http import arm_json, base_url, empty, json_body
from control_plane.arm.paging import SKIP_TOKEN_PARAMS, decode_token, encode_token
from control_plane.context import app_context
from control_plane.identity import graph_schemas as schemas
from control_plane.identity import service
from control_plane.identity.errors import GraphBadRequest, GraphForbidden, GraphUnauthorized
from control_plane.identity.models import ServicePrincipal
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
        principal = service.principal_by_object_id(session, caller.object_id)
    if principal is None or principal.tenant_id != caller.tenant_id:
        raise GraphUnauthorized("Access token validation failure. The token's principal no longer exists.")
    g.graph_principal = principal


def _caller() -> ServicePrincipal:
    return g.graph_principal


def _require_admin() -> None:
    if not _caller().is_tenant_admin:
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
                                                changes["identifier_uris"], changes.get("sign_in_audience"))
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


# -- directory objects ---------------------------------------------------------------------------------------------


@bp.route("/directoryObjects/getByIds", methods=["POST"])
def get_by_ids():
    ids, types = schemas.get_by_ids_request(_body())
    with app_context().db.session() as session:
        items = [schemas.directory_object_to_graph(v)
                 for v in service.directory_objects(session, _caller().tenant_id, ids, types)]
    return arm_json({"@odata.context": _context("directoryObjects"), "value": items})


SERVED_SEGMENTS = ("applications", "servicePrincipals", "directoryObjects")


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unsupported(rest: str):
    """What this Graph does not serve, answered as Graph does: JSON errors, which az prints (never HTML)."""
    segment = rest.split("/")[0]
    if segment in SERVED_SEGMENTS:
        raise GraphBadRequest(f"Specified HTTP method is not allowed for the request uri: '{request.method} "
                              f"/v1.0/{rest[:200]}' is not supported by this service.", status=405)
    raise BadRequest(f"Resource not found for the segment '{segment[:100]}'.")
