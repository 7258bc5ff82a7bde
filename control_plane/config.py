"""Settings: every CONTROL_PLANE_* environment variable, parsed and validated once.

Nothing else in the code base reads os.environ; it receives a Settings object instead.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_LOCATIONS = (
    "eastus",
    "eastus2",
    "westus",
    "westus2",
    "westus3",
    "centralus",
    "northcentralus",
    "southcentralus",
    "westcentralus",
    "canadacentral",
    "canadaeast",
    "brazilsouth",
    "northeurope",
    "westeurope",
    "uksouth",
    "ukwest",
    "francecentral",
    "germanywestcentral",
    "switzerlandnorth",
    "norwayeast",
    "swedencentral",
    "polandcentral",
    "italynorth",
    "spaincentral",
    "eastasia",
    "southeastasia",
    "japaneast",
    "japanwest",
    "koreacentral",
    "centralindia",
    "southindia",
    "australiaeast",
    "australiasoutheast",
    "southafricanorth",
    "uaenorth",
    "qatarcentral",
    "israelcentral",
    "mexicocentral",
)

# Audiences an ARM access token may carry: what the SDKs and az ask for.
DEFAULT_ARM_AUDIENCES = (
    "https://management.azure.com",
    "https://management.core.windows.net",
)


READS, WRITES, DELETES = "reads", "writes", "deletes"
SERVES = ("all", "management", "registry")


@dataclass(frozen=True)
class BucketRule:
    """A throttling token bucket: how many requests it holds and how fast it refills."""

    capacity: int
    refill_per_second: float

    @property
    def lease_size(self) -> int:
        """How many tokens one process takes from the shared bucket at a time: a twentieth of the bucket (what
        one process can strand when it stops), at most 100 (one shared write per 100 requests)."""
        return max(1, min(100, self.capacity // 20))


# Azure Resource Manager's documented token-bucket sizes and refill rates.
DEFAULT_RULES = {READS: BucketRule(250, 25.0), WRITES: BucketRule(200, 10.0), DELETES: BucketRule(200, 10.0)}


def parse_rule(raw: str) -> BucketRule:
    """`capacity:refill-per-second`, e.g. `250:25`."""
    capacity, _, refill = raw.partition(":")
    rule = BucketRule(int(capacity), float(refill))
    if rule.capacity < 1 or rule.refill_per_second <= 0:
        raise ValueError(raw)
    return rule


class SettingsError(ValueError):
    """A CONTROL_PLANE_* variable has a value we cannot use."""


def normalise_location(value: str) -> str:
    """'West Europe' and 'westeurope' are the same Azure location."""
    return "".join(value.split()).lower()


# A trusted issuer may omit this: how often, at most, a token naming an unknown key id makes us fetch its JWKS again
# (Keycloak's adapters use the same default). Key rotation needs one fetch; random key ids must not cost one each.
DEFAULT_MIN_KEY_REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class TrustedIssuer:
    """An external OIDC issuer (Entra ID, Keycloak, Dex...) whose access tokens we accept for one of our tenants."""

    issuer: str
    audience: str
    tenant_id: str
    jwks_uri: str | None = None
    ca_bundle: Path | None = None
    min_key_refresh_seconds: float = DEFAULT_MIN_KEY_REFRESH_SECONDS


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    public_url: str
    storage: str | dict[str, str]
    locations: tuple[str, ...]
    login_server_suffix: str
    tls: str
    tls_cert_file: Path | None
    tls_key_file: Path | None
    encryption_key: str | None
    arm_audiences: tuple[str, ...]
    token_lifetime_seconds: int
    registry_token_lifetime_seconds: int
    max_body_bytes: int
    page_size: int
    worker_poll_seconds: float
    operation_lease_seconds: int
    log_level: str
    trusted_issuers: tuple[TrustedIssuer, ...]
    throttle_rules: dict[str, BucketRule] | None = None
    # None: the command decides (`serve` and `worker` log JSON lines, everything else plain text).
    log_format: str | None = None
    # False on API replicas whose operations a separate `control-plane worker` runs.
    run_worker: bool = True
    # How long a write request waits for its own operation to finish before answering asynchronously (0: never).
    inline_operation_ms: int = 1000
    # Slow clients (control_plane/guarded_worker.py): seconds a connection has to deliver its TLS handshake and
    # request head (line and headers), seconds a request body may take to arrive and one response write may block,
    # and the connections (open, idle or still sending their head) one worker process holds at most.
    request_head_timeout: int = 10
    request_io_timeout: int = 30
    worker_connections: int = 1000
    # What this process serves: `all` (ARM and the registries' data plane), `management` (ARM, identity, Graph),
    # or `registry` (the data plane and its token service), so pushes can run on replicas of their own.
    serves: str = "all"
    # The data plane: the largest manifest accepted (then 413), how long an idle upload session lives, whether blob
    # GETs on Azure storage answer 307 to a read-only SAS URL (else the service streams the bytes itself), and the
    # slowest an upload body may arrive before the slow-client guard cuts it off.
    manifest_max_bytes: int = 4 * 1024 * 1024
    upload_expiry_seconds: int = 24 * 3600
    blob_redirect: bool = True
    upload_min_bytes_per_second: int = 1024 * 1024
    # Users' password sign-ins: after this many failures (per user name and source address, within 15 minutes) the
    # name is locked for that address for this many seconds (AADSTS50053), as Entra's smart lockout does.
    signin_lockout_threshold: int = 10
    signin_lockout_seconds: int = 60
    # Activity-log entries older than this many days are pruned (control_plane/activity/service.py).
    activity_log_retention_days: int = 90
    # Browser origins (`https://portal.example`) whose pages may call the service (control_plane/cors.py); `*`: any.
    cors_origins: tuple[str, ...] = ()
    # The portal's client registration (else the service registers one itself), and an external OIDC authority
    # people sign in to the portal at instead of the built-in issuer (it must be among the trusted issuers).
    portal_client_id: str | None = None
    portal_client_secret: str | None = None
    portal_authority: str | None = None

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def uses_https(self) -> bool:
        return self.tls != "off"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(f"CONTROL_PLANE_{name}")
            return default if value is None or value == "" else value

        data_dir = Path(get("DATA_DIR", str(Path.home() / ".control-plane"))).expanduser().resolve()
        database_url = get("DATABASE_URL") or f"sqlite:///{data_dir / 'control-plane.db'}"
        if database_url.startswith("postgresql://") or database_url.startswith("postgres://"):
            database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]

        public_url = get("PUBLIC_URL", "https://127.0.0.1:8443").rstrip("/")
        if not public_url.startswith(("https://", "http://")):
            raise SettingsError("CONTROL_PLANE_PUBLIC_URL must be an absolute http(s) URL")

        locations = tuple(
            normalise_location(loc) for loc in (get("LOCATIONS") or ",".join(DEFAULT_LOCATIONS)).split(",")
            if loc.strip()
        )
        if not locations:
            raise SettingsError("CONTROL_PLANE_LOCATIONS lists no location")

        tls = get("TLS", "auto").lower()
        if tls not in ("auto", "off"):
            raise SettingsError("CONTROL_PLANE_TLS must be 'auto' or 'off'")
        cert_file = get("TLS_CERT_FILE")
        key_file = get("TLS_KEY_FILE")
        if bool(cert_file) != bool(key_file):
            raise SettingsError("CONTROL_PLANE_TLS_CERT_FILE and CONTROL_PLANE_TLS_KEY_FILE go together")

        audiences = get("ARM_AUDIENCES")
        arm_audiences = (
            tuple(a.strip().rstrip("/") for a in audiences.split(",") if a.strip())
            if audiences
            else (*DEFAULT_ARM_AUDIENCES, public_url)
        )

        return cls(
            data_dir=data_dir,
            database_url=database_url,
            public_url=public_url,
            storage=_parse_storage(get("STORAGE", "local"), locations),
            locations=locations,
            login_server_suffix=(get("LOGIN_SERVER_SUFFIX") or default_login_server_suffix(public_url)).lstrip("."),
            tls=tls,
            tls_cert_file=Path(cert_file) if cert_file else None,
            tls_key_file=Path(key_file) if key_file else None,
            encryption_key=get("ENCRYPTION_KEY"),
            arm_audiences=arm_audiences,
            token_lifetime_seconds=_int(get, "TOKEN_LIFETIME_SECONDS", 3600, minimum=60),
            # Registry access tokens cannot be revoked (Distribution only checks signatures): keep them short.
            registry_token_lifetime_seconds=_int(get, "REGISTRY_TOKEN_LIFETIME_SECONDS", 300, minimum=60),
            max_body_bytes=_int(get, "MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            page_size=_int(get, "PAGE_SIZE", 100, minimum=1),
            worker_poll_seconds=float(get("WORKER_POLL_SECONDS", "1.0")),
            operation_lease_seconds=_int(get, "OPERATION_LEASE_SECONDS", 30, minimum=2),
            log_level=get("LOG_LEVEL", "INFO").upper(),
            trusted_issuers=(trusted := _parse_trusted_issuers(get("TRUSTED_ISSUERS"), public_url)),
            throttle_rules=_parse_throttling(get),
            log_format=_parse_choice(get, "LOG_FORMAT", ("json", "text")),
            run_worker=_parse_bool(get, "RUN_WORKER", True),
            inline_operation_ms=_int(get, "INLINE_OPERATION_MS", 1000, minimum=0),
            request_head_timeout=_int(get, "REQUEST_HEAD_TIMEOUT", 10, minimum=1),
            request_io_timeout=_int(get, "REQUEST_IO_TIMEOUT", 30, minimum=1),
            worker_connections=_int(get, "WORKER_CONNECTIONS", 1000, minimum=1),
            serves=_parse_choice(get, "SERVES", SERVES) or "all",
            manifest_max_bytes=_int(get, "MANIFEST_MAX_BYTES", 4 * 1024 * 1024, minimum=4096),
            upload_expiry_seconds=_int(get, "UPLOAD_EXPIRY_SECONDS", 24 * 3600, minimum=60),
            blob_redirect=_parse_bool(get, "BLOB_REDIRECT", True),
            upload_min_bytes_per_second=_int(get, "UPLOAD_MIN_BYTES_PER_SECOND", 1024 * 1024, minimum=1024),
            signin_lockout_threshold=_int(get, "SIGNIN_LOCKOUT_THRESHOLD", 10, minimum=1),
            signin_lockout_seconds=_int(get, "SIGNIN_LOCKOUT_SECONDS", 60, minimum=1),
            activity_log_retention_days=_int(get, "ACTIVITY_LOG_RETENTION_DAYS", 90, minimum=1),
            cors_origins=_parse_origins(get("CORS_ORIGINS")),
            **_parse_portal(get, trusted),
        )

    @property
    def serves_management(self) -> bool:
        return self.serves in ("all", "management")

    @property
    def serves_registry(self) -> bool:
        return self.serves in ("all", "registry")


def default_login_server_suffix(public_url: str) -> str:
    """`localhost`, with the public URL's port when it is not 443.

    RFC 6761 reserves `*.localhost` for the loopback interface, so a fresh install's login servers
    (`<name>.localhost:8443`) can only ever reach this machine — never someone else's hosts, as the old default
    `azurecr.io` did (it sent `az acr login` and its tokens to Microsoft).
    """
    port = urlsplit(public_url).port
    return "localhost" if port in (None, 443) else f"localhost:{port}"


def _parse_choice(get, name: str, choices: tuple[str, ...]) -> str | None:
    raw = get(name)
    if raw is None:
        return None
    if raw.lower() not in choices:
        raise SettingsError(f"CONTROL_PLANE_{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw.lower()


def _parse_bool(get, name: str, default: bool) -> bool:
    raw = (get(name) or "").lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"CONTROL_PLANE_{name} must be 'true' or 'false', not {raw!r}")


def _parse_origins(raw: str | None) -> tuple[str, ...]:
    """CONTROL_PLANE_CORS_ORIGINS: comma-separated origins, lower-cased as browsers send them; a typo (a path, a
    trailing slash) would silently never match, so it fails at start instead. `*` stands alone."""
    origins = tuple(origin.strip().lower() for origin in (raw or "").split(",") if origin.strip())
    if "*" in origins:
        if len(origins) > 1:
            raise SettingsError("CONTROL_PLANE_CORS_ORIGINS: '*' (every origin) cannot be combined with others")
        return origins
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.hostname or origin != f"{parts.scheme}://{parts.netloc}":
            raise SettingsError(f"CONTROL_PLANE_CORS_ORIGINS entries must be origins like https://portal.example.com "
                                f"(scheme, host, optional port; no path), not {origin!r}")
    return origins


def _parse_portal(get, trusted: tuple[TrustedIssuer, ...]) -> dict[str, str | None]:
    """CONTROL_PLANE_PORTAL_CLIENT_ID and _CLIENT_SECRET go together; CONTROL_PLANE_PORTAL_AUTHORITY is an https URL
    and one of the trusted issuers (else the service would refuse every token the portal gets there)."""
    client_id, secret, authority = get("PORTAL_CLIENT_ID"), get("PORTAL_CLIENT_SECRET"), get("PORTAL_AUTHORITY")
    if bool(client_id) != bool(secret):
        raise SettingsError("CONTROL_PLANE_PORTAL_CLIENT_ID and CONTROL_PLANE_PORTAL_CLIENT_SECRET go together")
    if authority is not None:
        if not authority.startswith("https://") or not urlsplit(authority).hostname:
            raise SettingsError(f"CONTROL_PLANE_PORTAL_AUTHORITY must be an https URL, not {authority!r}")
        if not client_id:
            raise SettingsError("CONTROL_PLANE_PORTAL_AUTHORITY needs CONTROL_PLANE_PORTAL_CLIENT_ID and _SECRET: "
                                "the portal's registration at that issuer")
        if not any(t.issuer.rstrip("/") == authority.rstrip("/") for t in trusted):
            raise SettingsError("CONTROL_PLANE_PORTAL_AUTHORITY must be the issuer of one of "
                                "CONTROL_PLANE_TRUSTED_ISSUERS: the service accepts only their tokens")
    return {"portal_client_id": client_id, "portal_client_secret": secret,
            "portal_authority": authority.rstrip("/") if authority else None}


def _parse_throttling(get) -> dict[str, BucketRule] | None:
    """CONTROL_PLANE_THROTTLING=off disables it; CONTROL_PLANE_THROTTLE_{READS,WRITES,DELETES}=capacity:refill."""
    mode = get("THROTTLING", "on").lower()
    if mode not in ("on", "off"):
        raise SettingsError("CONTROL_PLANE_THROTTLING must be 'on' or 'off'")
    if mode == "off":
        return None
    rules = dict(DEFAULT_RULES)
    for kind in rules:
        raw = get(f"THROTTLE_{kind.upper()}")
        if raw:
            try:
                rules[kind] = parse_rule(raw)
            except ValueError:
                raise SettingsError(f"CONTROL_PLANE_THROTTLE_{kind.upper()} must be 'capacity:refill-per-second' "
                                    f"with a positive capacity and rate, not {raw!r}") from None
    return rules


def _int(get, name: str, default: int, minimum: int) -> int:
    raw = get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"CONTROL_PLANE_{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"CONTROL_PLANE_{name} must be at least {minimum}")
    return value


def _parse_storage(raw: str, locations: tuple[str, ...]) -> str | dict[str, str]:
    """'local', one connection string for every location, or a JSON map location -> connection string."""
    if raw == "local":
        return "local"
    if raw.lstrip().startswith("{"):
        try:
            mapping = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"CONTROL_PLANE_STORAGE is not valid JSON: {exc}") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise SettingsError("CONTROL_PLANE_STORAGE must map each location to a connection string")
        normalised = {normalise_location(k): v for k, v in mapping.items()}
        missing = [loc for loc in locations if loc not in normalised]
        if missing:
            raise SettingsError(f"CONTROL_PLANE_STORAGE has no connection string for: {', '.join(missing)}")
        return normalised
    if "AccountName=" not in raw and "BlobEndpoint=" not in raw and "UseDevelopmentStorage" not in raw:
        raise SettingsError("CONTROL_PLANE_STORAGE must be 'local', a connection string, or a JSON map")
    return raw


_TRUSTED_ISSUER_KEYS = {"issuer", "audience", "tenantId", "jwksUri", "caBundle", "minKeyRefreshSeconds"}


def _parse_trusted_issuers(raw: str | None, public_url: str) -> tuple[TrustedIssuer, ...]:
    """CONTROL_PLANE_TRUSTED_ISSUERS: a JSON list of {"issuer", "audience", "tenantId"[, "jwksUri", "caBundle",
    "minKeyRefreshSeconds"]}. Every mistake is reported here, at start, rather than as 401s later."""
    if raw is None:
        return ()
    name = "CONTROL_PLANE_TRUSTED_ISSUERS"
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise SettingsError(f"{name} must be a JSON list of objects")
    own_issuer = re.compile(re.escape(public_url) + r"/[^/]+/v2\.0/?")
    issuers: list[TrustedIssuer] = []
    for index, entry in enumerate(entries):
        where = f"{name}[{index}]"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where} must be an object with issuer, audience and tenantId")
        unknown = sorted(set(entry) - _TRUSTED_ISSUER_KEYS)
        if unknown:
            raise SettingsError(f"{where} has unknown keys {unknown}; allowed: {sorted(_TRUSTED_ISSUER_KEYS)}")
        for key in ("issuer", "audience", "tenantId"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise SettingsError(f"{where}.{key} is required and must be a non-empty string")
        issuer = entry["issuer"]
        check_issuer_url(f"{where}.issuer", issuer)
        if own_issuer.fullmatch(issuer):
            raise SettingsError(f"{where}.issuer is this service's own token issuer; it is always trusted")
        if any(i.issuer == issuer for i in issuers):
            raise SettingsError(f"{where}.issuer {issuer!r} is listed twice")
        try:
            tenant_id = str(uuid.UUID(entry["tenantId"]))
        except ValueError:
            raise SettingsError(f"{where}.tenantId must be a tenant id (a GUID), not {entry['tenantId']!r}") from None
        jwks_uri = entry.get("jwksUri")
        if jwks_uri is not None:
            if not isinstance(jwks_uri, str):
                raise SettingsError(f"{where}.jwksUri must be a string")
            check_issuer_url(f"{where}.jwksUri", jwks_uri)
        ca_bundle = entry.get("caBundle")
        if ca_bundle is not None:
            if not isinstance(ca_bundle, str) or not Path(ca_bundle).expanduser().is_file():
                raise SettingsError(f"{where}.caBundle must be the path of an existing PEM file, not {ca_bundle!r}")
            ca_bundle = Path(ca_bundle).expanduser().resolve()
        refresh = entry.get("minKeyRefreshSeconds", DEFAULT_MIN_KEY_REFRESH_SECONDS)
        if isinstance(refresh, bool) or not isinstance(refresh, int | float) or refresh < 1:
            raise SettingsError(f"{where}.minKeyRefreshSeconds must be a number of seconds, at least 1")
        issuers.append(TrustedIssuer(issuer=issuer, audience=entry["audience"], tenant_id=tenant_id,
                                     jwks_uri=jwks_uri, ca_bundle=ca_bundle, min_key_refresh_seconds=float(refresh)))
    return tuple(issuers)


def check_issuer_url(where: str, url: str) -> None:
    """https, except plain http on a loopback host (a test or a sidecar issuer on the same machine): anyone on the
    path could swap the keys of an http issuer elsewhere and sign tokens we would accept."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"{where} must be an absolute https URL without query or fragment, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError(f"{where} must use https; plain http is allowed only on a loopback host, not {url!r}")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
