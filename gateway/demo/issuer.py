"""The demo's dev issuer: Cognito-shaped access tokens signed with a local RSA key, its JWKS,
and a loopback token endpoint.

Tokens carry the real Cognito issuer form for a pool that does not exist
(``https://cognito-idp.us-east-1.amazonaws.com/us-east-1_PoolgateDemo``); demo.yaml points the
source's ``jwks_uri`` at this issuer instead, exactly as one would for an emulator. For local
development only: anyone who can reach the token endpoint gets a token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REGION = "us-east-1"
USER_POOL_ID = "us-east-1_PoolgateDemo"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{USER_POOL_ID}"
CLIENT_ID = "poolgatedemoclient00000000"        # the shape of a Cognito app client id (26 chars)
SCOPE = "openid email orders/read"
TOKEN_LIFETIME = 3600                           # Cognito's default access token lifetime


@dataclass(frozen=True)
class DemoUser:
    username: str
    sub: str
    groups: tuple[str, ...]


USERS = {
    "alice": DemoUser("alice", str(uuid.uuid5(uuid.NAMESPACE_URL, "poolgate-demo:alice")),
                      ("admins",)),
    "bob": DemoUser("bob", str(uuid.uuid5(uuid.NAMESPACE_URL, "poolgate-demo:bob")), ()),
}
# `expired`: alice's identity, issued two hours ago, so even the admin is turned away
TOKEN_NAMES = ("alice", "bob", "expired")


class DemoIssuer:
    """Signs Cognito-shaped access tokens with one RSA-2048 key; ``kid`` = its JWK thumbprint."""

    def __init__(self, private_pem: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = RSAKey.import_key(private_pem)
        self.kid = self._key.thumbprint()
        self._clock = clock

    def jwks(self) -> dict[str, Any]:
        public = dict(self._key.as_dict(private=False))
        public.update(kid=self.kid, alg="RS256", use="sig")
        return {"keys": [public]}

    def claims(self, name: str) -> dict[str, Any]:
        if name not in TOKEN_NAMES:
            raise KeyError(name)
        user = USERS["alice" if name == "expired" else name]
        now = int(self._clock())
        iat = now - 2 * TOKEN_LIFETIME if name == "expired" else now
        claims: dict[str, Any] = {
            "sub": user.sub,
            "iss": ISSUER,
            "version": 2,
            "client_id": CLIENT_ID,
            "origin_jti": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "token_use": "access",
            "scope": SCOPE,
            "auth_time": iat,
            "exp": iat + TOKEN_LIFETIME,
            "iat": iat,
            "jti": str(uuid.uuid4()),
            "username": user.username,
        }
        if user.groups:                 # Cognito omits the claim for a user in no group
            claims["cognito:groups"] = list(user.groups)
        return claims

    def mint(self, name: str) -> str:
        """A fresh signed access token for ``alice``, ``bob`` or ``expired``."""
        return self.sign(self.claims(name))

    def sign(self, claims: dict[str, Any]) -> str:
        # Cognito's header is exactly {kid, alg}: no `typ`
        return jwt.encode({"kid": self.kid, "alg": "RS256"}, claims, self._key,
                          algorithms=["RS256"], default_type=None)


def build_issuer_app(issuer: DemoIssuer, oauth: Any = None) -> Starlette:
    """``GET /.well-known/jwks.json`` and ``GET|POST /token/<alice|bob|expired>``, plus the
    Cognito-shaped authorization server of ``oauth.py`` (``oauth``: its ``OAuthControl``)."""
    from .oauth import build_oauth_routes   # noqa: PLC0415 (imports this module)

    async def jwks(request: Request) -> Response:
        return JSONResponse(issuer.jwks(), headers={"Cache-Control": "public, max-age=300"})

    async def token(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in TOKEN_NAMES:
            return JSONResponse({"error": "unknown_user",
                                 "error_description": f"demo users: {', '.join(TOKEN_NAMES)}"},
                                status_code=404)
        value = issuer.mint(name)
        return JSONResponse({"access_token": value, "token_type": "Bearer",
                             "expires_in": TOKEN_LIFETIME},
                            headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/.well-known/jwks.json", jwks, methods=["GET", "HEAD"]),
        Route("/token/{name}", token, methods=["GET", "POST"]),
        *build_oauth_routes(issuer, oauth),
    ])
