"""Secrets at rest: encryption of stored secrets and hashing of client secrets.

Admin passwords and token-signing keys must be readable by the service, so they are encrypted (Fernet, key from
CONTROL_PLANE_ENCRYPTION_KEY or generated once into the data folder; `control-plane keys rotate-encryption` moves
the generated one to a keyring and makes a new one). Client secrets only need checking, so they
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
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_FILE_NAME = "encryption.key"
# Earlier generated keys, newest first, one a line: they only decrypt (what was stored before a rotation).
KEYRING_FILE_NAME = "encryption.keyring"


class Cipher:
    """Encrypts with the first key; decrypts with any, so keys can be rotated.

    With `key_files` (the generated key, not CONTROL_PLANE_ENCRYPTION_KEY) it follows a rotation made by another
    process: it re-reads the files when the key file changed before encrypting, and before giving up on a value.
    """

    def __init__(self, keys: list[bytes], key_files: KeyFiles | None = None):
        self._key_files = key_files
        self._lock = threading.Lock()
        self._use(keys, key_files.stamp() if key_files else None)

    def _use(self, keys: list[bytes], stamp: tuple | None) -> None:
        self._keys = list(keys)
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._newest = Fernet(keys[0])
        self._stamp = stamp

    def _follow_key_files(self) -> bool:
        """True when the key files changed and were read again."""
        if self._key_files is None or self._key_files.stamp() == self._stamp:
            return False
        with self._lock:
            stamp = self._key_files.stamp()
            if stamp != self._stamp:
                self._use(self._key_files.load(), stamp)
        return True

    def encrypt(self, plaintext: str) -> str:
        self._follow_key_files()
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            if self._follow_key_files():
                return self.decrypt(token)
            raise ValueError("stored secret cannot be decrypted with the configured encryption key") from None

    def reencrypt(self, token: str) -> str:
        """The same secret, encrypted again with the newest key (any key may have encrypted it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with the configured encryption key") from None

    def newest_key_decrypts(self, token: str) -> bool:
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    @property
    def key_count(self) -> int:
        return len(self._keys)


def load_cipher(configured_key: str | None, data_dir: Path) -> Cipher:
    """The configured key(s) (comma-separated, newest first), else the data folder's key (made on first use) and
    its keyring."""
    if configured_key:
        return Cipher([k.strip().encode() for k in configured_key.split(",") if k.strip()])
    files = KeyFiles(data_dir)
    return Cipher(files.load(), files)


class KeyFiles:
    """The generated key (`encryption.key`: encrypts) and the keyring of earlier ones (`encryption.keyring`)."""

    def __init__(self, data_dir: Path):
        self.key_file = data_dir / KEY_FILE_NAME
        self.keyring_file = data_dir / KEYRING_FILE_NAME

    def load(self) -> list[bytes]:
        keyring = self.keyring_file.read_bytes().split() if self.keyring_file.exists() else []
        return [ensure_key_file(self.key_file), *keyring]

    def stamp(self) -> tuple | None:
        """Changes whenever the key file is replaced (a rotation writes a new file and renames it into place)."""
        try:
            stat = self.key_file.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def rotate(self) -> list[bytes]:
        """A new key encrypts from now on; the current one joins the keyring (first, so nothing is ever lost: the
        keyring is written before the key file is replaced). Returns every key, newest first."""
        import fcntl

        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.key_file.parent / ".encryption.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.load()
            _write_atomically(self.keyring_file, b"\n".join(current) + b"\n")
            _write_atomically(self.key_file, Fernet.generate_key())
        return self.load()


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


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
    # The first character is alphanumeric: `az login -p -abc…` would read a leading '-' as an option.
    first = secrets.choice(string.ascii_letters + string.digits)
    return first + "".join(secrets.choice(alphabet) for _ in range(39))


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
