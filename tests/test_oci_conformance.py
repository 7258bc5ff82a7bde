"""A Python replica of the OCI distribution-spec conformance suite (v1.1.x `conformance/0{1..4}_*_test.go`, the
Ginkgo workflows Pull, Push, Content Discovery and Content Management), then the checks the rewritten suite on main
added (Range, zero-byte and sha512 blobs, nested index, dangling subject, upload cancel, referrers filtering), then
the issue's bad-input list.

Each workflow spec is one test, named after the Ginkgo spec and run in the suite's order against one namespace, with
the suite's settings: OCI_NAMESPACE = a two-level repository, OCI_USERNAME/PASSWORD = the registry's admin user,
OCI_DELETE_MANIFEST_BEFORE_BLOBS unset (true), OCI_AUTOMATIC_CROSSMOUNT unset, every workflow enabled. Specs that
only run with other settings ("Get tag name from environment", "Populate registry with test tags (no push)", the
two automatic cross-mount ones) are left out. The client is reggie's behaviour (tests/support/oci.py): no
credentials first, then the token dance from the challenge on every request.

Every test runs on both backends and in both address styles: path style (`https://127.0.0.1:<port>/v2/<registry>/
<namespace>`) and host style (`https://<registry>.localhost:<port>/v2/<namespace>`). Debian's Distribution 2.8 fails
12 of the suite's specs; this service must fail none.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_ERROR_CODES,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Blob,
    ConformanceData,
    OciClient,
    RegistryUnderTest,
    b64,
    create_admin_registry,
    descriptor,
    errors_of,
    go_json,
    sha256,
    sha512,
)

STYLES = ("path", "host")
NAMESPACE = "conformance/app"
OCTET = {"Content-Type": "application/octet-stream"}
MANIFEST_TYPE = {"Content-Type": OCI_MANIFEST}
INDEX_TYPE = {"Content-Type": OCI_INDEX}


@pytest.fixture(scope="module")
def conformance_group(rmc):
    name = f"rg-oci-{uuid.uuid4().hex[:8]}"
    rmc.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    rmc.resource_groups.begin_delete(name).result()


@pytest.fixture(scope="module")
def registry(service, acr, conformance_group):
    """One registry with its admin user per backend; each style gets its own namespace in it."""
    return create_admin_registry(acr, conformance_group, "conf")


class Suite:
    """The suite's globals (setup.go) and the variables its workflows share between specs."""

    def __init__(self, target: RegistryUnderTest):
        self.target = target
        self.data = ConformanceData()
        self.client: OciClient = target.client(NAMESPACE)
        self.crossmount = target.repository(self.data.crossmount_namespace)
        self.tag = ""
        self.last = None
        self.prev = None
        self.num_tags = 0
        self.tag_list: list[str] = []
        self.empty_layer_ref = ""
        self.tag_to_delete = ""
        self.blob_delete_allowed = True

    def do(self, method: str, path: str, **kwargs):
        return self.client.request(method, path, **kwargs)

    def upload(self, blob: Blob):
        """POST, then PUT the whole blob to the relative Location with ?digest= (the suite's populate step)."""
        resp = self.do("POST", "/v2/<name>/blobs/uploads/")
        return self.do("PUT", self.client.relative_location(resp), params={"digest": blob.digest},
                       headers={**OCTET, "Content-Length": blob.length}, body=blob.content)

    def put_manifest(self, reference: str, content: bytes, media_type: str = OCI_MANIFEST):
        return self.do("PUT", "/v2/<name>/manifests/<reference>", reference=reference,
                       headers={"Content-Type": media_type}, body=content)

    def why(self, resp=None) -> str:
        return f"[{self.target.style} style]\n{self.client.explain(resp)}"

    def expect(self, resp, *statuses: int) -> None:
        assert resp.status_code in statuses, self.why(resp)

    def expect_2xx(self, resp, *also: int) -> None:
        assert 200 <= resp.status_code < 300 or resp.status_code in also, self.why(resp)


@pytest.fixture(scope="module", params=STYLES)
def suite(request, service, registry) -> Suite:
    name, login_server, username, password = registry
    return Suite(RegistryUnderTest(name, login_server, username, password, service.url, service.ca, request.param))


# ================================================================================================================
# 01_pull_test.go — Pull
# ================================================================================================================

def test_pull_setup_populate_registry_with_test_blob(suite):
    """Pull / Setup / Populate registry with test blob (configs[0], then configs[1])."""
    for config in suite.data.configs[:2]:
        suite.expect_2xx(suite.upload(config))


def test_pull_setup_populate_registry_with_test_layer(suite):
    suite.expect_2xx(suite.upload(suite.data.layer))


def test_pull_setup_populate_registry_with_test_manifest(suite):
    """Pull / Setup / Populate registry with test manifest (manifests[0] by tag, manifests[1] by digest)."""
    suite.tag = suite.data.test_tag
    suite.expect_2xx(suite.put_manifest(suite.tag, suite.data.manifests[0].content))
    m1 = suite.data.manifests[1]
    suite.expect_2xx(suite.put_manifest(m1.digest, m1.content))


def test_pull_blobs_head_request_to_nonexistent_blob_should_result_in_404_response(suite):
    resp = suite.do("HEAD", "/v2/<name>/blobs/<digest>", digest=suite.data.dummy_digest)
    suite.expect(resp, 404)


def test_pull_blobs_head_request_to_existing_blob_should_yield_200(suite):
    config = suite.data.configs[0]
    resp = suite.do("HEAD", "/v2/<name>/blobs/<digest>", digest=config.digest)
    suite.expect(resp, 200)
    if resp.headers.get("Docker-Content-Digest"):
        assert resp.headers["Docker-Content-Digest"] == config.digest, suite.why(resp)


def test_pull_blobs_get_nonexistent_blob_should_result_in_404_response(suite):
    suite.expect(suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.dummy_digest), 404)


def test_pull_blobs_get_request_to_existing_blob_url_should_yield_200(suite):
    resp = suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[0].digest)
    suite.expect(resp, 200)


def test_pull_manifests_head_request_to_nonexistent_manifest_should_return_404(suite):
    resp = suite.do("HEAD", "/v2/<name>/manifests/<reference>", reference=suite.data.nonexistent_manifest)
    suite.expect(resp, 404)


@pytest.mark.parametrize("index", [0, 1])
def test_pull_manifests_head_request_to_manifest_path_digest_should_yield_200_response(suite, index):
    """HEAD request to manifest[0] / manifest[1] path (digest) should yield 200 response."""
    manifest = suite.data.manifests[index]
    resp = suite.do("HEAD", "/v2/<name>/manifests/<digest>", digest=manifest.digest, headers={"Accept": OCI_MANIFEST})
    suite.expect(resp, 200)
    if resp.headers.get("Docker-Content-Digest"):
        assert resp.headers["Docker-Content-Digest"] == manifest.digest, suite.why(resp)


def test_pull_manifests_head_request_to_manifest_path_tag_should_yield_200_response(suite):
    assert suite.tag
    resp = suite.do("HEAD", "/v2/<name>/manifests/<reference>", reference=suite.tag, headers={"Accept": OCI_MANIFEST})
    suite.expect(resp, 200)
    if resp.headers.get("Docker-Content-Digest"):
        assert resp.headers["Docker-Content-Digest"] == suite.data.manifests[0].digest, suite.why(resp)


def test_pull_manifests_get_nonexistent_manifest_should_return_404(suite):
    resp = suite.do("GET", "/v2/<name>/manifests/<reference>", reference=suite.data.nonexistent_manifest)
    suite.expect(resp, 404)


@pytest.mark.parametrize("index", [0, 1])
def test_pull_manifests_get_request_to_manifest_path_digest_should_yield_200_response(suite, index):
    manifest = suite.data.manifests[index]
    resp = suite.do("GET", "/v2/<name>/manifests/<digest>", digest=manifest.digest, headers={"Accept": OCI_MANIFEST})
    suite.expect(resp, 200)


def test_pull_manifests_get_request_to_manifest_path_tag_should_yield_200_response(suite):
    assert suite.tag
    resp = suite.do("GET", "/v2/<name>/manifests/<reference>", reference=suite.tag, headers={"Accept": OCI_MANIFEST})
    suite.expect(resp, 200)


def test_pull_error_codes_400_response_body_should_contain_oci_conforming_json_message(suite):
    """A GET of `sha256:totallywrong` (with a body, as the suite sends it): 400 with a standard code, or 404."""
    resp = suite.do("GET", "/v2/<name>/manifests/<reference>", reference="sha256:totallywrong",
                    headers=MANIFEST_TYPE, body=suite.data.invalid_manifest)
    suite.expect(resp, 400, 404)
    if resp.status_code == 400:
        errors = errors_of(resp)
        assert errors and errors[0].get("code") in OCI_ERROR_CODES, suite.why(resp)


@pytest.mark.parametrize("index", [0, 1])
def test_pull_teardown_delete_manifest_created_in_setup(suite, index):
    resp = suite.do("DELETE", "/v2/<name>/manifests/<digest>", digest=suite.data.manifests[index].digest)
    suite.expect_2xx(resp, 405)


@pytest.mark.parametrize("index", [0, 1])
def test_pull_teardown_delete_config_blob_created_in_setup(suite, index):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[index].digest)
    suite.expect_2xx(resp, 404, 405)


def test_pull_teardown_delete_layer_blob_created_in_setup(suite):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.layer.digest)
    suite.expect_2xx(resp, 404, 405)


# ================================================================================================================
# 02_push_test.go — Push
# ================================================================================================================

def test_push_blob_upload_streamed_patch_request_with_blob_in_body_should_yield_202_response(suite):
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/")
    assert resp.headers.get("Location"), suite.why(resp)
    resp = suite.do("PATCH", suite.client.relative_location(resp), headers=OCTET, body=suite.data.blob_a.content)
    suite.expect(resp, 202)
    suite.last = resp


def test_push_blob_upload_streamed_put_request_to_session_url_with_digest_should_yield_201_response(suite):
    assert suite.last is not None
    resp = suite.do("PUT", suite.client.relative_location(suite.last), params={"digest": suite.data.blob_a.digest},
                    headers=OCTET, body=b"")
    suite.expect(resp, 201)
    assert resp.headers.get("Location"), suite.why(resp)


def test_push_blob_upload_monolithic_get_nonexistent_blob_should_result_in_404_response(suite):
    suite.expect(suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.dummy_digest), 404)


def test_push_blob_upload_monolithic_post_request_with_digest_and_blob_should_yield_a_201_or_202(suite):
    config = suite.data.configs[1]
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/", params={"digest": config.digest},
                    headers={**OCTET, "Content-Length": config.length}, body=config.content)
    assert resp.headers.get("Location"), suite.why(resp)
    suite.expect(resp, 201, 202)
    suite.last = resp


def test_push_blob_upload_monolithic_get_request_to_blob_url_from_prior_request_should_yield_200_or_404(suite):
    """GET request to blob URL from prior request should yield 200 or 404 based on response code."""
    resp = suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[1].digest)
    suite.expect(resp, 404 if suite.last.status_code == 202 else 200)


def test_push_blob_upload_monolithic_post_request_should_yield_a_session_id(suite):
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/")
    suite.expect(resp, 202)
    suite.last = resp


def test_push_blob_upload_monolithic_put_upload_of_a_blob_should_yield_a_201_response(suite):
    config = suite.data.configs[1]
    resp = suite.do("PUT", suite.client.relative_location(suite.last), params={"digest": config.digest},
                    headers={**OCTET, "Content-Length": config.length}, body=config.content)
    assert resp.headers.get("Location"), suite.why(resp)
    suite.expect(resp, 201)


def test_push_blob_upload_monolithic_get_request_to_existing_blob_should_yield_200_response(suite):
    suite.expect(suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[1].digest), 200)


def test_push_blob_upload_monolithic_put_upload_of_a_layer_blob_should_yield_a_201_response(suite):
    layer = suite.data.layer
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/")
    resp = suite.do("PUT", suite.client.relative_location(resp), params={"digest": layer.digest},
                    headers={**OCTET, "Content-Length": layer.length}, body=layer.content)
    assert resp.headers.get("Location"), suite.why(resp)
    suite.expect(resp, 201)


def test_push_blob_upload_monolithic_get_request_to_existing_layer_should_yield_200_response(suite):
    suite.expect(suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.layer.digest), 200)


def test_push_blob_upload_chunked_out_of_order_blob_upload_should_return_416(suite):
    data = suite.data
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/", headers={"Content-Length": "0"})
    assert resp.headers.get("Location"), suite.why(resp)
    min_length = resp.headers.get("OCI-Chunk-Min-Length")
    if min_length and int(min_length) > len(data.chunk1):
        import random

        data.setup_chunked_blob(int(min_length) * 2 - 2, random.Random())
    resp = suite.do("PATCH", suite.client.relative_location(resp), body=data.chunk2, headers={
        **OCTET, "Content-Length": str(len(data.chunk2)), "Content-Range": data.chunk2_range})
    suite.expect(resp, 416)


def test_push_blob_upload_chunked_patch_request_with_first_chunk_should_return_202(suite):
    data = suite.data
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/", headers={"Content-Length": "0"})
    assert resp.headers.get("Location"), suite.why(resp)
    suite.prev = resp
    resp = suite.do("PATCH", suite.client.relative_location(resp), body=data.chunk1, headers={
        **OCTET, "Content-Length": str(len(data.chunk1)), "Content-Range": data.chunk1_range})
    suite.expect(resp, 202)
    assert resp.headers.get("Range") == data.chunk1_range, suite.why(resp)
    suite.last = resp


def test_push_blob_upload_chunked_retry_previous_blob_chunk_should_return_416(suite):
    data = suite.data
    resp = suite.do("PATCH", suite.client.relative_location(suite.prev), body=data.chunk1, headers={
        **OCTET, "Content-Length": str(len(data.chunk1)), "Content-Range": data.chunk1_range})
    suite.expect(resp, 416)


def test_push_blob_upload_chunked_get_on_stale_blob_upload_should_return_204_with_a_range_and_location(suite):
    resp = suite.do("GET", suite.client.relative_location(suite.prev))
    suite.expect(resp, 204)
    assert resp.headers.get("Location"), suite.why(resp)
    assert resp.headers.get("Range") == suite.data.chunk1_range, suite.why(resp)
    suite.last = resp


def test_push_blob_upload_chunked_patch_request_with_second_chunk_should_return_202(suite):
    data = suite.data
    resp = suite.do("PATCH", suite.client.relative_location(suite.last), body=data.chunk2, headers={
        **OCTET, "Content-Length": str(len(data.chunk2)), "Content-Range": data.chunk2_range})
    suite.expect(resp, 202)
    assert resp.headers.get("Location"), suite.why(resp)
    suite.last = resp


def test_push_blob_upload_chunked_put_request_with_digest_should_return_201(suite):
    resp = suite.do("PUT", suite.client.relative_location(suite.last), params={"digest": suite.data.blob_b.digest},
                    headers={**OCTET, "Content-Length": "0"}, body=b"")
    suite.expect(resp, 201)
    assert resp.headers.get("Location"), suite.why(resp)


def test_push_cross_repository_blob_mount_cross_mounting_of_a_blob_without_the_from_argument_should_yield_session_id(
        suite):
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/", name=suite.crossmount,
                    params={"mount": suite.data.dummy_digest})
    suite.expect(resp, 202)
    assert suite.client.absolute_location(resp) and resp.headers.get("Location"), suite.why(resp)


def test_push_cross_repository_blob_mount_post_request_to_mount_another_repositorys_blob_should_return_201_or_202(
        suite):
    resp = suite.do("POST", "/v2/<name>/blobs/uploads/", name=suite.crossmount,
                    params={"mount": suite.data.blob_a.digest, "from": suite.client.namespace})
    suite.expect(resp, 201, 202)
    suite.last = resp


def test_push_cross_repository_blob_mount_get_request_to_test_digest_within_cross_mount_namespace_should_return_200(
        suite):
    if suite.last.status_code != 201:
        pytest.skip("RunOnlyIf(lastResponse.StatusCode() == http.StatusCreated)")
    location = suite.client.relative_location(suite.last)
    assert location == f"/v2/{suite.crossmount}/blobs/{suite.data.blob_a.digest}", suite.why(suite.last)
    suite.expect(suite.do("GET", location), 200)


def test_push_cross_repository_blob_mount_cross_mounting_of_nonexistent_blob_should_yield_session_id(suite):
    if suite.last.status_code != 202:
        pytest.skip("RunOnlyIf(lastResponse.StatusCode() == http.StatusAccepted)")
    location = suite.client.relative_location(suite.last)
    assert location.startswith(f"/v2/{suite.crossmount}/blobs/uploads/"), suite.why(suite.last)


def test_push_manifest_upload_get_nonexistent_manifest_should_return_404(suite):
    resp = suite.do("GET", "/v2/<name>/manifests/<reference>", reference=suite.data.nonexistent_manifest)
    suite.expect(resp, 404)


def test_push_manifest_upload_put_should_accept_a_manifest_upload(suite):
    for i in range(4):
        resp = suite.put_manifest(f"test{i}", suite.data.manifests[1].content)
        assert resp.headers.get("Location"), suite.why(resp)
        suite.expect(resp, 201)


def test_push_manifest_upload_registry_should_accept_a_manifest_upload_with_no_layers(suite):
    resp = suite.put_manifest(suite.data.empty_layer_tag, suite.data.empty_layer_manifest.content)
    # The suite only warns ("image manifest with no layers is not supported") when this is refused; ACR accepts it,
    # and so must this service.
    suite.expect(resp, 201)
    suite.empty_layer_ref = resp.headers.get("Location", "")
    assert suite.empty_layer_ref, suite.why(resp)


def test_push_manifest_upload_get_request_to_manifest_url_digest_should_yield_200_response(suite):
    resp = suite.do("GET", "/v2/<name>/manifests/<digest>", digest=suite.data.manifests[1].digest,
                    headers={"Accept": OCI_MANIFEST})
    suite.expect(resp, 200)


def test_push_teardown_delete_manifest_created_in_tests(suite):
    resp = suite.do("DELETE", "/v2/<name>/manifests/<digest>", digest=suite.data.manifests[1].digest)
    suite.expect_2xx(resp, 405)
    if suite.empty_layer_ref:
        resp = suite.do("DELETE", "/v2/<name>/manifests/<reference>",
                        reference=suite.data.empty_layer_manifest.digest)
        suite.expect_2xx(resp, 405)


def test_push_teardown_delete_config_blob_created_in_tests(suite):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[1].digest)
    suite.expect_2xx(resp, 404, 405)


def test_push_teardown_delete_layer_blob_created_in_setup(suite):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.layer.digest)
    suite.expect_2xx(resp, 404, 405)


# ================================================================================================================
# 03_discovery_test.go — Content Discovery
# ================================================================================================================

def test_content_discovery_setup_populate_registry_with_test_blob(suite):
    suite.expect_2xx(suite.upload(suite.data.configs[2]))


def test_content_discovery_setup_populate_registry_with_test_layer(suite):
    suite.expect_2xx(suite.upload(suite.data.layer))


def test_content_discovery_setup_populate_registry_with_test_tags(suite):
    for i in range(4):
        suite.expect_2xx(suite.put_manifest(f"test{i}", suite.data.manifests[2].content))
    suite.tag_list = tags_of(suite.do("GET", "/v2/<name>/tags/list"))


def test_content_discovery_setup_references_setup(suite):
    data = suite.data
    subject = data.manifests[4].digest
    assert data.empty_json.digest == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    suite.expect_2xx(suite.upload(data.empty_json))
    suite.expect_2xx(suite.upload(data.ref_blob_a))  # before the image manifest is pushed
    for artifact in (data.refs_a_config, data.refs_a_layer):
        resp = suite.put_manifest(artifact.digest, artifact.content)
        suite.expect_2xx(resp)
        assert resp.headers.get("OCI-Subject") == subject, suite.why(resp)
    resp = suite.put_manifest(data.refs_index.digest, data.refs_index.content, OCI_INDEX)
    suite.expect_2xx(resp)
    assert resp.headers.get("OCI-Subject") == subject, suite.why(resp)
    suite.expect_2xx(suite.upload(data.configs[4]))
    suite.expect_2xx(suite.upload(data.layer))
    suite.expect_2xx(suite.put_manifest(data.test_tag, data.manifests[4].content))
    suite.expect_2xx(suite.upload(data.ref_blob_b))  # after the image manifest is pushed
    for artifact in (data.refs_b_config, data.refs_b_layer):
        resp = suite.put_manifest(artifact.digest, artifact.content)
        suite.expect_2xx(resp)
        assert resp.headers.get("OCI-Subject") == subject, suite.why(resp)
    resp = suite.put_manifest(data.refs_c_layer.digest, data.refs_c_layer.content)  # its subject is never pushed
    suite.expect_2xx(resp)
    assert resp.headers.get("OCI-Subject") == data.manifests[3].digest, suite.why(resp)


def tags_of(resp) -> list[str]:
    try:
        return resp.json().get("tags") or []
    except ValueError:
        return []


def test_content_discovery_listing_tags_get_request_to_list_tags_should_yield_200_response(suite):
    resp = suite.do("GET", "/v2/<name>/tags/list")
    suite.expect(resp, 200)
    suite.tag_list = tags_of(resp)
    suite.num_tags = len(suite.tag_list)


def test_content_discovery_listing_tags_get_number_of_tags_should_be_limitable_by_n_query_parameter(suite):
    n = suite.num_tags // 2
    resp = suite.do("GET", "/v2/<name>/tags/list", params={"n": str(n)})
    suite.expect(resp, 200)
    suite.tag_list = tags_of(resp)
    assert len(suite.tag_list) == n, suite.why(resp)


def test_content_discovery_listing_tags_get_start_of_tag_is_set_by_last_query_parameter(suite):
    n = suite.num_tags // 2
    first = tags_of(suite.do("GET", "/v2/<name>/tags/list", params={"n": str(n)}))
    assert len(first) >= n, suite.why()
    resp = suite.do("GET", "/v2/<name>/tags/list", params={"n": str(n), "last": first[n - 1]})
    suite.expect(resp, 200)
    # The Go spec then checks its first list again (len <= n and contains first[n-1]): reproduced as written.
    assert len(first) <= n and first[n - 1] in first, suite.why(resp)


def referrers_index(suite, resp) -> dict:
    suite.expect(resp, 200)
    assert resp.headers.get("Content-Type") == OCI_INDEX, suite.why(resp)
    return resp.json()


def test_content_discovery_listing_references_get_request_to_nonexistent_blob_should_result_in_empty_200_response(
        suite):
    resp = suite.do("GET", "/v2/<name>/referrers/<digest>", digest=suite.data.dummy_digest)
    assert not referrers_index(suite, resp).get("manifests"), suite.why(resp)


def _check_annotations(suite, resp, manifests: list[dict]) -> None:
    for item in manifests:
        annotations = item.get("annotations") or {}
        assert len(annotations) == 1, suite.why(resp)
        assert annotations[suite.data.annotation_key] == suite.data.annotations.get(item["digest"]), suite.why(resp)


def test_content_discovery_listing_references_get_request_to_existing_blob_should_yield_200(suite):
    resp = suite.do("GET", "/v2/<name>/referrers/<digest>", digest=suite.data.manifests[4].digest)
    manifests = referrers_index(suite, resp).get("manifests") or []
    assert len(manifests) == 5, suite.why(resp)
    assert manifests[0]["digest"] != manifests[1]["digest"], suite.why(resp)
    _check_annotations(suite, resp, manifests)


def test_content_discovery_listing_references_get_request_to_existing_blob_with_filter_should_yield_200(suite):
    resp = suite.do("GET", "/v2/<name>/referrers/<digest>", digest=suite.data.manifests[4].digest,
                    params={"artifactType": suite.data.artifact_type_a})
    manifests = referrers_index(suite, resp).get("manifests") or []
    if resp.headers.get("OCI-Filters-Applied"):
        assert len(manifests) == 2, suite.why(resp)
        assert resp.headers["OCI-Filters-Applied"] == "artifactType", suite.why(resp)
    else:
        assert len(manifests) == 5, suite.why(resp)
    _check_annotations(suite, resp, manifests)


def test_content_discovery_listing_references_get_request_to_missing_manifest_should_yield_200(suite):
    resp = suite.do("GET", "/v2/<name>/referrers/<digest>", digest=suite.data.manifests[3].digest)
    manifests = referrers_index(suite, resp).get("manifests") or []
    assert len(manifests) == 1, suite.why(resp)
    assert manifests[0]["digest"] == suite.data.refs_c_layer.digest, suite.why(resp)


def _discovery_references(data: ConformanceData) -> list[str]:
    return [data.refs_index.digest, data.manifests[2].digest, data.manifests[4].digest, data.refs_a_config.digest,
            data.refs_a_layer.digest, data.test_tag, data.refs_b_config.digest, data.refs_b_layer.digest,
            data.refs_c_layer.digest]


def test_content_discovery_teardown_delete_created_manifest_and_associated_tags(suite):
    for reference in _discovery_references(suite.data):
        resp = suite.do("DELETE", "/v2/<name>/manifests/<digest>", digest=reference)
        suite.expect_2xx(resp, 405, 404)


def test_content_discovery_teardown_delete_config_blob_created_in_tests(suite):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[2].digest)
    suite.expect_2xx(resp, 405)


def test_content_discovery_teardown_delete_layer_blob_created_in_setup(suite):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.layer.digest)
    suite.expect_2xx(resp, 405)


def test_content_discovery_teardown_references_teardown(suite):
    data = suite.data
    for reference in (data.refs_index.digest, data.refs_a_config.digest, data.refs_a_layer.digest,
                      data.manifests[4].digest, data.refs_b_config.digest, data.refs_b_layer.digest):
        suite.expect_2xx(suite.do("DELETE", "/v2/<name>/manifests/<reference>", reference=reference), 405, 404)
    for blob in (data.configs[4], data.ref_blob_a, data.ref_blob_b, data.empty_json):
        suite.expect_2xx(suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=blob.digest), 405, 404)


# ================================================================================================================
# 04_management_test.go — Content Management
# ================================================================================================================

def test_content_management_setup_populate_registry_with_test_config_blob(suite):
    suite.expect_2xx(suite.upload(suite.data.configs[3]))


def test_content_management_setup_populate_registry_with_test_layer(suite):
    suite.expect_2xx(suite.upload(suite.data.layer))


def test_content_management_setup_populate_registry_with_test_tag(suite):
    suite.tag_to_delete = suite.data.test_tag
    suite.expect_2xx(suite.put_manifest(suite.tag_to_delete, suite.data.manifests[3].content))


def test_content_management_setup_check_how_many_tags_there_are_before_anything_gets_deleted(suite):
    resp = suite.do("GET", "/v2/<name>/tags/list")
    suite.expect(resp, 200)
    suite.num_tags = len(json.loads(resp.text).get("tags") or [])


def test_content_management_manifest_delete_delete_request_to_manifest_tag_should_return_202_unless_disallowed(suite):
    """DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)."""
    resp = suite.do("DELETE", "/v2/<name>/manifests/<reference>", reference=suite.tag_to_delete)
    suite.expect(resp, 400, 202, 405)
    if resp.status_code == 400:
        errors = errors_of(resp)
        assert errors and errors[0].get("code") == "UNSUPPORTED", suite.why(resp)


def test_content_management_manifest_delete_delete_request_to_manifest_digest_should_yield_202_unless_deleted(suite):
    resp = suite.do("DELETE", "/v2/<name>/manifests/<digest>", digest=suite.data.manifests[3].digest)
    suite.expect(resp, 202, 404)


def test_content_management_manifest_delete_get_request_to_deleted_manifest_url_should_yield_404_response(suite):
    resp = suite.do("GET", "/v2/<name>/manifests/<digest>", digest=suite.data.manifests[3].digest)
    suite.expect(resp, 404, 200)


def test_content_management_manifest_delete_get_request_to_tags_list_should_reflect_manifest_deletion(suite):
    resp = suite.do("GET", "/v2/<name>/tags/list")
    suite.expect(resp, 200)
    assert len(json.loads(resp.text).get("tags") or []) < suite.num_tags, suite.why(resp)


def test_content_management_blob_delete_delete_request_to_blob_url_should_yield_202_response(suite):
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[3].digest)
    suite.expect(resp, 202, 404, 405)
    resp = suite.do("DELETE", "/v2/<name>/blobs/<digest>", digest=suite.data.layer.digest)
    suite.expect(resp, 202, 404, 405)
    suite.blob_delete_allowed = resp.status_code != 405


def test_content_management_blob_delete_get_request_to_deleted_blob_url_should_yield_404_response(suite):
    if not suite.blob_delete_allowed:
        pytest.skip("RunOnlyIf(blobDeleteAllowed)")
    suite.expect(suite.do("GET", "/v2/<name>/blobs/<digest>", digest=suite.data.configs[3].digest), 404)


# ================================================================================================================
# CONF-main additions (conformance/run.go on main) and the list: each in a fresh repository
# ================================================================================================================

@pytest.fixture
def fresh(suite) -> Suite:
    """The suite's client on a repository of its own (a three-level name), so extras do not see each other."""
    extra = Suite(suite.target)
    extra.client = suite.target.client(f"extras/{uuid.uuid4().hex[:10]}/web")
    return extra


def push_image(s: Suite, tag: str | None = None, layer: bytes | None = None) -> tuple[Blob, Blob, Blob]:
    """Config, layer and an OCI image manifest pushed (by tag when given, else by digest)."""
    config = Blob(go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "author": uuid.uuid4().hex}))
    layer_blob = Blob(layer if layer is not None else uuid.uuid4().bytes * 64)
    for blob in (config, layer_blob):
        s.expect(s.upload(blob), 201)
    manifest = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": descriptor(OCI_CONFIG, config.content),
                             "layers": [descriptor(OCI_LAYER_GZIP, layer_blob.content)]}))
    s.expect(s.put_manifest(tag or manifest.digest, manifest.content), 201)
    return config, layer_blob, manifest


def test_extra_blob_range_request_answers_206_with_content_range(fresh):
    content = bytes(range(256)) * 10  # 2560 bytes
    blob = Blob(content)
    fresh.expect(fresh.upload(blob), 201)
    resp = fresh.do("GET", "/v2/<name>/blobs/<digest>", digest=blob.digest, headers={"Range": "bytes=500-1499"})
    fresh.expect(resp, 206)
    assert resp.headers.get("Content-Range") == f"bytes 500-1499/{len(content)}", fresh.why(resp)
    assert resp.content == content[500:1500], fresh.why(resp)
    resp = fresh.do("GET", "/v2/<name>/blobs/<digest>", digest=blob.digest, headers={"Range": "bytes=2000-"})
    fresh.expect(resp, 206)
    assert resp.content == content[2000:], fresh.why(resp)


def test_extra_blob_head_has_content_length_and_digest(fresh):
    blob = Blob(b"x" * 1234)
    fresh.expect(fresh.upload(blob), 201)
    resp = fresh.do("HEAD", "/v2/<name>/blobs/<digest>", digest=blob.digest, allow_redirects=False)
    fresh.expect(resp, 200, 307)
    if resp.status_code == 200:
        assert resp.headers.get("Content-Length") == "1234", fresh.why(resp)
        assert resp.headers.get("Docker-Content-Digest") == blob.digest, fresh.why(resp)


def test_extra_zero_byte_blob(fresh):
    empty = Blob(b"")
    assert empty.digest == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/", params={"digest": empty.digest},
                    headers={**OCTET, "Content-Length": "0"}, body=b"")
    fresh.expect(resp, 201, 202)
    if resp.status_code == 202:
        resp = fresh.do("PUT", fresh.client.relative_location(resp), params={"digest": empty.digest},
                        headers=OCTET, body=b"")
        fresh.expect(resp, 201)
    resp = fresh.do("HEAD", "/v2/<name>/blobs/<digest>", digest=empty.digest)
    fresh.expect(resp, 200)
    assert resp.headers.get("Content-Length") == "0", fresh.why(resp)
    resp = fresh.do("GET", "/v2/<name>/blobs/<digest>", digest=empty.digest)
    fresh.expect(resp, 200)
    assert resp.content == b"", fresh.why(resp)
    # An image whose only layer is the empty blob.
    config = Blob(go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}))
    fresh.expect(fresh.upload(config), 201)
    manifest = go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config.content),
                        "layers": [descriptor(OCI_LAYER_GZIP, b"")]})
    fresh.expect(fresh.put_manifest("empty-layer", manifest), 201)


def test_extra_sha512_content(fresh):
    """Blobs and a manifest addressed by sha512 (CONF-main OCI_DATA_SHA512): monolithic, POST+PUT and chunked."""
    blobs = [uuid.uuid4().bytes * 100 for _ in range(3)]
    digests = [sha512(b) for b in blobs]
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/", params={"digest": digests[0]}, headers=OCTET, body=blobs[0])
    fresh.expect(resp, 201, 202)
    if resp.status_code == 202:
        fresh.expect(fresh.do("PUT", fresh.client.relative_location(resp), params={"digest": digests[0]},
                              headers=OCTET, body=blobs[0]), 201)
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/")
    fresh.expect(fresh.do("PUT", fresh.client.relative_location(resp), params={"digest": digests[1]},
                          headers=OCTET, body=blobs[1]), 201)
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/")
    half = len(blobs[2]) // 2
    resp = fresh.do("PATCH", fresh.client.relative_location(resp), body=blobs[2][:half],
                    headers={**OCTET, "Content-Range": f"0-{half - 1}"})
    fresh.expect(resp, 202)
    resp = fresh.do("PUT", fresh.client.relative_location(resp), params={"digest": digests[2]}, headers=OCTET,
                    body=blobs[2][half:])
    fresh.expect(resp, 201)
    assert resp.headers.get("Docker-Content-Digest") == digests[2], fresh.why(resp)
    for blob, digest in zip(blobs, digests, strict=True):
        resp = fresh.do("GET", "/v2/<name>/blobs/<digest>", digest=digest)
        fresh.expect(resp, 200)
        assert resp.content == blob, fresh.why(resp)
    # A sha512 blob under the sha256 name of the same bytes is not there.
    fresh.expect(fresh.do("HEAD", "/v2/<name>/blobs/<digest>", digest=sha256(blobs[0])), 404)
    config = Blob(go_json({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}))
    fresh.expect(fresh.upload(config), 201)
    manifest = go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config.content),
                        "layers": [descriptor(OCI_LAYER_GZIP, b, d) for b, d in zip(blobs, digests, strict=True)]})
    resp = fresh.put_manifest(sha512(manifest), manifest)
    fresh.expect(resp, 201)
    resp = fresh.do("GET", "/v2/<name>/manifests/<digest>", digest=sha512(manifest), headers={"Accept": OCI_MANIFEST})
    fresh.expect(resp, 200)
    assert resp.content == manifest, fresh.why(resp)


def test_extra_nested_index_and_docker_formats(fresh):
    """An index of an index of images (CONF-main nested-index), a Docker v2 manifest and a Docker manifest list."""
    _, _, image = push_image(fresh)
    inner = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**descriptor(OCI_MANIFEST, image.content), "platform": {"architecture": "amd64", "os": "linux"}}]}))
    fresh.expect(fresh.put_manifest(inner.digest, inner.content, OCI_INDEX), 201)
    outer = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": [descriptor(OCI_INDEX, inner.content)]}))
    resp = fresh.put_manifest("index-of-index", outer.content, OCI_INDEX)
    fresh.expect(resp, 201)
    assert resp.headers.get("Docker-Content-Digest") == outer.digest, fresh.why(resp)
    for reference, blob in (("index-of-index", outer), (inner.digest, inner)):
        resp = fresh.do("GET", "/v2/<name>/manifests/<reference>", reference=reference, headers={"Accept": OCI_INDEX})
        fresh.expect(resp, 200)
        assert resp.content == blob.content, fresh.why(resp)
        assert resp.headers.get("Content-Type") == OCI_INDEX, fresh.why(resp)
    config = Blob(go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "docker": True}))
    layer = Blob(uuid.uuid4().bytes * 32)
    for blob in (config, layer):
        fresh.expect(fresh.upload(blob), 201)
    docker = Blob(json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                              "config": {"mediaType": DOCKER_CONFIG, "size": len(config.content),
                                         "digest": config.digest},
                              "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer.content),
                                          "digest": layer.digest}]}, indent=3).encode())
    fresh.expect(fresh.put_manifest("docker", docker.content, DOCKER_MANIFEST), 201)
    listing = Blob(json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [{
        "mediaType": DOCKER_MANIFEST, "size": len(docker.content), "digest": docker.digest,
        "platform": {"architecture": "amd64", "os": "linux"}}]}).encode())
    fresh.expect(fresh.put_manifest("docker-list", listing.content, DOCKER_LIST), 201)
    for tag, blob, media_type in (("docker", docker, DOCKER_MANIFEST), ("docker-list", listing, DOCKER_LIST)):
        resp = fresh.do("GET", "/v2/<name>/manifests/<reference>", reference=tag,
                        headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_LIST}"})
        fresh.expect(resp, 200)
        assert resp.headers.get("Content-Type") == media_type, fresh.why(resp)
        assert resp.headers.get("Docker-Content-Digest") == blob.digest, fresh.why(resp)
        assert resp.content == blob.content, fresh.why(resp)


def test_extra_dangling_subject_and_artifact_type_filter(fresh):
    """A referrer pushed before its subject (and whose subject never arrives) is listed; `artifactType` filters,
    and says so with OCI-Filters-Applied; the descriptor carries artifactType and annotations."""
    missing = sha256(b"missing content " + uuid.uuid4().bytes)
    empty = descriptor(OCI_EMPTY, b"{}")
    fresh.expect(fresh.upload(Blob(b"{}")), 201)
    referrers = []
    for kind in ("application/vnd.example.sbom", "application/vnd.example.signature",
                 "application/vnd.example.sbom"):
        payload = Blob(uuid.uuid4().bytes)
        fresh.expect(fresh.upload(payload), 201)
        artifact = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
                                 "config": empty, "layers": [descriptor(kind, payload.content)],
                                 "subject": {"mediaType": OCI_MANIFEST, "digest": missing, "size": 123},
                                 "annotations": {"org.example.kind": kind}}))
        resp = fresh.put_manifest(artifact.digest, artifact.content)
        fresh.expect(resp, 201)
        assert resp.headers.get("OCI-Subject") == missing, fresh.why(resp)
        referrers.append((kind, artifact))
    resp = fresh.do("GET", "/v2/<name>/referrers/<digest>", digest=missing)
    index = referrers_index(fresh, resp)
    assert index.get("schemaVersion") == 2 and index.get("mediaType") == OCI_INDEX, fresh.why(resp)
    listed = {m["digest"]: m for m in index["manifests"]}
    assert set(listed) == {a.digest for _, a in referrers}, fresh.why(resp)
    for kind, artifact in referrers:
        item = listed[artifact.digest]
        assert item["mediaType"] == OCI_MANIFEST and item["size"] == len(artifact.content), fresh.why(resp)
        assert item["artifactType"] == kind and item["annotations"] == {"org.example.kind": kind}, fresh.why(resp)
    resp = fresh.do("GET", "/v2/<name>/referrers/<digest>", digest=missing,
                    params={"artifactType": "application/vnd.example.sbom"})
    index = referrers_index(fresh, resp)
    assert resp.headers.get("OCI-Filters-Applied") == "artifactType", fresh.why(resp)
    assert {m["digest"] for m in index["manifests"]} == {a.digest for k, a in referrers if k.endswith("sbom")}
    resp = fresh.do("GET", "/v2/<name>/referrers/<digest>", digest="sha256:not-a-digest")
    fresh.expect(resp, 400)


def test_extra_upload_cancel(fresh):
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/")
    fresh.expect(resp, 202)
    location = fresh.client.relative_location(resp)
    fresh.expect(fresh.do("PATCH", location, headers=OCTET, body=b"abc" * 100), 202)
    fresh.expect(fresh.do("DELETE", location), 204)
    resp = fresh.do("GET", location)
    fresh.expect(resp, 404)
    assert errors_of(resp)[0]["code"] == "BLOB_UPLOAD_UNKNOWN", fresh.why(resp)
    resp = fresh.do("PUT", location, params={"digest": sha256(b"abc" * 100)}, headers=OCTET, body=b"")
    fresh.expect(resp, 404)
    fresh.expect(fresh.do("HEAD", "/v2/<name>/blobs/<digest>", digest=sha256(b"abc" * 100)), 404)


def test_extra_data_field_and_nondistributable_layers(fresh):
    """The descriptor `data` field is stored byte for byte; non-distributable layers (with `urls`) need no blob."""
    config = Blob(go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "nd": uuid.uuid4().hex}))
    layer = Blob(uuid.uuid4().bytes * 8)
    for blob in (config, layer):
        fresh.expect(fresh.upload(blob), 201)
    foreign = sha256(uuid.uuid4().bytes)
    manifest = Blob(go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": descriptor(OCI_CONFIG, config.content, data=b64(config.content)),
                             "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                                         "digest": foreign, "size": 123456,
                                         "urls": [f"https://store.example.com/blobs/sha256/{foreign[7:]}"]},
                                        descriptor(OCI_LAYER_GZIP, layer.content)]}))
    fresh.expect(fresh.put_manifest("data-field", manifest.content), 201)
    resp = fresh.do("GET", "/v2/<name>/manifests/<reference>", reference="data-field", headers={"Accept": OCI_MANIFEST})
    fresh.expect(resp, 200)
    assert resp.content == manifest.content, fresh.why(resp)


def test_extra_cross_repository_mount_of_an_existing_blob_answers_201(fresh):
    blob = Blob(uuid.uuid4().bytes * 10)
    fresh.expect(fresh.upload(blob), 201)
    target = fresh.target.repository(f"mounted/{uuid.uuid4().hex[:8]}")
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/", name=target,
                    params={"mount": blob.digest, "from": fresh.client.namespace})
    fresh.expect(resp, 201)
    assert fresh.client.relative_location(resp) == f"/v2/{target}/blobs/{blob.digest}", fresh.why(resp)
    resp = fresh.do("GET", f"/v2/{target}/blobs/{blob.digest}")
    fresh.expect(resp, 200)
    assert resp.content == blob.content
    # A blob the source repository does not have is not mountable: 202 and a session in the target.
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/", name=target,
                    params={"mount": sha256(b"nowhere"), "from": fresh.client.namespace})
    fresh.expect(resp, 202)
    assert fresh.client.relative_location(resp).startswith(f"/v2/{target}/blobs/uploads/"), fresh.why(resp)


def test_extra_tags_list_paging_with_link(fresh):
    _, _, manifest = push_image(fresh, "a1")
    for tag in ("b2", "c3", "d4", "e5"):
        fresh.expect(fresh.put_manifest(tag, manifest.content), 201)
    resp = fresh.do("GET", "/v2/<name>/tags/list", params={"n": "2"})
    fresh.expect(resp, 200)
    assert resp.json() == {"name": fresh.client.namespace, "tags": ["a1", "b2"]}, fresh.why(resp)
    link = resp.headers.get("Link", "")
    assert link.startswith("</v2/") and 'rel="next"' in link and "last=b2" in link, fresh.why(resp)
    next_path = link[1:link.index(">")]
    resp = fresh.do("GET", next_path)
    fresh.expect(resp, 200)
    assert resp.json()["tags"] == ["c3", "d4"], fresh.why(resp)
    resp = fresh.do("GET", "/v2/<name>/tags/list", params={"n": "10", "last": "d4"})
    assert resp.json()["tags"] == ["e5"] and "Link" not in resp.headers, fresh.why(resp)
    resp = fresh.do("GET", "/v2/<name>/tags/list", params={"n": "0"})
    fresh.expect(resp, 200)
    assert resp.json()["tags"] == [] and "Link" not in resp.headers, fresh.why(resp)


# -- the bad-input list: the protocol's error body, a 4xx, never a 500, nothing half-stored ----------------

def assert_oci_error(s: Suite, resp, status: int, code: str) -> None:
    assert resp.status_code == status, s.why(resp)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), s.why(resp)
    errors = errors_of(resp)
    assert errors and errors[0]["code"] == code, s.why(resp)
    assert "Traceback" not in resp.text


def test_bad_input_wrong_digest_stores_nothing(fresh):
    content = b"the bytes the client really sent"
    claimed = sha256(b"something else")
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/", params={"digest": claimed}, headers=OCTET, body=content)
    if resp.status_code == 202:  # a registry may answer the monolithic POST with a session
        resp = fresh.do("PUT", fresh.client.relative_location(resp), params={"digest": claimed},
                        headers=OCTET, body=content)
    assert_oci_error(fresh, resp, 400, "DIGEST_INVALID")
    resp = fresh.do("POST", "/v2/<name>/blobs/uploads/")
    location = fresh.client.relative_location(resp)
    fresh.expect(fresh.do("PATCH", location, headers=OCTET, body=content), 202)
    assert_oci_error(fresh, fresh.do("PUT", location, params={"digest": claimed}, headers=OCTET, body=b""),
                     400, "DIGEST_INVALID")
    for digest in (claimed, sha256(content)):
        fresh.expect(fresh.do("HEAD", "/v2/<name>/blobs/<digest>", digest=digest), 404)


def test_bad_input_manifests(fresh, service):
    config, layer, _ = push_image(fresh, "base")
    good = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config.content),
            "layers": [descriptor(OCI_LAYER_GZIP, layer.content)]}
    missing = {**good, "layers": [descriptor(OCI_LAYER_GZIP, b"never pushed " + uuid.uuid4().bytes)]}
    assert_oci_error(fresh, fresh.put_manifest("t1", go_json(missing)), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_oci_error(fresh, fresh.put_manifest("t1", b"{not json"), 400, "MANIFEST_INVALID")
    unknown = "application/vnd.example.unknown+json"
    assert_oci_error(fresh, fresh.put_manifest("t1", go_json({**good, "mediaType": unknown}), unknown),
                     400, "MANIFEST_INVALID")
    assert_oci_error(fresh, fresh.put_manifest(sha256(b"other"), go_json(good)), 400, "DIGEST_INVALID")
    assert_oci_error(fresh, fresh.put_manifest("sha256:baddigeststring", go_json(good)), 400, "DIGEST_INVALID")
    for tag in ("-leading-dash", "a" * 129, "bad!tag"):
        assert_oci_error(fresh, fresh.put_manifest(tag, go_json(good)), 400, "TAG_INVALID")
    huge = go_json({**good, "annotations": {"pad": "A" * (4 * 1024 * 1024 + 10)}})
    resp = fresh.put_manifest("huge", huge)
    assert resp.status_code == 413, fresh.why(resp)
    assert errors_of(resp)[0]["code"] == "SIZE_INVALID", fresh.why(resp)
    # A manifest just under 4 MiB is accepted (the suite's large-manifest case).
    large = go_json({**good, "annotations": {"pad": "A" * (4 * 1000 * 1000 - 2000)}})
    fresh.expect(fresh.put_manifest("large", large), 201)
    resp = fresh.do("GET", "/v2/<name>/tags/list")
    assert sorted(resp.json()["tags"]) == ["base", "large"], fresh.why(resp)
    # A Content-Type that contradicts the body's mediaType (Distribution: 400), and image-spec's schemaVersion MUST
    # be 2 (containers/image would read a 1 as Docker schema 1).
    assert_oci_error(fresh, fresh.put_manifest("t1", go_json(good), unknown), 400, "MANIFEST_INVALID")
    assert_oci_error(fresh, fresh.put_manifest("t1", go_json({**good, "schemaVersion": 1})), 400, "MANIFEST_INVALID")


INVALID = {"NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID"}


@pytest.mark.parametrize("method,path,codes", [
    ("POST", "/v2/{reg}Bad_Name/blobs/uploads/", {"NAME_INVALID"}),
    ("POST", "/v2/{reg}a._b/blobs/uploads/", {"NAME_INVALID"}),
    ("POST", "/v2/{reg}a%2F..%2F..%2Fetc/blobs/uploads/", INVALID),
    ("GET", "/v2/{reg}ok/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd", INVALID),
    ("GET", "/v2/{reg}ok/blobs/sha256:abc", {"DIGEST_INVALID"}),
    ("GET", "/v2/{reg}ok/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", {"DIGEST_INVALID"}),
    ("GET", "/v2/{reg}ok/manifests/..%2F..%2Fetc", INVALID),
    ("GET", "/v2/{reg}ok/manifests/bad!tag", {"TAG_INVALID"}),
    ("GET", "/v2/{reg}ok/referrers/sha256:abc", {"DIGEST_INVALID"}),
])
def test_bad_input_names_digests_and_traversal(suite, method, path, codes):
    """The issue: bad names, tags and digests, path-traversal forms included, answer 400 with their code."""
    prefix = f"{suite.target.name}/" if suite.target.style == "path" else ""
    resp = suite.do(method, path.replace("{reg}", prefix))
    assert resp.status_code == 400, suite.why(resp)
    assert errors_of(resp) and errors_of(resp)[0]["code"] in codes, suite.why(resp)


def test_bad_input_tokens_for_another_registry_forged_or_tampered_are_refused(suite, acr, conformance_group, fresh):
    """A token issued for registry A is refused by registry B; a tampered or self-signed token is refused; each
    refusal is a 401 with a Bearer challenge (never 403, never 500)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    push_image(fresh, "v1")
    probe = fresh.do("GET", "/v2/<name>/manifests/v1")
    fresh.expect(probe, 200)
    other_name, other_login, other_user, other_password = create_admin_registry(acr, conformance_group, "other")
    other = RegistryUnderTest(other_name, other_login, other_user, other_password, suite.target.service_url,
                              suite.target.ca, suite.target.style)
    other_client = other.client("team/app")
    # A's token, for A's repository, asked for with A's challenge; then replayed against B and B's scope.
    first = fresh.client.session.get(fresh.client.url("/v2/<name>/tags/list"), verify=fresh.target.ca, timeout=30)
    assert first.status_code == 401, fresh.why(first)
    token_a = fresh.client.fetch_token(first.headers["WWW-Authenticate"])
    assert token_a, fresh.why()
    claims = jwt.decode(token_a, options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = jwt.get_unverified_header(token_a)
    forged = jwt.encode({**claims, "access": [{"type": "repository", "name": "*", "actions": ["*"]}]}, key,
                        algorithm="RS256", headers={k: v for k, v in header.items() if k in ("kid", "x5c")})
    head, _, signature = token_a.split(".")
    tampered_claims = {**claims, "exp": claims.get("exp", 0) + 3600}
    tampered = ".".join([head, jwt.utils.base64url_encode(json.dumps(tampered_claims).encode()).decode(), signature])
    url_b = other_client.url("/v2/<name>/tags/list")
    for token in (token_a, forged):
        resp = other_client.session.get(url_b, headers={"Authorization": f"Bearer {token}"}, verify=other.ca,
                                        timeout=30)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer "), (
            f"{resp.status_code} {resp.text[:300]}")
    for token in (forged, tampered):
        resp = fresh.client.session.get(fresh.client.url("/v2/<name>/manifests/v1"), verify=fresh.target.ca,
                                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer "), (
            f"{resp.status_code} {resp.text[:300]}")
