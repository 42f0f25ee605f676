"""Composition root: the proxy endpoint behind the gateway middleware, and the admin app."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from .admin import build_admin_app
from .config import Config
from .engine import Engine
from .errors import NotFound
from .forward.headers import canonical, upstream_request_headers
from .forward.proxy import AiohttpTransport, Transport, forward
from .middleware import GatewayMiddleware, RequestContext

# headers the gateway sets itself: client copies are deleted on every path
_ALWAYS_REMOVED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                             b"x-request-id", b"forwarded", b"x-real-ip"})


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
        outcome = ctx.outcome
        route = outcome.route
        engine = ctx.engine
        if route is None or route.upstream is None:
            raise NotFound("no upstream for this request", code="no_route")
        upstream = engine.config.upstreams[route.upstream]
        principal = outcome.principal
        extra = engine.identity.render(principal)
        signer = engine.signer
        if signer is not None and principal.role is not None:
            signed_before = signer.signs_count
            cred = signer.issue(principal=principal, upstream=upstream.id, route_id=route.id,
                                route_action=route.action, path_params=outcome.path_params,
                                permissions=outcome.decision.permissions,
                                decision_id=outcome.decision.id)
            extra.append((engine_credential_header(engine), cred.encode("ascii")))
            if signer.signs_count != signed_before:     # a cache miss: a real signature
                engine.metrics.credentials_signed.labels(upstream.id).inc()
        remove = removed_names(engine)
        if route.forward_user_token and principal.token is not None:
            extra.append((b"authorization", b"Bearer " + principal.token.raw.encode("ascii")))
        headers = upstream_request_headers(
            scope["headers"], remove=remove, peer=ctx.peer, trusted=ctx.trusted,
            scheme=scope.get("scheme", "http"), host=_host(scope), request_id=ctx.request_id,
            upstream_authority=upstream.authority, extra=extra)
        await forward(scope, receive, send, transport=self.transport, upstream=upstream,
                      path=ctx.path, headers=headers, metrics=engine.metrics)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.transport.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def engine_credential_header(engine: Engine) -> bytes:
    return engine.config.downstream_credential.header.lower().encode("ascii")


def removed_names(engine: Engine) -> frozenset[bytes]:
    """Every header name the gateway sets or strips (canonical form), for this engine."""
    cached = getattr(engine, "_removed_names", None)
    if cached is None:
        cfg = engine.config
        role_headers = {canonical(m.role_request_header.encode("ascii"))
                        for m in cfg.mappings.values() if m.role_request_header}
        cached = (_ALWAYS_REMOVED | engine.identity.names | {b"authorization"} | role_headers
                  | {canonical(cfg.downstream_credential.header.encode("ascii"))})
        engine._removed_names = cached  # type: ignore[attr-defined]
    return cached


def _host(scope: dict[str, Any]) -> str:
    for k, v in scope["headers"]:
        if k == b"host":
            return v.decode("latin-1")
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def build_proxy_app(engine: Engine, transport: Transport | None = None) -> GatewayMiddleware:
    """The proxy listener's ASGI app: gateway middleware in front of the forwarding endpoint."""
    return GatewayMiddleware(ProxyEndpoint(transport or AiohttpTransport()), engine=engine,
                             proxy=True)


def build_apps(config: Config, *, transport: Transport | None = None,
               allow_generated_key: bool = True, **engine_kw: Any) -> tuple[GatewayMiddleware, Starlette]:
    """(proxy app, admin app) sharing one engine; the admin app follows hot reloads."""
    engine = Engine(config, allow_generated_key=allow_generated_key, **engine_kw)
    proxy = build_proxy_app(engine, transport)
    admin = build_admin_app(lambda: proxy.engine)
    return proxy, admin
