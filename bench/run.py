"""The benchmark runner: `python -m bench --database sqlite|postgresql --rounds 3`.

Starts the service (`control-plane serve`) and the bare Flask ceiling (bench/ceiling.py) under the same gunicorn
configuration and TLS certificate, drives both with wrk from loopback, and prints every figure as a ratio to the
ceiling measured in the same round (median/min/max over the rounds): the machine is shared and small, so absolute
numbers move from run to run while ratios measured side by side stay put. Installs nothing: wrk must be there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REGISTRY_API = "2025-11-01"
GROUP_API = "2025-04-01"
ARM_SCOPE = "https://management.azure.com/.default"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
PROBES = ("/readyz", "/healthz", "/metadata/endpoints?api-version=2022-09-01")
GET_GROUP, LIST_GROUP, GET_NAME = "bench", "benchlist", "benchget1"
# Each LIST page is fetched this many times; its latency is the fastest fetch (see walk_list).
LIST_FETCHES = 3
LOCATION = "eastus"


# -- processes -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    """A process group this runner started and stops (never anything else)."""

    popen: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, command: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> Process:
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        return cls(subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True), log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def children(self) -> list[int]:
        """gunicorn's workers: the master's child processes."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in path.read_text().split()]
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.pid:
                    pids.append(int(stat.parent.name))
        return pids


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(base_url: str, ca: str, process: Process, timeout: float = 60) -> str:
    """Polls the readiness probe (the first of PROBES the server has) until it answers 200; returns its path."""
    deadline = time.monotonic() + timeout
    probes = list(PROBES)
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"server exited with {process.popen.returncode}; see {process.log_path}")
        try:
            response = requests.get(base_url + probes[0], verify=ca, timeout=2)
        except requests.RequestException:
            time.sleep(0.01)
            continue
        if response.status_code == 200:
            return probes[0]
        if response.status_code == 404 and len(probes) > 1:
            probes.pop(0)  # an older service without this probe
            continue
        time.sleep(0.01)
    raise TimeoutError(f"{base_url} was not ready after {timeout} s; see {process.log_path}")


# -- wrk -------------------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Load:
    threads: int
    connections: int
    seconds: int


def wrk(url: str, script: str, load: Load, headers: dict[str, str] | None = None,
        env: dict[str, str] | None = None) -> WrkResult:
    command = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{load.seconds}s", "--timeout", "10s",
               "-s", script]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    done = subprocess.run(command, cwd=BENCH_DIR, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=load.seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(line[len("BENCH "):])
    errors = {k: data[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
              if data[k]}
    return WrkResult(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1e3, data["p90_us"] / 1e3,
                     data["p99_us"] / 1e3, data["max_us"] / 1e3, errors)


# -- the service ---------------------------------------------------------------------------------------------


@dataclass
class Config:
    workers: int
    threads: int
    load: Load
    page_size: int
    list_size: int
    creates: int


@dataclass
class Service:
    """One `control-plane serve`, its data folder and what `control-plane init` printed."""

    name: str
    env: dict[str, str]
    data_dir: Path
    port: int
    config: Config
    init: dict = field(default_factory=dict)
    process: Process | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], env=self.env, cwd=ROOT,
                              check=True, capture_output=True, text=True, timeout=300).stdout

    def start(self) -> float:
        """Starts `control-plane serve`; returns the seconds until its readiness probe first answered 200."""
        started = time.monotonic()
        self.process = Process.start(
            [sys.executable, "-m", "control_plane.cli", "serve", "--port", str(self.port),
             "--workers", str(self.config.workers), "--threads", str(self.config.threads)],
            self.env, self.data_dir / f"serve-{self.name}.log")
        wait_ready(self.url, self.ca, self.process)
        elapsed = time.monotonic() - started
        self.token = self.get_token()
        return elapsed

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def get_token(self) -> str:
        response = requests.post(f"{self.url}/{self.init['tenantId']}/oauth2/v2.0/token", data=self.token_form(),
                                 verify=self.ca, timeout=30)
        response.raise_for_status()
        return response.json()["access_token"]

    def token_form(self) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_id": self.init["clientId"],
                "client_secret": self.init["clientSecret"], "scope": ARM_SCOPE}

    def request(self, method: str, path: str, session: requests.Session | None = None, **kwargs):
        url = path if path.startswith("https://") else self.url + path
        return (session or requests).request(method, url, verify=self.ca, timeout=60,
                                             headers={"Authorization": f"Bearer {self.token}"}, **kwargs)

    def group_path(self, group: str) -> str:
        return f"/subscriptions/{self.init['subscriptionId']}/resourceGroups/{group}"

    def registry_path(self, group: str, name: str = "") -> str:
        return f"{self.group_path(group)}/providers/Microsoft.ContainerRegistry/registries/{name}"

    def create_group(self, group: str) -> None:
        response = self.request("PUT", f"{self.group_path(group)}?api-version={GROUP_API}", json={"location": LOCATION})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"group create failed: {response.status_code} {response.text}")


def make_service(name: str, work: Path, database_url: str | None, storage: str, config: Config) -> Service:
    data_dir = work / name
    data_dir.mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROL_PLANE_")}
    env.update({
        "CONTROL_PLANE_DATA_DIR": str(data_dir),
        "CONTROL_PLANE_PUBLIC_URL": f"https://127.0.0.1:{port}",
        "CONTROL_PLANE_STORAGE": storage,
        "CONTROL_PLANE_PAGE_SIZE": str(config.page_size),
        # ARM's own bucket sizes would answer most of a load test with 429: throttling stays on (its cost is
        # part of every request) with buckets no benchmark empties.
        "CONTROL_PLANE_THROTTLE_READS": "100000000:10000000",
        "CONTROL_PLANE_THROTTLE_WRITES": "100000000:10000000",
        "CONTROL_PLANE_THROTTLE_DELETES": "100000000:10000000",
    })
    if database_url:
        env["CONTROL_PLANE_DATABASE_URL"] = database_url
    service = Service(name, env, data_dir, port, config)
    service.init = json.loads(service.cli("init"))
    return service


@contextlib.contextmanager
def database(kind: str, admin_url: str) -> Iterator[str | None]:
    """None (the service's SQLite file) or a fresh PostgreSQL database, dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"cp_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- fixtures: a registry to read, 100,000 to list -----------------------------------------------------------


def wait_succeeded(service: Service, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = service.request("GET", f"{path}?api-version={REGISTRY_API}").json()["properties"]["provisioningState"]
        if state == "Succeeded":
            return
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not reach Succeeded")


def bulk_insert_registries(service: Service, group: str, count: int) -> float:
    """Rows straight into the database (SQLAlchemy core, the model's own table): the API would take an hour."""
    import sqlalchemy as sa

    from control_plane.config import Settings
    from control_plane.crypto import load_cipher, random_password
    from control_plane.db import make_engine, utcnow
    from control_plane.registries.models import Registry
    from control_plane.registries.schemas import with_defaults
    from control_plane.resource_groups.models import ResourceGroup

    started = time.monotonic()
    settings = Settings.from_env(service.env)
    engine = make_engine(settings.database_url)
    password = load_cipher(settings.encryption_key, settings.data_dir).encrypt(random_password())
    subscription = service.init["subscriptionId"]
    by = service.init["clientId"]
    properties = with_defaults({})
    try:
        with engine.begin() as conn:
            group_id = conn.scalar(sa.select(ResourceGroup.id).where(ResourceGroup.subscription_id == subscription,
                                                                     ResourceGroup.name_key == group.lower()))
        batch: list[dict] = []
        for index in range(count):
            registry_id = str(uuid.uuid4())
            name = f"list{index:07d}{registry_id[:6]}"
            now = utcnow()
            batch.append({
                "id": registry_id, "subscription_id": subscription, "resource_group_id": group_id,
                "resource_group_name": group, "name": name, "name_key": name.lower(), "location": LOCATION,
                "sku": "Basic", "tags": {}, "identity": None, "properties": properties,
                "provisioning_state": "Succeeded", "container_name": f"{name.lower()}-{registry_id[:8]}",
                "admin_password_1": password, "admin_password_2": password, "created_at": now, "created_by": by,
                "created_by_type": "Application", "modified_at": now, "modified_by": by,
                "modified_by_type": "Application",
            })
            if len(batch) == 5000 or index == count - 1:
                with engine.begin() as conn:
                    conn.execute(sa.insert(Registry.__table__), batch)
                batch = []
        # What an operator (or autovacuum, within a minute or so) does after a bulk load: without statistics,
        # PostgreSQL plans the first pages for the 83 rows it guesses, as a bitmap scan and a sort of the rest.
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE registries")
    finally:
        engine.dispose()
    return time.monotonic() - started


# -- the measurements ----------------------------------------------------------------------------------------


def measure_creates(service: Service, group: str, count: int) -> dict:
    """What begin_create().result() waits, one registry at a time: the PUT and, when it answered asynchronously,
    the polls of its status URL after each Retry-After, as the SDK does (its final GET is not counted)."""
    session = requests.Session()
    times, paths = [], Counter()
    for index in range(count):
        path = service.registry_path(group, f"c{uuid.uuid4().hex[:12]}{index}")
        started = time.perf_counter()
        response = service.request("PUT", f"{path}?api-version={REGISTRY_API}", session, json={
            "location": LOCATION, "sku": {"name": "Basic"}})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"create failed: {response.status_code} {response.text}")
        status_url = response.headers.get("Azure-AsyncOperation")
        if status_url is None and response.json()["properties"]["provisioningState"] == "Succeeded":
            paths["inline"] += 1
        else:
            paths["async"] += 1
            retry_after = response.headers.get("Retry-After", "1")
            while True:
                time.sleep(float(retry_after))
                poll = service.request("GET", status_url, session)
                status, retry_after = poll.json()["status"], poll.headers.get("Retry-After", "1")
                if status != "InProgress":
                    break
            if status != "Succeeded":
                raise RuntimeError(f"create ended {status}")
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "max_ms": max(times), "min_ms": min(times),
            "paths": dict(paths)}


def walk_list(service: Service, group: str) -> dict:
    """Every page of a group's registries by nextLink, each page's latency, and the workers' memory meanwhile."""
    session = requests.Session()
    first_url = f"{service.url}{service.registry_path(group).rstrip('/')}?api-version={REGISTRY_API}"
    service.request("GET", first_url, session).raise_for_status()  # warm the connection and the caches
    workers = service.process.children()
    rss_before = {pid: rss_mb(pid) for pid in workers}
    rss_peak = dict(rss_before)
    latencies, single, items, url = [], [], 0, first_url
    pages_expected = max(2, -(-service.config.list_size // service.config.page_size))
    rss_half = dict(rss_before)
    while url:
        # Each page is fetched LIST_FETCHES times and its latency is the fastest: the figure is what a page costs
        # the server at its depth, which a preemption on this shared machine would otherwise decide. The first
        # fetch alone is kept too (`single`).
        fetches = []
        for _ in range(LIST_FETCHES):
            started = time.perf_counter()
            response = service.request("GET", url, session)
            fetches.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        latencies.append(min(fetches))
        single.append(fetches[0])
        body = response.json()
        items += len(body["value"])
        url = body.get("nextLink")
        if len(latencies) % 20 == 0:
            for pid in workers:
                rss_peak[pid] = max(rss_peak[pid], rss_mb(pid))
        if len(latencies) == pages_expected // 2:  # memory at half-way: the second half must not grow it
            rss_half = {pid: rss_mb(pid) for pid in workers}
    rss_after = {pid: rss_mb(pid) for pid in workers}
    first = latencies[0]
    ordered = sorted(latencies)
    return {
        "pages": len(latencies), "items": items, "first_ms": first, "median_ms": statistics.median(latencies),
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1], "max_ms": ordered[-1],
        "max_over_first": ordered[-1] / first, "p99_over_first": ordered[int(len(ordered) * 0.99) - 1] / first,
        "pages_over_2x_first": sum(1 for x in latencies if x > 2 * first),
        "single_max_over_first": max(single) / single[0],
        "single_p99_over_first": sorted(single)[int(len(single) * 0.99) - 1] / single[0],
        "last_100_median_ms": statistics.median(latencies[-100:]),
        "first_100_median_ms": statistics.median(latencies[:100]),
        "rss_growth_mb": max(rss_peak[p] - rss_before[p] for p in workers),
        "rss_growth_second_half_mb": max(rss_after[p] - rss_half[p] for p in workers),
        "rss_after_mb": rss_after,
    }


@dataclass
class Scenario:
    name: str
    script: str
    service_path: Callable[[Service], str]
    headers: Callable[[Service], dict[str, str]]
    env: Callable[[Service], dict[str, str]]


SCENARIOS = (
    Scenario("get", "get.lua", lambda s: s.registry_path(GET_GROUP, GET_NAME) + f"?api-version={REGISTRY_API}",
             lambda s: {"Authorization": f"Bearer {s.token}"}, lambda s: {}),
    Scenario("put", "put.lua", lambda s: s.registry_path(GET_GROUP, ""),
             lambda s: {"Authorization": f"Bearer {s.token}"},
             lambda s: {"BENCH_PUT_PREFIX": s.registry_path(GET_GROUP, ""), "BENCH_RUN_ID": uuid.uuid4().hex[:8],
                        "BENCH_PUT_BODY": json.dumps({"location": LOCATION, "sku": {"name": "Basic"}})}),
    Scenario("token", "token.lua", lambda s: f"/{s.init['tenantId']}/oauth2/v2.0/token", lambda s: {},
             lambda s: {"BENCH_TOKEN_BODY": "&".join(f"{k}={requests.utils.quote(v, safe='')}"
                                                     for k, v in s.token_form().items())}),
)


def run_scenario(scenario: Scenario, service: Service, ceiling_url: str, load: Load, ceiling_first: bool) -> dict:
    """The same wrk script against the ceiling and the service, interleaved in one-second slices.

    The machine's other tenants come and go in phases of seconds that halve whatever runs meanwhile; back-to-back
    runs of several seconds each let one phase decide a ratio. Alternating slices (ABAB…, then BABA… in the next
    round) expose both targets to the same phases. Throughput is the slices' requests over their time; a latency
    percentile is the median of the slices' own.
    """
    path, headers, env = scenario.service_path(service), scenario.headers(service), scenario.env(service)
    slices = max(1, load.seconds)
    slice_load = Load(load.threads, load.connections, 1 if slices > 1 else load.seconds)
    runs: dict[str, list[WrkResult]] = {"ceiling": [], "service": []}
    for index in range(slices):
        order = ("ceiling", "service") if (index % 2 == 0) == ceiling_first else ("service", "ceiling")
        for target in order:
            base = ceiling_url if target == "ceiling" else service.url
            if scenario.name == "put":  # new names for every run
                env = {**env, "BENCH_RUN_ID": uuid.uuid4().hex[:8]}
            runs[target].append(wrk(base + path, scenario.script, slice_load, headers, env))
    return {target: combine(results) for target, results in runs.items()}


def combine(results: list[WrkResult]) -> dict:
    errors: Counter = Counter()
    for result in results:
        errors.update(result.errors)
    requests, seconds = sum(r.requests for r in results), sum(r.seconds for r in results)
    return {"requests": requests, "seconds": seconds, "rps": requests / seconds if seconds else 0.0,
            "slices": len(results), "errors": dict(errors),
            **{f"{name}_ms": statistics.median(getattr(r, f"{name}_ms") for r in results)
               for name in ("p50", "p90", "p99")},
            "max_ms": max(r.max_ms for r in results)}


def profile(service: Service, ceiling_url: str, load: Load, out_dir: Path) -> None:
    """py-spy on every worker (--gil: samples of the thread running Python, i.e. where the CPU went) while each
    scenario runs once more; the collapsed stacks, then a summary."""
    if shutil.which("py-spy") is None:
        print("profile: py-spy is not installed (pip install py-spy); skipped", file=sys.stderr)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for scenario in SCENARIOS:
        spies = [subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "250", "--nonblocking", "--gil",
                                   "-d", str(load.seconds + 1), "-p", str(pid), "-o",
                                   str(out_dir / f"{scenario.name}-{pid}.txt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid in service.process.children()]
        time.sleep(0.5)
        path = scenario.service_path(service)
        wrk(service.url + path, scenario.script, load, scenario.headers(service), scenario.env(service))
        for spy in spies:
            spy.wait(timeout=60)
        print(f"\nprofile of {scenario.name} (share of samples that ran inside each function, all threads):")
        for line in summarise_profile(sorted(out_dir.glob(f"{scenario.name}-*.txt"))):
            print("  " + line)


def _frames(stack: str) -> list[tuple[str, str]]:
    """py-spy's raw lines name frames `function (path/file.py:line)`: as (function, file) pairs, outermost first."""
    frames = []
    for frame in stack.split(";"):
        function, _, where = frame.rpartition(" (")
        frames.append((function, where.rsplit(":", 1)[0]))
    return frames


def _area(file: str) -> str:
    """Where a sample's innermost frame ran, grouped coarsely enough to read."""
    if file.startswith("control_plane/"):
        return "/".join(file.split("/")[:2])
    top = file.split("/")[0]
    return {"ssl.py": "ssl (TLS)", "socket.py": "socket", "threading.py": "threading (locks, waits)",
            "selectors.py": "gunicorn poller"}.get(top, top.removesuffix(".py"))


def summarise_profile(files: list[Path], top: int = 25) -> list[str]:
    """Request threads only (stacks through Flask, or the operation worker): self time by area, then the share
    of time inside each control_plane function (inclusive)."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = everything = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            everything += int(count)
            if "Flask.wsgi_app" not in stack and "OperationWorker" not in stack:
                continue
            frames, n = _frames(stack), int(count)
            total += n
            own[_area(frames[-1][1])] += n
            for function, file in {(f, w) for f, w in frames if w.startswith("control_plane/")}:
                inclusive[f"{function} ({file})"] += n
    if not total:
        return []
    lines = [f"the app (Flask and operations) ran in {100 * total / everything:.0f}% of the samples; the rest is "
             "gunicorn (HTTP parsing, TLS, its poller). Within the app:", "self time by area:"]
    lines += [f"  {100 * n / total:5.1f}%  {area}" for area, n in own.most_common(12)]
    lines += ["inside each control_plane function (inclusive):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return lines


# -- the run -------------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    memory = next((int(ln.split()[1]) // 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal")), 0)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mb": memory, "kernel": platform.release(),
            "python": platform.python_version(), "wrk": wrk_version.strip()}


def postgres_version(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def find_azurite(configured: str | None) -> Path | None:
    for candidate in (configured, os.environ.get("CONTROL_PLANE_TEST_AZURITE"),
                      str(Path(os.environ.get("CONTROL_PLANE_TEST_CACHE", Path.home() / ".cache/control-plane-tests"))
                          / "azurite/node_modules/.bin/azurite-blob")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@contextlib.contextmanager
def azurite(binary: Path, work: Path) -> Iterator[str]:
    port = free_port()
    account = "benchstore"
    env = dict(os.environ, AZURITE_ACCOUNTS=f"{account}:{AZURITE_KEY}")
    folder = work / "azurite-data"
    folder.mkdir()
    process = Process.start([str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                             "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"], env,
                            work / "azurite.log", cwd=folder)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={AZURITE_KEY};"
               f"BlobEndpoint=http://127.0.0.1:{port}/{account};")
    finally:
        process.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (service and ceiling)")
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker (service and ceiling)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--list-size", type=int, default=100_000, help="registries in the listed resource group")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--creates", type=int, default=20, help="sequential creates timed per round")
    parser.add_argument("--postgres", default=os.environ.get("CONTROL_PLANE_TEST_POSTGRES", DEFAULT_POSTGRES),
                        help="PostgreSQL admin URL (a fresh database is made and dropped)")
    parser.add_argument("--azurite", help="azurite-blob binary for the Azurite create time (default: the test "
                                          "suite's, if installed; skipped otherwise)")
    parser.add_argument("--profile", metavar="DIR", help="after the rounds, run each scenario once more under "
                                                         "py-spy and summarise where the time went")
    parser.add_argument("--json", metavar="FILE", help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed. It is a Debian package: apt-get install -y wrk", file=sys.stderr)
        return 2
    config = Config(args.workers, args.threads, Load(args.wrk_threads, args.connections, args.duration),
                    args.page_size, args.list_size, args.creates)
    info = {"machine": machine(), "database": args.database,
            "gunicorn": f"--workers {args.workers} --threads {args.threads} (gthread), TLS",
            "wrk": f"-t{args.wrk_threads} -c{args.connections} -d{args.duration}s", "rounds": args.rounds}
    if args.database == "postgresql":
        info["postgresql"] = postgres_version(args.postgres)
    print(json.dumps(info, indent=2))
    work = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    rounds: list[dict] = []
    try:
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(database(args.database, args.postgres))
            service = make_service("service", work, database_url, "local", config)
            stack.callback(service.stop)
            azurite_service = None
            binary = find_azurite(args.azurite)
            if binary is None:
                print("bench: no azurite-blob found (--azurite); the Azurite create time is skipped", file=sys.stderr)
            else:
                connection = stack.enter_context(azurite(binary, work))
                azurite_url = stack.enter_context(database(args.database, args.postgres))
                azurite_service = make_service("azurite", work, azurite_url, connection, config)
                stack.callback(azurite_service.stop)
                azurite_service.start()
                azurite_service.create_group(GET_GROUP)
            ceiling = Process.start([sys.executable, "-m", "gunicorn", "--workers", str(args.workers),
                                     "--threads", str(args.threads), "--worker-class", "gthread",
                                     "--bind", f"127.0.0.1:{(ceiling_port := free_port())}",
                                     "--certfile", str(service.data_dir / "tls" / "server.pem"),
                                     "--keyfile", str(service.data_dir / "tls" / "server-key.pem"),
                                     "--keep-alive", "5", "--timeout", "60", "bench.ceiling:app"],
                                    dict(os.environ), work / "ceiling.log")
            stack.callback(ceiling.stop)
            ceiling_url = f"https://127.0.0.1:{ceiling_port}"
            wait_ready(ceiling_url, service.ca, ceiling)

            for index in range(args.rounds):
                figures: dict = {"startup_s": service.start()}
                if index == 0:
                    service.create_group(GET_GROUP)
                    get_path = service.registry_path(GET_GROUP, GET_NAME)
                    service.request("PUT", f"{get_path}?api-version={REGISTRY_API}",
                                    json={"location": LOCATION, "sku": {"name": "Basic"}}).raise_for_status()
                    wait_succeeded(service, get_path)
                    service.create_group(LIST_GROUP)
                    seconds = bulk_insert_registries(service, LIST_GROUP, args.list_size)
                    print(f"bench: {args.list_size} registries inserted in {seconds:.1f} s", file=sys.stderr)
                for scenario in SCENARIOS:
                    figures[scenario.name] = run_scenario(scenario, service, ceiling_url, config.load, index % 2 == 0)
                figures["create_local"] = measure_creates(service, GET_GROUP, args.creates)
                if azurite_service is not None:
                    figures["create_azurite"] = measure_creates(azurite_service, GET_GROUP, args.creates)
                figures["list"] = walk_list(service, LIST_GROUP)
                figures["rss_mb"] = {str(pid): rss_mb(pid) for pid in service.process.children()}
                rounds.append(figures)
                print(f"bench: round {index + 1} done", file=sys.stderr)
                print_round(index + 1, figures)
                if args.profile and index == args.rounds - 1:
                    profile(service, ceiling_url, config.load, Path(args.profile))
                service.stop()
    finally:
        if args.keep:
            print(f"bench: work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(rounds)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rounds": rounds, "summary": summary}, indent=2))
    return 0


# -- the report ----------------------------------------------------------------------------------------------

# (figure, how to read it from a round, target, "min" (at least) or "max" (at most), unit)
FIGURES: tuple[tuple[str, Callable[[dict], float], float | None, str, str], ...] = (
    ("GET registry rps / ceiling", lambda r: r["get"]["service"]["rps"] / r["get"]["ceiling"]["rps"], 0.5, "min", "x"),
    ("GET registry p99 / ceiling p99", lambda r: r["get"]["service"]["p99_ms"] / r["get"]["ceiling"]["p99_ms"], 3.0,
     "max", "x"),
    ("PUT create rps / ceiling", lambda r: r["put"]["service"]["rps"] / r["put"]["ceiling"]["rps"], 0.15, "min", "x"),
    ("token rps / ceiling", lambda r: r["token"]["service"]["rps"] / r["token"]["ceiling"]["rps"], 0.3, "min", "x"),
    ("create-to-Succeeded, local (median)", lambda r: r["create_local"]["median_ms"], 150, "max", "ms"),
    ("create-to-Succeeded, local (max)", lambda r: r["create_local"]["max_ms"], None, "max", "ms"),
    ("create-to-Succeeded, Azurite (median)", lambda r: r.get("create_azurite", {}).get("median_ms"), 300, "max", "ms"),
    ("create-to-Succeeded, Azurite (max)", lambda r: r.get("create_azurite", {}).get("max_ms"), None, "max", "ms"),
    ("LIST slowest page / first page", lambda r: r["list"]["max_over_first"], 2.0, "max", "x"),
    ("LIST p99 page / first page", lambda r: r["list"]["p99_over_first"], 2.0, "max", "x"),
    ("LIST slowest single fetch / first (noise)", lambda r: r["list"].get("single_max_over_first"), None, "max", "x"),
    ("LIST p99 single fetch / first (noise)", lambda r: r["list"].get("single_p99_over_first"), None, "max", "x"),
    ("LIST last 100 pages / first 100 (median)",
     lambda r: r["list"]["last_100_median_ms"] / r["list"]["first_100_median_ms"], None, "max", "x"),
    ("LIST worker RSS growth while walking", lambda r: r["list"]["rss_growth_mb"], None, "max", "MB"),
    ("LIST worker RSS growth, second half of the walk", lambda r: r["list"].get("rss_growth_second_half_mb"), None,
     "max", "MB"),
    ("start-up: serve to readiness 200", lambda r: r["startup_s"], 2.0, "max", "s"),
    ("RSS per worker after the benchmark (max)", lambda r: max(r["rss_mb"].values()), 120, "max", "MB"),
    ("GET registry rps (service)", lambda r: r["get"]["service"]["rps"], None, "min", ""),
    ("GET registry rps (ceiling)", lambda r: r["get"]["ceiling"]["rps"], None, "min", ""),
    ("GET registry p99 ms (service)", lambda r: r["get"]["service"]["p99_ms"], None, "max", "ms"),
    ("GET registry p99 ms (ceiling)", lambda r: r["get"]["ceiling"]["p99_ms"], None, "max", "ms"),
    ("PUT create rps (service)", lambda r: r["put"]["service"]["rps"], None, "min", ""),
    ("PUT create rps (ceiling)", lambda r: r["put"]["ceiling"]["rps"], None, "min", ""),
    ("token rps (service)", lambda r: r["token"]["service"]["rps"], None, "min", ""),
    ("token rps (ceiling)", lambda r: r["token"]["ceiling"]["rps"], None, "min", ""),
    ("LIST first page ms", lambda r: r["list"]["first_ms"], None, "max", "ms"),
    ("LIST median page ms", lambda r: r["list"]["median_ms"], None, "max", "ms"),
)


def summarise(rounds: list[dict]) -> list[dict]:
    summary = []
    for name, read, target, sense, unit in FIGURES:
        values = [v for v in (read(r) for r in rounds) if v is not None]
        if not values:
            summary.append({"figure": name, "skipped": True})
            continue
        median = statistics.median(values)
        met = None if target is None else (median >= target if sense == "min" else median <= target)
        summary.append({"figure": name, "median": median, "min": min(values), "max": max(values), "unit": unit,
                        "target": target, "sense": sense, "met": met})
    return summary


def print_round(index: int, figures: dict) -> None:
    errors = {name: figures[name]["service"]["errors"] for name in ("get", "put", "token")
              if figures[name]["service"]["errors"]}
    if errors:
        print(f"bench: round {index}: the service answered errors: {errors}", file=sys.stderr)


def print_summary(summary: list[dict]) -> None:
    print(f"\n{'figure':<46}{'median':>10}{'min':>10}{'max':>10}  target")
    for row in summary:
        if row.get("skipped"):
            print(f"{row['figure']:<46}{'skipped':>10}")
            continue
        unit = row["unit"]
        target = "" if row["target"] is None else (
            f"{'>=' if row['sense'] == 'min' else '<='} {row['target']:g}{unit}  "
            f"{'met' if row['met'] else 'NOT MET'}")
        print(f"{row['figure']:<46}{row['median']:>10.2f}{row['min']:>10.2f}{row['max']:>10.2f}  {target}")
