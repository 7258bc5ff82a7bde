"""The data-plane benchmark: `python -m bench.registry --rounds 3`.

The yardstick is Debian's CNCF Distribution 2.8 (`docker-registry`, filesystem driver, TLS, no auth), started
beside `control-plane serve` (local-folder storage, the registry's admin user, TLS from its own CA) and measured in
the same round, so every figure is a ratio to Distribution on the same machine at the same moment:

* push and pull of a fresh 256 MiB single-layer image with skopeo (MB/s; one image per round, new to both; the
  layer is gzip with stored blocks, so that skopeo sends it as it is instead of compressing it: build_image);
* one GET of the pushed layer with curl (MB/s), what each server sends when the client does nothing but TLS;
* manifest GET by tag with wrk (16 connections): the service with a bearer token from its token service,
  Distribution without auth; requests/s and p99, interleaved in one-second slices as bench/run.py does;
* the service workers' RSS growth during a 1 GiB push (target < 50 MB: uploads stream);
* the same 256 MiB push against a service on Azurite, as MB/s beside the local backend's.

Installs nothing: skopeo, wrk, curl and docker-registry (Debian) must be there; Azurite is looked up as in bench/run.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from bench.run import (
    BENCH_DIR,
    DEFAULT_POSTGRES,
    Config,
    Load,
    Process,
    Service,
    azurite,
    combine,
    database,
    find_azurite,
    free_port,
    machine,
    make_service,
    rss_mb,
    wait_succeeded,
    wrk,
)

IMAGE_MIB = 256
BIG_IMAGE_MIB = 1024
REGISTRY = "benchreg"
REPOSITORY = "bench/img"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"
REGISTRY_API = "2025-11-01"
GROUP = "benchdata"
SKOPEO_TIMEOUT = 900


# -- images ----------------------------------------------------------------------------------------------------


def build_image(layout: Path, tag: str, size_mib: int) -> str:
    """An OCI layout holding one image: a single gzip layer with `size_mib` MiB of fresh random bytes.

    The layer is gzip at level 0 (stored deflate blocks): skopeo compresses every uncompressed layer it pushes to a
    registry, and gzip of random bytes (~60-120 MB/s on this machine) would then be what a push measures, for both
    registries alike. Stored blocks cost only a CRC, and the registries receive and serve what they would for any
    compressed layer. Written by hand (no umoci), for the same reason.
    """
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_path = layout / "layer.tar.gz"
    with open(layer_path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=0, mtime=0) as packed:
        tar_stream = _HashingWriter(packed)
        with tarfile.open(fileobj=tar_stream, mode="w|") as tar:
            info = tarfile.TarInfo("data.bin")
            info.size = size_mib * 1024 * 1024
            tar.addfile(info, _RandomReader(info.size))
    diff_id = tar_stream.hash.hexdigest()
    layer_digest = _sha256_file(layer_path)
    layer_path.rename(blobs / layer_digest)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                          "diff_ids": [f"sha256:{diff_id}"]},
                         "config": {}}).encode()
    config_digest = _store(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_ACCEPT,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{config_digest}",
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{layer_digest}",
                    "size": (blobs / layer_digest).stat().st_size}]}).encode()
    manifest_digest = _store(blobs, manifest)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": MANIFEST_ACCEPT, "digest": f"sha256:{manifest_digest}",
                                                "size": len(manifest),
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return f"sha256:{layer_digest}"


class _HashingWriter(io.RawIOBase):
    """Passes writes on, hashing them (the layer's diff_id: the sha256 of its uncompressed tar)."""

    def __init__(self, target):
        self.target = target
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.hash.update(data)
        return self.target.write(data)


class _RandomReader(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left, 1 << 20)
        buffer[:count] = os.urandom(count)
        self.left -= count
        return count


def _store(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return digest


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- the two registries ----------------------------------------------------------------------------------------


def sign_server_certificate(ca_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by the service's local CA, so one CA file serves both registries."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = out_dir / "distribution.crt", out_dir / "distribution.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def distribution(work: Path, cert: Path, key: Path, ca: str) -> Iterator[str]:
    """Debian's docker-registry on the filesystem driver over TLS; yields its address."""
    port = free_port()
    config = work / "distribution.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "distribution-data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "tls": {"certificate": str(cert), "key": str(key)}}}))
    # Distribution reads every REGISTRY_* variable as a configuration override (skopeo's REGISTRY_AUTH_FILE too).
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    process = Process.start(["docker-registry", "serve", str(config)], env, work / "distribution.log")
    try:
        _wait_for(f"https://127.0.0.1:{port}/v2/", ca, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


def _wait_for(url: str, ca: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"exited with {process.popen.returncode}; see {process.log_path}")
        with contextlib.suppress(requests.RequestException):
            requests.get(url, verify=ca, timeout=2)
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


def prepare_registry(service: Service) -> str:
    """A registry with its admin user on; returns the admin password."""
    service.create_group(GROUP)
    path = service.registry_path(GROUP, REGISTRY)
    body = {"location": "eastus", "sku": {"name": "Premium"}, "properties": {"adminUserEnabled": True}}
    response = service.request("PUT", f"{path}?api-version={REGISTRY_API}", json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"registry create failed: {response.status_code} {response.text}")
    wait_succeeded(service, path)
    credentials = service.request("POST", f"{path}/listCredentials?api-version={REGISTRY_API}").json()
    return credentials["passwords"][0]["value"]


# -- measurements ----------------------------------------------------------------------------------------------


class Skopeo:
    def __init__(self, work: Path, ca_files: list[str]):
        """`ca_files`: every CA to trust (each service makes its own; skopeo reads every *.crt in its cert dir)."""
        self.cert_dir = work / "skopeo-certs"
        self.cert_dir.mkdir(exist_ok=True)
        for index, ca_file in enumerate(ca_files):
            shutil.copy(ca_file, self.cert_dir / f"ca-{index}.crt")
        self.env = dict(os.environ, REGISTRY_AUTH_FILE=str(work / "skopeo-auth.json"))

    def copy(self, source: str, destination: str, creds: str | None, direction: str) -> float:
        """Seconds one `skopeo copy` took; `direction` is "dest" for a push, "src" for a pull."""
        command = ["skopeo", "copy", "--retry-times", "0", f"--{direction}-cert-dir", str(self.cert_dir)]
        if creds:
            command += [f"--{direction}-creds", creds]
        started = time.monotonic()
        done = subprocess.run([*command, source, destination], env=self.env, capture_output=True, text=True,
                              timeout=SKOPEO_TIMEOUT)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"skopeo copy {source} {destination} failed: {done.stderr[-2000:]}")
        return elapsed


def mb_per_s(size_mib: int, seconds: float) -> float:
    return size_mib * 1.048576 / seconds


class RssSampler:
    """The largest RSS growth of any gunicorn worker of `service` while the block runs (sampled every 20 ms)."""

    def __init__(self, service: Service):
        self.pids = service.process.children()
        self.baseline = {pid: rss_mb(pid) for pid in self.pids}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    self.peak[pid] = max(self.peak[pid], rss_mb(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return max(self.peak[pid] - self.baseline[pid] for pid in self.pids)


def registry_token(service: Service, password: str) -> str:
    response = requests.get(f"{service.url}/oauth2/token", verify=service.ca, timeout=30, auth=(REGISTRY, password),
                            params={"service": f"127.0.0.1:{service.port}",
                                    "scope": f"repository:{REGISTRY}/{REPOSITORY}:pull"})
    response.raise_for_status()
    return response.json()["access_token"]


def blob_gets(service: Service, token: str, distribution_address: str, digest: str) -> dict[str, float]:
    """MB/s of one curl GET of the layer from each registry, the service first (the bytes are in the page cache
    for both: each was just pushed and pulled)."""
    targets = {"service": (f"{service.url}/v2/{REGISTRY}/{REPOSITORY}/blobs/{digest}",
                           ["-H", f"Authorization: Bearer {token}"]),
               "distribution": (f"https://{distribution_address}/v2/{REPOSITORY}/blobs/{digest}", [])}
    speeds = {}
    for name, (url, headers) in targets.items():
        done = subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", "--cacert", service.ca, "-w",
                               "%{speed_download}", *headers, url], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"curl {url} failed: {done.stderr}")
        speeds[name] = float(done.stdout) / 1e6
    return speeds


def manifest_gets(service: Service, token: str, distribution_address: str, tag: str, load: Load,
                  service_first: bool) -> dict:
    """wrk on both registries' manifest GET by tag, interleaved in one-second slices (see bench/run.py)."""
    targets = {
        "service": (f"{service.url}/v2/{REGISTRY}/{REPOSITORY}/manifests/{tag}",
                    {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}),
        "distribution": (f"https://{distribution_address}/v2/{REPOSITORY}/manifests/{tag}",
                         {"Accept": MANIFEST_ACCEPT}),
    }
    runs: dict[str, list] = {name: [] for name in targets}
    slice_load = Load(load.threads, load.connections, 1)
    for index in range(max(1, load.seconds)):
        order = ("service", "distribution") if (index % 2 == 0) == service_first else ("distribution", "service")
        for name in order:
            url, headers = targets[name]
            runs[name].append(wrk(url, str(BENCH_DIR / "get.lua"), slice_load, headers))
    return {name: combine(results) for name, results in runs.items()}


def one_round(index: int, work: Path, service: Service, password: str, azure_service: Service | None,
              azure_password: str | None, distribution_address: str, skopeo: Skopeo, load: Load) -> dict:
    tag = f"r{index}"
    layout = work / f"image-{index}"
    layer = build_image(layout, tag, IMAGE_MIB)
    creds = f"{REGISTRY}:{password}"
    service_ref = f"docker://127.0.0.1:{service.port}/{REGISTRY}/{REPOSITORY}:{tag}"
    distribution_ref = f"docker://{distribution_address}/{REPOSITORY}:{tag}"
    figures: dict = {}
    # Alternate which registry goes first, so neither always meets a warm page cache.
    order = ("service", "distribution") if index % 2 == 0 else ("distribution", "service")
    push, pull = {}, {}
    for name in order:
        ref, who = (service_ref, creds) if name == "service" else (distribution_ref, None)
        push[name] = mb_per_s(IMAGE_MIB, skopeo.copy(f"oci:{layout}:{tag}", ref, who, "dest"))
    for name in order:
        ref, who = (service_ref, creds) if name == "service" else (distribution_ref, None)
        out = work / f"pulled-{name}-{index}"
        pull[name] = mb_per_s(IMAGE_MIB, skopeo.copy(ref, f"dir:{out}", who, "src"))
        shutil.rmtree(out)
    figures["push_mb_s"], figures["pull_mb_s"] = push, pull
    figures["push_ratio"] = push["service"] / push["distribution"]
    figures["pull_ratio"] = pull["service"] / pull["distribution"]
    token = registry_token(service, password)
    figures["blob_get_mb_s"] = blob_gets(service, token, distribution_address, layer)
    figures["blob_get_ratio"] = figures["blob_get_mb_s"]["service"] / figures["blob_get_mb_s"]["distribution"]
    gets = manifest_gets(service, token, distribution_address, tag, load, service_first=index % 2 == 0)
    figures["manifest_get"] = gets
    figures["manifest_get_ratio"] = gets["service"]["rps"] / gets["distribution"]["rps"]
    figures["manifest_p99_ratio"] = gets["service"]["p99_ms"] / gets["distribution"]["p99_ms"]
    if azure_service is not None:
        azure_ref = f"docker://127.0.0.1:{azure_service.port}/{REGISTRY}/{REPOSITORY}:{tag}"
        seconds = skopeo.copy(f"oci:{layout}:{tag}", azure_ref, f"{REGISTRY}:{azure_password}", "dest")
        figures["azurite_push_mb_s"] = mb_per_s(IMAGE_MIB, seconds)
        figures["azurite_push_ratio"] = figures["azurite_push_mb_s"] / push["distribution"]
    shutil.rmtree(layout)
    return figures


def big_push_rss(work: Path, service: Service, password: str, skopeo: Skopeo) -> dict:
    layout = work / "image-big"
    build_image(layout, "big", BIG_IMAGE_MIB)
    with RssSampler(service) as sampler:
        seconds = skopeo.copy(f"oci:{layout}:big", f"docker://127.0.0.1:{service.port}/{REGISTRY}/{REPOSITORY}:big",
                              f"{REGISTRY}:{password}", "dest")
    shutil.rmtree(layout)
    return {"seconds": seconds, "mb_s": mb_per_s(BIG_IMAGE_MIB, seconds), "rss_growth_mb": sampler.growth_mb}


# -- the runner ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="wrk seconds per target and round (1-s slices)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--azurite", help="azurite-blob binary (default: as bench/run.py finds it); 'none' skips")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the local-storage service's database (the Azurite one always uses SQLite)")
    parser.add_argument("--postgres", default=os.environ.get("CONTROL_PLANE_TEST_POSTGRES", DEFAULT_POSTGRES),
                        help="admin URL: a fresh database is made there and dropped after")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("skopeo", "wrk", "curl", "docker-registry"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install skopeo wrk curl docker-registry)")
    config = Config(args.workers, args.threads, Load(2, args.connections, args.seconds), page_size=100,
                    list_size=0, creates=0)
    azurite_binary = None if args.azurite == "none" else find_azurite(args.azurite)
    with tempfile.TemporaryDirectory(prefix="cp-bench-registry-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        database_url = stack.enter_context(database(args.database, args.postgres))
        service = make_service("local", work, database_url, "local", config)
        service.start()
        stack.callback(service.stop)
        password = prepare_registry(service)
        azure_service = azure_password = None
        if azurite_binary is not None:
            connection = stack.enter_context(azurite(azurite_binary, work))
            azure_service = make_service("azurite", work, None, connection, config)
            azure_service.start()
            stack.callback(azure_service.stop)
            azure_password = prepare_registry(azure_service)
        cert, key = sign_server_certificate(service.data_dir / "tls", work)
        distribution_address = stack.enter_context(distribution(work, cert, key, service.ca))
        skopeo = Skopeo(work, [service.ca] + ([azure_service.ca] if azure_service is not None else []))
        print(json.dumps({"machine": machine()}))
        rounds = []
        for index in range(1, args.rounds + 1):
            figures = one_round(index, work, service, password, azure_service, azure_password,
                                distribution_address, skopeo, config.load)
            rounds.append(figures)
            print(json.dumps({"round": index, **_short(figures)}), flush=True)
        big = big_push_rss(work, service, password, skopeo)
        print(json.dumps({"push_1_gib": big}), flush=True)
        summary = summarise(rounds)
        summary["push_1_gib_rss_growth_mb"] = big["rss_growth_mb"]
        print(json.dumps({"summary": summary}, indent=2))
        if args.json:
            args.json.write_text(json.dumps({"rounds": rounds, "push_1_gib": big, "summary": summary}, indent=2))
    return 0


def _short(figures: dict) -> dict:
    keys = ("push_ratio", "pull_ratio", "blob_get_ratio", "manifest_get_ratio", "manifest_p99_ratio",
            "azurite_push_ratio")
    short = {k: round(figures[k], 3) for k in keys if k in figures}
    short["push_mb_s"] = {k: round(v, 1) for k, v in figures["push_mb_s"].items()}
    short["pull_mb_s"] = {k: round(v, 1) for k, v in figures["pull_mb_s"].items()}
    short["blob_get_mb_s"] = {k: round(v, 1) for k, v in figures["blob_get_mb_s"].items()}
    if "azurite_push_mb_s" in figures:
        short["azurite_push_mb_s"] = round(figures["azurite_push_mb_s"], 1)
    short["manifest_rps"] = {k: round(v["rps"]) for k, v in figures["manifest_get"].items()}
    short["manifest_p99_ms"] = {k: round(v["p99_ms"], 2) for k, v in figures["manifest_get"].items()}
    return short


def summarise(rounds: list[dict]) -> dict:
    """Median (min-max) of each ratio over the rounds."""
    summary = {}
    for key in ("push_ratio", "pull_ratio", "blob_get_ratio", "manifest_get_ratio", "manifest_p99_ratio",
                "azurite_push_ratio"):
        values = [r[key] for r in rounds if key in r]
        if values:
            summary[key] = {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                            "max": round(max(values), 3)}
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
