"""Step 5 (I/O) for WebSockets: relay one authorised upgrade to its upstream, frames both ways.

The handshake goes out with the same header rules as HTTP (client copies of everything the
gateway sets are dropped, identity headers and the downstream credential added, the user's
token kept at the edge unless the route forwards it). An upstream that cannot be reached
before the client is accepted is a ``BadGateway`` / ``GatewayTimeout``, which the middleware
answers through the WebSocket Denial Response extension. After the accept, text and binary
frames and closes are relayed until either side closes (or the token watch closes with 1008).
Each direction holds one message at a time and waits for its writer to drain (aiohttp's
writer and uvicorn's ``send`` both wait while the transport is above its high-water mark), so
a peer that reads slowly makes the gateway stop reading the other one. A message above
``websocket.max_message_bytes`` closes the socket with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from ..errors import BadGateway, GatewayTimeout, NotFound
from ..wsflow import MESSAGE_TOO_BIG
from .headers import response_headers
from .outbound import gateway_request_headers

if TYPE_CHECKING:
    from ..middleware import RequestContext

__all__ = ["forward_websocket", "gateway_request_headers"]

log = logging.getLogger("poolgate")
Headers = list[tuple[bytes, bytes]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CLOSE_TIMEOUT_SECONDS = 5.0
INTERNAL_ERROR = 1011
# aiohttp writes its own handshake fields; the client's must not reach the upstream
_HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version",
                        b"sec-websocket-extensions", b"sec-websocket-protocol"})
# not relayed from the upstream's 101 to the client: the client's server writes its own
_HANDSHAKE_RESPONSE = _HANDSHAKE | {b"sec-websocket-accept", b"content-length", b"date",
                                    b"server", b"x-request-id"}
# close codes that must never appear in a close frame (RFC 6455 7.4.1)
_RESERVED_CLOSE = frozenset({1004, 1005, 1006, 1015})


async def forward_websocket(scope: dict[str, Any], receive: Receive, send: Send,
                            ctx: RequestContext) -> None:
    """Connect to the route's upstream, accept the client with the upstream's subprotocol,
    relay frames both ways, and close each side when the other closes."""
    route = ctx.outcome.route
    if route is None or route.upstream is None:
        raise NotFound("no upstream for this request", code="no_route")
    upstream = ctx.engine.config.upstreams[route.upstream]
    first = await receive()
    if first["type"] != "websocket.connect":
        return                                   # the client left before the handshake
    headers = gateway_request_headers(scope, ctx, remove=_HANDSHAKE)
    ws_scheme = "wss" if upstream.scheme == "https" else "ws"
    query = scope.get("query_string", b"").decode("latin-1")
    target = URL(f"{ws_scheme}://{upstream.authority}{ctx.path}" + (f"?{query}" if query else ""),
                 encoded=True)
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                    skip_auto_headers=("User-Agent",),
                                    middlewares=(_no_redirects,))
    try:
        ws = await _connect(session, target, headers, list(scope.get("subprotocols", ())),
                            upstream.id, upstream.timeout_seconds,
                            ctx.engine.config.websocket.max_message_bytes)
        try:
            accept_headers = response_headers(
                [(k.lower(), v) for k, v in ws._response.raw_headers],
                remove=_HANDSHAKE_RESPONSE) if ws._response is not None else []
            await send({"type": "websocket.accept", "subprotocol": ws.protocol,
                        "headers": accept_headers})
            await _relay(ws, receive, send)
        finally:
            await ws.close()
    finally:
        await session.close()


class _Redirected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"redirect {status}")
        self.status = status


_Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]


async def _no_redirects(request: aiohttp.ClientRequest,
                        handler: _Handler) -> aiohttp.ClientResponse:
    """ws_connect follows redirects and has no switch for it: a redirect would carry the
    credential and identity headers to wherever the upstream points. Refuse it (502)."""
    resp = await handler(request)
    if 300 <= resp.status < 400:
        resp.release()
        raise _Redirected(resp.status)
    return resp


async def _connect(session: aiohttp.ClientSession, target: URL, headers: Headers,
                   protocols: list[str], upstream_id: str, timeout: float,
                   max_message: int) -> aiohttp.ClientWebSocketResponse:
    out = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                target, headers=out, protocols=protocols, autoping=True, compress=0,
                max_msg_size=max_message,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_SECONDS))
    except TimeoutError:
        raise GatewayTimeout(f"upstream {upstream_id} did not complete the WebSocket "
                             f"handshake within {timeout:g}s", code="upstream_timeout")
    except (aiohttp.WSServerHandshakeError, _Redirected) as e:
        raise BadGateway(f"upstream {upstream_id} refused the WebSocket handshake "
                         f"(status {e.status})", code="upstream_ws_refused")
    except (aiohttp.ClientError, OSError) as e:
        raise BadGateway(f"upstream {upstream_id} unreachable: {type(e).__name__}",
                         code="upstream_unreachable")


async def _relay(ws: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send) -> None:
    """Frames both ways until one side closes; the other side is then closed with its code."""

    async def client_to_upstream() -> None:
        while True:
            msg = await receive()
            kind = msg["type"]
            if kind == "websocket.receive":
                if msg.get("text") is not None:
                    await ws.send_str(msg["text"])
                elif msg.get("bytes") is not None:
                    await ws.send_bytes(msg["bytes"])
            elif kind == "websocket.disconnect":
                await ws.close(code=_sendable(msg.get("code", 1000)),
                               message=str(msg.get("reason") or "").encode()[:123])
                return

    async def upstream_to_client() -> None:
        while True:
            m = await ws.receive()
            if m.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": m.data})
            elif m.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": m.data})
            elif m.type == aiohttp.WSMsgType.CLOSE:
                await send({"type": "websocket.close", "code": _sendable(m.data or 1000),
                            "reason": m.extra or ""})
                return
            elif (m.type == aiohttp.WSMsgType.ERROR
                  and getattr(m.data, "code", None) == MESSAGE_TOO_BIG):
                await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG,
                            "reason": "upstream message too big"})
                return
            else:                                  # CLOSED / ERROR: the upstream went away
                await send({"type": "websocket.close", "code": INTERNAL_ERROR,
                            "reason": "upstream connection lost"})
                return

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            exc = t.exception()
            if exc is not None and not isinstance(exc, (aiohttp.ClientError, OSError,
                                                        ConnectionError)):
                raise exc
            if exc is not None:
                log.info("WebSocket relay ended: %s", type(exc).__name__)
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": INTERNAL_ERROR})
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _sendable(code: Any) -> int:
    if isinstance(code, int) and 1000 <= code < 5000 and code not in _RESERVED_CLOSE:
        return code
    return 1000

