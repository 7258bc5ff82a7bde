"""The ARM wire protocol over raw HTTPS: api-version gate, paths, headers, bodies, errors, LROs and paging.

Every bad request asserts the status and the ARM error code, and that the answer is the error envelope.
"""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import GUID, assert_arm_error, unique_registry_name

REGISTRY_VERSION = "2025-11-01"
RESOURCES_VERSION = "2021-04-01"
SUBSCRIPTIONS_VERSION = "2022-12-01"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def registry_body(location: str = "eastus", sku: str = "Basic") -> dict:
    return {"location": location, "sku": {"name": sku}}


def wait_until(predicate, timeout: float = 30, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def create_registry(arm, group: str, name: str, **body) -> dict:
    """A registry, created over raw HTTPS and waited on until Succeeded."""
    path = arm.registry_path(group, name)
    response = arm.request("PUT", f"{path}?api-version={REGISTRY_VERSION}", json={**registry_body(), **body})
    assert response.status_code == 201, response.text
    return wait_until(lambda: _succeeded(arm, path))


def _succeeded(arm, path: str) -> dict | None:
    body = arm.request("GET", f"{path}?api-version={REGISTRY_VERSION}").json()
    return body if body["properties"]["provisioningState"] == "Succeeded" else None


@pytest.fixture
def groups_to_delete(arm):
    """Resource groups a test makes over raw HTTPS, deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        arm.request("DELETE", f"/subscriptions/{arm.service.subscription_id}/resourceGroups/{name}"
                              f"?api-version={RESOURCES_VERSION}")


# -- api-version -------------------------------------------------------------------------------------------


def api_version_cases(service, group: str) -> list[tuple[str, str, str]]:
    """(path without api-version, a version that route family accepts, one it must list as supported)."""
    sub = f"/subscriptions/{service.subscription_id}"
    return [
        (f"{sub}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/nosuchregistry",
         REGISTRY_VERSION, "2023-07-01"),
        (f"{sub}/providers/Microsoft.ContainerRegistry/registries", REGISTRY_VERSION, "2019-05-01"),
        (f"{sub}/resourceGroups/{group}", RESOURCES_VERSION, "2024-11-01"),
        (f"{sub}/resourcegroups", RESOURCES_VERSION, "2021-04-01"),
        ("/subscriptions", SUBSCRIPTIONS_VERSION, "2022-12-01"),
        (sub, SUBSCRIPTIONS_VERSION, "2020-01-01"),
    ]


def test_missing_api_version(arm, service, group):
    for path, _, _ in api_version_cases(service, group):
        assert_arm_error(arm.request("GET", path), 400, "MissingApiVersionParameter")
        assert_arm_error(arm.request("GET", f"{path}?api-version="), 400, "MissingApiVersionParameter")


def test_unknown_api_version_lists_supported_versions(arm, service, group):
    for path, _, listed in api_version_cases(service, group):
        error = assert_arm_error(arm.request("GET", f"{path}?api-version=1999-01-01"), 400,
                                 "InvalidApiVersionParameter")
        assert "1999-01-01" in error["message"] and listed in error["message"]


def test_api_version_is_checked_before_the_body(arm, group):
    path = arm.registry_path(group, unique_registry_name())
    response = arm.request("PUT", path, data=b"{not json", headers={"Content-Type": "application/json"})
    assert_arm_error(response, 400, "MissingApiVersionParameter")


def test_supported_api_versions_answer(arm, service, group):
    for path, version, _ in api_version_cases(service, group):
        response = arm.request("GET", f"{path}?api-version={version}")
        assert response.status_code in (200, 404), response.text
        if response.status_code == 404:
            assert_arm_error(response, 404, "ResourceNotFound")


# -- paths -------------------------------------------------------------------------------------------------


def test_literal_segments_are_case_insensitive_and_names_keep_their_casing(arm, service, groups_to_delete):
    group = f"RG-Case-{uuid.uuid4().hex[:8]}"
    name = unique_registry_name("CaseReg")
    sub = service.subscription_id
    groups_to_delete.append(group)

    created = arm.request("PUT", f"/subscriptions/{sub}/resourcegroups/{group}?api-version={RESOURCES_VERSION}",
                          json={"location": "eastus"})
    assert created.status_code == 201, created.text
    assert created.json()["id"] == f"/subscriptions/{sub}/resourceGroups/{group}"

    path = (f"/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{group}/PROVIDERS/microsoft.containerregistry/REGISTRIES/"
            f"{name}?api-version={REGISTRY_VERSION}")
    put = arm.request("PUT", path, json=registry_body())
    assert put.status_code == 201, put.text
    canonical_id = (f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/"
                    f"registries/{name}")
    assert put.json()["id"] == canonical_id

    lower = (f"/subscriptions/{sub}/resourcegroups/{group.lower()}/providers/microsoft.containerregistry/"
             f"registries/{name.lower()}?api-version={REGISTRY_VERSION}")
    fetched = arm.request("GET", lower)
    assert fetched.status_code == 200, fetched.text
    assert (fetched.json()["id"], fetched.json()["name"]) == (canonical_id, name)

    group_read = arm.request("GET", f"/subscriptions/{sub}/resourcegroups/{group.upper()}"
                                    f"?api-version={RESOURCES_VERSION}")
    assert group_read.status_code == 200, group_read.text
    assert (group_read.json()["id"], group_read.json()["name"]) == (f"/subscriptions/{sub}/resourceGroups/{group}",
                                                                  group)

    listed = arm.request("GET", f"/subscriptions/{sub}/RESOURCEGROUPS/{group.lower()}/providers/"
                                f"Microsoft.ContainerRegistry/Registries?api-version={REGISTRY_VERSION}")
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["value"]] == [canonical_id]


# -- headers -----------------------------------------------------------------------------------------------


def test_every_response_carries_request_ids(arm, service, group):
    sub = service.subscription_id
    registry = arm.registry_path(group, unique_registry_name())
    responses = [
        arm.request("GET", f"/subscriptions/{sub}?api-version={SUBSCRIPTIONS_VERSION}"),
        arm.request("PUT", f"{registry}?api-version={REGISTRY_VERSION}", json=registry_body()),
        arm.request("DELETE", f"{registry}?api-version={REGISTRY_VERSION}"),
        arm.request("DELETE", arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"),
        arm.request("GET", registry),
        arm.request("GET", f"/subscriptions/{sub}/nothing/here?api-version={REGISTRY_VERSION}"),
        arm.request("POST", f"{registry}?api-version={REGISTRY_VERSION}"),
        arm.request("PUT", f"{registry}?api-version={REGISTRY_VERSION}", data="x",
                    headers={"Content-Type": "text/plain"}),
        requests.get(f"{service.url}/subscriptions?api-version={SUBSCRIPTIONS_VERSION}", verify=service.ca,
                     timeout=30),
        requests.get(f"{service.url}/{service.tenant_id}/v2.0/.well-known/openid-configuration", verify=service.ca,
                     timeout=30),
        requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", data={"grant_type": "password"},
                      verify=service.ca, timeout=30),
    ]
    assert [r.status_code for r in responses] == [200, 201, 202, 204, 400, 404, 405, 415, 401, 200, 400]
    request_ids = [r.headers.get("x-ms-request-id", "") for r in responses]
    assert all(GUID.match(i) for i in request_ids), request_ids
    assert len(set(request_ids)) == len(request_ids)
    assert all(GUID.match(r.headers.get("x-ms-correlation-request-id", "")) for r in responses)


def test_correlation_id_is_echoed_or_minted(arm, service):
    path = f"/subscriptions/{service.subscription_id}?api-version={SUBSCRIPTIONS_VERSION}"
    sent = str(uuid.uuid4())
    echoed = arm.request("GET", path, headers={"x-ms-correlation-request-id": sent})
    assert echoed.headers["x-ms-correlation-request-id"] == sent
    failed = arm.request("GET", "/subscriptions/not-a-guid?api-version=2022-12-01",
                         headers={"x-ms-correlation-request-id": sent})
    assert_arm_error(failed, 400, "InvalidSubscriptionId")
    assert failed.headers["x-ms-correlation-request-id"] == sent

    minted = [arm.request("GET", path).headers["x-ms-correlation-request-id"] for _ in range(2)]
    assert all(GUID.match(m) for m in minted) and minted[0] != minted[1] and sent not in minted


# -- bodies ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"{not json", b'{"location": "eastus",}', b'{"location": "\xff\xfe"}', b"[" * 100_000, b"{" * 1000,
    b'"just a string"', b"null", b"42",
], ids=["garbage", "trailing-comma", "bad-utf8", "deep-array", "deep-object", "string", "null", "number"])
def test_malformed_json_is_invalid_request_content(arm, service, group, raw):
    name = unique_registry_name()
    path = arm.registry_path(group, name) + f"?api-version={REGISTRY_VERSION}"
    response = arm.request("PUT", path, data=raw, headers={"Content-Type": "application/json"})
    assert_arm_error(response, 400, "InvalidRequestContent")
    assert_arm_error(arm.request("GET", path), 404, "ResourceNotFound")


def test_json_array_body_is_refused(arm, group):
    path = arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"
    assert_arm_error(arm.request("PUT", path, json=[registry_body()]), 400, "InvalidRequestContent")
    assert_arm_error(arm.request("PATCH", path, json=[]), 400, "InvalidRequestContent")
    assert_arm_error(arm.request("GET", path), 404, "ResourceNotFound")


def test_empty_body_is_refused(arm, group):
    path = arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"
    assert_arm_error(arm.request("PUT", path, data=b"", headers={"Content-Type": "application/json"}), 400,
                     "InvalidRequestContent")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(arm, group, content_type):
    path = arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"
    response = arm.request("PUT", path, data=b'{"location": "eastus", "sku": {"name": "Basic"}}',
                           headers={"Content-Type": content_type})
    assert_arm_error(response, 415, "UnsupportedMediaType")
    assert_arm_error(arm.request("GET", path), 404, "ResourceNotFound")


def _oversized_body() -> bytes:
    """A well-formed registry body of about 2 MiB (the limit is 1 MiB)."""
    return b'{"location": "eastus", "sku": {"name": "Basic"}, "tags": {"big": "' + b"x" * (2 * 1024 * 1024) + b'"}}'


def test_body_over_the_limit_is_413(arm, group):
    path = arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"
    response = arm.request("PUT", path, data=_oversized_body(), headers={"Content-Type": "application/json"})
    assert_arm_error(response, 413, "RequestEntityTooLarge")
    assert_arm_error(arm.request("GET", path), 404, "ResourceNotFound")


def test_chunked_body_over_the_limit_is_413(arm, group):
    body = _oversized_body()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    path = arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"
    response = arm.request("PUT", path, data=chunks, headers={"Content-Type": "application/json"})
    assert_arm_error(response, 413, "RequestEntityTooLarge")
    assert_arm_error(arm.request("GET", path), 404, "ResourceNotFound")


# -- not found, bad ids, routes and methods ----------------------------------------------------------------


def test_unknown_and_malformed_subscription(arm, group):
    unknown = str(uuid.uuid4())
    for path in (f"/subscriptions/{unknown}?api-version={SUBSCRIPTIONS_VERSION}",
                 f"/subscriptions/{unknown}/resourcegroups?api-version={RESOURCES_VERSION}",
                 f"/subscriptions/{unknown}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries"
                 f"/someregistry?api-version={REGISTRY_VERSION}"):
        assert_arm_error(arm.request("GET", path), 404, "SubscriptionNotFound")
    for bad in ("not-a-guid", unknown[:-1], f"{{{unknown}}}", unknown.replace("-", ""), "0" * 36):
        assert_arm_error(arm.request("GET", f"/subscriptions/{bad}?api-version={SUBSCRIPTIONS_VERSION}"), 400,
                         "InvalidSubscriptionId")
    path = (f"/subscriptions/not-a-guid/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/"
            f"{unique_registry_name()}?api-version={REGISTRY_VERSION}")
    assert_arm_error(arm.request("PUT", path, json=registry_body()), 400, "InvalidSubscriptionId")


def test_unknown_group_and_registry(arm, group):
    missing_group = f"rg-missing-{uuid.uuid4().hex[:8]}"
    name = unique_registry_name()
    in_missing_group = arm.registry_path(missing_group, name) + f"?api-version={REGISTRY_VERSION}"
    assert_arm_error(arm.request("GET", in_missing_group), 404, "ResourceGroupNotFound")
    assert_arm_error(arm.request("PUT", in_missing_group, json=registry_body()), 404, "ResourceGroupNotFound")
    assert_arm_error(arm.request("DELETE", in_missing_group), 404, "ResourceGroupNotFound")
    assert_arm_error(arm.request("GET", f"/subscriptions/{arm.service.subscription_id}/resourceGroups/"
                                        f"{missing_group}?api-version={RESOURCES_VERSION}"), 404,
                     "ResourceGroupNotFound")

    missing = arm.registry_path(group, name) + f"?api-version={REGISTRY_VERSION}"
    assert_arm_error(arm.request("GET", missing), 404, "ResourceNotFound")
    assert_arm_error(arm.request("PATCH", missing, json={"tags": {}}), 404, "ResourceNotFound")
    assert_arm_error(arm.request("POST", arm.registry_path(group, name) + "/listCredentials"
                                 f"?api-version={REGISTRY_VERSION}"), 404, "ResourceNotFound")
    deleted = arm.request("DELETE", missing)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_arm_error(arm.request("GET", in_missing_group), 404, "ResourceGroupNotFound")


def test_unknown_route_and_wrong_method(arm, service, group):
    sub = service.subscription_id
    assert_arm_error(arm.request("GET", f"/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/widgets"
                                        f"?api-version={REGISTRY_VERSION}"), 404, "InvalidResourceType")
    assert_arm_error(arm.request("GET", f"/nothing/here?api-version={REGISTRY_VERSION}"), 404, "NotFound")
    assert_arm_error(arm.request("GET", "/"), 404, "NotFound")

    registry = arm.registry_path(group, unique_registry_name()) + f"?api-version={REGISTRY_VERSION}"
    assert_arm_error(arm.request("POST", registry), 405, "MethodNotAllowed")
    assert_arm_error(arm.request("PUT", f"/subscriptions?api-version={SUBSCRIPTIONS_VERSION}", json={}), 405,
                     "MethodNotAllowed")
    assert_arm_error(arm.request("DELETE", f"/subscriptions/{sub}?api-version={SUBSCRIPTIONS_VERSION}"), 405,
                     "MethodNotAllowed")


# -- long-running operations -------------------------------------------------------------------------------


def test_put_and_delete_are_long_running_operations(arm, service, group):
    name = unique_registry_name("lro")
    path = arm.registry_path(group, name)
    put = arm.request("PUT", f"{path}?api-version={REGISTRY_VERSION}", json=registry_body())
    assert put.status_code == 201, put.text
    assert put.json()["properties"]["provisioningState"] == "Creating"
    assert put.headers["Retry-After"] == "1"
    create_status = put.headers["Azure-AsyncOperation"]
    assert create_status.startswith(f"{service.url}{path}/operationStatuses/")
    assert parse_qs(urlsplit(create_status).query)["api-version"] == [REGISTRY_VERSION]

    def poll_status(url: str) -> dict | None:
        response = arm.request("GET", url)
        assert response.status_code == 200, response.text
        document = response.json()
        assert document["status"] in ("InProgress", "Succeeded"), document
        return document if document["status"] == "Succeeded" else None

    document = wait_until(lambda: poll_status(create_status))
    assert document["name"] == create_status.rsplit("/", 1)[1].split("?")[0]
    assert document["resourceId"].lower() == path.lower()
    assert document["startTime"] and document["endTime"] and document["percentComplete"] == 100
    assert arm.request("GET", f"{path}?api-version={REGISTRY_VERSION}").json()["properties"][
        "provisioningState"] == "Succeeded"

    delete = arm.request("DELETE", f"{path}?api-version={REGISTRY_VERSION}")
    assert delete.status_code == 202, delete.text
    assert delete.headers["Retry-After"] == "1"
    delete_status, location = delete.headers["Azure-AsyncOperation"], delete.headers["Location"]
    assert delete_status.startswith(f"{service.url}{path}/operationStatuses/")
    assert location.startswith(f"{service.url}{path}/operationResults/")

    def deleted() -> bool:
        response = arm.request("GET", location)
        assert response.status_code in (200, 202), response.text
        return response.status_code == 200

    wait_until(deleted)
    assert_arm_error(arm.request("GET", f"{path}?api-version={REGISTRY_VERSION}"), 404, "ResourceNotFound")
    for url in (create_status, delete_status):
        response = arm.request("GET", url)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "Succeeded"
    assert arm.request("GET", location).status_code == 200


def test_unknown_operation_status_is_404(arm, group):
    path = arm.registry_path(group, unique_registry_name())
    response = arm.request("GET", f"{path}/operationStatuses/{uuid.uuid4()}?api-version={REGISTRY_VERSION}")
    assert_arm_error(response, 404, "OperationNotFound")
    assert_arm_error(arm.request("GET", f"{path}/operationStatuses/{uuid.uuid4()}"), 400,
                     "MissingApiVersionParameter")


# -- paging ------------------------------------------------------------------------------------------------


def _skip_token(next_link: str) -> str:
    return parse_qs(urlsplit(next_link).query)["$skipToken"][0]


def test_next_link_pages_with_url_safe_skip_tokens(arm, service, group):
    names = sorted((unique_registry_name(f"pg{i}") for i in range(3)), key=str.lower)
    for name in names:
        assert arm.request("PUT", arm.registry_path(group, name) + f"?api-version={REGISTRY_VERSION}",
                           json=registry_body()).status_code == 201
    url = (f"/subscriptions/{service.subscription_id}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry"
           f"/registries?api-version={REGISTRY_VERSION}")
    seen, links = [], []
    while url:
        response = arm.request("GET", url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["value"]) <= 2
        seen += [r["name"] for r in page["value"]]
        url = page.get("nextLink")
        if url:
            links.append(url)
            assert url.startswith(f"{service.url}/subscriptions/")
            assert URL_SAFE.match(_skip_token(url)), url
            assert "%" not in url.split("skipToken=")[1]
            assert parse_qs(urlsplit(url).query)["api-version"] == [REGISTRY_VERSION]
    assert seen == names
    assert len(links) == 1

    everywhere = arm.request("GET", f"/subscriptions/{service.subscription_id}/providers/"
                                    f"Microsoft.ContainerRegistry/registries?api-version={REGISTRY_VERSION}&$top=1")
    page = everywhere.json()
    assert len(page["value"]) == 1 and URL_SAFE.match(_skip_token(page["nextLink"]))
    assert parse_qs(urlsplit(page["nextLink"]).query)["$top"] == ["1"]


@pytest.mark.parametrize("token", ["!!!", "%%%", "a", "bm90IGpzb24", "WzFd", "eyJhIjoxfQ", "W10", "WyJhIiwiYiJd",
                                   "x" * 5000, "WyJcdTAwMDAiXQ", "é"],
                         ids=["punctuation", "percent", "short", "not-json", "int-key", "object", "empty",
                              "two-keys", "long", "nul-key", "non-ascii"])
def test_invalid_skip_token_is_400(arm, service, group, token):
    sub = service.subscription_id
    for path, version in ((f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry"
                           "/registries", REGISTRY_VERSION),
                          (f"/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries", REGISTRY_VERSION),
                          (f"/subscriptions/{sub}/resourcegroups", RESOURCES_VERSION),
                          (f"/subscriptions/{sub}/resources", RESOURCES_VERSION)):
        response = arm.request("GET", path, params={"api-version": version, "$skipToken": token})
        assert_arm_error(response, 400, "InvalidSkipToken")


@pytest.mark.parametrize("top", ["0", "-1", "abc", "1001", "1.5", "99999999999999999999"])
def test_invalid_top_is_400(arm, service, top):
    response = arm.request("GET", f"/subscriptions/{service.subscription_id}/resourcegroups",
                           params={"api-version": RESOURCES_VERSION, "$top": top})
    assert_arm_error(response, 400, "InvalidParameter")


# -- subscriptions and metadata ----------------------------------------------------------------------------


def test_subscriptions_and_metadata(arm, service):
    sub = service.subscription_id
    listed = arm.request("GET", f"/subscriptions?api-version={SUBSCRIPTIONS_VERSION}")
    assert listed.status_code == 200, listed.text
    mine = [s for s in listed.json()["value"] if s["subscriptionId"] == sub]
    assert len(mine) == 1
    assert mine[0]["id"] == f"/subscriptions/{sub}"
    assert (mine[0]["tenantId"], mine[0]["state"]) == (service.tenant_id, "Enabled")

    single = arm.request("GET", f"/subscriptions/{sub}?api-version={SUBSCRIPTIONS_VERSION}")
    assert single.status_code == 200 and single.json() == mine[0]
    upper = arm.request("GET", f"/subscriptions/{sub.upper()}?api-version={SUBSCRIPTIONS_VERSION}")
    assert upper.status_code == 200 and upper.json()["subscriptionId"] == sub

    metadata = requests.get(f"{service.url}/metadata/endpoints?api-version=2022-09-01", verify=service.ca,
                            timeout=30)
    assert metadata.status_code == 200, metadata.text
    endpoints = metadata.json()
    assert endpoints["resourceManager"] == f"{service.url}/"
    assert endpoints["authentication"]["loginEndpoint"] == service.url
    assert "https://management.core.windows.net/" in endpoints["authentication"]["audiences"]
    assert endpoints["suffixes"]["acrLoginServer"] == f".{service.login_server_suffix}"
    assert_arm_error(requests.get(f"{service.url}/metadata/endpoints?api-version=1999-01-01", verify=service.ca,
                                  timeout=30), 400, "InvalidApiVersionParameter")


# -- characters no name can hold ---------------------------------------------------------------------------


def test_nul_characters_in_the_path_are_a_client_error(arm, service, group):
    sub = service.subscription_id
    paths = [f"{arm.registry_path(group, 'abc%00def')}?api-version={REGISTRY_VERSION}",
             f"/subscriptions/{sub}/resourceGroups/rg%00x?api-version={RESOURCES_VERSION}",
             f"/subscriptions/{sub}/resourceGroups/rg%00x/providers/Microsoft.ContainerRegistry/registries"
             f"?api-version={REGISTRY_VERSION}"]
    for path in paths:
        for method in ("GET", "DELETE"):
            assert_arm_error(arm.request(method, path), 400, "BadRequest")
    put = arm.request("PUT", f"{arm.registry_path(group, 'abc%00def')}?api-version={REGISTRY_VERSION}",
                      json=registry_body())
    assert_arm_error(put, 400, "BadRequest")


def test_nul_characters_at_the_token_endpoint_are_a_client_error(service):
    for tenant, secret in (("%00", service.init["clientSecret"]), (service.tenant_id, "\x00ab" + "c" * 37)):
        response = requests.post(f"{service.url}/{tenant}/oauth2/v2.0/token", verify=service.ca, timeout=30,
                                 data={"grant_type": "client_credentials", "client_id": service.init["clientId"],
                                       "client_secret": secret, "scope": "https://management.azure.com/.default"})
        assert response.status_code in (400, 401), response.text


def test_nul_characters_in_body_strings(arm, group):
    name = unique_registry_name()
    path = arm.registry_path(group, name) + f"?api-version={REGISTRY_VERSION}"
    response = arm.request("PUT", path, json={**registry_body(), "tags": {"k": "a\x00b"}})
    assert response.status_code in (201, 400), response.text
    if response.status_code == 201:
        assert arm.request("GET", path).json()["tags"] == {"k": "a\x00b"}
    else:
        assert_arm_error(response, 400, "InvalidTagValueCharacters")
