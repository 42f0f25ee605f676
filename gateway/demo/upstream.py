"""The demo's echo upstream: answers JSON showing what the gateway forwarded.

It does what a real service behind poolgate should do with the downstream credential: verify it
against the gateway's admin ``/.well-known/jwks.json`` (fetched over HTTP, refetched on an
unknown ``kid``), check ``iss``, ``aud`` (this upstream's id) and ``exp``, and only then read the
claims. The answer shows the method, path, query, headers and the verified claims.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import Response

CREDENTIAL_ALGS = ["ES256", "EdDSA"]
_REFETCH_COOLDOWN = 1.0


class CredentialVerifier:
    """Verifies gateway credentials with keys from the admin JWKS URL."""

    def __init__(self, jwks_url: str, *, issuer: str, audience: str) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _key_set(self, kid: str | None) -> KeySet:
        async with self._lock:
            known = self._keys is not None and any(
                k.kid == kid for k in self._keys.keys)
            if not known and time.monotonic() - self._fetched_at >= _REFETCH_COOLDOWN:
                async with httpx.AsyncClient(timeout=3, trust_env=False) as client:
                    resp = await client.get(self.jwks_url)
                    resp.raise_for_status()
                self._keys = KeySet.import_key_set(resp.json())
                self._fetched_at = time.monotonic()
            if self._keys is None:
                raise LookupError("no credential keys loaded")
            return self._keys

    async def verify(self, value: str) -> dict[str, Any]:
        """``{"verified": True, "header": ..., "claims": ...}`` or ``{"verified": False, ...}``."""
        try:
            header = json.loads(_b64decode(value.split(".")[0]))
            keys = await self._key_set(header.get("kid"))
            token = jwt.decode(value, keys, algorithms=CREDENTIAL_ALGS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, LookupError, ValueError, httpx.HTTPError) as e:
            return {"verified": False, "error": f"{type(e).__name__}: {e}"}
        return {"verified": True, "verified_with": self.jwks_url,
                "header": dict(token.header), "claims": dict(token.claims)}


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class EchoApp:
    """A catch-all ASGI app: every request is answered with a JSON picture of itself."""

    def __init__(self, verifier: CredentialVerifier, *, upstream_id: str,
                 credential_header: str) -> None:
        self.verifier = verifier
        self.upstream_id = upstream_id
        self.credential_header = credential_header.lower()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        headers: dict[str, Any] = {}
        for k, v in request.headers.raw:
            name, value = k.decode("latin-1"), v.decode("latin-1")
            if name in headers:          # keep repeated headers visible
                prev = headers[name]
                headers[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                headers[name] = value
        credential_value = request.headers.get(self.credential_header)
        credential = (await self.verifier.verify(credential_value)
                      if credential_value is not None else None)
        answer = {
            "upstream": self.upstream_id,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": headers,
            "body_bytes": len(body),
            "credential": credential,
        }
        payload = json.dumps(answer, indent=2).encode("utf-8") + b"\n"
        await Response(payload, media_type="application/json")(scope, receive, send)
