"""Pure ASGI middleware around the pipeline: the ONE place a GatewayError becomes a response.

Used directly (``GatewayMiddleware(app, config=...)``) and, with the proxy endpoint as its
app, as the standalone/sidecar proxy: one engine, one set of decisions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from email.utils import formatdate
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.authentication import AuthCredentials

from .aws import is_reserved, serve_reserved
from .config import Config, load_config
from . import accesslog, tracing
from .engine import Engine
from .errors import GatewayError, InvalidRequest
from .extract import websocket_protocol_token
from .facts import request_facts
from .forward.headers import canonical, check_framing, is_trusted, request_id
from .principal import Principal, RequestFacts
from .routes import normalise_path
from .watch import watch_websocket

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("poolgate")
WS_PROTOCOL_PREFIX = "bearer."
RETIRE_SECONDS = 30.0           # a replaced engine is closed this long after a hot reload


class RequestContext:
    """What the gateway knows about an admitted request, for the app behind it."""

    __slots__ = ("engine", "facts", "outcome", "path", "peer", "request_id", "trusted")

    def __init__(self, outcome: Any, path: str, rid: str, peer: str, trusted: bool,
                 engine: Engine, facts: RequestFacts) -> None:
        self.outcome, self.path, self.request_id = outcome, path, rid
        self.peer, self.trusted, self.engine, self.facts = peer, trusted, engine, facts


class GatewayMiddleware:
    """``GatewayMiddleware(app, config="poolgate.yaml")`` publishes ``scope["user"]`` (a
    ``Principal``) and ``scope["auth"]`` and refuses what the pipeline refuses."""

    def __init__(self, app: ASGIApp, config: Config | str | os.PathLike[str] | None = None, *,
                 engine: Engine | None = None, proxy: bool = False) -> None:
        self.app = app
        if engine is None:
            if config is None:
                raise TypeError("GatewayMiddleware needs config= "
                                "(a path or gateway.load_config(...))")
            cfg = config if isinstance(config, Config) else load_config(config)
            engine = Engine(cfg, middleware_mode=not proxy)
        self.engine = engine
        self.proxy = proxy
        self._start_lock = asyncio.Lock()
        self._draining = False

    # -- engine lifecycle ------------------------------------------------------------------

    async def startup(self) -> None:
        async with self._start_lock:
            await self.engine.start()

    async def shutdown(self) -> None:
        await self.engine.aclose()

    async def swap(self, engine: Engine) -> None:
        """Hot reload: start the new engine, switch atomically, close the old one."""
        await engine.start()
        old, self.engine = self.engine, engine
        # requests admitted by the old engine may still be in flight: close it a little later
        loop = asyncio.get_running_loop()
        loop.call_later(RETIRE_SECONDS, lambda: loop.create_task(old.aclose()))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        got_startup = False

        async def wrapped() -> dict[str, Any]:
            nonlocal got_startup
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                got_startup = True
                await self.startup()
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
            return msg

        async def wrapped_send(msg: dict[str, Any]) -> None:
            if msg["type"] == "lifespan.startup.failed":
                await self.shutdown()          # the host app will not serve: stop our tasks too
            await send(msg)

        try:
            await self.app(scope, wrapped, wrapped_send)
        except Exception:
            if got_startup:
                await self.shutdown()
                raise
            # the host app has no lifespan handler (it raised): speak the protocol for it
            await self._own_lifespan(receive, send)
            return
        if not got_startup:
            # it returned without reading the startup message (``if scope["type"] != "http":
            # return``): the keys must still load before the first request
            await self._own_lifespan(receive, send)

    async def _own_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(scope, receive, send)
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        with tracing.request_span(scope["headers"], scope.get("method", "WS")):
            await self._handle(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        engine = self.engine
        if not engine.started:           # no lifespan ran (e.g. a server with lifespan off)
            await self.startup()
        if scope["type"] == "http" and scope["path"].startswith("/_poolgate/"):   # reserved
            return await reserved_dispatch(engine.sessions, scope, receive, send)
        t0 = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        peer = client[0] if client else ""
        trusted = bool(engine.config.listen.trusted_proxies) and is_trusted(
            peer, engine.config.listen.trusted_proxies)
        rid = request_id(headers, trusted=trusted)
        status = [0]
        if kind == "websocket":
            receive = _ConnectTracker(receive)
        route_id = "-"
        code = decision = role = None
        outcome = None
        try:
            if kind == "http":
                check_framing(headers)
            path = normalise_path(scope.get("raw_path") or scope["path"].encode("utf-8"))
            facts = request_facts(scope, path, peer, trusted, engine.clock(),
                                  engine.config.listen.trusted_proxies,
                                  engine.admissions.read_names)
            if self.proxy and is_reserved(path):      # /_poolgate/: never routed (AWS.md)
                status[0] = await serve_reserved(engine, scope, send, path, facts, rid)
                self._record(engine, scope, status[0], "_poolgate", "allow", "served", None, t0,
                             rid)
                return
            ws_token = None
            if kind == "websocket" and (
                    engine.pipeline.route(facts.method, path)[0].auth != "public"):
                ws_token = _websocket_token(headers)      # a public route ignores tokens
            elif engine.sessions is not None:
                ws_token = await engine.sessions.token(scope, facts, engine.pipeline)
            outcome = await engine.pipeline.authorize(headers, scope.get("query_string", b""),
                                                      facts, token=ws_token)
        except GatewayError as e:
            if engine.sessions is not None:
                e = engine.sessions.refusal(e, scope)   # navigation without session: 302
            code, decision = e.code, "deny"
            status[0] = e.status
            await self._refuse(scope, receive, send, e, rid)
            self._record(engine, scope, status[0], e.route or "-", decision, code, e.role, t0,
                         rid)
            return
        route_id = outcome.route.id if outcome.route is not None else "-"
        role, decision, code = outcome.principal.role, "allow", outcome.decision.reason
        inner = dict(scope)
        inner["user"] = outcome.principal
        inner["auth"] = AuthCredentials(_scopes(outcome.principal))
        inner["poolgate"] = RequestContext(outcome, path, rid, peer, trusted, engine, facts)
        if not self.proxy:
            inner["headers"] = _without(headers, engine)
        if engine.sessions is not None:           # our cookies never leave the gateway
            inner["headers"] = engine.sessions.strip(inner["headers"])
        if kind == "websocket":
            # the app must not echo a bearer.<token> entry back as the accepted subprotocol
            inner["subprotocols"] = [p for p in scope.get("subprotocols", ())
                                     if not p.startswith(WS_PROTOCOL_PREFIX)]
        rid_header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(msg: dict[str, Any]) -> None:
            t = msg["type"]
            if t == "http.response.start" or t == "websocket.http.response.start":
                status[0] = msg["status"]
                msg = dict(msg)
                msg["headers"] = [*(h for h in msg.get("headers", ())
                                    if h[0].lower() != b"x-request-id"), rid_header]
            elif t == "websocket.accept":
                status[0] = 101
                msg = dict(msg)
                msg["headers"] = [*(h for h in msg.get("headers", ())
                                    if h[0].lower() != b"x-request-id"), rid_header]
            await send(msg)

        try:
            if kind == "websocket":      # token None (public): limits only, no expiry watch
                await watch_websocket(self.app, inner, receive, send_with_id, engine,
                                      outcome.principal.token)
            else:
                await self.app(inner, receive, send_with_id)
        except GatewayError as e:       # the proxy's 502/504 before the response started
            code, decision = e.code, "error"
            if status[0] == 0:
                status[0] = e.status
                await self._refuse(scope, receive, send, e, rid)
        finally:
            self._record(engine, scope, status[0], route_id, decision, code, role, t0, rid)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, e: GatewayError,
                      rid: str) -> None:
        hdrs, body = refusal(e, rid, dated=self.proxy)
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send, e.status, hdrs, body)
            return
        await send({"type": "http.response.start", "status": e.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    def _record(self, engine: Engine, scope: Scope, status: int, route: str,
                decision: str | None, code: str | None, role: str | None, t0: float,
                rid: str) -> None:
        record(engine, scope.get("method", "WS"), scope.get("path", ""), status, route,
               decision, code, role, t0, rid)


async def reserved_dispatch(gate: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """A request under the reserved ``/_poolgate/`` prefix: the session endpoints (the room is
    imported only here, so a gateway without sessions never loads its OAuth client), or 404."""
    from .sessions import dispatch  # noqa: PLC0415
    await dispatch(gate, scope, receive, send)


def refusal(e: GatewayError, rid: str, *, dated: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and JSON body of a refusal (RFC 6750 challenge, Retry-After, request id);
    ``dated``: the proxy listener's server adds no Date of its own."""
    body = json.dumps(e.body(rid)).encode()
    hdrs = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
            (b"x-request-id", rid.encode("ascii")),
            (b"content-length", str(len(body)).encode())]
    challenge = e.www_authenticate()
    if challenge:
        hdrs.append((b"www-authenticate", challenge.encode("latin-1")))
    if dated:
        hdrs.append((b"date", _http_date()))
    if e.retry_after is not None:
        hdrs.append((b"retry-after", str(e.retry_after).encode()))
    hdrs.extend(getattr(e, "extra_headers", ()))   # e.g. Location of a sign-in redirect
    return hdrs, body


def record(engine: Engine, method: str, path: str, status: int, route: str,
           decision: str | None, code: str | None, role: str | None, t0: float,
           rid: str) -> None:
    """Metrics and the access log line of one request (the line is written off this path)."""
    elapsed = time.perf_counter() - t0
    label_method = method if method in _METHODS else "OTHER"   # bounded label values
    engine.metrics.request_done(route, label_method, str(status), decision or "none",
                                code or "none", elapsed)
    if engine.config.logging.access_log:
        accesslog.emit_request(rid, route, label_method, path, status, decision, code, role,
                               elapsed)


_DATE: list[Any] = [0, b""]


def _http_date() -> bytes:
    """The IMF-fixdate for now, computed at most once a second."""
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, formatdate(now, usegmt=True).encode("ascii")
    return bytes(_DATE[1])


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                      "CONNECT", "WS"})


class _ConnectTracker:
    """``receive`` for a WebSocket, remembering whether ``websocket.connect`` was read (a
    refusal after the app, e.g. the proxy's 502, must not wait for it a second time)."""

    __slots__ = ("connected", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive, self.connected = receive, False

    async def __call__(self) -> dict[str, Any]:
        msg = await self.receive()
        if msg["type"] == "websocket.connect":
            self.connected = True
        return msg


def _websocket_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """A ``bearer.<token>`` subprotocol entry; with an Authorization header too, 400."""
    token = websocket_protocol_token(headers, WS_PROTOCOL_PREFIX)
    if token is not None and any(k.lower() == b"authorization" for k, _ in headers):
        raise InvalidRequest("a token in both Authorization and Sec-WebSocket-Protocol",
                             code="multiple_credentials")
    return token


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, status: int,
                            hdrs: list[tuple[bytes, bytes]], body: bytes) -> None:
    if not getattr(receive, "connected", False):
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": hdrs})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _scopes(p: Principal) -> list[str]:
    out = ["authenticated"] if p.is_authenticated else []
    if p.role:
        out.append(p.role)
    out.extend(f"scope:{s}" for s in p.scopes)
    return out


def _without(headers: list[tuple[bytes, bytes]], engine: Engine) -> list[tuple[bytes, bytes]]:
    """Delete client-sent copies of every header the gateway sets, before the app sees them."""
    names = engine.identity.names | {canonical(engine.config.downstream_credential.header.encode())}
    return [(k, v) for k, v in headers if canonical(k) not in names]


__all__ = ["GatewayMiddleware", "InvalidRequest", "RequestContext", "record", "refusal"]
