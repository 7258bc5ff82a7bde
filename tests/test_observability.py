"""Running it for real: probes, Prometheus metrics summed over gunicorn's workers, and one JSON log line per
request that never holds a secret."""

from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
import requests
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from control_plane.app import create_app
from control_plane.config import Settings, SettingsError
from tests.conftest import unique_registry_name
from tests.support import servers

REGISTRY_API = "2023-07-01"
GROUPS_API = "2021-04-01"


def scrape(service) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from one fresh connection (any worker may answer)."""
    response = requests.get(f"{service.url}/metrics", verify=service.ca, timeout=30,
                            headers={"Connection": "close"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def request_lines(service) -> list[dict]:
    lines = []
    for line in service.log().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "control_plane.request":
                lines.append(record)
    return lines


def token_response(service, secret: str) -> requests.Response:
    return requests.post(f"{service.url}/{service.tenant_id}/oauth2/v2.0/token", verify=service.ca, timeout=30,
                         data={"grant_type": "client_credentials", "client_id": service.init["clientId"],
                               "client_secret": secret, "scope": "https://management.azure.com/.default"})


def wait_for_registry(arm, path: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = arm.request("GET", f"{path}?api-version={REGISTRY_API}").json()
        if body["properties"]["provisioningState"] != "Creating":
            return body
        time.sleep(0.2)
    raise TimeoutError(path)


# -- probes ------------------------------------------------------------------------------------------------------


def test_probes_answer_without_a_token_or_an_api_version(service):
    live = requests.get(f"{service.url}/healthz", verify=service.ca, timeout=30)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = requests.get(f"{service.url}/readyz", verify=service.ca, timeout=30)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] == {"status": "ok"}
    storage = {name for name in checks if name.startswith("storage:")}
    if getattr(service, "azurite", None) is not None:
        assert storage == {f"storage:{account}" for account in service.azurite.accounts}, "every account is checked"
    else:
        assert storage == {"storage:local"}
    assert all(check == {"status": "ok"} for check in checks.values())
    assert ready.headers["x-ms-request-id"], "the protocol headers apply as everywhere"


def test_readiness_names_what_failed_and_liveness_does_not_care(tmp_path):
    dead = servers.free_port()
    settings = Settings.from_env({
        "CONTROL_PLANE_DATA_DIR": str(tmp_path),
        "CONTROL_PLANE_DATABASE_URL": f"postgresql://nobody:hunter2@127.0.0.1:{dead}/gone",
        "CONTROL_PLANE_STORAGE": f"DefaultEndpointsProtocol=http;AccountName=deadaccount;AccountKey="
                                 f"{servers.AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{dead}/deadaccount;",
        "CONTROL_PLANE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    })
    client = create_app(settings).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"]
    body = ready.json
    assert body["error"]["code"] == "ServiceUnavailable"
    assert "database" in body["error"]["message"] and "storage:deadaccount" in body["error"]["message"]
    assert body["checks"]["database"]["status"] == "failed"
    assert body["checks"]["storage:deadaccount"]["status"] == "failed"
    assert "hunter2" not in ready.get_data(as_text=True), "a failed check never shows the connection string"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200, "a scrape during an outage still answers"
    assert "control_plane_database_up 0.0" in metrics.get_data(as_text=True)


# -- logs --------------------------------------------------------------------------------------------------------


def test_one_json_line_per_request_names_request_caller_operation_and_timing(service, arm):
    correlation = str(uuid.uuid4())
    response = arm.request("GET", f"/subscriptions/{service.subscription_id}/resourcegroups?api-version="
                           f"{GROUPS_API}&$skipToken=QUERY-MUST-NOT-BE-LOGGED",
                           headers={"x-ms-correlation-request-id": correlation})
    assert response.status_code in (200, 400)
    deadline = time.monotonic() + 10
    while not (lines := [r for r in request_lines(service) if r.get("correlationId") == correlation]):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.1)
    [line] = lines
    assert line["requestId"] == response.headers["x-ms-request-id"]
    assert line["callerObjectId"] == service.init["objectId"]
    assert line["callerAppId"] == service.init["clientId"]
    assert line["operation"] == "Microsoft.Resources/subscriptions/resourceGroups/read"
    assert line["method"] == "GET"
    assert line["path"] == f"/subscriptions/{service.subscription_id}/resourceGroups"
    assert line["status"] == response.status_code
    assert isinstance(line["durationMs"], float | int) and line["durationMs"] >= 0
    assert line["level"] == "INFO" and line["time"].endswith("Z")
    assert "QUERY-MUST-NOT-BE-LOGGED" not in service.log()


def test_no_secret_reaches_the_log(service, arm, group):
    wrong_secret = f"wrong-{uuid.uuid4().hex}"
    assert token_response(service, wrong_secret).status_code == 401
    token = token_response(service, service.init["clientSecret"]).json()["access_token"]
    name = unique_registry_name("logs")
    path = arm.registry_path(group, name)
    created = arm.request("PUT", f"{path}?api-version={REGISTRY_API}", json={
        "location": "eastus", "sku": {"name": "Basic"}, "properties": {"adminUserEnabled": True}})
    assert created.status_code in (200, 201), created.text
    wait_for_registry(arm, path)
    credentials = arm.request("POST", f"{path}/listCredentials?api-version={REGISTRY_API}").json()
    passwords = [p["value"] for p in credentials["passwords"]]
    regenerated = arm.request("POST", f"{path}/regenerateCredential?api-version={REGISTRY_API}",
                              json={"name": "password2"}).json()
    passwords += [p["value"] for p in regenerated["passwords"]]

    log = service.log()
    assert request_lines(service), "the service logs JSON lines under `serve`"
    for secret in (service.init["clientSecret"], wrong_secret, token, arm.session.headers["Authorization"],
                   *passwords):
        assert secret not in log
    assert "client_secret" not in log


# -- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_add_up_every_worker_and_count_tokens_and_operations(service, arm, group):
    read = "Microsoft.Resources/subscriptions/resourceGroups/read"
    labels = {"operation": read, "method": "GET", "status": "200"}
    before = scrape(service)
    for _ in range(12):  # a fresh connection each: gunicorn's workers share them out
        response = requests.get(f"{service.url}/subscriptions/{service.subscription_id}/resourcegroups?api-version="
                                f"{GROUPS_API}", headers={"Authorization": arm.session.headers["Authorization"],
                                                          "Connection": "close"}, verify=service.ca, timeout=30)
        assert response.status_code == 200
    for _ in range(4):  # whichever worker answers the scrape, it reports every worker's count
        after = scrape(service)
        assert sample(after, "control_plane_http_requests_total", **labels) == sample(
            before, "control_plane_http_requests_total", **labels) + 12
        assert sample(after, "control_plane_http_request_duration_seconds_count", operation=read, method="GET") >= 12
    files = list((service.data_dir / "metrics").glob("*/counter_*.db"))
    assert len(files) >= 2, f"each gunicorn worker writes its own counters: {files}"

    assert token_response(service, "not-the-secret").status_code == 401
    assert token_response(service, service.init["clientSecret"]).status_code == 200
    tokens = scrape(service)
    for outcome in ("issued", "invalid_client"):
        assert sample(tokens, "control_plane_token_requests_total", endpoint="identity.token", outcome=outcome) >= (
            sample(before, "control_plane_token_requests_total", endpoint="identity.token", outcome=outcome) + 1)

    name = unique_registry_name("metrics")
    path = arm.registry_path(group, name)
    arm.request("PUT", f"{path}?api-version={REGISTRY_API}", json={"location": "eastus", "sku": {"name": "Basic"}})
    wait_for_registry(arm, path)
    deadline = time.monotonic() + 30
    while True:
        operations = scrape(service)
        succeeded = {labels: value for (metric, labels), value in operations.items()
                     if metric == "control_plane_operations" and ("state", "Succeeded") in labels}
        if succeeded:
            break
        assert time.monotonic() < deadline, "operations by state are read from the database"
        time.sleep(0.2)
    assert sample(operations, "control_plane_database_up") == 1
    assert ("control_plane_operations_due", ()) in operations, "the worker queue's depth"


def test_throttled_requests_are_counted_and_old_metric_files_are_cleared(tmp_path):
    svc = servers.make_service(tmp_path, None, "local", {"CONTROL_PLANE_THROTTLE_DELETES": "3:0.01"})
    svc.init = svc.cli_json("init")
    port = int(svc.url.rsplit(":", 1)[1])
    stale = tmp_path / "metrics" / f"{socket.gethostname()}-{port}"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"left over by an earlier run")
    svc.start()
    try:
        assert not (stale / "counter_1.db").exists(), "a run starts with no metric files of an earlier one"
        token = token_response(svc, svc.init["clientSecret"]).json()["access_token"]
        statuses = [requests.delete(f"{svc.url}/subscriptions/{svc.subscription_id}/resourcegroups/gone{i}"
                                    f"?api-version={GROUPS_API}", headers={"Authorization": f"Bearer {token}"},
                                    verify=svc.ca, timeout=30).status_code for i in range(6)]
        throttled = statuses.count(429)
        assert throttled >= 2, statuses
        samples = scrape(svc)
        assert sample(samples, "control_plane_throttled_requests_total", scope="subscription",
                      kind="deletes") == throttled
        assert sample(samples, "control_plane_http_requests_total", status="429", method="DELETE",
                      operation="Microsoft.Resources/subscriptions/resourceGroups/delete") == throttled
    finally:
        svc.stop()


def test_log_format_and_worker_settings_are_checked():
    assert Settings.from_env({"CONTROL_PLANE_LOG_FORMAT": "TEXT"}).log_format == "text"
    assert Settings.from_env({}).log_format is None, "unset: `serve` and `worker` choose json, the rest text"
    assert Settings.from_env({}).run_worker is True
    assert Settings.from_env({"CONTROL_PLANE_RUN_WORKER": "false"}).run_worker is False
    for variable, value in (("CONTROL_PLANE_LOG_FORMAT", "xml"), ("CONTROL_PLANE_RUN_WORKER", "sometimes")):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: value})
