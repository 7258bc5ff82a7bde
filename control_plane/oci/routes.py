"""The OCI Distribution v1.1 API (`/v2/…`) over the content service (control_plane/content/service.py).

Repository names have any number of segments (`a/b/c`), so one rule takes the whole path and the route is found
from its end, as Distribution's router does: `…/blobs/uploads/[<id>]`, `…/blobs/<digest>`, `…/manifests/<ref>`,
`…/tags/list`, `…/referrers/<digest>`, and `_catalog`. Every route validates the name, resolves the registry (host
or path style, control_plane/oci/targets.py), authorises (control_plane/oci/auth.py), then calls the service.

Upload bodies are streamed from the request in chunks (never read whole); manifests are read up to
`manifest_max_bytes` (413 beyond). Every `Location` is a relative path naming the repository as the client did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote

from flask import Blueprint, Response, g, request
from werkzeug.utils import send_file
from werkzeug.wsgi import FileWrapper

from control_plane.content import names
from control_plane.content.errors import (
    DigestInvalid,
    ManifestTooLarge,
    NameInvalid,
    PaginationNumberInvalid,
    RangeInvalid,
    TagInvalid,
)
from control_plane.content.service import BlobLocation, RequestInfo
from control_plane.context import app_context
from control_plane.dataplane import scopes
from control_plane.oci import auth
from control_plane.oci.auth import Caller, RegistryTarget
from control_plane.oci.http import OciError
from control_plane.oci.targets import content, host_target, is_host_style, path_target, resolve, split, target_of

bp = Blueprint("oci", __name__)

CHUNK_BYTES = 1024 * 1024
FILE_BLOCK_BYTES = 1024 * 1024
MAX_PAGE = 10000  # `n` above this is clamped (and a Link sent when more follow)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PULL, PUSH, DELETE = (scopes.PULL,), (scopes.PULL, scopes.PUSH), (scopes.DELETE,)
ALL_METHODS = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]

_ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), "uploads"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)$"), "upload"),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$"), "blob"),
    (re.compile(r"^(?P<name>.+)/manifests/(?P<reference>[^/]+)$"), "manifest"),
    (re.compile(r"^(?P<name>.+)/tags/list$"), "tags"),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$"), "referrers"),
]


# -- routing ----------------------------------------------------------------------------------------------------


@bp.route("/v2", methods=ALL_METHODS, strict_slashes=False)
def ping() -> Response:
    if request.method not in ("GET", "HEAD"):
        raise _unsupported()
    target = host_target() if is_host_style() else path_target(None)
    _remember(auth.authenticate(target))
    return Response("{}", status=200, mimetype="application/json")


@bp.route("/v2/<path:rest>", methods=ALL_METHODS)
def v2(rest: str) -> Response:
    if rest == "_catalog":
        return _catalog() if is_host_style() else _no_catalog()
    for pattern, kind in _ROUTES:
        match = pattern.match(rest)
        if match:
            params = match.groupdict()
            name = params.pop("name")
            names.repository(name)
            handler = _HANDLERS[kind].get(request.method)
            if handler is None:
                raise _unsupported()
            return handler(name, **params)
    _refuse_slashed_reference(rest)
    raise OciError(404, "NAME_UNKNOWN", "No registry route matches this path.", {"path": request.path[:300]})


_SLASHED_REFERENCE = re.compile(r"^.+?/(?P<kind>blobs|manifests)/(?P<reference>.+/.*)$")


def _refuse_slashed_reference(rest: str) -> None:
    """A digest or tag with a '/' in it (`sha256:..%2F..%2Fetc`, decoded before routing) is an invalid reference,
    not an unknown route: 400 DIGEST_INVALID or TAG_INVALID, as for any other malformed one."""
    match = _SLASHED_REFERENCE.match(rest)
    if match is None or match["reference"].startswith("uploads/"):
        return
    if match["kind"] == "blobs" or ":" in match["reference"]:
        raise DigestInvalid("invalid digest", detail={"digest": match["reference"][:200]})
    raise TagInvalid("invalid tag", detail={"tag": match["reference"][:200]})


def _unsupported() -> OciError:
    return OciError(405, "UNSUPPORTED", f"The method '{request.method}' is not supported here.")


def _remember(caller: Caller) -> Caller:
    g.registry_caller = caller
    return caller


def _begin(name: str, actions: tuple[str, ...]) -> tuple[RegistryTarget, str, Caller]:
    """(target, repository, caller): the registry the name addresses and a caller allowed the actions on it."""
    target, repository = resolve(name)
    caller = _remember(auth.authorize(target, "repository", repository, actions))
    return target, repository, caller


def _who(caller: Caller) -> RequestInfo:
    return RequestInfo(actor=caller.subject or None, request_id=g.get("request_id"), host=request.host,
                       method=request.method, user_agent=(request.user_agent.string or None))


# -- blobs ------------------------------------------------------------------------------------------------------


def _blob_get(name: str, digest: str) -> Response:
    target, repository, _ = _begin(name, PULL)
    service = content()
    if request.method == "HEAD":
        info = service.stat_blob(target.registry, repository, digest)
        return _empty(200, {"Content-Length": str(info.size), "Docker-Content-Digest": info.digest,
                            "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"})
    location = service.open_blob(target.registry, repository, digest)
    if location.read_url is not None:
        return _empty(307, {"Location": location.read_url, "Docker-Content-Digest": location.info.digest})
    if location.local_path is not None:
        # The server's file wrapper: sendfile(2) without TLS; under TLS it reads the file in blocks, which must be
        # far larger than the 8 KiB default (each block is one TLS write).
        server_wrapper = request.environ.get("wsgi.file_wrapper", FileWrapper)
        environ = {**request.environ,
                   "wsgi.file_wrapper": lambda file, _size=None: server_wrapper(file, FILE_BLOCK_BYTES)}
        response = send_file(location.local_path, environ, mimetype="application/octet-stream", conditional=True,
                             etag=False, max_age=None, last_modified=None, response_class=Response)
        response.headers["Docker-Content-Digest"] = location.info.digest
        response.headers["Accept-Ranges"] = "bytes"
        return response
    return _stream_blob(location)


def _stream_blob(location: BlobLocation) -> Response:
    """Range-aware streaming through the service (Azure storage without redirects)."""
    size = location.info.size
    headers = {"Docker-Content-Digest": location.info.digest, "Accept-Ranges": "bytes"}
    window = _range(request.headers.get("Range"), size)
    if window is None:
        return Response(location.read(0, None), status=200, mimetype="application/octet-stream",
                        headers={**headers, "Content-Length": str(size)}, direct_passthrough=True)
    start, end = window
    return Response(location.read(start, end), status=206, mimetype="application/octet-stream",
                    headers={**headers, "Content-Length": str(end - start),
                             "Content-Range": f"bytes {start}-{end - 1}/{size}"}, direct_passthrough=True)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single-range `Range` header; None without one; 416 when it cannot be satisfied."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise OciError(416, "RANGE_INVALID", "Only a single byte range is supported.",
                       headers={"Content-Range": f"bytes */{size}"})
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:  # a suffix: the last N bytes
        start, end = max(size - int(last), 0), size
    if start >= size or end <= start:
        raise OciError(416, "RANGE_INVALID", "The range is outside the blob.",
                       headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _blob_delete(name: str, digest: str) -> Response:
    target, repository, _ = _begin(name, DELETE)
    content().delete_blob(target.registry, repository, digest)
    return _empty(202, {"Content-Length": "0"})


# -- uploads ----------------------------------------------------------------------------------------------------


def _body_chunks() -> Iterator[bytes]:
    """The request body, streamed (a chunked body too: gunicorn decodes it and marks the input terminated)."""
    stream = request.stream
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/uploads/{upload_id}", "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id, "Content-Length": "0"}


def _blob_created(name: str, digest: str) -> Response:
    return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
                        "Content-Length": "0"})


def _uploads_post(name: str) -> Response:
    mount, source = request.args.get("mount"), request.args.get("from")
    target, repository = resolve(name)
    _remember(auth.authorize(target, "repository", repository, PUSH,
                             also_challenge=_mount_source_scope(source) if mount else ()))
    service = content()
    if mount and source:
        info = _try_mount(target, repository, mount, source)
        if info is not None:
            return _blob_created(name, info.digest)
    digest = request.args.get("digest")
    if digest:
        info = service.upload_blob(target.registry, repository, digest, _body_chunks())
        return _blob_created(name, info.digest)
    state = service.start_upload(target.registry, repository)
    return _empty(202, _upload_headers(name, state.id, state.size))


def _mount_source_scope(source: str | None) -> tuple[str, ...]:
    """The pull scope on a mount's source repository, for the challenge (none when the name is not valid).

    `from` names the repository as scopes do in either style (path style: `<registry>/<repository>`)."""
    if not source:
        return ()
    try:
        names.repository(source)
    except NameInvalid:
        return ()
    return (f"repository:{source}:pull",)


def _try_mount(target: RegistryTarget, repository: str, digest: str, source: str):
    """The mounted blob, or None (then a plain upload starts: 202) when the source is not readable or lacks it."""
    if is_host_style():
        source_repository = source
    else:
        registry, sep, source_repository = source.partition("/")
        if not sep or target.registry is None or registry.lower() != target.prefix[:-1]:
            return None  # path style: a mount only within the same registry
    try:
        names.repository(source_repository)
        names.digest(digest)
    except (NameInvalid, DigestInvalid):
        return None
    if not auth.may(target, "repository", source_repository, (scopes.PULL,)):
        return None
    return content().mount_blob(target.registry, repository, digest, source_repository)


def _content_range_start() -> int | None:
    """The start of a PATCH's `Content-Range: <start>-<end>` (None without one); 416 when it is malformed or
    disagrees with the body's length."""
    header = request.headers.get("Content-Range")
    if not header:
        return None
    match = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?$", header.strip())
    if match is None:
        raise RangeInvalid("malformed Content-Range", detail={"Content-Range": header[:100]})
    start, end = int(match.group(1)), int(match.group(2))
    length = request.content_length
    if end < start or (length is not None and length != end - start + 1):
        raise RangeInvalid("Content-Range does not match the body", detail={"Content-Range": header[:100]})
    return start


def _upload_patch(name: str, upload: str) -> Response:
    target, repository, _ = _begin(name, PUSH)
    start = _content_range_start()
    state = content().append_upload(target.registry, repository, upload, _body_chunks(), start)
    return _empty(202, _upload_headers(name, state.id, state.size))


def _upload_put(name: str, upload: str) -> Response:
    target, repository, _ = _begin(name, PUSH)
    digest = request.args.get("digest")
    if not digest:
        raise DigestInvalid("the digest parameter is required", detail={"digest": None})
    info = content().finish_upload(target.registry, repository, upload, digest, _body_chunks())
    return _blob_created(name, info.digest)


def _upload_status(name: str, upload: str) -> Response:
    target, repository, _ = _begin(name, PUSH)
    state = content().upload_status(target.registry, repository, upload)
    headers = _upload_headers(name, state.id, state.size)
    del headers["Content-Length"]
    return _empty(204, headers)


def _upload_cancel(name: str, upload: str) -> Response:
    target, repository, _ = _begin(name, PUSH)
    content().cancel_upload(target.registry, repository, upload)
    return _empty(204, {})


# -- manifests --------------------------------------------------------------------------------------------------


def _manifest_get(name: str, reference: str) -> Response:
    """One database read (registry, repository and manifest), then the caller's authorisation, then the answer."""
    registry_name, repository = split(name)
    read = content().read_manifest(registry_name, repository, reference)
    _remember(auth.authorize(target_of(registry_name, read.registry), "repository", repository, PULL))
    manifest = read.content()
    headers = {"Docker-Content-Digest": manifest.digest, "ETag": f'"{manifest.digest}"'}
    if request.method == "HEAD":
        return _empty(200, {**headers, "Content-Length": str(manifest.size), "Content-Type": manifest.media_type})
    # The stored bytes as they are (set_data adds Content-Length); content_type skips mimetype's charset logic.
    return Response(manifest.body, status=200, headers=headers, content_type=manifest.media_type)


def _manifest_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise ManifestTooLarge(f"manifests are limited to {limit} bytes", detail={"limit": limit})
    body = bytearray()
    for chunk in _body_chunks():
        body += chunk
        if len(body) > limit:
            raise ManifestTooLarge(f"manifests are limited to {limit} bytes", detail={"limit": limit})
    return bytes(body)


def _manifest_put(name: str, reference: str) -> Response:
    target, repository, caller = _begin(name, PUSH)
    body = _manifest_body(app_context().settings.manifest_max_bytes)
    media_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip()
    info = content().put_manifest(target.registry, repository, reference, body, media_type, _who(caller))
    headers = {"Location": f"/v2/{name}/manifests/{info.digest}", "Docker-Content-Digest": info.digest,
               "Content-Length": "0"}
    if info.subject:
        headers["OCI-Subject"] = info.subject
    return _empty(201, headers)


def _manifest_delete(name: str, reference: str) -> Response:
    target, repository, caller = _begin(name, DELETE)
    if ":" in reference:
        content().delete_manifest(target.registry, repository, reference, _who(caller))
    else:
        content().delete_tag(target.registry, repository, names.tag(reference), _who(caller))
    return _empty(202, {"Content-Length": "0"})


# -- lists ------------------------------------------------------------------------------------------------------


def _page_size() -> int | None:
    raw = request.args.get("n")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise PaginationNumberInvalid(detail={"n": raw[:20]})
    return min(int(raw), MAX_PAGE)


def _link(path: str, last: str, n: int, extra: str = "") -> str:
    return f'<{path}?last={quote(last, safe="")}&n={n}{extra}>; rel="next"'


def _tags(name: str) -> Response:
    target, repository, _ = _begin(name, PULL)
    n, last = _page_size(), request.args.get("last") or None
    tags, more = content().list_tags(target.registry, repository, n, last)
    response = _json({"name": name, "tags": tags})
    if more and tags and n != 0:
        response.headers["Link"] = _link(f"/v2/{name}/tags/list", tags[-1], n or len(tags))
    return response


def _catalog() -> Response:
    if request.method not in ("GET", "HEAD"):
        raise _unsupported()
    target = host_target()
    _remember(auth.authorize(target, "registry", scopes.CATALOG, ("*",)))
    n, last = _page_size(), request.args.get("last") or None
    repositories, more = content().catalog(target.registry, n, last)
    response = _json({"repositories": repositories})
    if more and repositories and n != 0:
        response.headers["Link"] = _link("/v2/_catalog", repositories[-1], n or len(repositories), "&orderby=")
    return response


def _no_catalog() -> Response:
    """The service's own host is no registry: path style has no catalog of its own (it would span every registry).
    404 with the OCI body and code UNSUPPORTED, as registries without a catalog answer: clients that list catalogs
    (oras, crane, regctl) print its code and message; a 401 would only send them after a token that cannot help."""
    if request.method not in ("GET", "HEAD"):
        raise _unsupported()
    suffix = app_context().settings.login_server_suffix
    raise OciError(404, "UNSUPPORTED", "The service's own host serves no catalog: a registry's catalog is "
                   f"/v2/_catalog on its login server, <registry>.{suffix}.", {"loginServerSuffix": suffix})


def _referrers(name: str, digest: str) -> Response:
    target, repository, _ = _begin(name, PULL)
    artifact_type = request.args.get("artifactType") or None
    descriptors = content().referrers(target.registry, repository, digest, artifact_type)
    response = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
    response.headers["Content-Type"] = OCI_INDEX
    if artifact_type:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    return response


# -- helpers ----------------------------------------------------------------------------------------------------


def _empty(status: int, headers: dict[str, str]) -> Response:
    response = Response(status=status)
    for key, value in headers.items():
        response.headers[key] = value
    if "Content-Type" not in headers:
        response.headers.pop("Content-Type", None)
    return response


def _json(body: dict) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=200, mimetype="application/json")


_HANDLERS: dict[str, dict[str, Callable[..., Response]]] = {
    "uploads": {"POST": _uploads_post},
    "upload": {"PATCH": _upload_patch, "PUT": _upload_put, "GET": _upload_status, "DELETE": _upload_cancel},
    "blob": {"GET": _blob_get, "HEAD": _blob_get, "DELETE": _blob_delete},
    "manifest": {"GET": _manifest_get, "HEAD": _manifest_get, "PUT": _manifest_put, "DELETE": _manifest_delete},
    "tags": {"GET": _tags},
    "referrers": {"GET": _referrers},
}
