"""The data-plane tools the tests drive against `control-plane serve`'s built-in login server: skopeo (images built
with umoci), a CONNECT proxy that reaches host-style login servers (`<name>.localhost:<port>`) without DNS, and
`requests` sessions going through it.

skopeo and umoci are needed (`apt-get install -y --no-install-recommends skopeo umoci`).
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import socketserver
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests

TOOLS = ("skopeo", "umoci")
TOOL_TIMEOUT = 120


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class Skopeo:
    """skopeo with an isolated auth file; TLS checked against the service's CA (registry and token realm).

    With `proxy_port`, every HTTPS connection goes through that CONNECT proxy (ConnectProxy), which is how a
    host-style address (`<name>.localhost:<port>`) reaches the service; loopback addresses bypass it.
    """

    workdir: Path
    ca_file: str
    tls: bool = True
    proxy_port: int | None = None
    env: dict = field(init=False)
    cert_dir: Path = field(init=False)

    def __post_init__(self):
        self.cert_dir = self.workdir / "certs"
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca_file, self.cert_dir / "ca.crt")
        self.authfile = self.workdir / "skopeo-auth.json"
        self.env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "no_proxy")}
        self.env["REGISTRY_AUTH_FILE"] = str(self.authfile)
        if self.proxy_port is not None:
            self.env.update(HTTPS_PROXY=f"http://127.0.0.1:{self.proxy_port}", NO_PROXY="127.0.0.1")

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
    """An HTTPS proxy (CONNECT only) that sends every tunnel for a host to a local port: how az (which always uses
    `https://<loginServer>/`), skopeo and requests reach `<name>.localhost:<port>` on 127.0.0.1 without DNS or
    hosts-file changes. `routes` maps exact host names; `suffixes` maps a host-name suffix (`.localhost`) to the
    port every host ending with it goes to."""

    def __init__(self, routes: dict[str, int] | None = None, suffixes: dict[str, int] | None = None):
        self.routes = dict(routes or {})
        self.suffixes = dict(suffixes or {})
        self.tunnels: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request_line = self.rfile.readline(65537).decode("latin-1").strip()
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                method, _, rest = request_line.partition(" ")
                target = rest.split(" ")[0]
                host = target.rsplit(":", 1)[0].lower()
                proxy.tunnels.append(target)
                port = proxy.port_for(host)
                if method != "CONNECT" or port is None:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                upstream = socket.create_connection(("127.0.0.1", port), timeout=30)
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                _pipe(self.connection, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def port_for(self, host: str) -> int | None:
        if host in self.routes:
            return self.routes[host]
        return next((port for suffix, port in self.suffixes.items() if host.endswith(suffix)), None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self, ca_file: str) -> requests.Session:
        """A requests session whose https requests go through this proxy, checked against `ca_file`."""
        session = requests.Session()
        session.trust_env = False  # neither REQUESTS_CA_BUNDLE nor the machine's proxy settings
        session.proxies = {"https": self.url}
        session.verify = ca_file
        return session

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
