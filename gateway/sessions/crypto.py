"""Encryption at rest: AES-256-GCM under rotatable keys (the first seals, every key opens)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
NONCE_BYTES = 12
KID_BYTES = 4


def _derive(secret: bytes) -> bytes:
    # the configured secret may be any string of >= 32 bytes: HKDF turns it into a uniform key
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"poolgate sessions v1").derive(secret)


class KeyRing:
    """``seal`` with the first key; ``open`` with whichever key the blob names (rotation)."""

    def __init__(self, secrets_: tuple[bytes, ...]) -> None:
        if not secrets_:
            raise ValueError("at least one key")
        self._keys: list[tuple[bytes, AESGCM]] = []
        for s in secrets_:
            key = _derive(s)
            kid = hashlib.sha256(b"kid" + key).digest()[:KID_BYTES]
            self._keys.append((kid, AESGCM(key)))
        self._by_kid = dict(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._keys)} keys)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        kid, aead = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + kid + nonce + aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None for anything not sealed by one of our keys for this ``aad``."""
        head = 1 + KID_BYTES + NONCE_BYTES
        if len(blob) < head + 16 or blob[:1] != VERSION:
            return None
        aead = self._by_kid.get(blob[1:1 + KID_BYTES])
        if aead is None:
            return None
        try:
            return aead.decrypt(blob[1 + KID_BYTES:head], blob[head:], aad)
        except InvalidTag:
            return None

    def seal_text(self, plaintext: bytes, aad: bytes) -> str:
        return b64e(self.seal(plaintext, aad))

    def open_text(self, text: str, aad: bytes) -> bytes | None:
        raw = b64d(text)
        return None if raw is None else self.open(raw, aad)


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def new_session_id() -> str:
    """256 random bits, base64url (43 characters): the only thing the session cookie holds."""
    return secrets.token_urlsafe(32)


def handle(session_id: str) -> str:
    """The store key for a session id: a dump of the store does not reveal live cookie values."""
    return hashlib.sha256(b"poolgate-session:" + session_id.encode("ascii", "replace")).hexdigest()


def sub_handle(sub: str) -> str:
    return hashlib.sha256(b"poolgate-sub:" + sub.encode("utf-8")).hexdigest()[:40]
