"""Users' passwords: a slow salted hash (scrypt), a constant-time check, Entra's complexity rule, generation.

Client secrets are 40 random characters and get one SHA-256 round (control_plane/crypto.py); people choose
passwords, so theirs cost ~0.1 s and 32 MiB each to try. The parameters travel in each stored hash, so they can be
raised later without invalidating the passwords already stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

SCHEME = "scrypt"
COST, BLOCK_SIZE, PARALLELISM = 2**15, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
MAX_MEMORY = 128 * 1024 * 1024
MIN_LENGTH, MAX_LENGTH = 8, 256
GENERATED_LENGTH = 20
# Letters and digits plus symbols no shell or URL form treats specially.
_SYMBOLS = "-_.~!@#%^*+="

# Entra: at least 8 characters and three of the four kinds.
COMPLEXITY_MESSAGE = ("The specified password does not comply with password complexity requirements: at least "
                      f"{MIN_LENGTH} and at most {MAX_LENGTH} characters, with three of lower-case letters, "
                      "upper-case letters, digits and symbols. Please provide a different password.")


def _derive(password: str, salt: bytes, cost: int, block_size: int, parallelism: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=cost, r=block_size, p=parallelism, maxmem=MAX_MEMORY,
                          dklen=KEY_BYTES)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, COST, BLOCK_SIZE, PARALLELISM)
    return f"{SCHEME}${COST}${BLOCK_SIZE}${PARALLELISM}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches; with no stored hash (an unknown user) it still spends the same time, so the
    answer's timing does not tell whether the user exists."""
    try:
        scheme, cost, block_size, parallelism, salt, key = (stored or _DECOY).split("$")
        derived = _derive(password, base64.b64decode(salt), int(cost), int(block_size), int(parallelism))
        expected = base64.b64decode(key)
    except ValueError:
        return False
    return hmac.compare_digest(derived, expected) and scheme == SCHEME and stored is not None


def complexity_problem(password: str) -> str | None:
    """Entra's rule, or None when the password satisfies it."""
    kinds = sum(any(test(c) for c in password)
                for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum()))
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH or kinds < 3 or "\x00" in password:
        return COMPLEXITY_MESSAGE
    return None


def generate_password() -> str:
    """A random password that meets the complexity rule and starts with a letter (a leading '-' reads as an
    option on command lines)."""
    alphabet = string.ascii_letters + string.digits + _SYMBOLS
    while True:
        password = secrets.choice(string.ascii_letters) + "".join(
            secrets.choice(alphabet) for _ in range(GENERATED_LENGTH - 1))
        if all(any(c in kind for c in password)
               for kind in (string.ascii_lowercase, string.ascii_uppercase, string.digits, _SYMBOLS)):
            return password


# What an unknown user's password is checked against: the same cost, a key nothing derives to.
_DECOY = (f"{SCHEME}${COST}${BLOCK_SIZE}${PARALLELISM}${_b64(secrets.token_bytes(SALT_BYTES))}"
          f"${_b64(secrets.token_bytes(KEY_BYTES))}")
