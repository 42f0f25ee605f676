"""A Cognito-shaped local authorization server for the demo and the tests: `/oauth2/authorize`
(a tiny sign-in form: alice or bob), `/oauth2/token` (authorization_code with PKCE S256,
refresh_token with optional rotation), `/oauth2/revoke`, `/logout` and the discovery document.
Tokens are signed with the demo issuer's key. Loopback development only: no passwords."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .issuer import CLIENT_ID, ISSUER, USERS, DemoIssuer

FORM_FIELDS = ("response_type", "client_id", "redirect_uri", "state", "nonce", "scope",
               "code_challenge", "code_challenge_method")


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded body (no python-multipart needed); the first value of a name wins."""
    out: dict[str, str] = {}
    for k, v in parse_qsl((await request.body()).decode("utf-8", "replace"),
                          keep_blank_values=True):
        out.setdefault(k, v)
    return out


@dataclass
class OAuthControl:
    """What tests steer and observe."""

    access_lifetime: int = 3600
    rotate_refresh: bool = False
    token_delay: float = 0.0             # seconds the token endpoint waits (widens races)
    token_status: int | None = None      # answer the token endpoint with this status (outage)
    refresh_error: str | None = None     # refuse refresh_token grants with this OAuth error
    wrong_nonce: bool = False            # put a different nonce in the id token
    id_token_padding: int = 0            # bytes of filler claim in id tokens (big-token tests)
    token_calls: list[str] = field(default_factory=list)   # grant types, in order
    revoked: list[str] = field(default_factory=list)
    logouts: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""                   # set by the test once the port is known


@dataclass
class _Grant:
    user: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    scope: str
    created: float


@dataclass
class _Family:
    user: str
    origin_jti: str
    scope: str
    revoked: bool = False


def build_oauth_routes(issuer: DemoIssuer, control: OAuthControl | None = None) -> list[Route]:
    ctl = control or OAuthControl()
    codes: dict[str, _Grant] = {}
    used_codes: set[str] = set()
    refresh: dict[str, _Family] = {}

    def tokens(user: str, family: _Family, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        base = issuer.claims(user)
        base.update(iat=now, auth_time=now, exp=now + ctl.access_lifetime,
                    jti=str(uuid.uuid4()), origin_jti=family.origin_jti, scope=family.scope)
        idc: dict[str, Any] = {
            "sub": base["sub"], "iss": ISSUER, "aud": CLIENT_ID, "token_use": "id",
            "auth_time": now, "iat": now, "exp": now + ctl.access_lifetime,
            "jti": str(uuid.uuid4()), "origin_jti": family.origin_jti,
            "cognito:username": user, "email": f"{user}@example.com"}
        if "cognito:groups" in base:
            idc["cognito:groups"] = base["cognito:groups"]
        if nonce is not None:
            idc["nonce"] = "not-the-nonce" if ctl.wrong_nonce else nonce
        if ctl.id_token_padding:
            idc["custom:padding"] = "x" * ctl.id_token_padding
        return {"access_token": issuer.sign(base), "id_token": issuer.sign(idc),
                "token_type": "Bearer", "expires_in": ctl.access_lifetime}

    def oauth_error(error: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": error}, status_code=status,
                            headers={"Cache-Control": "no-store"})

    async def authorize(request: Request) -> Response:
        q = dict(request.query_params) if request.method == "GET" else await _form(request)
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return HTMLResponse("unknown client or response_type", status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return HTMLResponse("PKCE S256 required", status_code=400)
        user = q.get("username")
        if request.method == "GET" or user not in USERS:
            hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(q.get(k, ""))}">'
                             for k in FORM_FIELDS if k in q)
            buttons = "".join(f'<button name="username" value="{u}" id="signin-{u}">Sign in as '
                              f"{u}</button> " for u in USERS)
            return HTMLResponse(f"<!doctype html><title>poolgate demo sign-in</title>"
                                f'<form method="post" action="/oauth2/authorize">{hidden}'
                                f"{buttons}</form>")
        code = secrets.token_urlsafe(24)
        codes[code] = _Grant(user, CLIENT_ID, q.get("redirect_uri", ""), q["code_challenge"],
                             q.get("nonce"), q.get("scope", "openid"), time.time())
        sep = "&" if "?" in q.get("redirect_uri", "") else "?"
        return RedirectResponse(f"{q.get('redirect_uri', '')}{sep}"
                                f"{urlencode({'code': code, 'state': q.get('state', '')})}",
                                status_code=302)

    async def token(request: Request) -> Response:
        form = await _form(request)
        grant = form.get("grant_type", "")
        ctl.token_calls.append(grant)
        if ctl.token_delay:
            await asyncio.sleep(ctl.token_delay)
        if ctl.token_status is not None:
            return Response("provider down", status_code=ctl.token_status)
        if form.get("client_id", CLIENT_ID) != CLIENT_ID:
            return oauth_error("invalid_client", 401)
        if grant == "authorization_code":
            code = form.get("code", "")
            g = codes.pop(code, None)
            if g is None or code in used_codes:
                return oauth_error("invalid_grant")
            used_codes.add(code)
            if time.time() - g.created > 300 or form.get("redirect_uri") != g.redirect_uri:
                return oauth_error("invalid_grant")
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if not secrets.compare_digest(digest.rstrip(b"=").decode(), g.challenge):
                return oauth_error("invalid_grant")
            fam = _Family(g.user, str(uuid.uuid4()), g.scope)
            rt = secrets.token_urlsafe(48)
            refresh[rt] = fam
            body = tokens(g.user, fam, g.nonce)
            body["refresh_token"] = rt
            return JSONResponse(body, headers={"Cache-Control": "no-store"})
        if grant == "refresh_token":
            rt = form.get("refresh_token", "")
            fam = refresh.get(rt)
            if ctl.refresh_error:
                return oauth_error(ctl.refresh_error)
            if fam is None or fam.revoked:
                return oauth_error("invalid_grant")
            body = tokens(fam.user, fam, None)
            if ctl.rotate_refresh:
                del refresh[rt]
                new = secrets.token_urlsafe(48)
                refresh[new] = fam
                body["refresh_token"] = new
            return JSONResponse(body, headers={"Cache-Control": "no-store"})
        return oauth_error("unsupported_grant_type")

    async def revoke(request: Request) -> Response:
        form = await _form(request)
        fam = refresh.get(form.get("token", ""))
        if fam is not None:
            fam.revoked = True
            ctl.revoked.append(fam.origin_jti)
        return Response(status_code=200)

    async def logout(request: Request) -> Response:
        q = dict(request.query_params)
        ctl.logouts.append(q)
        if q.get("client_id") != CLIENT_ID or not q.get("logout_uri"):
            return HTMLResponse("client_id and logout_uri are required", status_code=400)
        return RedirectResponse(q["logout_uri"], status_code=302)

    async def discovery(request: Request) -> Response:
        base = ctl.base_url or str(request.base_url).rstrip("/")
        return JSONResponse({
            "issuer": ISSUER, "authorization_endpoint": f"{base}/oauth2/authorize",
            "token_endpoint": f"{base}/oauth2/token", "revocation_endpoint": f"{base}/oauth2/revoke",
            "end_session_endpoint": f"{base}/logout", "jwks_uri": f"{base}/.well-known/jwks.json",
            "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"]})

    return [Route("/oauth2/authorize", authorize, methods=["GET", "POST"]),
            Route("/oauth2/token", token, methods=["POST"]),
            Route("/oauth2/revoke", revoke, methods=["POST"]),
            Route("/logout", logout, methods=["GET"]),
            Route("/.well-known/openid-configuration", discovery, methods=["GET"])]
