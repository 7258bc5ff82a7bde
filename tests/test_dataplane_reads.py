"""The pull path's database reads: a manifest GET is one statement (registry, repository, tag and manifest
together), nothing of it is cached, so what another process changes — a delete, a lock, anonymous pull, a registry
being deleted — applies to the very next request.

Two apps on one database stand for two processes (conftest's `two_processes`); content is pushed through the
first, changed through the second or by plain SQL.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from control_plane.dataplane.service import public_host
from control_plane.dataplane.tokens import RegistryTokens
from tests.support.rows import seed_registry

REPOSITORY = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _registry(app) -> str:
    """A registry's rows as plain SQL, and its container; its name."""
    ctx = app.extensions["control_plane"]
    return seed_registry(ctx.db, ctx.storage, "reads")[0]


def _bearer(app, registry: str, actions: list[str], repository: str = REPOSITORY) -> dict[str, str]:
    ctx = app.extensions["control_plane"]
    settings = ctx.settings
    token = RegistryTokens(ctx.issuer, settings.public_url, 3600).access_token(
        "tester", public_host(settings.public_url),
        [{"type": "repository", "name": f"{registry}/{repository}", "actions": actions}]).token
    return {"Authorization": f"Bearer {token}"}


def _push(app, registry: str) -> tuple[str, bytes]:
    """A config, a layer and a manifest tagged v1; (the manifest's digest, its bytes)."""
    client, auth = app.test_client(), _bearer(app, registry, ["pull", "push"])
    base = f"/v2/{registry}/{REPOSITORY}"
    descriptors = []
    for media_type, data in (("application/vnd.oci.image.config.v1+json", b'{"os":"linux","architecture":"amd64"}'),
                             ("application/vnd.oci.image.layer.v1.tar", b"layer bytes")):
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        assert client.post(f"{base}/blobs/uploads/?digest={digest}", data=data, headers=auth).status_code == 201
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptors[0],
                       "layers": descriptors[1:]}).encode()
    response = client.put(f"{base}/manifests/v1", data=body, headers={**auth, "Content-Type": OCI_MANIFEST})
    assert response.status_code == 201
    return response.headers["Docker-Content-Digest"], body


def _error_code(response) -> str:
    return response.get_json()["errors"][0]["code"]


@pytest.fixture
def pushed(two_processes):
    first, second = two_processes
    registry = _registry(first)
    digest, body = _push(first, registry)
    return first, second, registry, digest, body


def test_a_manifest_get_is_one_statement_by_tag_and_by_digest(pushed):
    first, _, registry, digest, body = pushed
    engine = first.extensions["control_plane"].db.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("statements are counted with SQLite's trace callback")
    statements: list[str] = []

    @event.listens_for(engine, "checkout")
    def _trace(dbapi_connection, _record, _proxy):
        dbapi_connection.set_trace_callback(statements.append)

    client, auth = first.test_client(), _bearer(first, registry, ["pull"])
    try:
        for reference in ("v1", digest):
            for method in ("GET", "HEAD"):
                statements.clear()
                response = client.open(f"/v2/{registry}/{REPOSITORY}/manifests/{reference}", method=method,
                                       headers={**auth, "Accept": OCI_MANIFEST})
                assert response.status_code == 200
                assert response.headers["Docker-Content-Digest"] == digest
                assert response.headers["Content-Type"] == OCI_MANIFEST
                assert response.headers["Content-Length"] == str(len(body))
                assert response.data == (body if method == "GET" else b"")
                assert len(statements) == 1, statements
                assert "FROM registries" in statements[0]
    finally:
        event.remove(engine, "checkout", _trace)
        with engine.connect() as connection:  # pooled connections keep no callback into this test
            connection.connection.dbapi_connection.set_trace_callback(None)


def test_a_delete_through_another_process_applies_at_the_next_get(pushed):
    first, second, registry, digest, body = pushed
    url, reader = f"/v2/{registry}/{REPOSITORY}/manifests", _bearer(first, registry, ["pull"])
    client = first.test_client()
    for reference in ("v1", digest):
        assert client.get(f"{url}/{reference}", headers=reader).data == body
    deleted = second.test_client().delete(f"{url}/{digest}", headers=_bearer(second, registry, ["delete"]))
    assert deleted.status_code == 202
    for reference in ("v1", digest):
        gone = client.get(f"{url}/{reference}", headers=reader)
        assert gone.status_code == 404 and _error_code(gone) == "MANIFEST_UNKNOWN"


def test_locks_anonymous_pull_and_registry_state_changed_by_plain_sql_apply_at_once(pushed):
    first, _, registry, digest, body = pushed
    engine = first.extensions["control_plane"].db.engine
    url, reader = f"/v2/{registry}/{REPOSITORY}/manifests", _bearer(first, registry, ["pull"])
    client = first.test_client()

    def sql(statement: str, **params) -> None:
        with engine.begin() as connection:
            connection.execute(sa.text(statement), params)

    # readEnabled=false on the tag refuses a pull by the tag, not by the digest; on the manifest, both.
    sql("UPDATE tags SET read_enabled = false WHERE name = 'v1'")
    locked = client.get(f"{url}/v1", headers=reader)
    assert locked.status_code == 405 and _error_code(locked) == "REGISTRY_DISALLOWED_OPERATION"
    assert client.get(f"{url}/{digest}", headers=reader).data == body
    sql("UPDATE tags SET read_enabled = true")
    sql("UPDATE manifests SET read_enabled = false WHERE digest = :d", d=digest)
    for reference in ("v1", digest):
        assert client.get(f"{url}/{reference}", headers=reader).status_code == 405
    sql("UPDATE manifests SET read_enabled = true")

    # Anonymous pull, on and off again.
    anonymous = client.get(f"{url}/v1")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer realm=")
    sql("UPDATE registries SET properties = :p WHERE name_key = :n",
        p=json.dumps({"anonymousPullEnabled": True}), n=registry)
    assert client.get(f"{url}/v1").data == body
    sql("UPDATE registries SET properties = :p WHERE name_key = :n",
        p=json.dumps({"anonymousPullEnabled": False}), n=registry)
    assert client.get(f"{url}/v1").status_code == 401

    # Unknown names: the repository, then the registry (also while it is being deleted).
    no_repository = client.get(f"/v2/{registry}/team/none/manifests/v1",
                               headers=_bearer(first, registry, ["pull"], "team/none"))
    assert no_repository.status_code == 404 and _error_code(no_repository) == "NAME_UNKNOWN"
    not_for_this_token = client.get(f"/v2/{registry}/team/none/manifests/v1", headers=reader)
    assert not_for_this_token.status_code == 401  # authorised before anything read is told
    no_tag = client.get(f"{url}/v2", headers=reader)
    assert no_tag.status_code == 404 and _error_code(no_tag) == "MANIFEST_UNKNOWN"
    sql("UPDATE registries SET provisioning_state = 'Deleting' WHERE name_key = :n", n=registry)
    deleting = client.get(f"{url}/v1", headers=reader)
    assert deleting.status_code == 404 and _error_code(deleting) == "NAME_UNKNOWN"
