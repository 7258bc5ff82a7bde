"""The service's own local certificate authority, so every Azure client (which insists on HTTPS) can connect.

On first start the data folder gets a CA and a server certificate for 127.0.0.1, localhost and the registries'
login servers (`*.<login server suffix host>`) signed by it.
Clients trust the CA file (`connection_verify=`, REQUESTS_CA_BUNDLE). Real certificates replace this through
CONTROL_PLANE_TLS_CERT_FILE / CONTROL_PLANE_TLS_KEY_FILE.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None


BASE_NAMES = ("localhost", "*.localhost")


def login_server_names(suffix: str) -> tuple[str, ...]:
    """The DNS names the server certificate must hold for host-style login servers: `*.<suffix host>` and the
    suffix host itself (`localhost:8443` -> `*.localhost`, `localhost`); none for an IP address."""
    host = suffix.lower().rsplit(":", 1)[0] if suffix.count(":") == 1 else suffix.lower()
    try:
        ipaddress.ip_address(host)
        return ()
    except ValueError:
        return (f"*.{host}", host) if host else ()


def ensure_local_ca(tls_dir: Path, extra_names: tuple[str, ...] = ()) -> TlsFiles:
    """The CA and a server certificate for 127.0.0.1, localhost, *.localhost and `extra_names`. An existing CA is
    kept (clients trust it); the server certificate is issued again when it lacks one of the names."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(tls_dir / "server.pem", tls_dir / "server-key.pem", tls_dir / "ca.pem")
    ca_key_file = tls_dir / "ca-key.pem"
    wanted = tuple(dict.fromkeys((*BASE_NAMES, *extra_names)))
    if files.ca_file.exists() and ca_key_file.exists():
        if files.cert_file.exists() and files.key_file.exists() and _covers(files.cert_file, wanted):
            return files
        ca_cert = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    else:
        ca_key, ca_cert = _new_ca()
        _write(ca_key_file, _key_pem(ca_key), private=True)
        _write(files.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key, server_cert = _server_certificate(ca_key, ca_cert, wanted)
    _write(files.key_file, _key_pem(server_key), private=True)
    _write(files.cert_file, server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def _covers(cert_file: Path, names: tuple[str, ...]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        held = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return set(names) <= set(held.get_values_for_type(x509.DNSName))


def _new_ca():
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "control-plane local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def _server_certificate(ca_key, ca_cert, dns_names: tuple[str, ...]):
    now = dt.datetime.now(dt.UTC)
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    names += [x509.DNSName(n) for n in dns_names]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return server_key, server_cert


class HostCertificates:
    """A certificate for each registry host a TLS client names (SNI), signed by the local CA, made on first use.

    The server certificate holds `*.<suffix host>`, which Go clients (skopeo) accept; OpenSSL — hence Python's ssl,
    az and the SDKs — refuses a wildcard with a single label below it (`*.localhost`, the default suffix), as it
    would `*.com`. So a handshake for `<registry>.<suffix host>` switches to a context with that exact name.
    Contexts are kept in memory (the oldest dropped past MAX_HOSTS); nothing is written that outlives the load.
    """

    MAX_HOSTS = 512

    def __init__(self, tls_dir: Path, suffix: str, make_context):
        self.tls_dir = tls_dir
        names = login_server_names(suffix)
        self.suffix_host = names[1] if names else ""
        self.make_context = make_context  # (cert_file, key_file) -> ssl.SSLContext, configured like the server's
        self._contexts: dict[str, object] = {}
        self._ca = None

    def applies(self) -> bool:
        """Only where wildcards fail: a suffix host of one label."""
        return bool(self.suffix_host) and "." not in self.suffix_host

    def sni_callback(self, sslobj, server_name, _context):
        name = (server_name or "").lower()
        label, _, rest = name.partition(".")
        if rest != self.suffix_host or not label.isascii() or not label.isalnum() or len(label) > 50:
            return None
        context = self._contexts.get(name)
        if context is None:
            context = self._contexts[name] = self._context_for(name)
            while len(self._contexts) > self.MAX_HOSTS:
                del self._contexts[next(iter(self._contexts))]
        sslobj.context = context
        return None

    def _context_for(self, host: str):
        if self._ca is None:
            self._ca = (serialization.load_pem_private_key((self.tls_dir / "ca-key.pem").read_bytes(), password=None),
                        x509.load_pem_x509_certificate((self.tls_dir / "ca.pem").read_bytes()))
        ca_key, ca_cert = self._ca
        key, certificate = _server_certificate(ca_key, ca_cert, (host, f"*.{self.suffix_host}", *BASE_NAMES))
        with tempfile.TemporaryDirectory(dir=self.tls_dir) as folder:
            cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            _write(key_file, _key_pem(key), private=True)
            _write(cert_file, certificate.public_bytes(serialization.Encoding.PEM))
            return self.make_context(str(cert_file), str(key_file))


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    if private:
        tmp.chmod(0o600)
    tmp.replace(path)
