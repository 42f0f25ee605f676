"""WebSockets through the middleware and through the proxy (`poolgate serve`), real uvicorn.

Handshake: token from Authorization or a `bearer.<token>` subprotocol entry; a refusal is an
HTTP 401/403 with the RFC 6750 header through the WebSocket Denial Response extension. After
the accept, the socket is closed with 1008 at token expiry (exp + skew) or revocation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.servers import Gateway, JwksControl, Signer, ThreadServer, cognito_claims, free_port
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway import GatewayMiddleware
from gateway.revocation.entries import make_entry

from .conftest import CLIENT, ISSUER, middleware_config, wait_until, write_config

WAIT = 8.0          # bound for every close / message wait


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def recv_json(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        return json.loads(await ws.recv())


async def closed_code(ws: Any) -> int | None:
    """Read until the server closes (bounded); the close code it sent."""
    async with asyncio.timeout(WAIT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code


async def refused(url: str, **kw: Any) -> Any:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=WAIT, **kw):
            pass
    return info.value.response


# --------------------------------------------------------------------------- middleware mode

class Echo:
    """The host app: reports what it was given, echoes text, records how it was closed."""

    def __init__(self) -> None:
        self.closes: list[int] = []

    async def endpoint(self, websocket: WebSocket) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol=offered[0] if offered else None)
        user = websocket.user
        await websocket.send_json({
            "sub": user.sub, "role": user.role, "authenticated": user.is_authenticated,
            "scopes": list(websocket.auth.scopes), "subprotocols": offered,
            "headers": sorted({k.decode().lower() for k, _ in websocket.scope["headers"]})})
        try:
            while True:
                await websocket.send_text("echo:" + await websocket.receive_text())
        except WebSocketDisconnect as e:
            self.closes.append(e.code)

    def app(self) -> Starlette:
        return Starlette(routes=[WebSocketRoute("/ws", self.endpoint),
                                 WebSocketRoute("/public/ws", self.endpoint)])


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def mw_server(jwks, tmp_path: Path, serve: Any, echo: Echo) -> Any:
    cfg = middleware_config(jwks[1].url + "/jwks.json")
    cfg["identity_sources"][0]["clock_skew_seconds"] = 0
    mw = GatewayMiddleware(echo.app(), config=write_config(tmp_path, cfg))
    srv = serve(mw)
    srv.middleware = mw
    assert wait_until(mw.engine.jwks.ready)
    return srv


async def test_accepted_with_the_authorization_header(mw_server, token, echo):
    tok = token(groups=["admins"])
    async with connect(mw_server.ws + "/ws", additional_headers={
            **auth(tok), "X-Auth-Role": "root"}, open_timeout=WAIT) as ws:
        hello = await recv_json(ws)
        assert hello["role"] == "admin" and hello["authenticated"] is True
        assert hello["scopes"][:2] == ["authenticated", "admin"]
        assert "x-auth-role" not in hello["headers"]
        assert len(ws.response.headers["x-request-id"]) == 32
        await ws.send("hi")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "echo:hi"
    assert wait_until(lambda: echo.closes == [1000])


async def test_bearer_subprotocol_is_stripped_before_the_app(mw_server, token):
    tok = token()
    async with connect(mw_server.ws + "/ws", subprotocols=["chat.v1", f"bearer.{tok}"],
                       open_timeout=WAIT) as ws:
        hello = await recv_json(ws)
        assert hello["role"] == "member" and hello["subprotocols"] == ["chat.v1"]
        assert ws.subprotocol == "chat.v1"
        assert tok not in str(ws.response.headers)


@pytest.mark.parametrize("kw,status,reason,challenge", [
    ({}, 401, "missing_token", 'Bearer realm="poolgate"'),
    ({"additional_headers": auth("not-a-jwt")}, 401, None, 'error="invalid_token"'),
    ({"subprotocols": ["bearer.not-a-jwt"]}, 401, None, 'error="invalid_token"'),
])
async def test_refused_handshake_gets_the_rfc6750_answer(mw_server, kw, status, reason,
                                                         challenge, echo):
    resp = await refused(mw_server.ws + "/ws", **kw)
    assert resp.status_code == status
    assert resp.headers["www-authenticate"].startswith("Bearer ")
    assert challenge in resp.headers["www-authenticate"]
    body = json.loads(resp.body)
    assert body["request_id"] == resp.headers["x-request-id"]
    if reason:
        assert body["reason"] == reason
    assert echo.closes == []                      # the app never ran


async def test_token_in_both_places_is_400(mw_server, token):
    tok = token()
    resp = await refused(mw_server.ws + "/ws", additional_headers=auth(tok),
                         subprotocols=[f"bearer.{tok}"])
    assert resp.status_code == 400 and json.loads(resp.body)["reason"] == "multiple_credentials"


@pytest.mark.parametrize("protocols,reason", [
    (["bearer.a$b"], "bad_token_chars"),
    (["bearer."], "empty_bearer"),
    (["bearer.a.b.c", "bearer.d.e.f"], "multiple_credentials"),
])
async def test_bad_bearer_subprotocol_is_400(mw_server, protocols, reason):
    resp = await refused(mw_server.ws + "/ws", subprotocols=protocols)
    assert resp.status_code == 400 and json.loads(resp.body)["reason"] == reason
    assert 'error="invalid_request"' in resp.headers["www-authenticate"]


async def test_public_websocket_publishes_an_unauthenticated_user(mw_server, token):
    async with connect(mw_server.ws + "/public/ws", open_timeout=WAIT) as ws:
        hello = await recv_json(ws)
        assert hello["authenticated"] is False and hello["sub"] is None
    # tokens on a public route are ignored (and the bearer entry still never reaches the app)
    async with connect(mw_server.ws + "/public/ws", additional_headers=auth(token()),
                       subprotocols=["chat.v1", "bearer.a$b"], open_timeout=WAIT) as ws:
        hello = await recv_json(ws)
        assert hello["authenticated"] is False and hello["subprotocols"] == ["chat.v1"]


async def test_closed_with_1008_at_token_expiry(mw_server, token, echo):
    tok = token(exp=int(time.time()) + 2)
    async with connect(mw_server.ws + "/ws", additional_headers=auth(tok),
                       open_timeout=WAIT) as ws:
        await recv_json(ws)
        started = time.monotonic()
        assert await closed_code(ws) == 1008
        assert time.monotonic() - started < 4
        assert ws.close_reason == "token expired"
    assert wait_until(lambda: echo.closes == [1008])


async def test_closed_with_1008_when_revoked(mw_server, token, echo):
    tok = token()
    jti = json.loads(__import__("base64").urlsafe_b64decode(tok.split(".")[1] + "==")).get("jti")
    async with connect(mw_server.ws + "/ws", additional_headers=auth(tok),
                       open_timeout=WAIT) as ws:
        await recv_json(ws)
        store = mw_server.middleware.engine.store
        await store.add(make_entry("jti", jti, exp=time.time() + 3600, now=time.time(),
                                   max_token_lifetime=86400, skew=0))
        assert await closed_code(ws) == 1008
        assert ws.close_reason == "token revoked"


async def test_without_the_denial_extension_the_handshake_is_closed(config_path):
    """Servers that do not offer websocket.http.response get a close before accept (403)."""
    mw = GatewayMiddleware(Echo().app(), config=config_path)
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "query_string": b"",
             "headers": [(b"host", b"x")], "client": ("127.0.0.1", 1), "scheme": "ws",
             "subprotocols": [], "extensions": {}}
    await mw(scope, receive, send)
    await mw.shutdown()
    assert sent == [{"type": "websocket.close", "code": 1008}]


# --------------------------------------------------------------------------- proxy mode

class UpstreamWs:
    """A WebSocket upstream: reports its handshake, echoes, closes with 4001 on request."""

    def __init__(self) -> None:
        self.closes: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()                                   # websocket.connect
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-upstream", b"1")]})
        await send({"type": "websocket.send", "text": json.dumps({
            "path": scope["path"], "query": scope["query_string"].decode(),
            "subprotocols": offered,
            "headers": [[k.decode().lower(), v.decode()] for k, v in scope["headers"]]})})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                self.closes.append(msg.get("code", 1000))
                return
            if msg.get("text") == "close-me":
                await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
                return
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": "up:" + msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": b"up:" + msg["bytes"]})


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    signer = Signer()
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    upstream = UpstreamWs()
    servers = [ThreadServer(control).start(), ThreadServer(upstream).start()]
    jwks_srv, up_srv = servers
    cfg = middleware_config(jwks_srv.url + "/jwks.json",
                            upstreams={"app": {"url": up_srv.url, "timeout_seconds": 2},
                                       "down": {"url": f"http://127.0.0.1:{free_port()}",
                                                "timeout_seconds": 2}})
    cfg["identity_sources"][0]["clock_skew_seconds"] = 0
    cfg["routes"] += [{"id": "down", "match": {"path": "/down/**"}, "upstream": "down",
                       "auth": "authenticated"},
                      {"id": "rest", "match": {"path": "/**"}, "upstream": "app",
                       "auth": "authenticated"}]
    gw = Gateway(cfg, tmp_path_factory.mktemp("wsproxy"))
    try:
        gw.start()
        gw.wait_ready()
        yield {"gw": gw, "ws": gw.proxy.replace("http://", "ws://"), "upstream": upstream,
               "token": lambda groups=None, **c: signer.token(cognito_claims(
                   ISSUER, CLIENT, **({"cognito:groups": groups} if groups else {}), **c))}
    finally:
        gw.stop()
        for s in servers:
            s.stop()


def _headers(hello: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in hello["headers"] if k == name]


async def test_proxy_forwards_an_authorised_upgrade(proxy):
    tok = proxy["token"](groups=["admins"])
    async with connect(proxy["ws"] + "/chat/room?x=1", additional_headers={
            **auth(tok), "X-Auth-Sub": "forged", "X-Gateway-Credential": "forged"},
            subprotocols=["chat.v1"], open_timeout=WAIT) as ws:
        hello = await recv_json(ws)
        assert hello["path"] == "/chat/room" and hello["query"] == "x=1"
        assert ws.subprotocol == "chat.v1" and hello["subprotocols"] == ["chat.v1"]
        assert _headers(hello, "x-auth-role") == ["admin"]
        sub = _headers(hello, "x-auth-sub")
        assert len(sub) == 1 and sub != ["forged"]
        cred = _headers(hello, "x-gateway-credential")
        assert len(cred) == 1 and cred != ["forged"]
        assert _headers(hello, "authorization") == []       # the user's token stays at the edge
        assert _headers(hello, "x-forwarded-for") == ["127.0.0.1"]
        assert ws.response.headers["x-upstream"] == "1"
        assert len(ws.response.headers["x-request-id"]) == 32
        await ws.send("hi")
        await ws.send(b"\x00\x01")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "up:hi"
            assert await ws.recv() == b"up:\x00\x01"
        before = len(proxy["upstream"].closes)
        await ws.close(code=4000)
    assert wait_until(lambda: proxy["upstream"].closes[before:] == [4000])


async def test_proxy_keeps_the_bearer_subprotocol_at_the_edge(proxy):
    tok = proxy["token"]()
    async with connect(proxy["ws"] + "/chat", subprotocols=["chat.v1", f"bearer.{tok}"],
                       open_timeout=WAIT) as ws:
        hello = await recv_json(ws)
        assert hello["subprotocols"] == ["chat.v1"]
        assert tok not in json.dumps(hello)
        assert _headers(hello, "x-auth-role") == ["member"]


async def test_proxy_relays_the_upstream_close(proxy):
    async with connect(proxy["ws"] + "/chat", additional_headers=auth(proxy["token"]()),
                       open_timeout=WAIT) as ws:
        await recv_json(ws)
        await ws.send("close-me")
        assert await closed_code(ws) == 4001
        assert ws.close_reason == "bye"


async def test_proxy_refusals_use_the_denial_response(proxy):
    resp = await refused(proxy["ws"] + "/chat")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == 'Bearer realm="poolgate"'
    resp = await refused(proxy["ws"] + "/admin/x", additional_headers=auth(proxy["token"]()))
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
    resp = await refused(proxy["ws"] + "/down/x", additional_headers=auth(proxy["token"]()))
    assert resp.status_code == 502 and json.loads(resp.body)["error"] == "bad_gateway"


async def test_proxy_closes_both_sides_with_1008_at_expiry(proxy):
    tok = proxy["token"](exp=int(time.time()) + 2)
    async with connect(proxy["ws"] + "/chat", additional_headers=auth(tok),
                       open_timeout=WAIT) as ws:
        await recv_json(ws)
        before = len(proxy["upstream"].closes)
        assert await closed_code(ws) == 1008
    assert wait_until(lambda: proxy["upstream"].closes[before:] == [1008])


async def test_an_app_that_accepts_after_expiry_is_closed_at_once(jwks, tmp_path, serve, token):
    cfg = middleware_config(jwks[1].url + "/jwks.json")
    cfg["identity_sources"][0]["clock_skew_seconds"] = 0

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await asyncio.sleep(2.5)                     # past exp: the token is no longer valid
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    srv = serve(GatewayMiddleware(slow, config=write_config(tmp_path, cfg)))
    async with connect(srv.ws + "/ws", additional_headers=auth(token(exp=int(time.time()) + 2)),
                       open_timeout=WAIT) as ws:
        started = time.monotonic()
        assert await closed_code(ws) == 1008
        assert time.monotonic() - started < 1
