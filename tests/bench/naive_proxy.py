"""The baseline: the JWT proxy most teams write first (Starlette + httpx + PyJWT).

Per request: PyJWT verifies the bearer token (signature, iss, aud, exp) with the key fetched
once at start-up, then the request is forwarded with one shared ``httpx.AsyncClient`` and
the whole upstream body is buffered. No verification cache. Run with 1 uvicorn worker and
the access log off:

    python tests/bench/naive_proxy.py --port 0 --upstream http://127.0.0.1:9001 \
        --jwks http://127.0.0.1:9002/jwks.json --issuer https://bench.example/ --audience bench

Prints ``naive listening 127.0.0.1:PORT`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import AsyncIterator

import httpx
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "host", "authorization", "content-length"}


def build_app(upstream: str, jwks_url: str, issuer: str, audience: str) -> Starlette:
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=30) as client:
            jwks = (await client.get(jwks_url)).json()
            state["keys"] = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
            state["client"] = client
            yield

    async def proxy(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return JSONResponse({"error": "invalid_token"}, 401)
        token = auth[7:]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            claims = jwt.decode(token, state["keys"][kid], algorithms=["RS256"],
                                audience=audience, issuer=issuer,
                                options={"require": ["exp", "iss", "sub"]})
        except (jwt.PyJWTError, KeyError):
            return JSONResponse({"error": "invalid_token"}, 401)
        headers = [(k, v) for k, v in request.headers.items() if k not in HOP]
        headers.append(("x-auth-sub", str(claims["sub"])))
        resp = await state["client"].request(request.method, request.url.path,
                                             params=request.query_params, headers=headers,
                                             content=await request.body())
        out = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP]
        return Response(resp.content, resp.status_code, headers=dict(out))

    return Starlette(routes=[Route("/{path:path}", proxy,
                                   methods=["GET", "POST", "PUT", "DELETE", "PATCH"])],
                     lifespan=lifespan)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--jwks", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--audience", required=True)
    a = ap.parse_args()
    app = build_app(a.upstream, a.jwks, a.issuer, a.audience)
    # uvicorn binds the port itself, as `uvicorn app:app --port N` would (a socket made with
    # proto 0 and passed in would miss asyncio's TCP_NODELAY and stall 40 ms per response).
    config = uvicorn.Config(app, host="127.0.0.1", port=a.port, access_log=False,
                            log_level="warning", workers=1, proxy_headers=False, lifespan="on")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"naive listening 127.0.0.1:{port}", flush=True)
        await task

    try:                                   # what `uvicorn` itself picks with loop="auto"
        import uvloop
        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


if __name__ == "__main__":
    main()
