"""The stack floor: uvicorn + a pure ASGI pass-through over one aiohttp session, no auth at all.

What poolgate's own stack (uvicorn, ASGI, aiohttp) costs before any gateway logic: poolgate can
get close to this, not past it. Streams the body both ways like a proxy; strips nothing,
checks nothing. Run with 1 worker, access log off:

    python tests/bench/floor_proxy.py --port 0 --upstream http://127.0.0.1:9001 [--loop asyncio|uvloop]

Prints ``floor listening 127.0.0.1:PORT`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp
import uvicorn

HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
       b"host", b"proxy-connection"}


class H1FloorProxy:
    """The same pass-through on poolgate's own HTTP/1.1 client (gateway/forward/h1.py)."""

    def __init__(self, upstream: str) -> None:
        from gateway.forward.h1 import H1Transport
        self.upstream = upstream
        self.transport = H1Transport()
        self.authority = upstream.split("://", 1)[1].encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await self.transport.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = [(b"host", self.authority)] + [(k, v) for k, v in scope["headers"]
                                                 if k not in HOP]
        path = scope.get("raw_path") or scope["path"].encode()
        url = self.upstream + path.decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        resp = await self.transport.send(scope["method"], url, headers, None, timeout=30,
                                         idle_timeout=60)
        try:
            out = [(k, v) for k, v in resp.headers if k.lower() not in HOP]
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.aiter_body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await resp.aclose()


class FloorProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    self.session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=1024), auto_decompress=False,
                        cookie_jar=aiohttp.DummyCookieJar())
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.session is not None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k not in HOP]
        path = scope.get("raw_path") or scope["path"].encode()
        url = self.upstream + path.decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        async with self.session.request(scope["method"], url, headers=headers,
                                        allow_redirects=False) as resp:
            out = [(k, v) for k, v in resp.raw_headers if k.lower() not in HOP]
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                    help="asyncio mirrors `poolgate serve` as it runs today (asyncio.run)")
    ap.add_argument("--transport", choices=("aiohttp", "h1"), default="aiohttp",
                    help="h1: poolgate's own upstream client (GET/HEAD without bodies only)")
    ap.add_argument("--http", choices=("httptools", "poolgate"), default="httptools",
                    help="poolgate: the gateway's own server protocol (gateway/listen)")
    a = ap.parse_args()
    http: Any = "httptools"
    if a.http == "poolgate":
        from gateway.listen import GatewayHttpProtocol
        http = GatewayHttpProtocol
    app = H1FloorProxy(a.upstream) if a.transport == "h1" else FloorProxy(a.upstream)
    config = uvicorn.Config(app, host="127.0.0.1", port=a.port, http=http,
                            access_log=False, log_level="warning", proxy_headers=False,
                            lifespan="on", loop="none")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"floor listening 127.0.0.1:{port}", flush=True)
        await task

    if a.loop == "uvloop":
        import uvloop
        uvloop.run(run())
    else:
        asyncio.run(run())


if __name__ == "__main__":
    main()
