"""What one upstream round trip costs in CPU with each client a gateway could use.

    .venv/bin/python tests/bench/upstream_clients.py [--seconds 3] [--concurrency 32]

Starts the fixed-response upstream (tests/bench/upstream.py), then for each client runs
``--concurrency`` tasks doing keep-alive GETs (with ~8 request headers, as a proxy sends) for
``--seconds`` and reports this process's CPU microseconds per request (user + system, so
generator-side kernel work counts too) and req/s. Clients: httpx.AsyncClient,
aiohttp.ClientSession, and a minimal HTTP/1.1 client on asyncio.Protocol + httptools (the
floor a hand-written pooled client could reach; a sketch, not production code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADERS = [("x-forwarded-for", "127.0.0.1"), ("x-forwarded-proto", "http"),
           ("x-forwarded-host", "gw.example"), ("x-request-id", "0123456789abcdef"),
           ("x-auth-sub", "user-00001"), ("x-auth-role", "member"),
           ("x-gateway-credential", "e" * 400), ("accept", "*/*")]


async def drive(one, seconds: float, concurrency: int) -> dict[str, float]:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await one()
            count += 1
    await one()
    c0, t0 = os.times(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    c1, el = os.times(), time.perf_counter() - t0
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {"rps": round(count / el), "cpu_us_per_req": round(cpu / count * 1e6, 1)}


async def bench_httpx(url: str, seconds: float, conc: int) -> dict[str, float]:
    import httpx
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=conc)) as c:
        async def one() -> None:
            r = await c.get(url, headers=HEADERS)
            r.read()
        return await drive(one, seconds, conc)


async def bench_aiohttp(url: str, seconds: float, conc: int) -> dict[str, float]:
    import aiohttp
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc),
                                     auto_decompress=False) as s:
        async def one() -> None:
            async with s.get(url, headers=HEADERS) as r:
                await r.read()
        return await drive(one, seconds, conc)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; responses parsed with httptools."""

    def __init__(self) -> None:
        import httptools
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[bytes] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(b"".join(self.body))

    async def request(self, head: bytes) -> bytes:
        self.body = []
        self.done = asyncio.get_running_loop().create_future()
        self.t.write(head)                       # one write: request line + headers
        return await self.done


async def bench_raw(host: str, port: int, seconds: float, conc: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    pool: list[_Conn] = []
    for _ in range(conc):
        _, proto = await loop.create_connection(_Conn, host, port)
        pool.append(proto)
    head = (b"GET /x HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in HEADERS) + b"\r\n")

    async def one() -> None:
        conn = pool.pop()
        try:
            await conn.request(head)
        finally:
            pool.append(conn)
    try:
        return await drive(one, seconds, conc)
    finally:
        for c in pool:
            c.t.close()


async def main_async(port: int, seconds: float, conc: int) -> dict[str, dict[str, float]]:
    url = f"http://127.0.0.1:{port}/x"
    return {"httpx": await bench_httpx(url, seconds, conc),
            "aiohttp": await bench_aiohttp(url, seconds, conc),
            "asyncio.Protocol + httptools": await bench_raw("127.0.0.1", port, seconds, conc)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    a = ap.parse_args()
    up = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", "0"],
                          stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = up.stdout.readline() if up.stdout else ""
        port = int(line.rsplit(":", 1)[1])
        coro = main_async(port, min(a.seconds, 30.0), a.concurrency)
        if a.loop == "uvloop":
            import uvloop
            res = uvloop.run(coro)
        else:
            res = asyncio.run(coro)
        print(json.dumps({"loop": a.loop, "concurrency": a.concurrency, **res}, indent=1))
    finally:
        up.terminate()
        try:
            up.wait(5)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    main()
