"""The proxy listener's HTTP path as one flat callable: admit -> outbound headers -> forward -> record.

It runs the same pipeline as the middleware (route, token, verify, revoked?, role, policy),
through the admission cache (gateway/admissions.py), and renders refusals and records metrics
with the middleware's own functions. Lifespan and WebSocket scopes go to the
``GatewayMiddleware`` around the ``ProxyEndpoint`` (rare paths with more machinery); hot
reload swaps the engine there, and this callable always reads the current one.
"""

from __future__ import annotations

import time
from typing import Any

from . import tracing
from .admissions import admit
from .aws import is_reserved, serve_reserved
from .aws import sign as aws_sign
from .errors import GatewayError, NotFound
from .facts import request_facts
from .forward.headers import check_framing, is_trusted, request_id, upstream_request_headers
from .forward.outbound import removed_names
from .forward.proxy import Transport, forward
from .middleware import GatewayMiddleware, record, refusal, reserved_dispatch
from .routes import normalise_path

__all__ = ["ProxyApp"]

OUTBOUND_MEMO_ENTRIES = 1024


class ProxyApp:
    """``ProxyApp(middleware)``: the ASGI app of the proxy listener."""

    def __init__(self, middleware: GatewayMiddleware, transport: Transport) -> None:
        self.middleware = middleware
        self.transport = transport
        self._memo: dict[tuple[Any, ...], tuple[list[tuple[bytes, bytes]], int]] = {}
        self._memo_engine: Any = None

    @property
    def engine(self) -> Any:
        return self.middleware.engine

    async def startup(self) -> None:
        await self.middleware.startup()

    async def shutdown(self) -> None:
        await self.middleware.shutdown()

    async def swap(self, engine: Any) -> None:
        await self.middleware.swap(engine)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.middleware(scope, receive, send)
        engine = self.middleware.engine
        if not engine.started:
            await self.middleware.startup()
        t0 = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        peer = client[0] if client else ""
        listen = engine.config.listen
        trusted = bool(listen.trusted_proxies) and is_trusted(peer, listen.trusted_proxies)
        rid = request_id(headers, trusted=trusted)
        method = scope["method"]
        with tracing.request_span(headers, method):
            try:
                check_framing(headers)
                path = normalise_path(scope.get("raw_path") or scope["path"].encode("utf-8"))
                facts = request_facts(scope, path, peer, trusted, engine.clock(),
                                      listen.trusted_proxies, engine.admissions.read_names)
                if is_reserved(path):                 # /_poolgate/: never forwarded
                    if not path.startswith("/_poolgate/aws/"):
                        return await reserved_dispatch(engine.sessions, scope, receive, send)
                    status = await serve_reserved(engine, scope, send, path, facts, rid)
                    record(engine, method, scope["path"], status, "_poolgate", "allow",
                           "served", None, t0, rid)
                    return
                outcome, extra = await admit(engine, headers, scope, facts)
            except GatewayError as e:
                if engine.sessions is not None:
                    e = engine.sessions.refusal(e, scope)   # a navigation without session: 302
                await self._refuse(send, e, rid)
                record(engine, method, scope["path"], e.status, e.route or "-", "deny", e.code,
                       e.role, t0, rid)
                return
            route = outcome.route
            if route.upstream is None:
                e = NotFound("no upstream for this request", code="no_route")
                await self._refuse(send, e, rid)
                record(engine, method, scope["path"], 404, route.id, "deny", e.code, None, t0,
                       rid)
                return
            upstream = engine.config.upstreams[route.upstream]
            client = headers if engine.sessions is None else engine.sessions.strip(headers)
            out = self.outbound(engine, client, scope, peer, trusted, upstream.authority,
                                rid, extra, facts)
            if upstream.id in engine.aws.upstreams:   # AWS.md: the user's own credentials sign
                try:
                    scope, receive, path, out = await aws_sign(
                        engine.aws, scope, receive, outcome.principal, path, upstream, out)
                except GatewayError as e:
                    await self._refuse(send, e, rid)
                    record(engine, method, scope["path"], e.status, route.id, "deny", e.code,
                           outcome.principal.role, t0, rid)
                    return
            decision, code = "allow", outcome.decision.reason
            try:
                status = await forward(scope, receive, send, transport=self.transport,
                                       upstream=upstream, path=path, headers=out,
                                       metrics=engine.metrics,
                                       buffer_bytes=listen.limits.buffer_body_bytes,
                                       request_id=rid.encode("ascii"), direct=True)
            except GatewayError as e:     # 502/504 before the response started
                decision, code, status = "error", e.code, e.status
                await self._refuse(send, e, rid)
            record(engine, method, scope["path"], status, route.id, decision, code,
                   outcome.principal.role, t0, rid)

    def outbound(self, engine: Any, headers: list[tuple[bytes, bytes]], scope: dict[str, Any],
                 peer: str, trusted: bool, authority: str, rid: str,
                 extra: list[tuple[bytes, bytes]], facts: Any) -> list[tuple[bytes, bytes]]:
        """``upstream_request_headers`` for this request. The client's part is a pure function
        of the raw headers, the peer and the upstream, and clients repeat their headers
        request after request: it is memoised (bounded, per engine), and only the request id
        and the gateway's own headers (all of whose names the client part already strips) are
        put in per request."""
        if self._memo_engine is not engine:
            self._memo, self._memo_engine = {}, engine
        # the chain and scheme policy decided on (facts.py), functions of the key's parts
        scheme = "https" if facts.secure else "http"
        # Authorization is always stripped from the client part: leaving it out of the key lets
        # every token of one client share an entry (and keeps tokens out of the memo)
        key = (tuple([h for h in headers if h[0] != b"authorization"]), peer, trusted, scheme,
               authority)
        memo = self._memo.get(key)
        if memo is None:
            base = upstream_request_headers(
                headers, remove=removed_names(engine), peer=peer, trusted=trusted,
                scheme=scheme, host=_host(headers, scope), request_id="-",
                upstream_authority=authority, extra=[], chain=facts.chain)
            at = next((i for i, h in enumerate(base) if h[0] == b"x-request-id"), len(base))
            if len(self._memo) >= OUTBOUND_MEMO_ENTRIES:
                del self._memo[next(iter(self._memo))]
            memo = self._memo[key] = (base[:at] + [(b"x-request-id", b"-")] + base[at + 1:], at)
        base, at = memo
        out = base.copy()
        out[at] = (b"x-request-id", rid.encode("ascii"))
        out += extra
        return out

    async def _refuse(self, send: Any, e: GatewayError, rid: str) -> None:
        hdrs, body = refusal(e, rid, dated=True)
        await send({"type": "http.response.start", "status": e.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})


def _host(headers: list[tuple[bytes, bytes]], scope: dict[str, Any]) -> bytes | str:
    for k, v in headers:
        if k == b"host":
            return v
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""
