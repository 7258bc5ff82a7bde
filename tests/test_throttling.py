"""ARM-style throttling: token buckets per subscription and kind, shared by every worker and replica."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support import servers


def _token(svc) -> str:
    return requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": svc.init["clientId"],
        "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default",
    }).json()["access_token"]


def test_write_bucket_is_shared_by_workers_and_replicas(tmp_path):
    tight = {"CONTROL_PLANE_THROTTLE_WRITES": "12:0.5", "CONTROL_PLANE_THROTTLE_READS": "1000:100"}
    with servers.postgres_database() as database_url:
        first = servers.make_service(tmp_path / "a", database_url, "local", tight)
        first.data_dir.mkdir()
        first.init = first.cli_json("init")
        # Replicas behind one load balancer share its public URL, which is the token issuer.
        second = servers.make_service(tmp_path / "b", database_url, "local",
                                      {**tight, "CONTROL_PLANE_PUBLIC_URL": first.url})
        second.data_dir.mkdir()
        second.init = first.init
        # Both replicas share the database; the second needs the first's encryption key to read signing keys.
        (second.data_dir / "encryption.key").write_bytes((first.data_dir / "encryption.key").read_bytes())
        first.start(workers=2)
        second.start(workers=2)
        try:
            token = _token(first)
            headers = {"Authorization": f"Bearer {token}"}
            replicas = [first, second]

            def put(i):
                svc = replicas[i % 2]
                return requests.put(f"{svc.url}/subscriptions/{svc.subscription_id}/resourcegroups/t{i}"
                                    "?api-version=2025-04-01", json={"location": "eastus"}, headers=headers,
                                    verify=svc.ca, timeout=30)

            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(put, range(40)))
            elapsed = time.monotonic() - started
            admitted = [r for r in responses if r.status_code == 201]
            throttled = [r for r in responses if r.status_code == 429]
            assert len(admitted) + len(throttled) == 40, [r.status_code for r in responses]
            assert 12 - 4 <= len(admitted) <= 12 + 0.5 * elapsed + 1, (len(admitted), elapsed)
            for r in throttled:
                assert r.json()["error"]["code"] == "SubscriptionRequestsThrottled"
                assert int(r.headers["Retry-After"]) >= 1
                assert r.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
            assert all(int(r.headers["x-ms-ratelimit-remaining-subscription-writes"]) >= 0 for r in admitted)

            read = requests.get(f"{first.url}/subscriptions/{first.subscription_id}/resourcegroups"
                                "?api-version=2025-04-01", headers=headers, verify=first.ca, timeout=30)
            assert read.status_code == 200, "reads have their own bucket"
            assert int(read.headers["x-ms-ratelimit-remaining-subscription-reads"]) > 900

            time.sleep(int(throttled[0].headers["Retry-After"]) + 0.5)
            assert put(99).status_code == 201, "the bucket refills"
        finally:
            first.stop()
            second.stop()


def test_tenant_level_calls_use_the_tenant_bucket(tmp_path):
    svc = servers.make_service(tmp_path, None, "local", {"CONTROL_PLANE_THROTTLE_READS": "3:0.1"})
    svc.init = svc.cli_json("init")
    svc.start()
    try:
        headers = {"Authorization": f"Bearer {_token(svc)}"}
        statuses = []
        for _ in range(6):
            r = requests.get(f"{svc.url}/subscriptions?api-version=2022-12-01", headers=headers, verify=svc.ca,
                             timeout=30)
            statuses.append(r.status_code)
            if r.status_code == 200:
                assert "x-ms-ratelimit-remaining-tenant-reads" in r.headers
            else:
                assert r.json()["error"]["code"] == "TenantRequestsThrottled"
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    finally:
        svc.stop()
