"""An upstream that believes nothing but the gateway's credential, as a real service should.

It fetches the gateway's published keys (``<admin>/.well-known/jwks.json``), verifies the
``X-Gateway-Credential`` with joserfc (ES256 only), checks the claims a service relies on, and
answers 200 only when all of that holds; anything else is 401 with the reason. So a 200 through
the gateway proves the credential, not just that the request got through.

Checked on every request: exactly one credential; header ``alg`` ES256, ``typ`` JWT, a ``kid``
the JWKS publishes (public keys only); the signature; ``iss``; ``aud`` = this upstream's id;
numeric ``iat``/``nbf``/``exp`` with ``nbf``, ``iat`` <= now and now < ``exp`` <= ``iat`` + TTL,
``exp`` <= now + TTL; a string ``jti``; ``role`` a non-empty string equal to ``X-Auth-Role``;
``amr`` either ``["unauthenticated"]`` with ``sub`` ``anon:...`` and no ``src_jti``, or
``["authenticated", <issuer>]`` with a ``sub`` equal to ``X-Auth-Sub``; every ``perms``
resource names this upstream and no variable is left in it; ``route.id`` a string.

A test can add expectations for the next requests (``expect``): exact claim values (or a
predicate on the value), and ``exp_at_most`` (the user token's ``exp``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["ES256"]
SKEW = 2


class Rejected(Exception):
    """The credential does not verify; the message says why."""


@dataclass
class Received:
    """One request the upstream accepted, with the credential it verified."""

    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    credential: str
    header: dict[str, Any]
    claims: dict[str, Any]

    def get(self, name: str) -> list[str]:
        n = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == n]


@dataclass
class VerifyingUpstream:
    upstream_id: str
    issuer: str
    ttl_seconds: int
    jwks_url: str | None = None               # the gateway's admin JWKS; set once it runs
    credential_header: str = "x-gateway-credential"
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    expectations: dict[str, Any] = field(default_factory=dict)
    _keys: KeySet | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hits(self) -> int:
        """Every request that reached this upstream, accepted or not."""
        return len(self.received) + len(self.rejected)

    def expect(self, **claims: Any) -> None:
        """Exact claim values (and ``exp_at_most``) the next credentials must carry."""
        self.expectations = dict(claims)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = list(scope["headers"])
        try:
            raw, header, claims = self.verify(headers)
        except Rejected as e:
            self.rejected.append(str(e))
            return await _answer(send, 401, {"error": "credential_rejected", "reason": str(e)})
        self.received.append(Received(scope["method"], scope["path"], headers, raw, header,
                                      claims))
        await _answer(send, 200, {"upstream": self.upstream_id, "role": claims["role"],
                                  "sub": claims["sub"]})

    # ------------------------------------------------------------------ verification

    def verify(self, headers: list[tuple[bytes, bytes]]
               ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        values = _all(headers, self.credential_header)
        if len(values) != 1:
            raise Rejected(f"{len(values)} credential headers")
        raw = values[0]
        try:
            header = json.loads(_b64decode(raw.split(".")[0]))
        except ValueError as e:
            raise Rejected(f"unreadable credential header: {e}") from None
        if header.get("alg") not in ALGORITHMS or header.get("typ") != "JWT":
            raise Rejected(f"unexpected header {header}")
        keys = self._key_set(header.get("kid"))
        try:
            token = jwt.decode(raw, keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as e:
            raise Rejected(f"signature: {type(e).__name__}: {e}") from None
        claims = dict(token.claims)
        self._check_claims(claims, headers)
        return raw, header, claims

    def _key_set(self, kid: Any) -> KeySet:
        if not isinstance(kid, str):
            raise Rejected("no kid")
        with self._lock:
            if self._keys is None or not any(k.kid == kid for k in self._keys.keys):
                if self.jwks_url is None:
                    raise Rejected("no JWKS URL configured")
                data = httpx.get(self.jwks_url, timeout=3, trust_env=False).json()
                for k in data["keys"]:
                    if "d" in k or k.get("kty") != "EC":
                        raise Rejected(f"the JWKS publishes a private or non-EC key "
                                       f"{k.get('kid')}")
                self._keys = KeySet.import_key_set(data)
            if not any(k.kid == kid for k in self._keys.keys):
                raise Rejected(f"kid {kid!r} is not published")
            return self._keys

    def _check_claims(self, c: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
        now = time.time()

        def need(ok: bool, what: str) -> None:
            if not ok:
                raise Rejected(f"{what} (claims {c})")

        need(c.get("iss") == self.issuer, "iss")
        need(c.get("aud") == self.upstream_id, "aud is not this upstream")
        for t in ("iat", "nbf", "exp"):
            v = c.get(t)
            need(isinstance(v, int) and not isinstance(v, bool), f"{t} not an integer")
        need(c["nbf"] <= now + SKEW and c["iat"] <= now + SKEW, "issued in the future")
        need(now < c["exp"], "expired")
        need(c["exp"] <= c["iat"] + self.ttl_seconds, "exp beyond iat + ttl")
        need(c["exp"] <= now + self.ttl_seconds + SKEW, "exp beyond now + ttl")
        need(isinstance(c.get("jti"), str) and c["jti"] != "", "jti")
        role = c.get("role")
        need(isinstance(role, str) and role != "", "role")
        need(_all(headers, "x-auth-role") == [role], "X-Auth-Role differs from the credential")
        sub, amr = c.get("sub"), c.get("amr")
        need(isinstance(sub, str) and sub != "", "sub")
        if amr == ["unauthenticated"]:
            need(sub.startswith("anon:") and len(sub) > len("anon:") + 8, "guest sub")
            need("src_jti" not in c, "a guest credential names a source token")
            need(_all(headers, "x-auth-sub") == [], "X-Auth-Sub for a guest")
        else:
            need(isinstance(amr, list) and len(amr) == 2 and amr[0] == "authenticated"
                 and isinstance(amr[1], str) and amr[1].startswith("https://"), "amr")
            need(_all(headers, "x-auth-sub") == [sub], "X-Auth-Sub differs from the credential")
        perms = c.get("perms")
        need(isinstance(perms, list), "perms")
        for p in perms:
            need(isinstance(p, dict) and isinstance(p.get("resource"), list), "perms entry")
            for r in p["resource"]:
                need(isinstance(r, str) and r.startswith(self.upstream_id + ":"),
                     f"perms resource {r!r} for another upstream")
                need("${" not in r, f"perms resource {r!r} has a variable left")
        route = c.get("route")
        need(isinstance(route, dict) and isinstance(route.get("id"), str), "route")
        for name, want in self.expectations.items():
            if name == "exp_at_most":
                need(c["exp"] <= want, f"exp {c['exp']} after the user token's exp {want}")
            elif callable(want):
                need(want(c.get(name)), f"{name} fails the test's check")
            else:
                need(c.get(name, "<absent>") == want, f"{name}: want {want!r}")


def _all(headers: list[tuple[bytes, bytes]], name: str) -> list[str]:
    n = name.encode()
    return [v.decode("latin-1") for k, v in headers if k.lower() == n]


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
