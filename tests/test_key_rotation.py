"""Key rotation: token-signing keys (`control-plane keys rotate`: the new key signs, the old one verifies for a
grace period, then nothing it signed is accepted) and the data-encryption key (`control-plane keys
rotate-encryption`: every stored secret re-encrypted with the newest key, which alone then reads them all).
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import jwt
import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from control_plane import migrate
from control_plane.config import Settings
from control_plane.crypto import KEY_FILE_NAME, KEYRING_FILE_NAME, Cipher, load_cipher
from control_plane.db import Database
from control_plane.identity import tokens
from control_plane.identity.tokens import InvalidToken as InvalidAccessToken
from control_plane.identity.tokens import TokenIssuer
from control_plane.keys import ENCRYPTED_COLUMNS
from tests.conftest import selected_backends, unique_registry_name
from tests.support import servers

DATABASES = [b.split("-")[0] for b in selected_backends()]  # sqlite, postgres
AUDIENCE = "https://management.azure.com"
REGISTRY_API = "2023-07-01"
GROUPS_API = "2021-04-01"


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield None
    else:
        with servers.postgres_database() as url:
            yield url


def sqlalchemy_url(database_url: str | None, tmp_path) -> str:
    env = {"CONTROL_PLANE_DATA_DIR": str(tmp_path)}
    if database_url:
        env["CONTROL_PLANE_DATABASE_URL"] = database_url
    return Settings.from_env(env).database_url


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


# -- signing keys, between replicas (in-process issuers sharing one database) -------------------------------------


def test_rotation_between_replicas_new_key_signs_old_verifies_during_grace_only(database_url, tmp_path,
                                                                                  monkeypatch):
    url = sqlalchemy_url(database_url, tmp_path)
    databases = [Database(url) for _ in range(3)]
    migrate.upgrade(databases[0].engine)
    cipher = Cipher([Fernet.generate_key()])
    first, second, stale = (TokenIssuer(db, cipher, "https://cp.example", 3600) for db in databases)
    principal = SimpleNamespace(tenant_id="t1", object_id="o1", app_id="a1", display_name="p")
    try:
        first.ensure_signing_key()
        old_token, _ = first.issue(principal, AUDIENCE)
        old_kid = kid_of(old_token)
        stale.validate(old_token, (AUDIENCE,))  # loads (and caches) the keys as they are before the rotation

        new_kid = second.rotate(grace_seconds=4)
        new_token, _ = second.issue(principal, AUDIENCE)
        assert kid_of(new_token) == new_kid != old_kid, "tokens are signed with the newest key"
        # The first replica has not seen the new key yet: a token naming it makes it read the keys again.
        assert first.validate(new_token, (AUDIENCE,)).object_id == "o1"
        assert kid_of(first.issue(principal, AUDIENCE)[0]) == new_kid, "and then it signs with the new key too"
        for issuer in (first, second, stale):
            assert issuer.validate(old_token, (AUDIENCE,)).object_id == "o1", "the old key verifies during grace"
        assert {k["kid"] for k in second.jwks()["keys"]} == {old_kid, new_kid}
        states = {k["kid"]: k["state"] for k in second.key_status()}
        assert states == {new_kid: "signing", old_kid: "verifying"}

        # The stale replica's cache outlives the grace period only when the grace is shorter than the cache.
        monkeypatch.setattr(tokens, "KEY_CACHE_SECONDS", 2)
        time.sleep(4.5)
        for issuer in (first, second, stale):
            with pytest.raises(InvalidAccessToken):
                issuer.validate(old_token, (AUDIENCE,))
            assert issuer.validate(new_token, (AUDIENCE,)).object_id == "o1"
        assert {k["kid"] for k in first.jwks()["keys"]} == {new_kid}
        assert {k["kid"]: k["state"] for k in second.key_status()}[old_kid] == "retired"

        newest = first.rotate(grace_seconds=60)
        assert [k["kid"] for k in first.key_status()] == [newest, new_kid], "a rotation drops retired keys"
    finally:
        for db in databases:
            db.dispose()


# -- signing keys, end to end: the CLI and a running server ------------------------------------------------------


def start_service(tmp_path, database_url, **env):
    svc = servers.make_service(tmp_path, database_url, "local", {"CONTROL_PLANE_LOCATIONS": "eastus", **env})
    svc.data_dir.mkdir(exist_ok=True)
    svc.init = svc.cli_json("init")
    svc.start(workers=1)
    return svc


def get_token(svc) -> str:
    response = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": svc.init["clientId"],
        "client_secret": svc.init["clientSecret"], "scope": f"{AUDIENCE}/.default"})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def list_groups(svc, token: str) -> requests.Response:
    return requests.get(f"{svc.url}/subscriptions/{svc.subscription_id}/resourcegroups?api-version={GROUPS_API}",
                        headers={"Authorization": f"Bearer {token}"}, verify=svc.ca, timeout=30)


def test_keys_rotate_command_with_a_running_server(database_url, tmp_path):
    svc = start_service(tmp_path, database_url)
    try:
        old_token = get_token(svc)
        assert list_groups(svc, old_token).status_code == 200
        rotated = svc.cli("keys", "rotate", "--grace-seconds", "6")
        assert "warning" in rotated.stderr, "a grace period shorter than the replicas' key cache is pointed out"
        result = json.loads(rotated.stdout)
        assert result["graceSeconds"] == 6
        states = {k["kid"]: k for k in result["keys"]}
        assert states[result["kid"]]["state"] == "signing"
        assert states[kid_of(old_token)]["state"] == "verifying" and states[kid_of(old_token)]["retiresAt"]
        rotated_at = time.monotonic()

        # A token signed with the new key (as another replica would after the rotation): the server, which has
        # only the old key cached, reads the keys again and accepts it.
        settings = Settings.from_env(svc.env)
        db = Database(settings.database_url)
        elsewhere = TokenIssuer(db, load_cipher(settings.encryption_key, settings.data_dir), settings.public_url,
                                3600)
        principal = SimpleNamespace(tenant_id=svc.tenant_id, object_id=svc.init["objectId"],
                                    app_id=svc.init["clientId"], display_name="owner")
        foreign_token, _ = elsewhere.issue(principal, AUDIENCE)
        db.dispose()
        assert kid_of(foreign_token) == result["kid"]
        assert list_groups(svc, foreign_token).status_code == 200
        assert list_groups(svc, old_token).status_code == 200, "tokens already out work during the grace period"
        new_token = get_token(svc)
        assert kid_of(new_token) == result["kid"], "the server signs with the newest key"

        time.sleep(max(0.0, 6.5 - (time.monotonic() - rotated_at)))
        refused = list_groups(svc, old_token)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert list_groups(svc, new_token).status_code == 200
        assert list_groups(svc, get_token(svc)).status_code == 200
        listed = {k["kid"]: k["state"] for k in svc.cli_json("keys", "list")["keys"]}
        assert listed == {result["kid"]: "signing", kid_of(old_token): "retired"}
        default = svc.cli_json("keys", "rotate")
        assert default["graceSeconds"] == 3600 + 60 + 60, "default: token lifetime + key cache + clock skew"
    finally:
        svc.stop()


# -- the data-encryption key -------------------------------------------------------------------------------------


def admin_passwords(svc, token: str, path: str) -> list[str]:
    response = requests.post(f"{svc.url}{path}/listCredentials?api-version={REGISTRY_API}", verify=svc.ca,
                             timeout=30, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return [p["value"] for p in response.json()["passwords"]]


def create_registry(svc, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    group = f"/subscriptions/{svc.subscription_id}/resourcegroups/rg-keys"
    assert requests.put(f"{svc.url}{group}?api-version={GROUPS_API}", json={"location": "eastus"},
                        headers=headers, verify=svc.ca, timeout=30).status_code in (200, 201)
    path = f"{group}/providers/Microsoft.ContainerRegistry/registries/{unique_registry_name('keys')}"
    created = requests.put(f"{svc.url}{path}?api-version={REGISTRY_API}", headers=headers, verify=svc.ca, timeout=30,
                           json={"location": "eastus", "sku": {"name": "Basic"},
                                 "properties": {"adminUserEnabled": True}})
    assert created.status_code in (200, 201), created.text
    return path


def stored_secrets(svc) -> list[str]:
    """Every encrypted value in the database, read straight from the tables keys.ENCRYPTED_COLUMNS lists."""
    settings = Settings.from_env(svc.env)
    engine = sa.create_engine(settings.database_url)
    values = []
    with engine.connect() as connection:
        for model, columns in ENCRYPTED_COLUMNS.items():
            for row in connection.execute(sa.select(*(model.__table__.c[c] for c in columns))):
                values += [v for v in row if v is not None]
    engine.dispose()
    return values


def readable_by(key: bytes, values: list[str]) -> list[bool]:
    result = []
    for value in values:
        try:
            Fernet(key).decrypt(value.encode())
            result.append(True)
        except InvalidToken:
            result.append(False)
    return result


def test_rotate_encryption_with_the_configured_keys(database_url, tmp_path):
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    svc = start_service(tmp_path, database_url, CONTROL_PLANE_ENCRYPTION_KEY=old_key.decode())
    try:
        token = get_token(svc)
        path = create_registry(svc, token)
        passwords = admin_passwords(svc, token, path)
    finally:
        svc.stop()
    before = stored_secrets(svc)
    assert len(before) >= 3 and all(readable_by(old_key, before))

    # The new key first, the old one still listed: what every replica runs with during the rotation.
    svc.env["CONTROL_PLANE_ENCRYPTION_KEY"] = f"{new_key.decode()},{old_key.decode()}"
    rotated = svc.cli("keys", "rotate-encryption")
    result = json.loads(rotated.stdout)
    assert result["mode"] == "CONTROL_PLANE_ENCRYPTION_KEY" and result["complete"] is True
    assert result["rewritten"]["registries"] >= 2 and result["rewritten"]["signing_keys"] >= 1
    assert "keys: registries:" in rotated.stderr, "progress on stderr"
    after = stored_secrets(svc)
    assert len(after) == len(before)
    assert all(readable_by(new_key, after)), "the newest key reads every stored secret"
    assert not any(readable_by(old_key, after)), "the old key alone reads none"

    svc.env["CONTROL_PLANE_ENCRYPTION_KEY"] = new_key.decode()  # the old key dropped
    svc.start(workers=1)
    try:
        token = get_token(svc)  # the signing key decrypts with the new key alone
        assert admin_passwords(svc, token, path) == passwords
    finally:
        svc.stop()


def test_rotate_encryption_with_the_generated_key_file_and_a_running_server(database_url, tmp_path):
    svc = start_service(tmp_path, database_url)
    try:
        token = get_token(svc)
        path = create_registry(svc, token)
        passwords = admin_passwords(svc, token, path)
        old_key = (svc.data_dir / KEY_FILE_NAME).read_bytes().strip()

        rotated = svc.cli("keys", "rotate-encryption")
        result = json.loads(rotated.stdout)
        assert result["mode"] == "key file" and result["complete"] is True
        new_key = (svc.data_dir / KEY_FILE_NAME).read_bytes().strip()
        assert new_key != old_key
        assert (svc.data_dir / KEYRING_FILE_NAME).read_bytes().split() == [old_key], "the old key is kept aside"
        after = stored_secrets(svc)
        assert all(readable_by(new_key, after)) and not any(readable_by(old_key, after))

        # The server still running with the old key in memory follows the key file: it reads the re-encrypted
        # passwords, and what it encrypts now uses the new key.
        assert admin_passwords(svc, token, path) == passwords
        regenerated = requests.post(f"{svc.url}{path}/regenerateCredential?api-version={REGISTRY_API}",
                                    json={"name": "password"}, headers={"Authorization": f"Bearer {token}"},
                                    verify=svc.ca, timeout=30)
        assert regenerated.status_code == 200
        assert all(readable_by(new_key, stored_secrets(svc)))
        current = admin_passwords(svc, token, path)
        assert current[1] == passwords[1] and current[0] != passwords[0]
    finally:
        svc.stop()
    svc.start(workers=1)
    try:
        assert admin_passwords(svc, get_token(svc), path) == current
    finally:
        svc.stop()


def test_a_replica_with_another_encryption_key_refuses_to_start(database_url, tmp_path):
    """Replicas share the signing keys through the database; one that cannot decrypt them says so at once."""
    env = {"CONTROL_PLANE_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    if database_url is None:  # two data folders, one SQLite database
        env["CONTROL_PLANE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'shared.db'}"
    first = servers.make_service(tmp_path / "first", database_url, "local", env)
    first.cli_json("init")
    other = servers.make_service(tmp_path / "other", database_url, "local",
                                 {**env, "CONTROL_PLANE_ENCRYPTION_KEY": Fernet.generate_key().decode()})
    refused = other.cli("init", check=False)
    assert refused.returncode != 0
    assert "same CONTROL_PLANE_ENCRYPTION_KEY" in refused.stderr
