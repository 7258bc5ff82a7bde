"""The README's "Push your first image", run as a newcomer runs it: `control-plane serve` with no settings (so
`https://127.0.0.1:8443`, SQLite, the local folder storage and a fresh local CA in `~/.control-plane`), then the
README's marked shell blocks, exactly as written and in order, in one bash in an empty folder — the az set-up, the
push path style, then host style, then `az acr login` with podman.

The blocks are the fenced ```bash blocks right after a `<!-- readme-flow: <name> -->` comment. Only the environment
is the test's: HOME is a fresh folder (so `~/.control-plane` and `~/.config/containers` are new), the auth file of
skopeo and podman is in it (REGISTRY_AUTH_FILE, else root's is /run/containers/0/auth.json, shared), az 2.91 and
`control-plane` are on PATH, and `myregistry1.localhost` — which this machine's resolver does not map to loopback —
is reached through tests/support/dataplane.py's CONNECT proxy (HTTPS_PROXY), where a newcomer would add a hosts line.

Needs port 8443 free (waits up to two minutes for it), skopeo, umoci and podman.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support import tools
from tests.support.dataplane import ConnectProxy
from tests.support.servers import stop

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^<!-- readme-flow: (?P<name>[^>]+?) -->\n```bash\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
FLOW = ["az set-up", "push, path style", "push, host style", "az acr login"]
PORT = 8443
LOGIN_SERVER = f"myregistry1.localhost:{PORT}"
SCRIPT_TIMEOUT = 600


def readme_blocks() -> list[tuple[str, str]]:
    return [(match["name"], match["body"]) for match in BLOCK.finditer(README.read_text())]


def documents(text: str) -> list:
    """Every JSON document az and skopeo printed, in order (anything else is skipped)."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index] in "[{":
            try:
                value, end = decoder.raw_decode(text, index)
            except ValueError:
                index += 1
                continue
            found.append(value)
            index = end
        else:
            index += 1
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def tools_present():
    tools.require_tools("skopeo", "umoci", "podman")


@pytest.fixture
def newcomer(tmp_path, tools_present):
    """A fresh HOME and `control-plane serve` started in it with no settings at all, as after `pip install .`."""
    home = tmp_path / "home"
    home.mkdir()
    bindir = Path(sys.executable).parent
    control_plane = shutil.which("control-plane", path=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    assert control_plane, "the control-plane command is installed with the package (pip install .)"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONTROL_PLANE_", "AZURE_", "REGISTRY_AUTH")) and k.lower() not in (
               "https_proxy", "http_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle")}
    env.update(HOME=str(home), PATH=os.pathsep.join([str(tools.az_cli().parent), str(Path(control_plane).parent),
                                                     env.get("PATH", "")]))
    deadline = time.monotonic() + 120
    while not port_free(PORT):
        if time.monotonic() > deadline:
            pytest.fail(f"port {PORT} stays taken: the README's flow serves on it")
        time.sleep(1)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([control_plane, "serve"], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    ca = home / ".control-plane" / "tls" / "ca.pem"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if ca.exists() and requests.get(f"https://127.0.0.1:{PORT}/healthz", verify=str(ca),
                                                timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "control-plane serve did not come up"
            time.sleep(0.2)
        yield home, env, ca
    finally:
        stop(process)
        log.close()


def test_readme_marks_the_flow():
    blocks = dict(readme_blocks())
    assert list(blocks) == FLOW
    assert "docker://127.0.0.1:8443/myregistry1/" in blocks["push, path style"]
    assert f"docker://{LOGIN_SERVER}/" in blocks["push, host style"]
    assert "az acr login -n myregistry1" in blocks["az acr login"]
    assert "--expose-token" not in blocks["az acr login"]


@pytest.mark.az
def test_push_your_first_image_as_written(newcomer, tmp_path):
    home, env, ca = newcomer
    folder = tmp_path / "work"  # "in an empty folder"
    folder.mkdir()
    script = ["set -eo pipefail"]
    for name, body in readme_blocks():
        script += [f"echo '=== {name}'", body]
    with ConnectProxy(suffixes={".localhost": PORT}) as proxy:
        run_env = dict(env, HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1",
                       REGISTRY_AUTH_FILE=str(home / "containers-auth.json"))
        result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=folder, env=run_env, capture_output=True,
                                text=True, timeout=SCRIPT_TIMEOUT, check=False)
        assert result.returncode == 0, f"the README's commands failed:\n{result.stdout}\n{result.stderr}"
        assert LOGIN_SERVER.split(":")[0] in {tunnel.split(":")[0] for tunnel in proxy.tunnels}

    outputs = dict(re.findall(r"^=== (.+?)\n(.*?)(?=^=== |\Z)", result.stdout, re.MULTILINE | re.DOTALL))
    assert list(outputs) == FLOW
    path_style = documents(outputs["push, path style"])
    assert path_style[-1] == {"Repository": f"127.0.0.1:{PORT}/myregistry1/team/app", "Tags": ["1.0"]}
    created = next(d for d in path_style if isinstance(d, dict) and d.get("type") ==
                   "Microsoft.ContainerRegistry/registries")
    assert created["loginServer"] == LOGIN_SERVER and created["adminUserEnabled"] is True
    host_style = documents(outputs["push, host style"])
    assert host_style[-2:] == [["team/app"], ["1.0", "1.1"]]
    assert "Login Succeeded" in result.stdout + result.stderr
    logged_in = documents(outputs["az acr login"])
    assert logged_in[-1] == {"Repository": f"{LOGIN_SERVER}/team/app", "Tags": ["1.0", "1.1", "1.2"]}

    # skopeo's login (path style) and podman's (the exchanged ACR refresh token, for the null-GUID user).
    auths = json.loads((home / "containers-auth.json").read_text())["auths"]
    assert set(auths) == {f"127.0.0.1:{PORT}", LOGIN_SERVER}
    user, _, refresh_token = base64.b64decode(auths[LOGIN_SERVER]["auth"]).decode().partition(":")
    assert user == "00000000-0000-0000-0000-000000000000" and refresh_token.count(".") == 2
    # The same content, seen directly: the tags through the path-style address with the admin password.
    init = json.loads((folder / "init.json").read_text())
    token = requests.post(f"https://127.0.0.1:{PORT}/{init['tenantId']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": init["clientId"], "client_secret": init["clientSecret"],
        "scope": "https://management.azure.com/.default"}, verify=str(ca), timeout=30).json()["access_token"]
    keys = requests.post(
        f"https://127.0.0.1:{PORT}/subscriptions/{init['subscriptionId']}/resourceGroups/rg1/providers/"
        "Microsoft.ContainerRegistry/registries/myregistry1/listCredentials?api-version=2023-07-01",
        headers={"Authorization": f"Bearer {token}"}, verify=str(ca), timeout=30).json()
    tags = requests.get(f"https://127.0.0.1:{PORT}/v2/myregistry1/team/app/tags/list", verify=str(ca), timeout=30,
                        auth=("myregistry1", keys["passwords"][0]["value"]))
    assert tags.status_code == 200, tags.text
    assert tags.json() == {"name": "myregistry1/team/app", "tags": ["1.0", "1.1", "1.2"]}
