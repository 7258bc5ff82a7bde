"""The `control-plane` command as scripts use it: init, subscription create, sp create, db upgrade."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from tests.support import servers


def run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_init_is_idempotent_and_prints_everything_a_client_needs(tmp_path):
    svc = servers.make_service(tmp_path, None, "local")
    first = json.loads(run_cli(svc.env, "init").stdout)
    assert set(first) >= {"tenantId", "subscriptionId", "clientId", "clientSecret", "authority",
                          "resourceManagerEndpoint", "caBundle"}
    assert first["authority"] == svc.url
    assert first["resourceManagerEndpoint"] == svc.url + "/"
    assert first["caBundle"] == str(tmp_path / "tls" / "ca.pem")
    assert (tmp_path / "tls" / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")

    again = run_cli(svc.env, "init")
    second = json.loads(again.stdout)
    assert {k: second[k] for k in ("tenantId", "subscriptionId", "clientId")} == \
        {k: first[k] for k in ("tenantId", "subscriptionId", "clientId")}
    assert second["clientSecret"] is None
    assert "--reset-secret" in again.stderr

    reset = json.loads(run_cli(svc.env, "init", "--reset-secret").stdout)
    assert reset["clientSecret"] and reset["clientSecret"] != first["clientSecret"]


def test_secrets_are_stored_hashed(tmp_path):
    svc = servers.make_service(tmp_path, None, "local")
    secret = json.loads(run_cli(svc.env, "init").stdout)["clientSecret"]
    sp = json.loads(run_cli(svc.env, "sp", "create", "--name", "ci").stdout)
    database = b"".join(p.read_bytes() for p in tmp_path.glob("control-plane.db*"))  # with the WAL file
    assert secret.encode() not in database
    assert sp["password"].encode() not in database


def test_commands_before_init_and_bad_configuration_fail_cleanly(tmp_path):
    svc = servers.make_service(tmp_path, None, "local")
    result = run_cli(svc.env, "sp", "create", "--name", "early")
    assert result.returncode == 1
    assert "control-plane init" in result.stderr
    bad = run_cli(dict(svc.env, CONTROL_PLANE_STORAGE="not a connection string"), "init")
    assert bad.returncode == 2
    assert "CONTROL_PLANE_STORAGE" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_db_upgrade_creates_the_schema(tmp_path):
    svc = servers.make_service(tmp_path, None, "local")
    result = run_cli(svc.env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "control-plane.db").exists()


def test_subscription_and_principal_created_by_cli_work_over_the_api(service):
    created = service.cli_json("subscription", "create", "--name", "team-b")
    assert created["tenantId"] == service.tenant_id
    sp = service.cli_json("sp", "create", "--name", "builder")
    assert set(sp) >= {"appId", "password", "tenant", "id"}
    assert sp["tenant"] == service.tenant_id

    token = requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", verify=service.ca, timeout=30,
                          data={"grant_type": "client_credentials", "client_id": service.init["clientId"],
                                "client_secret": service.init["clientSecret"],
                                "scope": "https://management.azure.com/.default"}).json()["access_token"]
    listed = requests.get(f"{service.url}/subscriptions?api-version=2022-12-01", verify=service.ca, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}).json()["value"]
    assert created["subscriptionId"] in {s["subscriptionId"] for s in listed}

    group = requests.put(f"{service.url}/subscriptions/{created['subscriptionId']}/resourcegroups/cli-rg"
                         "?api-version=2025-04-01", json={"location": "eastus"}, verify=service.ca, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
    assert group.status_code == 201
    assert group.json()["id"] == f"/subscriptions/{created['subscriptionId']}/resourceGroups/cli-rg"

    sp_token = requests.post(f"{service.url}/{sp['tenant']}/oauth2/v2.0/token", verify=service.ca, timeout=30,
                             data={"grant_type": "client_credentials", "client_id": sp["appId"],
                                   "client_secret": sp["password"],
                                   "scope": "https://management.azure.com/.default"})
    assert sp_token.status_code == 200
    assert sp_token.json()["token_type"] == "Bearer"
