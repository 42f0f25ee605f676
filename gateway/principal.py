"""Value objects a request accumulates as trust grows: UnverifiedToken -> VerifiedToken -> Principal."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from starlette.authentication import BaseUser


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature, issuer, times and audience all checked out."""

    raw: str = field(repr=False)
    source_id: str
    issuer: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    token_hash: bytes = field(repr=False)   # sha256 of the raw token: cache key, never logged

    @property
    def sub(self) -> str | None:
        v = self.claims.get("sub")
        return v if isinstance(v, str) else None

    @property
    def jti(self) -> str | None:
        v = self.claims.get("jti")
        return v if isinstance(v, str) else None

    @property
    def origin_jti(self) -> str | None:
        v = self.claims.get("origin_jti")
        return v if isinstance(v, str) else None

    @property
    def exp(self) -> float:
        return float(self.claims["exp"])

    @property
    def iat(self) -> float | None:
        v = self.claims.get("iat")
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    @property
    def token_use(self) -> str | None:
        v = self.claims.get("token_use")
        return v if isinstance(v, str) else None

    @property
    def scopes(self) -> tuple[str, ...]:
        v = self.claims.get("scope")
        if isinstance(v, str):
            return tuple(s for s in v.split(" ") if s)
        return ()


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class RequestFacts(NamedTuple):
    """What policy may know about the request (never the body).

    Built for every request: a named tuple is immutable like a frozen dataclass and costs a
    fraction of its ``__init__`` (which sets each field through ``object.__setattr__``)."""

    method: str                         # upper-case
    path: str                           # normalised
    source_ip: str
    secure: bool
    now: float
    headers: Mapping[str, str] = _NO_HEADERS    # canonical name -> first value (read ones)
    ambiguous: frozenset[str] = frozenset()     # canonical names sent more than once
    chain: tuple[str, ...] = ()                 # X-Forwarded-For hops forwarded before the peer

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.source_ip)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of role mapping + policy, with its trace."""

    id: str
    allowed: bool
    role: str | None
    reason: str                         # stable code: allowed, explicit_deny, no_allow, ...
    rule: str | None = None             # the mapping rule that chose the role (path or name)
    statements: tuple[str, ...] = ()    # sids (or positions) of the deciding statements
    detail: str = ""                    # one human sentence
    permissions: tuple[Mapping[str, Any], ...] = ()   # role statements for this upstream, substituted


class Principal(BaseUser):
    """The caller as the app behind the gateway sees it (a Starlette ``BaseUser``)."""

    __slots__ = ("sub", "role", "claims", "source_id", "tags", "token", "decision", "scopes")

    def __init__(self, *, sub: str | None, role: str | None, claims: Mapping[str, Any],
                 source_id: str | None, tags: Mapping[str, str],
                 token: VerifiedToken | None, decision: Decision | None = None) -> None:
        self.sub = sub
        self.role = role
        self.claims = claims
        self.source_id = source_id
        self.tags = tags
        self.token = token
        self.decision = decision
        self.scopes = token.scopes if token is not None else ()

    @property
    def is_authenticated(self) -> bool:
        return self.token is not None

    @property
    def display_name(self) -> str:
        for key in ("username", "cognito:username", "email"):
            v = self.claims.get(key)
            if isinstance(v, str):
                return v
        return self.sub or ""

    @property
    def identity(self) -> str:
        return self.sub or ""

    def __repr__(self) -> str:
        return f"Principal(sub={self.sub!r}, role={self.role!r}, source={self.source_id!r})"
