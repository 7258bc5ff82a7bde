"""The Distribution (CNCF registry 2.8) configuration of one registry, generated from its row and the settings.

* `auth.token`: realm = this service's `/oauth2/token`, service = the registry's login server, issuer = the public
  URL, rootcertbundle = the token-signing certificates (certificates.signing_bundle).
* `storage`: the registry's own container — with the local-folder backend, its folder (`filesystem` driver); with
  Azure Blob Storage, the upstream `azure` driver's settings for its container in the account of its location
  (`serviceurl` only for a non-standard endpoint such as Azurite, which upstream v3 reads and 2.8 ignores).
  Debian's 2.8.2 build has no azure driver, so `storage_dir` overrides the storage with a folder.
* `http`: the listen address, TLS files when given, and a secret derived from the signing key so every replica of
  one registry agrees on it without storing one.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from control_plane.config import Settings
from control_plane.registries.models import Registry
from control_plane.registries.serialize import login_server

DRAIN_TIMEOUT = "5s"  # with a drain timeout Distribution stops gracefully (exit 0) on SIGTERM
DEFAULT_PORT = 5000
AZURE_REALM = "core.windows.net"
DEVELOPMENT_STORAGE = {
    "AccountName": "devstoreaccount1",
    "AccountKey": "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    "BlobEndpoint": "http://127.0.0.1:10000/devstoreaccount1",
}


class ConfigurationError(ValueError):
    """The registry's storage cannot be expressed as Distribution settings; the message says why."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def default_port(settings: Settings, registry: Registry) -> int:
    """The login server's port when it names one (CONTROL_PLANE_LOGIN_SERVER_SUFFIX=localhost:5000), else 5000."""
    host, _, port = login_server(registry, settings.login_server_suffix).rpartition(":")
    return int(port) if host and port.isdigit() else DEFAULT_PORT


def realm(settings: Settings) -> str:
    return f"{settings.public_url}/oauth2/token"


def bundle_path(settings: Settings) -> Path:
    return settings.data_dir / "dataplane" / "token-signing.pem"


def registry_dir(settings: Settings, registry: Registry) -> Path:
    return settings.data_dir / "dataplane" / "registries" / registry.name_key


def storage(settings: Settings, registry: Registry, storage_dir: Path | None = None) -> dict[str, Any]:
    if storage_dir is not None:
        driver: dict[str, Any] = {"filesystem": {"rootdirectory": str(storage_dir)}}
    elif settings.storage == "local":
        # The folder LocalFolderStore made for the registry's container.
        driver = {"filesystem": {"rootdirectory": str(settings.data_dir / "blobs" / registry.container_name)}}
    else:
        connection = (settings.storage if isinstance(settings.storage, str)
                      else settings.storage.get(registry.location))
        if connection is None:
            raise ConfigurationError(f"No storage account is configured for location '{registry.location}'.")
        driver = {"azure": azure_driver(connection, registry.container_name)}
    return {**driver, "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}}


def azure_driver(connection_string: str, container: str) -> dict[str, str]:
    """The upstream `azure` storage-driver parameters for a container, from an Azure Storage connection string."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        parts = {**DEVELOPMENT_STORAGE, **{k: v for k, v in parts.items() if k != "UseDevelopmentStorage"}}
    account, key = parts.get("AccountName"), parts.get("AccountKey")
    if not account or not key:
        raise ConfigurationError("The storage connection string has no AccountName and AccountKey; Distribution's "
                                 "azure driver needs the account key.")
    realm_suffix = parts.get("EndpointSuffix", AZURE_REALM)
    settings = {"accountname": account, "accountkey": key, "container": container, "realm": realm_suffix}
    endpoint = parts.get("BlobEndpoint")
    protocol = parts.get("DefaultEndpointsProtocol", "https")
    if endpoint:
        settings["serviceurl"] = endpoint.rstrip("/")
    elif protocol != "https":
        settings["serviceurl"] = f"{protocol}://{account}.blob.{realm_suffix}"
    return settings


def http_secret(signing_key, registry: Registry) -> str:
    """Distribution signs upload state with this; replicas of a registry must share it, so derive it."""
    pem = signing_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return hmac.new(pem, f"distribution-http-secret:{registry.id}".encode(), hashlib.sha256).hexdigest()


def configuration(settings: Settings, registry: Registry, listen: Listen, secret: str,
                  storage_dir: Path | None = None) -> dict[str, Any]:
    http: dict[str, Any] = {
        "addr": listen.address,
        "secret": secret,
        "draintimeout": DRAIN_TIMEOUT,
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if listen.tls_cert_file is not None:
        http["tls"] = {"certificate": str(listen.tls_cert_file), "key": str(listen.tls_key_file)}
    return {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry", "registry": registry.name}},
        "storage": storage(settings, registry, storage_dir),
        "http": http,
        "auth": {"token": {
            "realm": realm(settings),
            "service": login_server(registry, settings.login_server_suffix),
            "issuer": settings.public_url,
            "rootcertbundle": str(bundle_path(settings)),
        }},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }


def to_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
