"""Certificates the Distribution registry needs: the token-signing bundle it trusts, and its own TLS certificate.

Distribution 2.8 trusts token-signing keys only through `auth.token.rootcertbundle`, a PEM file of certificates, and
finds the key of a token by its `kid` header, which must be the key's libtrust id. The token issuer's keys (kept in
the database) have no certificates, so each gets a self-signed one here. It is deterministic — fixed names, serial
and validity taken from the key, and RSA PKCS#1 v1.5 signatures, which are deterministic — so any process can
regenerate the same bundle byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SIGNING_CERT_YEARS = 20
SERVER_CERT_DAYS = 825


def libtrust_key_id(public_key) -> str:
    """Docker's libtrust key id: SHA-256 of the PKIX DER key, first 240 bits, base32, in groups of four."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def signing_certificate(kid: str, private_key, created_at: dt.datetime) -> bytes:
    """A self-signed PEM certificate for one token-signing key, the same every time for the same key."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "control-plane"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"registry token signing key {kid}")])
    # The serial comes from the key itself (positive, below 2**159 as RFC 5280 asks).
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    serial = int.from_bytes(hashlib.sha256(der).digest()[:19], "big") | 1
    not_before = created_at.astimezone(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=365 * SIGNING_CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def signing_bundle(keys: list[tuple[str, object, dt.datetime]]) -> bytes:
    """The rootcertbundle: one certificate per live signing key (TokenIssuer.live_private_keys())."""
    return b"".join(signing_certificate(kid, key, created_at) for kid, key, created_at in keys)


def server_certificate(ca_dir: Path, host_names: list[str], cert_file: Path, key_file: Path) -> None:
    """A TLS certificate for a registry process, signed by the service's local CA (`<data dir>/tls`).

    Covers the given host names (the login server's host), 127.0.0.1, localhost and *.localhost.
    """
    ca_cert_path, ca_key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    if not ca_cert_path.exists() or not ca_key_path.exists():
        raise FileNotFoundError(f"no local CA in {ca_dir}: run `control-plane serve` or `init` with TLS on first")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
                                     x509.DNSName("*.localhost")]
    for host in dict.fromkeys(host_names):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    names = list(dict.fromkeys(names))
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_names[0] if host_names
                                                    else "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_file(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), private=True)
    # The chain (leaf, then CA) so clients that only know the CA by its subject still build the path.
    write_file(cert_file, certificate.public_bytes(serialization.Encoding.PEM)
               + ca_cert.public_bytes(serialization.Encoding.PEM))


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    """Atomic write (readers never see half a file), owner-only when private."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    if private:
        tmp.chmod(0o600)
    tmp.replace(path)
