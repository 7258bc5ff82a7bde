"""ACR's data-plane API, `/acr/v1/…`, on the registry app (acr-dataplane-api.md §3.1).

One route takes every `/acr/v1/` path and splits it itself: repository names have any number of segments and
the SDK sends them percent-encoded (`a%2Fb`, which the server has decoded to `a/b` by now), so the literal
`_tags`/`_manifests` segments are found from the end. They cannot be part of a name: a name's components start
with a letter or digit. Host style (`<registry>.<suffix>`) is ACR's; on the service's own host the first segment
names the registry, as on `/v2/` (`/acr/v1/<registry>/<repository…>`).

Every route authorises with the scope ACR puts in its challenge (the SDK requests exactly that scope):
`registry:catalog:*`, and `repository:<name>:metadata_read`, `metadata_write` or `delete`. Errors use the OCI body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, request

from control_plane.acr import serialize
from control_plane.acr.service import (
    AcrMetadata,
    Page,
    RequestInvalid,
    attribute_changes,
    order,
    page_size,
    position,
)
from control_plane.content import names
from control_plane.content.service import RegistryRef, RequestInfo
from control_plane.oci import targets
from control_plane.oci.auth import Caller, RegistryTarget, authorize
from control_plane.oci.http import OciError

bp = Blueprint("acr", __name__)

METADATA_KEY = "control_plane.acr"
PATCH_MAX_BYTES = 64 * 1024  # a PATCH body is four booleans
LISTS = ("_tags", "_manifests")
READ, WRITE, DELETE = ("metadata_read",), ("metadata_write",), ("delete",)


@dataclass(frozen=True)
class Address:
    """What an `/acr/v1/` path names: the catalog, a repository, one of its lists, or an item of a list."""

    target: RegistryTarget
    kind: str  # "catalog" | "repository" | "_tags" | "_manifests"
    repository: str = ""
    item: str | None = None  # the tag or digest; None for the repository or a list

    @property
    def image_name(self) -> str:
        """The repository as the client names it: path style puts the registry in front (`imageName`, `Link`)."""
        return self.target.prefix + self.repository


@bp.record_once
def _install(state) -> None:
    """One AcrMetadata per registry app, over the app's database and content service."""
    app = state.app
    app.extensions[METADATA_KEY] = AcrMetadata(app.extensions["control_plane"].db, app.extensions[targets.CONTENT_KEY])


def metadata() -> AcrMetadata:
    return current_app.extensions[METADATA_KEY]


@bp.route("/acr/v1/<path:rest>", methods=["GET", "PATCH", "DELETE"])
def acr(rest: str) -> Response:
    address = _address(rest)
    method = "GET" if request.method == "HEAD" else request.method
    handler = HANDLERS.get((address.kind, address.item is not None, method))
    if handler is None:
        raise OciError(405, "UNSUPPORTED", f"The method '{request.method}' is not supported on this resource.")
    return handler(address)


def _address(rest: str) -> Address:
    segments = rest.split("/")
    if targets.is_host_style():
        target = targets.host_target()
        if segments == ["_catalog"]:
            return Address(target, "catalog")
    else:
        registry = segments.pop(0)
        if not segments:
            raise OciError(404, "NAME_UNKNOWN", "path-style ACR paths are /acr/v1/<registry>/<repository…>",
                           detail={"name": rest[:300]})
        target = targets.path_target(registry)
    if len(segments) >= 2 and segments[-1] in LISTS:
        return Address(target, segments[-1], names.repository("/".join(segments[:-1])))
    if len(segments) >= 3 and segments[-2] in LISTS:
        item = segments[-1]
        (names.tag if segments[-2] == "_tags" else names.digest)(item)
        return Address(target, segments[-2], names.repository("/".join(segments[:-2])), item)
    return Address(target, "repository", names.repository("/".join(segments)))


# -- catalog and repositories -----------------------------------------------------------------------------------


def _catalog(address: Address) -> Response:
    authorize(address.target, "registry", "catalog", ("*",))
    n, last, _ = _paging()
    page = metadata().catalog(_registry(address).id, n, last)
    return _json(serialize.catalog(page.items), link=_next(address, page, n, page.items[-1] if page.items else None))


def _repository(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, READ)
    info = metadata().repository(_registry(address).id, address.repository)
    return _json(serialize.repository(_login_server(address), address.image_name, info))


def _update_repository(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, WRITE)
    changes = attribute_changes(_patch_body())
    info = metadata().update_repository(_registry(address).id, address.repository, changes)
    return _json(serialize.repository(_login_server(address), address.image_name, info))


def _delete_repository(address: Address) -> Response:
    caller = authorize(address.target, "repository", address.repository, DELETE)
    deleted = metadata().delete_repository(_registry(address), address.repository, _who(caller))
    return _json(serialize.repository_deleted(deleted.manifests, deleted.tags), status=202)


# -- tags ---------------------------------------------------------------------------------------------------------


def _tags(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, READ)
    n, last, orderby = _paging()
    digest = request.args.get("digest") or None
    page = metadata().tags(_registry(address).id, address.repository, n, last, orderby, digest)
    body = serialize.tag_list(_login_server(address), address.image_name, page.items)
    return _json(body, link=_next(address, page, n, page.items[-1].name if page.items else None, orderby, digest))


def _tag(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, READ)
    row = metadata().tag(_registry(address).id, address.repository, address.item)
    return _json(serialize.tag_document(_login_server(address), address.image_name, row))


def _update_tag(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, WRITE)
    changes = attribute_changes(_patch_body())
    row = metadata().update_tag(_registry(address).id, address.repository, address.item, changes)
    return _json(serialize.tag_document(_login_server(address), address.image_name, row))


def _delete_tag(address: Address) -> Response:
    caller = authorize(address.target, "repository", address.repository, DELETE)
    digest = metadata().delete_tag(_registry(address), address.repository, address.item, _who(caller))
    return Response(b"", status=202, headers={"X-Ms-Int-Docker-Content-Digest": digest})


# -- manifests ----------------------------------------------------------------------------------------------------


def _manifests(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, READ)
    n, last, orderby = _paging()
    page = metadata().manifests(_registry(address).id, address.repository, n, last, orderby)
    body = serialize.manifest_list(_login_server(address), address.image_name, page.items)
    return _json(body, link=_next(address, page, n, page.items[-1].row.digest if page.items else None, orderby))


def _manifest(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, READ)
    entry = metadata().manifest(_registry(address).id, address.repository, address.item)
    return _json(serialize.manifest_document(_login_server(address), address.image_name, entry))


def _update_manifest(address: Address) -> Response:
    authorize(address.target, "repository", address.repository, WRITE)
    changes = attribute_changes(_patch_body())
    entry = metadata().update_manifest(_registry(address).id, address.repository, address.item, changes)
    return _json(serialize.manifest_document(_login_server(address), address.image_name, entry))


# (kind, names an item, method) -> handler
HANDLERS = {
    ("catalog", False, "GET"): _catalog,
    ("repository", False, "GET"): _repository,
    ("repository", False, "PATCH"): _update_repository,
    ("repository", False, "DELETE"): _delete_repository,
    ("_tags", False, "GET"): _tags,
    ("_tags", True, "GET"): _tag,
    ("_tags", True, "PATCH"): _update_tag,
    ("_tags", True, "DELETE"): _delete_tag,
    ("_manifests", False, "GET"): _manifests,
    ("_manifests", True, "GET"): _manifest,
    ("_manifests", True, "PATCH"): _update_manifest,
}


# -- helpers ------------------------------------------------------------------------------------------------------


def _registry(address: Address) -> RegistryRef:
    registry = address.target.registry
    assert registry is not None  # host_target and path_target(name) always name one
    return registry


def _login_server(address: Address) -> str:
    return _registry(address).login_server


def _who(caller: Caller) -> RequestInfo:
    return RequestInfo(actor=caller.subject or None, request_id=getattr(g, "request_id", None), host=request.host,
                       method=request.method, user_agent=request.headers.get("User-Agent"))


def _paging() -> tuple[int, str | None, str | None]:
    """`n`, `last` and `orderby` of a list request (the catalog ignores `orderby`, as ACR's own Link sends it)."""
    args = request.args
    return page_size(args.get("n")), position(args.get("last")), order(args.get("orderby"))


def _patch_body() -> Any:
    if (request.content_length or 0) > PATCH_MAX_BYTES:
        raise RequestInvalid("the body is too large for a PATCH of writeable properties")
    data = request.stream.read(PATCH_MAX_BYTES + 1)
    if len(data) > PATCH_MAX_BYTES:
        raise RequestInvalid("the body is too large for a PATCH of writeable properties")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RequestInvalid("the body is not valid JSON") from None


def _next(address: Address, page: Page, n: int, last: str | None, orderby: str | None = None,
          digest: str | None = None) -> str | None:
    """ACR's `Link: </acr/v1/…?last=…&n=…&orderby=>; rel="next"`: the SDK follows the path as given, az re-sends
    its query values (unquoted) on the original path."""
    if not page.more or last is None:
        return None
    path = "_catalog" if address.kind == "catalog" else f"{quote(address.image_name, safe='')}/{address.kind}"
    query = f"last={quote(last, safe='')}&n={n}&orderby={orderby or ''}"
    if digest:
        query += f"&digest={quote(digest, safe='')}"
    return f'</acr/v1/{path}?{query}>; rel="next"'


def _json(body: Any, status: int = 200, link: str | None = None) -> Response:
    response = Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")
    if link:
        response.headers["Link"] = link
    return response
