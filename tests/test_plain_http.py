"""CONTROL_PLANE_TLS=off: plain http for running behind a TLS-terminating proxy, whose X-Forwarded-* headers
decide the absolute URLs clients are handed."""

from __future__ import annotations

import requests

from tests.support import servers


def test_behind_a_tls_terminating_proxy(tmp_path):
    svc = servers.make_service(tmp_path, None, "local", {"CONTROL_PLANE_TLS": "off",
                                                         "CONTROL_PLANE_PUBLIC_URL": "https://cp.example.com"})
    svc.url = svc.url.replace("https://", "http://")
    svc.init = svc.cli_json("init")
    assert svc.init["caBundle"] is None
    assert not (tmp_path / "tls").exists(), "no local CA is made when TLS is off"
    svc.start()
    try:
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cp.example.com"}
        discovery = requests.get(f"{svc.url}/{svc.tenant_id}/v2.0/.well-known/openid-configuration",
                                 headers=proxied, timeout=30).json()
        assert discovery["token_endpoint"] == f"https://cp.example.com/{svc.tenant_id}/oauth2/v2.0/token"
        assert discovery["issuer"] == f"https://cp.example.com/{svc.tenant_id}/v2.0"

        token = requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", headers=proxied, timeout=30, data={
            "grant_type": "client_credentials", "client_id": svc.init["clientId"],
            "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default",
        }).json()["access_token"]
        auth = {**proxied, "Authorization": f"Bearer {token}"}
        group = f"{svc.url}/subscriptions/{svc.subscription_id}/resourcegroups/rg1?api-version=2025-04-01"
        assert requests.put(group, json={"location": "eastus"}, headers=auth, timeout=30).status_code == 201
        created = requests.put(f"{svc.url}/subscriptions/{svc.subscription_id}/resourceGroups/rg1/providers/"
                               "Microsoft.ContainerRegistry/registries/plainhttp1?api-version=2025-11-01",
                               json={"location": "eastus", "sku": {"name": "Basic"}}, headers=auth, timeout=30)
        assert created.status_code == 201
        assert created.headers["Azure-AsyncOperation"].startswith(
            f"https://cp.example.com/subscriptions/{svc.subscription_id}/")
    finally:
        svc.stop()
