"""PostgreSQL goes away: requests get 503 + Retry-After in the ARM envelope, quickly; the service recovers alone."""

from __future__ import annotations

import time

import requests

from tests.support import servers
from tests.support.tcp_proxy import TcpProxy


def test_database_outage_gives_503_then_recovers(tmp_path):
    with servers.postgres_database() as database_url:
        name = database_url.rsplit("/", 1)[1]
        proxy = TcpProxy("127.0.0.1", 5432)
        proxy.start()
        via_proxy = f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}"
        svc = servers.make_service(tmp_path, via_proxy, "local")
        svc.init = svc.cli_json("init")
        svc.start()
        try:
            token = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
                "grant_type": "client_credentials", "client_id": svc.init["clientId"],
                "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default",
            }).json()["access_token"]
            url = f"{svc.url}/subscriptions/{svc.subscription_id}/resourcegroups/rg1?api-version=2025-04-01"
            headers = {"Authorization": f"Bearer {token}"}
            assert requests.put(url, json={"location": "eastus"}, headers=headers, verify=svc.ca,
                                timeout=30).status_code == 201

            proxy.stop()
            for method in ("GET", "PUT"):
                started = time.monotonic()
                down = requests.request(method, url, json={"location": "eastus"}, headers=headers, verify=svc.ca,
                                        timeout=60)
                assert time.monotonic() - started < 20, "an unavailable database must not hang the request"
                assert down.status_code == 503, down.text
                assert down.headers["Retry-After"].isdigit()
                assert down.json()["error"]["code"] == "ServiceUnavailable"
                assert "Traceback" not in down.text

            proxy.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                back = requests.get(url, headers=headers, verify=svc.ca, timeout=30)
                if back.status_code == 200:
                    break
                time.sleep(0.5)
            assert back.status_code == 200 and back.json()["name"] == "rg1"
        finally:
            svc.stop()
            proxy.stop()
