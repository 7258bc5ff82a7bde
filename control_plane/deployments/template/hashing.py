"""`uniqueString` and `guid`, bit-for-bit as ARM computes them.

Templates name role assignments and registries with these, so a re-deployment must produce the same
names as Azure would; the algorithms and their test vectors are in docs/iac-deployments.md §3.4-3.5.
"""

from __future__ import annotations

import uuid

_MASK32 = 0xFFFFFFFF
_C1 = 0x239B961B
_C2 = 0xAB0E9789
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_GUID_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK32


def _fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def _murmur64(data: bytes) -> int:
    """ARM's MurmurHash3 x86 variant producing 64 bits (two 32-bit lanes)."""
    h1 = h2 = 0
    n = len(data)
    blocks = n - n % 8
    for i in range(0, blocks, 8):
        k1 = int.from_bytes(data[i:i + 4], "little")
        k2 = int.from_bytes(data[i + 4:i + 8], "little")
        k1 = (_rotl((k1 * _C1) & _MASK32, 15) * _C2) & _MASK32
        h1 ^= k1
        h1 = (((_rotl(h1, 19) + h2) & _MASK32) * 5 + 0x561CCD1B) & _MASK32
        k2 = (_rotl((k2 * _C2) & _MASK32, 17) * _C1) & _MASK32
        h2 ^= k2
        h2 = (((_rotl(h2, 13) + h1) & _MASK32) * 5 + 0x0BCAA747) & _MASK32
    tail = data[blocks:]
    if tail:
        k1 = int.from_bytes(tail[:4], "little")
        h1 ^= (_rotl((k1 * _C1) & _MASK32, 15) * _C2) & _MASK32
        if len(tail) > 4:
            k2 = int.from_bytes(tail[4:], "little")
            h2 ^= (_rotl((k2 * _C2) & _MASK32, 17) * _C1) & _MASK32
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & _MASK32
    h2 = (h2 + h1) & _MASK32
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _MASK32
    h2 = (h2 + h1) & _MASK32
    return (h2 << 32) | h1


def unique_string(*args: str) -> str:
    """13 base-32 characters derived from the arguments joined with '-'."""
    x = _murmur64("-".join(args).encode("utf-8"))
    out = []
    for _ in range(13):
        out.append(_ALPHABET[x >> 59])
        x = (x << 5) & 0xFFFFFFFFFFFFFFFF
    return "".join(out)


def guid(*args: str) -> str:
    """A UUIDv5 in ARM's namespace over the arguments joined with '-'."""
    return str(uuid.uuid5(_GUID_NAMESPACE, "-".join(args)))
