"""Many clients at once: one registry name, one winner; many writers on one registry, one consistent result."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import storage_containers, unique_registry_name

API = "?api-version=2025-11-01"


def test_fifty_concurrent_creates_of_one_name_from_different_subscriptions(service, arm):
    subscriptions = [service.cli_json("subscription", "create", "--name", f"race-{i}")["subscriptionId"]
                     for i in range(10)]
    targets = []
    for subscription in subscriptions:
        for g in range(5):
            group = f"race-{uuid.uuid4().hex[:8]}-{g}"
            assert arm.request("PUT", f"/subscriptions/{subscription}/resourcegroups/{group}?api-version=2025-04-01",
                               json={"location": "eastus"}).status_code == 201
            targets.append((subscription, group))
    name = unique_registry_name("race")

    def put(target):
        subscription, group = target
        return arm.request("PUT", f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
                                  f"Microsoft.ContainerRegistry/registries/{name}{API}",
                           json={"location": "eastus", "sku": {"name": "Basic"}})

    with ThreadPoolExecutor(25) as pool:
        responses = list(pool.map(put, targets))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"AlreadyInUse"}
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    _wait_settled(arm, winner)
    assert sum(c.startswith(name.lower() + "-") for c in storage_containers(service)) == 1


def test_fifty_concurrent_writes_on_one_registry_end_consistent(service, arm, group):
    name = unique_registry_name("mixed")
    path = arm.registry_path(group, name) + API
    assert arm.request("PUT", path, json={"location": "eastus", "sku": {"name": "Basic"}}).status_code == 201
    random.seed(7)
    requests_ = [random.choice(["PUT", "PATCH", "DELETE"]) for _ in range(50)]

    def send(method):
        if method == "PUT":
            return arm.request("PUT", path, json={"location": "eastus", "sku": {"name": random.choice(
                ["Basic", "Standard"])}, "tags": {"n": str(random.random())}})
        if method == "PATCH":
            return arm.request("PATCH", path, json={"tags": {"p": str(random.random())}})
        return arm.request("DELETE", path)

    with ThreadPoolExecutor(25) as pool:
        responses = list(pool.map(send, requests_))
    assert all(r.status_code < 500 for r in responses), [(r.status_code, r.text[:200]) for r in responses]
    assert {r.status_code for r in responses} <= {200, 201, 202, 204, 404, 409}
    for r in responses:
        if r.status_code >= 400:
            assert r.json()["error"]["code"] in {"Conflict", "RegistryBeingDeleted", "ResourceNotFound"}, r.text

    final = _wait_settled(arm, path.split("?")[0])
    containers = [c for c in storage_containers(service) if c.startswith(name.lower() + "-")]
    if final is None:
        assert containers == []
    else:
        assert final["properties"]["provisioningState"] == "Succeeded"
        assert len(containers) == 1


def _wait_settled(arm, resource_id: str, timeout: float = 60):
    """The registry once no operation is running on it (None when it is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = arm.request("GET", resource_id + API)
        if response.status_code == 404:
            return None
        state = response.json()["properties"]["provisioningState"]
        if state in ("Succeeded", "Failed"):
            return response.json()
        time.sleep(0.3)
    raise AssertionError(f"{resource_id} did not settle")
