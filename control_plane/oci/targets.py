"""Which registry a data-plane request addresses, and the content service that answers it.

Host style: the Host header (port ignored) is `<registry>.<login server suffix host>`; the dispatcher
(control_plane/oci/app.py) puts the name into the WSGI environ. Path style: the service's own host, and the first
segment of the repository name is the registry (`/v2/<registry>/<repo…>/…`).
"""

from __future__ import annotations

from flask import current_app, request

from control_plane.content.errors import NameInvalid, NameUnknown
from control_plane.content.service import ContentService, RegistryRef
from control_plane.context import app_context
from control_plane.dataplane.service import public_host
from control_plane.oci.auth import RegistryTarget

REGISTRY_HOST = "control_plane.registry_host"  # environ key: the registry name a host-style request addresses
CONTENT_KEY = "control_plane.content"


def content() -> ContentService:
    return current_app.extensions[CONTENT_KEY]


def registry_host_name(host: str, suffix_host: str, own_host: str) -> str | None:
    """The registry a Host header names (`myreg.localhost:8443` -> `myreg`), None for any other host."""
    if not host:
        return None
    hostname = host.lower()
    if not hostname.startswith("["):
        hostname = hostname.rsplit(":", 1)[0] if hostname.count(":") == 1 else hostname
    tail = "." + suffix_host
    if hostname == own_host or not hostname.endswith(tail):
        return None
    name = hostname[: -len(tail)]
    return name if name and name.isascii() and name.isalnum() else None


def is_host_style() -> bool:
    return REGISTRY_HOST in request.environ


def host_target() -> RegistryTarget:
    """The host-style target of this request: its registry, or NAME_UNKNOWN when there is none by that name."""
    name = request.environ[REGISTRY_HOST]
    return target_of(name, content().registry(name))


def path_target(registry_name: str | None) -> RegistryTarget:
    """The path-style target: the registry named by the path's first segment (None: the ping, naming none)."""
    if registry_name is None:
        return RegistryTarget(None, "path", public_host(app_context().settings.public_url))
    return target_of(registry_name, content().registry(registry_name))


def target_of(registry_name: str, registry: RegistryRef | None) -> RegistryTarget:
    """The target for a registry already read by `registry_name` (None: NAME_UNKNOWN), in this request's style."""
    if registry is None:
        raise NameUnknown("registry not known", detail={"registry": registry_name[:100]})
    if is_host_style():
        return RegistryTarget(registry, "host", registry.login_server)
    return RegistryTarget(registry, "path", public_host(app_context().settings.public_url),
                          prefix=f"{registry_name}/")


def split(name: str) -> tuple[str, str]:
    """(registry name, repository inside it) for the name a /v2 path carries."""
    if is_host_style():
        return request.environ[REGISTRY_HOST], name
    registry, sep, repository = name.partition("/")
    if not sep or not registry or not repository:
        raise NameInvalid("path-style repository names are <registry>/<repository>", detail={"name": name[:300]})
    return registry, repository


def resolve(name: str) -> tuple[RegistryTarget, str]:
    """(target, repository inside the registry) for the name a /v2 path carries."""
    registry, repository = split(name)
    return target_of(registry, content().registry(registry)), repository
