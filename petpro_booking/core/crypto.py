"""Keys for personal data: field encryption (MultiFernet), keyed-hash lookup columns and the
pseudonymous owner key of analytics messages. Every key comes from the environment; lists are
newest first, so a key is rotated by putting a new one in front (docs/security.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = [
    "InvalidToken",
    "decrypt",
    "encrypt",
    "lookup_hash",
    "owner_key",
    "reencrypt",
    "reset_keys",
]

# Ciphertexts start with this (the Fernet version byte 0x80, base64): lets the re-encryption
# command and the migration tell an encrypted value from a plaintext one.
TOKEN_PREFIX = "gAAAAA"  # noqa: S105  (a format marker, not a secret)


def derived_key(purpose: str) -> str:
    """A development key derived from SECRET_KEY; production sets real keys (settings)."""
    digest = hashlib.sha256(f"{purpose}:{settings.SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


@cache
def _fernet() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS or [derived_key("field-encryption")]
    return MultiFernet([Fernet(key.encode()) for key in keys])


@cache
def _lookup_key() -> bytes:
    return (settings.PERSONAL_DATA_LOOKUP_KEY or derived_key("lookup")).encode()


@cache
def _pseudonym_keys() -> tuple[bytes, ...]:
    keys = settings.ANALYTICS_PSEUDONYM_KEYS or [derived_key("analytics-pseudonym")]
    return tuple(key.encode() for key in keys)


def pseudonym_key_ids() -> tuple[str, ...]:
    """The id of each configured pseudonym key, newest first: what `owner_key(...,
    key_index=i)` writes before its dot for key i."""
    return tuple(hashlib.sha256(key).hexdigest()[:8] for key in _pseudonym_keys())


def reset_keys() -> None:
    """Forget the keys read from settings (tests that change them; a rotation in-process)."""
    _fernet.cache_clear()
    _lookup_key.cache_clear()
    _pseudonym_keys.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Plaintext of a token made under any configured key; InvalidToken otherwise."""
    return _fernet().decrypt(token.encode()).decode()


def reencrypt(token: str) -> str:
    """The same plaintext under the newest key (MultiFernet.rotate)."""
    return _fernet().rotate(token.encode()).decode()


def lookup_hash(value: str) -> str:
    """Keyed hash of a value for equality search over an encrypted column (case and outer
    spaces ignored). Empty in, empty out."""
    normalised = value.strip().casefold()
    if not normalised:
        return ""
    return hmac.new(_lookup_key(), normalised.encode(), hashlib.sha256).hexdigest()


def owner_key(user_id: str, *, key_index: int = 0) -> str:
    """The pseudonymous owner key of analytics messages: `<key id>.<HMAC-SHA256 of the user id,
    first 32 hex>`. The key id (8 hex of the key's own hash) tells consumers which key made it,
    so a rotation is visible; the raw user id cannot be read back without the key."""
    key = _pseudonym_keys()[key_index]
    key_id = hashlib.sha256(key).hexdigest()[:8]
    mac = hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()[:32]
    return f"{key_id}.{mac}"
