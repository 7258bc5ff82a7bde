"""The real az CLI with a profile of its own, pointed at the service as the README's az example does.

docs/real-clients.md §9.1: an isolated AZURE_CONFIG_DIR, no instance discovery, the service's CA for msal and az,
none of the machine's AZURE_* settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import tools

AZ_TIMEOUT = 300


@dataclass
class Az:
    """Runs az; `json` parses what it printed, `fail` expects a refusal; `outputs` keeps everything it printed."""

    binary: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def run(self, *args: str) -> subprocess.CompletedProcess:
        started = time.monotonic()
        try:
            result = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True,
                                    timeout=AZ_TIMEOUT, check=False)
        finally:
            self.seconds = time.monotonic() - started
        self.outputs += [result.stdout, result.stderr]
        return result

    def json(self, *args: str):
        result = self.run(*args)
        assert result.returncode == 0, f"az {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else None

    def fail(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode != 0, f"az {' '.join(args)} succeeded unexpectedly:\n{result.stdout}"
        return result.stdout + result.stderr


def az_env(config_dir: Path, ca: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_") and k != "CURL_CA_BUNDLE"}
    env.update({
        "AZURE_CONFIG_DIR": str(config_dir),
        "AZURE_CORE_COLLECT_TELEMETRY": "no",
        "AZURE_CORE_INSTANCE_DISCOVERY": "false",
        "AZURE_CORE_OUTPUT": "json",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_SURVEY_MESSAGE": "false",
        "REQUESTS_CA_BUNDLE": ca,
        **extra,
    })
    return env


def register_cloud(az: Az, url: str, name: str) -> None:
    """`az cloud register` with endpoint discovery (GET /metadata/endpoints), then `az cloud set`.

    The ACR suffix is the service's default, `localhost:<port>`."""
    az.json("cloud", "register", "--name", name,
            "--endpoint-resource-manager", f"{url}/",
            "--endpoint-active-directory", url,
            "--endpoint-active-directory-resource-id", "https://management.core.windows.net/",
            "--endpoint-active-directory-graph-resource-id", f"{url}/",
            "--endpoint-microsoft-graph-resource-id", f"{url}/",
            "--suffix-acr-login-server-endpoint", f".localhost:{url.rsplit(':', 1)[1]}")
    az.json("cloud", "set", "--name", name)


def login(az: Az, client_id: str, secret: str, tenant_id: str):
    # `--password=`: a secret starting with '-' would otherwise read as an option.
    return az.json("login", "--service-principal", "-u", client_id, f"--password={secret}", "--tenant", tenant_id)


def logged_in(service, config_dir: Path, cloud: str, **extra_env: str) -> Az:
    """A profile registered against the service and logged in as its `init` principal."""
    az = Az(tools.az_cli(), az_env(config_dir, service.ca, **extra_env))
    register_cloud(az, service.url, cloud)
    login(az, service.init["clientId"], service.init["clientSecret"], service.tenant_id)
    # The principal owns every subscription other tests made: work in the service's own.
    az.json("account", "set", "--subscription", service.subscription_id)
    return az
