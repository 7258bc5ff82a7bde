"""The data-plane tools the tests drive: `control-plane registry run`, skopeo, umoci, and a CONNECT proxy for az.

Each registry process is started by a test and stopped (SIGTERM, which must end it with exit code 0) by the same
test. Debian's docker-registry, skopeo and umoci are needed: `apt-get install -y --no-install-recommends
docker-registry skopeo umoci`.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import servers

TOOLS = ("docker-registry", "skopeo", "umoci")
TOOL_TIMEOUT = 120


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class RunningRegistry:
    name: str
    login_server: str
    port: int
    process: subprocess.Popen
    log_path: Path
    tls: bool

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def registry_process(service, name: str, login_server: str, workdir: Path, tls: bool = False,
                     default_port: int | None = None):
    """`control-plane registry run NAME --port P` in its own process group; stopped with SIGTERM on exit.

    With `default_port`, no --port is passed: the registry must pick that port itself (from its login server).
    The environment carries REGISTRY_AUTH_FILE, as a skopeo user's shell does: `registry run` must keep it (and
    every other REGISTRY_* variable) away from Distribution. With Azurite storage the data goes to a folder, since
    Debian's Distribution has no azure driver (the generated azure settings are checked separately).
    """
    port = default_port or servers.free_port()
    args = [sys.executable, "-m", "control_plane.cli", "registry", "run", name]
    if default_port is None:
        args += ["--port", str(port)]
    if tls:
        args.append("--tls")
    if getattr(service, "azurite", None) is not None:
        args += ["--storage-dir", str(workdir / f"{name}-storage")]
    log_path = workdir / f"registry-{name}-{port}.log"
    env = dict(service.env, REGISTRY_AUTH_FILE=str(workdir / "auth.json"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    running = RunningRegistry(name, login_server, port, process, log_path, tls)
    try:
        servers.wait_for_port(port, timeout=60, process=process)
        yield running
    finally:
        servers.stop(process)
    assert process.returncode == 0, f"registry run exited {process.returncode} on SIGTERM:\n{running.log()[-3000:]}"


@dataclass
class Skopeo:
    """skopeo with an isolated auth file; TLS checked against the service's CA (registry and token realm)."""

    workdir: Path
    ca_file: str
    tls: bool = True
    env: dict = field(init=False)
    cert_dir: Path = field(init=False)

    def __post_init__(self):
        self.cert_dir = self.workdir / "certs"
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca_file, self.cert_dir / "ca.crt")
        self.authfile = self.workdir / "skopeo-auth.json"
        self.env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.authfile))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["skopeo", *args], env=self.env, capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                              check=False)

    def _tls(self, prefix: str = "") -> list[str]:
        if self.tls:
            return [f"--{prefix}cert-dir", str(self.cert_dir)]
        return [f"--{prefix}tls-verify=false"]

    def login(self, address: str, username: str, password: str) -> subprocess.CompletedProcess:
        return self.run("login", *self._tls(), "--authfile", str(self.authfile), "-u", username, "-p", password,
                        address)

    def push(self, source: str, address: str, reference: str, creds: tuple[str, str]) -> subprocess.CompletedProcess:
        return self.run("copy", "--retry-times", "0", *self._tls("dest-"), "--dest-creds", ":".join(creds), source,
                        f"docker://{address}/{reference}")

    def pull(self, address: str, reference: str, destination: str,
             creds: tuple[str, str]) -> subprocess.CompletedProcess:
        return self.run("copy", "--retry-times", "0", *self._tls("src-"), "--src-creds", ":".join(creds),
                        f"docker://{address}/{reference}", destination)

    def tags(self, address: str, repository: str, creds: tuple[str, str]) -> subprocess.CompletedProcess:
        return self.run("list-tags", *self._tls(), "--creds", ":".join(creds), f"docker://{address}/{repository}")

    def inspect(self, address: str, reference: str, creds: tuple[str, str]) -> subprocess.CompletedProcess:
        return self.run("inspect", *self._tls(), "--creds", ":".join(creds), f"docker://{address}/{reference}")

    def delete(self, address: str, reference: str, creds: tuple[str, str]) -> subprocess.CompletedProcess:
        return self.run("delete", *self._tls(), "--creds", ":".join(creds), f"docker://{address}/{reference}")


def build_image(layout: Path, tags: list[str], workdir: Path) -> str:
    """An OCI layout with one small image per tag (different content each), built with umoci; returns `oci:PATH`."""
    rootless = [] if os.geteuid() == 0 else ["--rootless"]

    def umoci(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT)

    umoci("init", "--layout", str(layout))
    for tag in tags:
        content = workdir / f"hello-{tag}.txt"
        content.write_text(f"hello from the control plane, version {tag}\n")
        umoci("new", "--image", f"{layout}:{tag}")
        umoci("insert", *rootless, "--image", f"{layout}:{tag}", str(content), "/hello.txt")
        umoci("config", "--image", f"{layout}:{tag}", "--config.cmd", "cat", "--config.cmd", "/hello.txt")
    return f"oci:{layout}"


class ConnectProxy:
    """An HTTPS proxy (CONNECT only) that sends every tunnel for `host` to a local port: how az, which always uses
    `https://<loginServer>/` on port 443, reaches a registry on 127.0.0.1 without DNS or hosts-file changes."""

    def __init__(self, routes: dict[str, int]):
        self.routes = routes
        self.tunnels: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request_line = self.rfile.readline(65537).decode("latin-1").strip()
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                method, _, rest = request_line.partition(" ")
                target = rest.split(" ")[0]
                host = target.rsplit(":", 1)[0]
                proxy.tunnels.append(target)
                if method != "CONNECT" or host not in proxy.routes:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                upstream = socket.create_connection(("127.0.0.1", proxy.routes[host]), timeout=30)
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                _pipe(self.connection, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    sockets = [client, upstream]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 30)
            if broken or not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (upstream if sock is client else client).sendall(data)
    finally:
        upstream.close()
