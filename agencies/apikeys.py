"""The API key format: ``vbk_<prefix>_<secret>``; only the prefix may ever be logged."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "vbk"
_PREFIX_LENGTH = 10  # lower-case letters and digits: ~51 bits, unique in the database
_SECRET_BYTES = 32  # 256 bits, hex-encoded
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_KEY_RE = re.compile(r"^vbk_([a-z0-9]{10})_([0-9a-f]{64})$")


@dataclass(frozen=True)
class RawKey:
    prefix: str
    secret: str

    def __str__(self) -> str:
        return f"{KEY_PREFIX}_{self.prefix}_{self.secret}"


def key_generate() -> RawKey:
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(_PREFIX_LENGTH))
    return RawKey(prefix=prefix, secret=secrets.token_hex(_SECRET_BYTES))


def key_parse(value: str) -> RawKey | None:
    match = _KEY_RE.match(value.strip())
    return RawKey(prefix=match[1], secret=match[2]) if match else None


def secret_hash(secret: str) -> str:
    # A plain hash is enough: the secret is 256 random bits, not a password to stretch.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)
