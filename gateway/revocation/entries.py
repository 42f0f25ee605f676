"""Revocation entries: the value object, its TTL, the store protocol and the Redis key format.

Redis key format (schema v1; other systems may write it directly, e.g. a Lambda on a Cognito
event). ``P`` is ``revocation.redis.key_prefix`` (default ``poolgate:``)::

    P + "jti:"  + <jti>         -> "1"                 revokes the one token with that jti
    P + "ojti:" + <origin_jti>  -> "1"                 revokes a refresh-token family (RevokeToken)
    P + "sub:"  + <sub>         -> "<not_before>"      revokes that user's tokens with iat < not_before
                                                       (epoch seconds, decimal, e.g. "1764150000";
                                                       tokens without iat are revoked too)

* Every key is written WITH a TTL (``SET key value EX ttl``): ttl = (the token's ``exp``, or
  max(``not_before``, now) + L for a ``sub`` entry, or now + L) + clock skew - now, where L is
  the larger of ``revocation.max_token_lifetime_seconds`` and, for every identity source,
  its ``max_token_lifetime_seconds`` + 2 x its ``clock_skew_seconds`` (a token accepted now
  may carry an ``iat`` up to one skew ahead and an ``exp`` up to lifetime + skew after it,
  and verifies until ``exp`` + skew: the entry must outlive it). A key without a TTL is a bug.
* The value of a ``jti`` / ``ojti`` key is ignored (presence revokes). A ``sub`` value that is
  not a decimal number revokes ALL of that user's tokens (fail closed).
* After each write (or delete), ``PUBLISH P + "revocations" "<kind>:<value>"`` with ``kind`` one
  of ``jti``, ``ojti``, ``sub`` (the key without its prefix, e.g. ``jti:5f3c...``). Gateways keep a
  near-cache that this message invalidates; without it a write is still seen once the cached
  answer ages out (at most 30 s), so always publish.

Example (redis-cli)::

    SET poolgate:sub:8b1d-... 1764150000 EX 86460
    PUBLISH poolgate:revocations sub:8b1d-...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from ..config import IdentitySource
from ..principal import VerifiedToken

KINDS = ("jti", "origin_jti", "sub")
KEY_SEGMENT = {"jti": "jti", "origin_jti": "ojti", "sub": "sub"}   # kind -> Redis key segment
KIND_OF_SEGMENT = {v: k for k, v in KEY_SEGMENT.items()}
CHANNEL = "revocations"
MAX_VALUE_CHARS = 512
MAX_FUTURE_SECONDS = 10 * 365 * 86400     # an exp further ahead than this is refused


class StoreError(Exception):
    """The revocation store could not answer (unreachable, timed out, full)."""


class EntryError(ValueError):
    """An entry that cannot be written; ``reason`` is a stable code for the API."""

    def __init__(self, reason: str, description: str) -> None:
        self.reason = reason
        self.description = description
        super().__init__(description)


@dataclass(frozen=True)
class Entry:
    """One deny-list entry. ``ttl`` is in whole seconds from when it was made (or read)."""

    kind: str                   # jti | origin_jti | sub
    value: str
    exp: float | None
    not_before: float | None    # sub only
    ttl: int

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, self.kind: self.value, "ttl": self.ttl}
        if self.exp is not None:
            out["exp"] = _num(self.exp)
        if self.not_before is not None:
            out["not_before"] = _num(self.not_before)
        return out


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def check_value(kind: str, value: Any) -> str:
    if kind not in KINDS:
        raise EntryError("bad_kind", f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(value, str) or not value:
        raise EntryError("bad_value", f"{kind} must be a non-empty string")
    if len(value) > MAX_VALUE_CHARS:
        raise EntryError("bad_value", f"{kind} is longer than {MAX_VALUE_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise EntryError("bad_value", f"{kind} contains control characters")
    return value


def entry_lifetime(revocation_lifetime: float, sources: Iterable[IdentitySource]) -> float:
    """The ``max_token_lifetime`` for entries written without ``exp`` (see the key format).

    A token that source ``s`` accepts at time t has ``iat <= t + skew`` and ``exp <= iat +
    lifetime + skew`` (or ``exp <= t + lifetime + skew`` without ``iat``) and verifies until
    ``exp + skew``; ``make_entry`` adds one skew, so lifetime + 2 x skew here.
    """
    return max([float(revocation_lifetime)] + [
        s.max_token_lifetime_seconds + 2 * s.clock_skew_seconds for s in sources])


def make_entry(kind: str, value: str, *, exp: float | None = None,
               not_before: float | None = None, now: float, max_token_lifetime: float,
               skew: float, from_token: bool = False) -> Entry:
    """Build an entry whose TTL covers the longest-lived token it can match, plus skew.

    TTL = (exp, or max(not_before, now) + max_token_lifetime for sub, or now +
    max_token_lifetime) + skew - now, rounded up (``max_token_lifetime`` from
    ``entry_lifetime``). A sub entry also revokes tokens without ``iat``, which may verify
    until now + lifetime: hence max(not_before, now). An entry whose TTL would be <= 0 is
    refused (``already_expired``): every token it could match is already past exp + skew, so
    the verifier rejects it anyway, and a zero TTL would mean a key without one.
    ``from_token``: ``exp`` / ``not_before`` come from a token's own claims (``exp``; ``iat``
    + 1): ``exp`` is never refused as too far ahead (the verifier bounds it, and revoking
    that token must always be possible), and ``not_before`` may be one second past the skew
    (the verifier accepts ``iat`` up to now + skew).
    """
    check_value(kind, value)
    for name, v in (("exp", exp), ("not_before", not_before)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v < 0):
            raise EntryError("bad_" + name, f"{name} must be a finite number of epoch seconds")
    if not_before is not None and kind != "sub":
        raise EntryError("bad_not_before", "not_before applies to sub entries only")
    if kind == "sub":
        if not_before is None:
            not_before = now
        if not_before > now + skew + (1 if from_token else 0):
            raise EntryError("bad_not_before", "not_before is in the future (it would lock "
                                               "the user out until then)")
    # a token the verifier accepts has exp <= now + max_token_lifetime (see entry_lifetime)
    if (exp is not None and not from_token
            and exp > now + max(MAX_FUTURE_SECONDS, max_token_lifetime + skew)):
        raise EntryError("bad_exp", "exp is more than 10 years ahead")
    if exp is not None:
        until = float(exp)
    elif not_before is not None:
        until = max(not_before, now) + max_token_lifetime
    else:
        until = now + max_token_lifetime
    ttl = math.ceil(until + skew - now)
    if ttl <= 0:
        raise EntryError("already_expired", "nothing to revoke: every token this entry could "
                                            "match is already past exp + clock skew")
    return Entry(kind=kind, value=value, exp=None if exp is None else float(exp),
                 not_before=None if not_before is None else float(not_before), ttl=ttl)


def sub_revokes(not_before: float | None, token: VerifiedToken) -> bool:
    """A sub entry revokes tokens issued before not_before, and tokens without iat."""
    if not_before is None:
        return True
    iat = token.iat
    return iat is None or iat < not_before


def token_keys(token: VerifiedToken) -> list[tuple[str, str]]:
    """The (kind, value) pairs a token can be revoked by, in lookup order."""
    keys: list[tuple[str, str]] = []
    for kind, value in (("jti", token.jti), ("origin_jti", token.origin_jti), ("sub", token.sub)):
        if value:
            keys.append((kind, value))
    return keys


def redis_key(prefix: str, kind: str, value: str) -> str:
    return f"{prefix}{KEY_SEGMENT[kind]}:{value}"


def redis_value(entry: Entry) -> str:
    if entry.kind == "sub":
        assert entry.not_before is not None
        return format_number(entry.not_before)
    return "1"


def format_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def parse_not_before(raw: str) -> float:
    """A sub value as written by anyone; unparseable -> +inf (revokes every token: fail closed)."""
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return math.inf
    return v if math.isfinite(v) else math.inf


def message(kind: str, value: str) -> str:
    return f"{KEY_SEGMENT[kind]}:{value}"


def parse_message(data: str, prefix: str) -> tuple[str, str] | None:
    """``ojti:abc`` (or the whole key) -> ("origin_jti", "abc"); None if not understood."""
    if prefix and data.startswith(prefix):
        data = data[len(prefix):]
    seg, sep, value = data.partition(":")
    if not sep or seg not in KIND_OF_SEGMENT or not value:
        return None
    return KIND_OF_SEGMENT[seg], value


class RevocationStore(Protocol):
    """Where revocation entries live; see ``gateway.revocation`` for the contract."""

    name: str
    # moves whenever an earlier ``revoked`` answer may have changed; None: do not reuse answers
    generation: int | None

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def revoked(self, token: VerifiedToken) -> str | None: ...
    async def add(self, entry: Entry) -> Entry: ...
    async def get(self, kind: str, value: str) -> Entry | None: ...
    async def delete(self, kind: str, value: str) -> bool: ...
    async def list(self, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]: ...
    def healthy(self) -> bool: ...
