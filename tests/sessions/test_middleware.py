"""Middleware mode: a Starlette app behind GatewayMiddleware gets the same browser sessions
(`/_poolgate/` mounted, ``request.user`` from the session, our cookies never reach the app)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from e2e.servers import ThreadServer, free_port
from gateway import GatewayMiddleware
from gateway.config import parse_config

from .conftest import browser, session_config, sign_in


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.sub, "role": request.user.role,
                         "cookie": request.headers.get("cookie", ""),
                         "authorization": request.headers.get("authorization")})


def test_middleware_sessions(idp):
    ctl, isrv = idp
    port = free_port()
    raw = session_config(isrv.url, "http://127.0.0.1:9", f"http://127.0.0.1:{port}")
    raw["routes"] = []
    raw["upstreams"] = {}
    raw["middleware"] = {"default": "authenticated"}
    app = GatewayMiddleware(Starlette(routes=[Route("/me", me)]), config=parse_config(raw))
    srv = ThreadServer(app, port, lifespan="on").start()
    try:
        with browser() as c:
            r = c.get(srv.url + "/me", headers={"Sec-Fetch-Mode": "navigate"})
            assert r.status_code == 302 and r.headers["location"].startswith("/_poolgate/login")
            assert sign_in(c, srv.url, isrv.url, rd="/me").status_code == 302
            c.cookies.set("theme", "dark", domain="127.0.0.1")
            body = c.get(srv.url + "/me").json()
            assert body["role"] == "member" and body["sub"]
            assert body["cookie"] == "theme=dark" and body["authorization"] is None
            assert c.get(srv.url + "/_poolgate/session").json()["sub"] == body["sub"]
        assert httpx.get(srv.url + "/me").status_code == 401
    finally:
        srv.stop()
