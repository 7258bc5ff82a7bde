"""What a browser portal on another origin needs from ARM: `POST /batch?api-version=2020-06-01` (each request in it
answered exactly as the same call made directly) and CORS for the configured origins (CONTROL_PLANE_CORS_ORIGINS).

Against `control-plane serve` on both backends; the CORS tests start a service of their own with origins set.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.mgmt.containerregistry.models import Registry, Sku
from flask import Flask

from control_plane import cors
from control_plane.config import Settings, SettingsError
from tests.conftest import Arm, unique_registry_name
from tests.support import servers

BATCH = "/batch?api-version=2020-06-01"
REGISTRY_API = "?api-version=2023-07-01"
GROUP_API = "?api-version=2021-04-01"
PORTAL = "https://portal.example"
# Added by gunicorn on the wire, not by the app: a request inside a batch never passes through it.
SERVER_HEADERS = frozenset({"date", "server", "connection", "keep-alive", "transfer-encoding"})


def app_headers(headers) -> set[str]:
    return {name.lower() for name in headers} - SERVER_HEADERS


def batch_item(method: str, url: str, content=None, name: str | None = None) -> dict:
    item: dict = {"httpMethod": method, "url": url, "requestHeaderDetails": {"commandName": "Tests.Batch."}}
    if content is not None:
        item["content"] = content
    if name is not None:
        item["name"] = name
    return item


def send_batch(arm: Arm, items: list[dict], **kwargs) -> requests.Response:
    return arm.request("POST", BATCH, json={"requests": items}, **kwargs)


def activity_events(arm: Arm, correlation_id: str) -> list[dict]:
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = arm.request("GET", f"/subscriptions/{arm.service.subscription_id}/providers/Microsoft.Insights/"
                                  "eventtypes/management/values?api-version=2015-04-01",
                           params={"$filter": f"eventTimestamp ge {since} and correlationId eq '{correlation_id}'"})
    events = []
    while True:
        assert response.status_code == 200, response.text
        events += response.json()["value"]
        if not response.json().get("nextLink"):
            return events
        response = arm.request("GET", response.json()["nextLink"])


def token_for(service, client_id: str, secret: str, tenant_id: str) -> str:
    response = requests.post(f"{service.url}/{tenant_id}/oauth2/v2.0/token", verify=service.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": "https://management.azure.com/.default"})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# --- POST /batch ----------------------------------------------------------------------------------------------


def test_batch_answers_each_request_as_a_direct_call_would(service, arm, acr, group):
    """GET, PUT and DELETE, successes and ARM errors: each response in the batch has the status, headers and body
    of the same call made directly, and each write runs (and is activity-logged) as itself."""
    doomed, twin = unique_registry_name("batchdel"), unique_registry_name("batchtwin")
    for name in (doomed, twin):
        acr.registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Basic"))).result()
    created, created_direct = unique_registry_name("batchnew"), unique_registry_name("directnew")
    missing = unique_registry_name("missing")
    group_url = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}{GROUP_API}"
    registry = {"location": "eastus", "sku": {"name": "Basic"}}
    correlation_id = str(uuid.uuid4())
    items = [
        batch_item("GET", group_url, name="group"),
        batch_item("PUT", arm.registry_path(group, created) + REGISTRY_API, registry, name="create"),
        # An absolute URL (what the portal sends): its host is not this service's, and does not matter.
        batch_item("GET", "https://management.azure.com" + arm.registry_path(group, missing) + REGISTRY_API,
                   name="missing"),
        batch_item("PUT", arm.registry_path(group, missing) + REGISTRY_API,
                   {"location": "eastus", "sku": {"name": "Gold"}}, name="bad-sku"),
        batch_item("GET", arm.registry_path(group, doomed), name="no-api-version"),
        batch_item("delete", arm.registry_path(group, doomed) + REGISTRY_API, name="delete"),
    ]
    response = send_batch(arm, items, headers={"x-ms-correlation-request-id": correlation_id})
    assert response.status_code == 200, response.text
    answers = response.json()["responses"]
    assert [a["name"] for a in answers] == [i["name"] for i in items], "one response per request, in order"
    got = {a["name"]: a for a in answers}
    for answer in answers:
        assert set(answer) == {"name", "httpStatusCode", "headers", "content", "contentLength"}
        assert answer["contentLength"] == int(answer["headers"].get("Content-Length", 0))
        assert answer["headers"]["x-ms-correlation-request-id"] == correlation_id, "the batch's correlation id"

    direct = {
        "group": arm.request("GET", group_url),
        "create": arm.request("PUT", arm.registry_path(group, created_direct) + REGISTRY_API, json=registry),
        "missing": arm.request("GET", arm.registry_path(group, missing) + REGISTRY_API),
        "bad-sku": arm.request("PUT", arm.registry_path(group, missing) + REGISTRY_API,
                               json={"location": "eastus", "sku": {"name": "Gold"}}),
        "no-api-version": arm.request("GET", arm.registry_path(group, doomed)),
        "delete": arm.request("DELETE", arm.registry_path(group, twin) + REGISTRY_API),
    }
    expected_status = {"group": 200, "create": 201, "missing": 404, "bad-sku": 400, "no-api-version": 400,
                       "delete": 202}
    for name, call in direct.items():
        answer = got[name]
        assert answer["httpStatusCode"] == call.status_code == expected_status[name], (name, answer, call.text)
        assert set(map(str.lower, answer["headers"])) == app_headers(call.headers), name
        for header in ("Content-Type", "Retry-After"):
            assert answer["headers"].get(header) == call.headers.get(header), (name, header)
    # Reads and refusals are the same bytes as the direct call's; writes differ only by the registry's name.
    for name in ("group", "missing", "bad-sku", "no-api-version"):
        assert got[name]["content"] == direct[name].json(), name
    assert got["missing"]["content"]["error"]["code"] == "ResourceNotFound"
    assert got["no-api-version"]["content"]["error"]["code"] == "MissingApiVersionParameter"
    assert got["create"]["content"]["name"] == created
    assert got["create"]["content"]["properties"]["provisioningState"] == "Creating"
    assert got["create"]["headers"]["Azure-AsyncOperation"].startswith(service.url)
    assert got["delete"]["headers"]["Location"].startswith(service.url)

    assert acr.registries.get(group, created).name == created, "the batch's PUT ran"
    writes = sorted((e["httpRequest"]["method"], e["resourceId"].rsplit("/", 1)[-1], e["status"]["value"])
                    for e in activity_events(arm, correlation_id))
    assert writes == sorted([("PUT", created, "Succeeded"), ("PUT", missing, "Failed"),
                             ("DELETE", doomed, "Succeeded")]), writes


def test_batch_authorises_each_request_as_the_caller(service, arm, group):
    """The batch itself only needs a valid token; a principal without a role gets each request's own 403, the
    same as calling directly, and nothing changes."""
    sp = service.cli_json("sp", "create", "--name", f"batch-outsider-{uuid.uuid4().hex[:8]}")
    outsider = Arm(service, token_for(service, sp["appId"], sp["password"], sp["tenant"]))
    group_url = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}{GROUP_API}"
    other_url = f"/subscriptions/{service.subscription_id}/resourceGroups/{group}-not{GROUP_API}"
    items = [batch_item("GET", group_url), batch_item("PUT", other_url, {"location": "eastus"}),
             batch_item("DELETE", group_url)]
    response = send_batch(outsider, items)
    assert response.status_code == 200, response.text
    answers = response.json()["responses"]
    direct = [outsider.request(i["httpMethod"], i["url"], json=i.get("content")) for i in items]
    for answer, call in zip(answers, direct, strict=True):
        assert "name" not in answer, "no name asked, none answered"
        assert answer["httpStatusCode"] == call.status_code == 403
        assert answer["content"] == call.json()
        assert answer["content"]["error"]["code"] == "AuthorizationFailed"
        assert sp["id"] in answer["content"]["error"]["message"]
    assert arm.request("GET", group_url).status_code == 200, "the outsider's DELETE did not run"
    assert arm.request("GET", other_url).status_code == 404, "the outsider's PUT did not run"


def test_an_empty_batch_answers_no_responses(arm):
    response = send_batch(arm, [])
    assert response.status_code == 200, response.text
    assert response.json() == {"responses": []}


def test_batch_refuses_malformed_bodies_whole_and_runs_nothing(service, arm):
    never = f"rg-never-{uuid.uuid4().hex[:8]}"
    never_url = f"/subscriptions/{service.subscription_id}/resourceGroups/{never}{GROUP_API}"
    put_never = batch_item("PUT", never_url, {"location": "eastus"})
    group_get = batch_item("GET", f"/subscriptions/{service.subscription_id}/resourceGroups{GROUP_API}")
    bodies = {
        "no requests": ({}, "requests"),
        "requests not a list": ({"requests": {"0": put_never}}, "requests"),
        "21 requests": ({"requests": [put_never] + [group_get] * 20}, "requests"),
        "request not an object": ({"requests": [put_never, "GET /subscriptions"]}, "requests[1]"),
        "no method": ({"requests": [put_never, {"url": group_get["url"]}]}, "requests[1].httpMethod"),
        "unknown method": ({"requests": [put_never, {**group_get, "httpMethod": "TRACE"}]},
                           "requests[1].httpMethod"),
        "no url": ({"requests": [put_never, {"httpMethod": "GET"}]}, "requests[1].url"),
        "nested batch": ({"requests": [put_never, batch_item("POST", BATCH, {"requests": []})]}, "requests[1].url"),
        "nested absolute batch": ({"requests": [put_never, batch_item("POST", f"{service.url}{BATCH}")]},
                                  "requests[1].url"),
        "dot segments to batch": ({"requests": [put_never, batch_item("POST", "/subscriptions/../batch")]},
                                  "requests[1].url"),
        "not an ARM url": ({"requests": [put_never, batch_item("GET", "/v1.0/me")]}, "requests[1].url"),
        "relative without slash": ({"requests": [put_never, batch_item("GET", "subscriptions")]},
                                   "requests[1].url"),
        "other scheme": ({"requests": [put_never, batch_item("GET", "ftp://x.example/subscriptions")]},
                         "requests[1].url"),
        "control character": ({"requests": [put_never, batch_item("GET", "/subscriptions/\n")]}, "requests[1].url"),
        "unclosed IPv6 host": ({"requests": [put_never, batch_item("GET", "https://[::1/subscriptions")]},
                               "requests[1].url"),
        "name not a string": ({"requests": [put_never, {**group_get, "name": 7}]}, "requests[1].name"),
    }
    for label, (body, target) in bodies.items():
        response = arm.request("POST", BATCH, json=body)
        assert response.status_code == 400, (label, response.text)
        error = response.json()["error"]
        assert (error["code"], error.get("target")) == ("InvalidRequestContent", target), (label, error)
    for label, data in {"not JSON": b"{requests", "a JSON array": b"[]", "empty": b""}.items():
        response = arm.request("POST", BATCH, data=data, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (label, response.text)
        assert response.json()["error"]["code"] == "InvalidRequestContent", label
    assert arm.request("GET", never_url).status_code == 404, "a refused batch runs none of its requests"

    refusals = {
        "no api-version": (arm.request("POST", "/batch", json={"requests": []}), 400, "MissingApiVersionParameter"),
        "other api-version": (arm.request("POST", "/batch?api-version=2022-12-01", json={"requests": []}), 400,
                              "InvalidApiVersionParameter"),
        "not JSON media type": (arm.request("POST", BATCH, data=b"requests", headers={"Content-Type": "text/plain"}),
                                415, "UnsupportedMediaType"),
        "no token": (requests.post(f"{service.url}{BATCH}", json={"requests": [put_never]}, verify=service.ca,
                                   timeout=30), 401, "AuthenticationFailed"),
    }
    for label, (response, status, code) in refusals.items():
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (label, response.text)
    assert arm.request("GET", never_url).status_code == 404


# --- CORS -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cors_service(service, tmp_path_factory):
    """A service of its own with CONTROL_PLANE_CORS_ORIGINS set (the session's has none), on the same backend, and
    one worker with a slow read bucket so its `x-ms-ratelimit-remaining-*` counts down one by one."""
    with contextlib.ExitStack() as stack:
        database_url = (stack.enter_context(servers.postgres_database())
                        if "CONTROL_PLANE_DATABASE_URL" in service.env else None)
        svc = servers.make_service(tmp_path_factory.mktemp("cors"), database_url, service.env["CONTROL_PLANE_STORAGE"],
                                   {"CONTROL_PLANE_LOCATIONS": service.env["CONTROL_PLANE_LOCATIONS"],
                                    "CONTROL_PLANE_CORS_ORIGINS": f"{PORTAL},http://localhost:3000",
                                    "CONTROL_PLANE_THROTTLE_READS": "1000:0.001"})
        svc.init = svc.cli_json("init")
        svc.start(workers=1)
        stack.callback(svc.stop)
        svc.arm = Arm(svc, token_for(svc, svc.init["clientId"], svc.init["clientSecret"], svc.tenant_id))
        yield svc


def preflight(svc, path: str, origin: str, method: str = "PUT", headers: str | None = None) -> requests.Response:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return requests.options(f"{svc.url}{path}", headers=asked, verify=svc.ca, timeout=30)


def cors_headers(response: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def vary(response: requests.Response) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()}


def test_cors_preflight_of_an_allowed_origin_needs_no_token_or_api_version(cors_service):
    svc = cors_service
    group_path = f"/subscriptions/{svc.subscription_id}/resourceGroups/rg-preflight"
    asked = "authorization, content-type, x-ms-client-request-id"
    for path in (group_path + GROUP_API, group_path, "/batch"):
        response = preflight(svc, path, PORTAL, headers=asked)
        assert response.status_code == 204, (path, response.text)
        assert response.content == b""
        got = cors_headers(response)
        assert got["access-control-allow-origin"] == PORTAL
        assert {"GET", "PUT", "PATCH", "POST", "DELETE"} <= {
            m.strip() for m in got["access-control-allow-methods"].split(",")}
        assert got["access-control-allow-headers"] == asked
        assert int(got["access-control-max-age"]) > 0
        assert "access-control-allow-credentials" not in got, "bearer tokens, never cookies"
        assert "origin" in vary(response)
    assert preflight(svc, "/batch", "http://localhost:3000", "POST").status_code == 204, "each listed origin"


def test_cors_preflights_are_neither_throttled_nor_activity_logged(cors_service):
    svc, arm = cors_service, cors_service.arm
    path = f"/subscriptions/{svc.subscription_id}/resourceGroups{GROUP_API}"
    before = int(arm.request("GET", path).headers["x-ms-ratelimit-remaining-subscription-reads"])
    correlation_id = str(uuid.uuid4())
    for method in ("GET", "PUT", "DELETE"):
        response = requests.options(f"{svc.url}/subscriptions/{svc.subscription_id}/resourceGroups/rg-x{GROUP_API}",
                                    headers={"Origin": PORTAL, "Access-Control-Request-Method": method,
                                             "x-ms-correlation-request-id": correlation_id},
                                    verify=svc.ca, timeout=30)
        assert response.status_code == 204
        assert not [h for h in response.headers if h.lower().startswith("x-ms-ratelimit")]
    after = int(arm.request("GET", path).headers["x-ms-ratelimit-remaining-subscription-reads"])
    assert after == before - 1, "only the two GETs took from the read bucket"
    assert activity_events(arm, correlation_id) == []


def test_cors_preflight_of_another_origin_is_refused(cors_service):
    svc = cors_service
    for origin in ("https://evil.example", "http://portal.example", "https://portal.example:8443", "null"):
        response = preflight(svc, f"/subscriptions/{svc.subscription_id}/resourceGroups{GROUP_API}", origin, "GET")
        assert response.status_code == 403, origin
        assert cors_headers(response) == {}, origin
        assert "origin" in vary(response)


def test_cors_headers_on_actual_responses(cors_service):
    svc, arm = cors_service, cors_service.arm
    response = arm.request("GET", "/subscriptions?api-version=2022-12-01", headers={"Origin": PORTAL})
    assert response.status_code == 200
    got = cors_headers(response)
    assert got["access-control-allow-origin"] == PORTAL
    assert "access-control-allow-credentials" not in got
    exposed = {h.strip().lower() for h in got["access-control-expose-headers"].split(",")}
    assert {"x-ms-request-id", "x-ms-correlation-request-id", "location", "azure-asyncoperation", "retry-after",
            "etag", "x-ms-ratelimit-remaining-subscription-reads", "x-ms-ratelimit-remaining-subscription-writes",
            "x-ms-ratelimit-remaining-subscription-deletes", "x-ms-ratelimit-remaining-tenant-reads",
            "x-ms-ratelimit-remaining-tenant-writes", "x-ms-ratelimit-remaining-tenant-deletes"} <= exposed
    assert "origin" in vary(response)

    # Errors too, so the page can read why: a 401 without a token.
    refused = requests.get(f"{svc.url}/subscriptions?api-version=2022-12-01", headers={"Origin": PORTAL},
                           verify=svc.ca, timeout=30)
    assert refused.status_code == 401
    assert cors_headers(refused)["access-control-allow-origin"] == PORTAL
    assert "www-authenticate" in cors_headers(refused)["access-control-expose-headers"].lower()

    batch = send_batch(arm, [batch_item("GET", f"/subscriptions/{svc.subscription_id}?api-version=2022-12-01")],
                       headers={"Origin": PORTAL})
    assert batch.status_code == 200
    assert cors_headers(batch)["access-control-allow-origin"] == PORTAL
    assert batch.json()["responses"][0]["httpStatusCode"] == 200

    # Another origin is answered as usual (browsers enforce CORS), without any CORS header.
    other = arm.request("GET", "/subscriptions?api-version=2022-12-01", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200
    assert cors_headers(other) == {}
    assert "origin" in vary(other)


def test_no_cors_without_configured_origins(service):
    response = preflight(service, "/batch", PORTAL, "POST")
    assert cors_headers(response) == {}
    plain = requests.get(f"{service.url}/metadata/endpoints?api-version=2022-09-01", headers={"Origin": PORTAL},
                         verify=service.ca, timeout=30)
    assert cors_headers(plain) == {}


# --- the setting and the module on its own ---------------------------------------------------------------------


def test_cors_origins_setting(tmp_path):
    def origins(raw: str) -> tuple[str, ...]:
        return Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path), "CONTROL_PLANE_CORS_ORIGINS": raw}
                                 ).cors_origins

    assert origins("") == ()
    assert origins(" https://Portal.Example , http://localhost:3000 ") == ("https://portal.example",
                                                                          "http://localhost:3000")
    assert origins("*") == ("*",)
    for bad in ("https://portal.example/", "https://portal.example/app", "portal.example", "ftp://portal.example",
                "*,https://portal.example", "https://portal.example?x=1"):
        with pytest.raises(SettingsError):
            origins(bad)


def test_cors_installs_on_any_flask_app_and_star_allows_every_origin(tmp_path):
    """What the data plane installs (with its own expose list); `*` is answered as `*`, never with credentials."""
    app = Flask("plain")
    app.add_url_rule("/thing", "thing", lambda: "ok")
    settings = Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path), "CONTROL_PLANE_CORS_ORIGINS": "*"})
    cors.install(app, settings, cors.REGISTRY_EXPOSE_HEADERS)
    client = app.test_client()
    response = client.get("/thing", headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Expose-Headers"] == ", ".join(cors.REGISTRY_EXPOSE_HEADERS)
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" not in response.headers.get("Vary", ""), "the answer is the same for every origin"
    response = client.options("/thing", headers={"Origin": "https://anywhere.example",
                                                  "Access-Control-Request-Method": "DELETE",
                                                  "Access-Control-Request-Headers": "bad header; x"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Headers" not in response.headers, "a malformed list is not echoed"
    assert client.get("/thing").headers.get("Access-Control-Allow-Origin") is None, "no Origin, no CORS"
