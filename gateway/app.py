"""Composition root: the proxy endpoint behind the gateway middleware, and the admin app."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from .admin import build_admin_app
from .aws import sign as aws_sign
from .config import Config
from .edge import ProxyApp
from .engine import Engine
from .errors import NotFound
from .forward.outbound import gateway_request_headers
from .forward.proxy import H1Transport, Transport, forward
from .middleware import GatewayMiddleware, RequestContext



class ProxyEndpoint:
    """Forwards an admitted request to its route's upstream with the gateway's credential."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        ctx: RequestContext = scope["poolgate"]
        if scope["type"] == "websocket":
            from .forward.websocket import forward_websocket  # noqa: PLC0415 (rare path)
            return await forward_websocket(scope, receive, send, ctx)
        route = ctx.outcome.route
        engine = ctx.engine
        if route is None or route.upstream is None:
            raise NotFound("no upstream for this request", code="no_route")
        upstream = engine.config.upstreams[route.upstream]
        headers = gateway_request_headers(scope, ctx)
        path = ctx.path
        if upstream.id in engine.aws.upstreams:       # AWS.md: sign with the user's credentials
            scope, receive, path, headers = await aws_sign(
                engine.aws, scope, receive, ctx.outcome.principal, path, upstream, headers)
        await forward(scope, receive, send, transport=self.transport, upstream=upstream,
                      path=path, headers=headers, metrics=engine.metrics,
                      buffer_bytes=engine.config.listen.limits.buffer_body_bytes)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.transport.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _HttpsOnFirstUse:
    """The ``https`` transport behind the h1 client, created on the first request to an https
    upstream: aiohttp is the only user of it, and importing it costs every worker ~7 MB of
    RSS that a gateway whose upstreams all speak http never needs."""

    def __init__(self) -> None:
        self._transport: Transport | None = None

    async def send(self, method: str, url: str, headers: Any, body: Any, *, timeout: float,
                   idle_timeout: float) -> Any:
        if self._transport is None:
            from .forward.transports import AiohttpTransport  # noqa: PLC0415
            self._transport = AiohttpTransport()
        return await self._transport.send(method, url, headers, body, timeout=timeout,
                                          idle_timeout=idle_timeout)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def build_proxy_app(engine: Engine, transport: Transport | None = None) -> ProxyApp:
    """The proxy listener's ASGI app: the flat HTTP path (gateway/edge.py), with the gateway
    middleware in front of the forwarding endpoint for lifespan and WebSockets."""
    if transport is None:
        pools = {u.authority: u.max_connections for u in engine.config.upstreams.values()}
        transport = H1Transport(https=_HttpsOnFirstUse(), limits=pools)
    return ProxyApp(GatewayMiddleware(ProxyEndpoint(transport), engine=engine, proxy=True),
                    transport)


def build_apps(config: Config, *, transport: Transport | None = None,
               allow_generated_key: bool = True, **engine_kw: Any) -> tuple[ProxyApp, Starlette]:
    """(proxy app, admin app) sharing one engine; the admin app follows hot reloads."""
    engine = Engine(config, allow_generated_key=allow_generated_key, **engine_kw)
    proxy = build_proxy_app(engine, transport)
    admin = build_admin_app(lambda: proxy.engine)
    return proxy, admin
