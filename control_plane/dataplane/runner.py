"""`control-plane registry config|run NAME`: write a registry's Distribution files, then run Distribution.

Files go under `<data dir>/dataplane/`: the token-signing certificate bundle (shared by every registry, rewritten
identically each time) and, per registry, `registries/<name>/config.yml` (owner-only: it may hold a storage account
key) plus its TLS certificate when asked. `run` then replaces this process with `docker-registry serve`, so the
registry runs in the foreground under the caller's process id and stops gracefully (exit 0) on SIGTERM.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from control_plane.config import Settings
from control_plane.crypto import load_cipher
from control_plane.dataplane import certificates, distribution
from control_plane.db import Database
from control_plane.identity.tokens import TokenIssuer
from control_plane.registries.models import Registry
from control_plane.registries.serialize import login_server
from control_plane.registries.service import DELETING

DEFAULT_BINARY = "docker-registry"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RunnerError(Exception):
    """Why a registry cannot be configured or run; printed as is."""


@dataclass(frozen=True)
class Options:
    name: str
    host: str = "127.0.0.1"
    port: int | None = None
    tls: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    storage_dir: Path | None = None


@dataclass(frozen=True)
class Prepared:
    login_server: str
    config: dict
    config_file: Path

    @property
    def yaml(self) -> str:
        return distribution.to_yaml(self.config)


def prepare(settings: Settings, options: Options) -> Prepared:
    """Looks the registry up, writes the certificate bundle, TLS files and configuration, and returns them."""
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            registry = session.scalar(sa.select(Registry).where(Registry.name_key == options.name.lower()))
        if registry is None:
            raise RunnerError(f"There is no registry named '{options.name}'.")
        if registry.provisioning_state == DELETING:
            raise RunnerError(f"The registry '{registry.name}' is being deleted.")
        issuer = TokenIssuer(db, load_cipher(settings.encryption_key, settings.data_dir), settings.public_url,
                             settings.token_lifetime_seconds)
        keys = issuer.live_private_keys()
    finally:
        db.dispose()
    if not keys:
        raise RunnerError("There is no token-signing key yet: run `control-plane init` or `control-plane serve`.")
    certificates.write_file(distribution.bundle_path(settings), certificates.signing_bundle(keys))

    server = login_server(registry, settings.login_server_suffix)
    folder = distribution.registry_dir(settings, registry)
    cert_file, key_file = _tls_files(settings, options, server, folder)
    listen = distribution.Listen(options.host, options.port or distribution.default_port(settings, registry),
                                 cert_file, key_file)
    if cert_file is None and options.host not in LOOPBACK:
        print(f"warning: {registry.name} serves plain http on {listen.address}; tokens and credentials cross the "
              "network in clear text. Pass --tls unless a TLS proxy is in front.", file=sys.stderr)
    try:
        config = distribution.configuration(settings, registry, listen, distribution.http_secret(keys[0][1], registry),
                                            options.storage_dir)
    except distribution.ConfigurationError as exc:
        raise RunnerError(str(exc)) from None
    config_file = folder / "config.yml"
    certificates.write_file(config_file, distribution.to_yaml(config).encode(), private=True)
    return Prepared(server, config, config_file)


def _tls_files(settings: Settings, options: Options, server: str,
               folder: Path) -> tuple[Path | None, Path | None]:
    if options.tls_cert_file or options.tls_key_file:
        if not (options.tls_cert_file and options.tls_key_file):
            raise RunnerError("--tls-cert and --tls-key go together.")
        return options.tls_cert_file.resolve(), options.tls_key_file.resolve()
    if not options.tls:
        return None, None
    cert_file, key_file = folder / "tls-cert.pem", folder / "tls-key.pem"
    host = server.rsplit(":", 1)[0] if server.rsplit(":", 1)[-1].isdigit() else server
    try:
        certificates.server_certificate(settings.data_dir / "tls", [host], cert_file, key_file)
    except FileNotFoundError as exc:
        raise RunnerError(f"{exc}; or pass --tls-cert and --tls-key.") from None
    return cert_file, key_file


def exec_distribution(prepared: Prepared, binary: str = DEFAULT_BINARY) -> int:
    """Replaces this process with Distribution; returns only when it cannot be started."""
    # Distribution reads every REGISTRY_* variable as a configuration override, and skopeo's REGISTRY_AUTH_FILE
    # (or any other) would break or silently change the generated configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    print(f"control-plane: registry {prepared.login_server} on {prepared.config['http']['addr']} "
          f"(configuration {prepared.config_file})", file=sys.stderr, flush=True)
    try:
        os.execvpe(binary, [binary, "serve", str(prepared.config_file)], env)
    except OSError as exc:
        print(f"error: cannot start {binary!r}: {exc.strerror}. Install Debian's docker-registry package "
              "(apt-get install docker-registry) or pass --binary.", file=sys.stderr)
        return 127
    return 0  # not reached: exec does not return
