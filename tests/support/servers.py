"""Real servers for the tests, each on a free loopback port and stopped by whoever started it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
POSTGRES_ADMIN_URL = os.environ.get("CONTROL_PLANE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Azurite:
    process: subprocess.Popen
    port: int
    accounts: tuple[str, ...]

    def connection_string(self, account: str) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{account};")


@contextmanager
def azurite(binary: Path, accounts: tuple[str, ...], workdir: Path, port: int | None = None):
    port = port or free_port()
    env = dict(os.environ, AZURITE_ACCOUNTS=";".join(f"{a}:{AZURITE_KEY}" for a in accounts))
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence", "--loose",
         "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process=process)
        yield Azurite(process, port, accounts)
    finally:
        stop(process)


@contextmanager
def postgres_database():
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Service:
    """A running `control-plane serve` and what `control-plane init` printed for it."""

    url: str
    env: dict[str, str]
    data_dir: Path
    process: subprocess.Popen | None = None
    init: dict = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    @property
    def subscription_id(self) -> str:
        return self.init["subscriptionId"]

    @property
    def tenant_id(self) -> str:
        return self.init["tenantId"]

    @property
    def login_server_suffix(self) -> str:
        """The default suffix: `localhost:<port>`, so `<name>.localhost:<port>` reaches this service."""
        return self.env.get("CONTROL_PLANE_LOGIN_SERVER_SUFFIX") or f"localhost:{self.url.rsplit(':', 1)[1]}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], env=self.env, check=check,
                              capture_output=True, text=True, timeout=120)

    def cli_json(self, *args: str) -> dict:
        return json.loads(self.cli(*args).stdout)

    def start(self, workers: int = 2, threads: int | None = None) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        self.log_path = self.data_dir / f"serve-{port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        command = [sys.executable, "-m", "control_plane.cli", "serve", "--port", str(port), "--workers", str(workers)]
        if threads is not None:
            command += ["--threads", str(threads)]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_for_port(port, process=self.process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/metadata/endpoints?api-version=2022-09-01", verify=self.ca, timeout=5)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError("service did not answer")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop(self.process, sig)
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def make_service(data_dir: Path, database_url: str | None, storage: str, extra_env: dict | None = None) -> Service:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROL_PLANE_")}
    env.update({
        "CONTROL_PLANE_DATA_DIR": str(data_dir),
        "CONTROL_PLANE_PUBLIC_URL": url,
        "CONTROL_PLANE_STORAGE": storage,
        "CONTROL_PLANE_WORKER_POLL_SECONDS": "0.5",
        "CONTROL_PLANE_PAGE_SIZE": "2",
        # The suite checks the asynchronous protocol (Creating, Azure-AsyncOperation, Retry-After) everywhere;
        # tests/test_inline_operations.py turns the in-request fast path back on.
        "CONTROL_PLANE_INLINE_OPERATION_MS": "0",
        # Roomy buckets: the suite makes thousands of calls; tests/test_throttling.py sets tight ones.
        "CONTROL_PLANE_THROTTLE_READS": "100000:10000",
        "CONTROL_PLANE_THROTTLE_WRITES": "100000:10000",
        "CONTROL_PLANE_THROTTLE_DELETES": "100000:10000",
    })
    if database_url:
        env["CONTROL_PLANE_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    return Service(url=url, env=env, data_dir=data_dir)
