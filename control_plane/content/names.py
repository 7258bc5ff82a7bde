"""The OCI grammars for repository names, tags and digests.

Names and digests end up in database keys and, for digests, in storage keys (`blobs/<alg>/<2 hex>/<hex>/data`):
anything outside the grammar — `..`, `%2e`, backslashes, a leading `/` — is refused here, so no caller has to think
about path traversal.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from control_plane.content.errors import DigestInvalid, NameInvalid, TagInvalid

MAX_REPOSITORY_LENGTH = 256
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# What a tag is made of, whatever its first character or length: a read by such a reference is merely unknown.
TAG_CHARACTERS = re.compile(r"[a-zA-Z0-9._-]{1,256}")
# The image-spec's general digest grammar; only the algorithms below are accepted.
DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def key(self) -> str:
        """Where the verified blob lives in the registry's container."""
        return blob_key(str(self))

    def hasher(self):
        return hashlib.new(self.algorithm)


def repository(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_REPOSITORY_LENGTH or not REPOSITORY.fullmatch(name):
        raise NameInvalid(detail={"name": str(name)[:MAX_REPOSITORY_LENGTH + 1]})
    return name


def tag(value: str) -> str:
    if not isinstance(value, str) or not TAG.fullmatch(value):
        raise TagInvalid("invalid tag", detail={"tag": str(value)[:200]})
    return value


def digest(value: str) -> Digest:
    """A sha256 or sha512 digest with exactly its lowercase hex length; DigestInvalid otherwise."""
    if not isinstance(value, str) or len(value) > 200 or not DIGEST.fullmatch(value):
        raise DigestInvalid("invalid digest", detail={"digest": str(value)[:200]})
    algorithm, encoded = value.split(":", 1)
    if algorithm not in HEX_LENGTHS:
        raise DigestInvalid(f"unsupported digest algorithm {algorithm}", detail={"digest": value})
    if len(encoded) != HEX_LENGTHS[algorithm] or not _HEX.fullmatch(encoded):
        raise DigestInvalid("invalid digest", detail={"digest": value})
    return Digest(algorithm, encoded)


def is_digest(reference: str) -> bool:
    """A manifest reference is a digest when it has a colon (a tag never does)."""
    return ":" in reference


def blob_key(value: str) -> str:
    """`blobs/<algorithm>/<first 2 hex>/<hex>/data` for an already validated digest string."""
    algorithm, encoded = value.split(":", 1)
    return f"blobs/{algorithm}/{encoded[:2]}/{encoded}/data"


def of_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
