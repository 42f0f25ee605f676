"""The pre-login cookie: a sealed, bounded list of pending sign-ins (state, PKCE verifier, nonce,
return path), so the state is bound to the browser that started the sign-in and abandoned
attempts never pile up (at most MAX_ATTEMPTS, each at most MAX_AGE seconds old)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from .crypto import KeyRing

MAX_ATTEMPTS = 3
MAX_AGE = 600                      # 10 minutes
MAX_RD = 512
AAD = b"poolgate-prelogin-v1"


@dataclass(frozen=True)
class Attempt:
    state: str
    verifier: str
    nonce: str
    rd: str
    created: float

    @staticmethod
    def new(rd: str, now: float) -> "Attempt":
        # 43-char verifier (RFC 7636 minimum), 128-bit state and nonce
        return Attempt(state=secrets.token_urlsafe(16), verifier=secrets.token_urlsafe(32),
                       nonce=secrets.token_urlsafe(16), rd=rd, created=now)


def read(keys: KeyRing, value: str | None, now: float) -> list[Attempt]:
    """The live attempts in a cookie value; anything unreadable counts as none."""
    if not value:
        return []
    plain = keys.open_text(value, AAD)
    if plain is None:
        return []
    try:
        items = json.loads(plain)
        attempts = [Attempt(*i) for i in items]
    except (ValueError, TypeError):
        return []
    return [a for a in attempts if 0 <= now - a.created < MAX_AGE][-MAX_ATTEMPTS:]


def write(keys: KeyRing, attempts: list[Attempt]) -> str:
    items = [[a.state, a.verifier, a.nonce, a.rd, round(a.created, 3)]
             for a in attempts[-MAX_ATTEMPTS:]]
    return keys.seal_text(json.dumps(items, separators=(",", ":")).encode(), AAD)


def take(attempts: list[Attempt], state: str) -> tuple[Attempt | None, list[Attempt]]:
    """The attempt with this state (constant-time compare) and the others."""
    found = None
    rest = []
    for a in attempts:
        if found is None and secrets.compare_digest(a.state.encode(), state.encode()):
            found = a
        else:
            rest.append(a)
    return found, rest


def safe_return_path(rd: str | None) -> str | None:
    """A same-origin path to return to after sign-in, or None when ``rd`` could leave the
    origin (``//host``, ``/\\host``, a scheme, control characters browsers strip)."""
    if rd is None or rd == "":
        return "/"
    if len(rd) > MAX_RD or not rd.startswith("/") or rd.startswith(("//", "/\\")):
        return None
    if not rd.isascii() or "\\" in rd or any(ord(c) < 0x21 or ord(c) == 0x7f for c in rd):
        return None
    if rd.startswith("/_poolgate/"):
        return None                  # never back into the login machinery (no loops)
    return rd
