"""The portal back end's view of the service: ARM, Graph and a registry's data plane over HTTPS, with the
signed-in person's tokens. Errors keep the service's own code and message, to show them as they are."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import requests

from control_plane.portal.config import PortalConfig

ARM_VERSIONS = {
    "resources": "2022-09-01",
    "subscriptions": "2022-12-01",
    "registries": "2023-07-01",
    "authorization": "2022-04-01",
    "activity": "2015-04-01",
}
TIMEOUT = 30
MAX_PAGES = 20  # a page of the portal shows at most this many of the service's pages


class ApiError(Exception):
    """A call the service refused: its HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def _error_of(response: requests.Response) -> ApiError:
    code, message = f"HTTP{response.status_code}", response.reason or "The request failed."
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # ARM and Graph
            code = body["error"].get("code", code)
            message = body["error"].get("message", message)
        elif isinstance(body.get("errors"), list) and body["errors"]:  # the data plane (OCI)
            code = body["errors"][0].get("code", code)
            message = body["errors"][0].get("message", message)
    return ApiError(response.status_code, str(code), str(message))


class HttpSession(requests.Session):
    """requests with the service's CA on every request: a session-wide `verify` loses to REQUESTS_CA_BUNDLE."""

    def __init__(self, verify: str | bool):
        super().__init__()
        self.ca = verify

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("verify", self.ca)
        return super().request(method, url, *args, **kwargs)


def _registry_error(response: requests.Response) -> ApiError:
    """The data plane answers 401 to a token without the right it needs: for the person that is a refusal (403),
    not a reason to sign in again."""
    error = _error_of(response)
    if error.status == 401:
        error.status = 403
    return error


_local = threading.local()


def http_session(verify: str | bool) -> requests.Session:
    """One connection pool per thread and CA (a requests.Session is not meant to be shared between threads; an
    external authority's certificate may come from another CA than the service's)."""
    sessions: dict = _local.__dict__.setdefault("sessions", {})
    session = sessions.get(verify)
    if session is None:
        session = sessions[verify] = HttpSession(verify)
    return session


@dataclass
class Lro:
    """A long-running operation ARM accepted: where to follow it (None when the answer was already final)."""

    status_url: str | None


class Service:
    """One person's client of the service; `token(resource)` gives an access token for ARM, Graph or ACR."""

    def __init__(self, config: PortalConfig, token: Callable[[str], str]):
        self.config = config
        self.token = token
        self.http = http_session(config.verify)

    # -- ARM -------------------------------------------------------------------------------------------------------

    def _send(self, method: str, url: str, resource: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(resource)}", **kwargs.pop("headers", {})}
        try:
            response = self.http.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(503, "ServiceUnreachable", f"The service could not be reached: {type(exc).__name__}") \
                from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def arm_url(self, path: str, api: str) -> str:
        separator = "&" if "?" in path else "?"
        return f"{self.config.public_url}{path}{separator}api-version={ARM_VERSIONS[api]}"

    def arm(self, method: str, path: str, api: str, body: Any = None, params: dict | None = None,
            headers: dict | None = None) -> dict:
        response = self._send(method, self.arm_url(path, api), self.config.arm_resource, json=body, params=params,
                              headers=headers or {})
        return response.json() if response.content else {}

    def arm_list(self, path: str, api: str, params: dict | None = None) -> list[dict]:
        """Every item of an ARM list, following nextLink."""
        page = self.arm("GET", path, api, params=params)
        items = list(page.get("value", []))
        for _ in range(MAX_PAGES):
            link = page.get("nextLink")
            if not link:
                break
            page = self._send("GET", link, self.config.arm_resource).json()
            items += page.get("value", [])
        return items

    def arm_lro(self, method: str, path: str, api: str, body: Any = None, headers: dict | None = None) -> Lro:
        response = self._send(method, self.arm_url(path, api), self.config.arm_resource, json=body,
                              headers=headers or {})
        status_url = response.headers.get("Azure-AsyncOperation") or (
            response.headers.get("Location") if response.status_code == 202 else None)
        return Lro(status_url)

    def operation_status(self, status_url: str) -> dict:
        """The status of a long-running operation: `Succeeded`, `Failed` (with ARM's error) or still running."""
        if not status_url.startswith(self.config.public_url + "/"):
            raise ApiError(400, "InvalidOperation", "That is not an operation of this service.")
        response = self._send("GET", status_url, self.config.arm_resource)
        if response.status_code == 202:
            return {"status": "InProgress"}
        body = response.json() if response.content else {}
        if "status" not in body:  # a Location URL answers the final resource (or nothing) when done
            return {"status": "Succeeded"}
        return body

    # -- Graph -----------------------------------------------------------------------------------------------------

    def graph(self, method: str, path: str, body: Any = None, params: dict | None = None) -> dict:
        if self.config.external_authority:  # the directory is the built-in issuer's: no token of ours reaches it
            raise ApiError(501, "DirectoryUnavailable", "The directory (Microsoft Graph) is only available to "
                           "people who sign in at the service's built-in issuer, not at an external authority.")
        url = f"{self.config.public_url}/v1.0{path}"
        response = self._send(method, url, self.config.graph_resource, json=body, params=params)
        return response.json() if response.content else {}

    # -- a registry's data plane -----------------------------------------------------------------------------------

    def registry(self, login_server: str) -> Registry:
        return Registry(self, login_server)


class Registry:
    """ACR's `/acr/v1/` API of one registry, reached at the service's address with the login server as `Host`
    (the data plane is chosen by Host; the portal back end need not resolve every `<name>.<suffix>` itself).
    The person's token is exchanged at `/oauth2/exchange` for a refresh token, then for access tokens per scope."""

    def __init__(self, service: Service, login_server: str):
        self.service = service
        self.login_server = login_server
        self._refresh_token: str | None = None
        self._access: dict[str, tuple[str, float]] = {}

    def _post_form(self, path: str, form: dict) -> dict:
        try:
            response = self.service.http.post(f"{self.service.config.public_url}{path}", data=form,
                                              headers={"Host": self.login_server}, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ApiError(503, "ServiceUnreachable", f"The registry could not be reached: {type(exc).__name__}") \
                from None
        if response.status_code >= 400:
            raise _registry_error(response)
        return response.json()

    def _access_token(self, scope: str) -> str:
        cached = self._access.get(scope)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if self._refresh_token is None:
            self._refresh_token = self._post_form("/oauth2/exchange", {
                "grant_type": "access_token", "service": self.login_server,
                "access_token": self.service.token(self.service.config.acr_resource)})["refresh_token"]
        answer = self._post_form("/oauth2/token", {"grant_type": "refresh_token", "service": self.login_server,
                                                   "scope": scope, "refresh_token": self._refresh_token})
        self._access[scope] = (answer["access_token"], time.monotonic() + int(answer.get("expires_in", 60)) - 10)
        return answer["access_token"]

    def _call(self, method: str, path: str, scope: str, api: str = "acr/v1", **kwargs) -> requests.Response:
        headers = {"Host": self.login_server, "Authorization": f"Bearer {self._access_token(scope)}"}
        try:
            response = self.service.http.request(method, f"{self.service.config.public_url}/{api}/{path}",
                                                 headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(503, "ServiceUnreachable", f"The registry could not be reached: {type(exc).__name__}") \
                from None
        if response.status_code >= 400:
            raise _registry_error(response)
        return response

    def _pages(self, path: str, scope: str, key: str) -> list[dict]:
        items: list = []
        params: dict[str, Any] | None = {"n": 100}
        for _ in range(MAX_PAGES):
            response = self._call("GET", path, scope, params=params)
            items += response.json().get(key) or []
            link = response.links.get("next", {}).get("url")
            if not link:
                break
            path, _, query = link.removeprefix("/acr/v1/").partition("?")
            params = dict(parse_qsl(query))
        return items

    def repositories(self) -> list[str]:
        return self._pages("_catalog", "registry:catalog:*", "repositories")

    def tags(self, name: str) -> list[dict]:
        return self._pages(f"{quote(name, safe='/')}/_tags", f"repository:{name}:metadata_read", "tags")

    def manifests(self, name: str) -> list[dict]:
        return self._pages(f"{quote(name, safe='/')}/_manifests", f"repository:{name}:metadata_read", "manifests")

    def update(self, name: str, kind: str, item: str, attributes: dict[str, bool]) -> dict:
        return self._call("PATCH", f"{quote(name, safe='/')}/{kind}/{quote(item, safe=':')}",
                          f"repository:{name}:metadata_write", json=attributes).json()

    def delete(self, name: str, kind: str, item: str) -> None:
        """A tag through ACR's API; a manifest (and every tag on it) through the registry API, as the SDK does."""
        scope = f"repository:{name}:delete"
        if kind == "_tags":
            self._call("DELETE", f"{quote(name, safe='/')}/_tags/{quote(item)}", scope)
        else:
            self._call("DELETE", f"{quote(name, safe='/')}/manifests/{quote(item, safe=':')}", scope, api="v2")
