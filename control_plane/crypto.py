"""Secrets at rest: encryption of stored secrets and hashing of client secrets.

Admin passwords and token-signing keys must be readable by the service, so they are encrypted (Fernet, key from
CONTROL_PLANE_ENCRYPTION_KEY or generated once into the data folder). Client secrets only need checking, so they
are stored as salted hashes: they are 40+ random characters, so one SHA-256 round keeps them safe while the token
endpoint stays fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_FILE_NAME = "encryption.key"


class Cipher:
    """Encrypts with the first key; decrypts with any, so keys can be rotated."""

    def __init__(self, keys: list[bytes]):
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with the configured encryption key") from None


def load_cipher(configured_key: str | None, data_dir: Path) -> Cipher:
    """The configured key(s) (comma-separated, newest first), else the data folder's key, made on first use."""
    if configured_key:
        return Cipher([k.strip().encode() for k in configured_key.split(",") if k.strip()])
    return Cipher([ensure_key_file(data_dir / KEY_FILE_NAME)])


def ensure_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = Fernet.generate_key()
        try:
            # O_EXCL: when several processes start at once, exactly one writes the key and all read it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"{path} is empty")
    return key


PASSWORD_ALPHABET = string.ascii_letters + string.digits


def random_password(length: int = 32) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def new_client_secret() -> str:
    """A secret in Entra's style: 40 characters of letters, digits and ~._- ."""
    alphabet = string.ascii_letters + string.digits + "~._-"
    return "".join(secrets.choice(alphabet) for _ in range(40))


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode()).digest()
    return f"sha256${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt_b64 = rest.partition("$")[0]
    if scheme != "sha256" or not salt_b64:
        return False
    expected = hash_secret(secret, base64.b64decode(salt_b64))
    return hmac.compare_digest(expected.encode(), stored.encode())
