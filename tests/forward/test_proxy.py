"""Forwarding I/O (gateway/forward/proxy.py) over real loopback sockets, every transport.

client (raw socket) -> uvicorn running a minimal gateway app around ``forward`` -> a raw
asyncio HTTP/1.1 upstream that records exactly what arrived and counts bodies without
storing them. No mocks: every byte crosses a real socket.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gateway.config import Upstream
from gateway.errors import GatewayError
from gateway.forward.headers import check_framing, request_id, upstream_request_headers
from gateway.forward.proxy import AiohttpTransport, H1Transport, HttpxTransport, Transport, forward
from gateway.metrics import Metrics
from gateway.routes import normalise_path

MiB = 1 << 20
CHUNK = b"x" * 65536
Headers = list[tuple[bytes, bytes]]


# --------------------------------------------------------------------------- HTTP/1.1 helpers

async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, Headers]:
    head = await reader.readuntil(b"\r\n\r\n")
    line, *lines = head[:-4].split(b"\r\n")
    return line, [(n.strip(), v.strip()) for n, _, v in (h.partition(b":") for h in lines)]


def get(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


async def read_body(reader: asyncio.StreamReader, headers: Headers, *, keep: bool,
                    until_eof: bool = False) -> tuple[int, bytes, Headers]:
    """(length, body if keep, trailers); counts without storing unless ``keep``."""
    kept, total, trailers = bytearray(), 0, []
    if get(headers, b"transfer-encoding"):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    n, _, v = line.partition(b":")
                    trailers.append((n.strip(), v.strip()))
                return total, bytes(kept), trailers
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            total += size
            if keep:
                kept += data
    remaining = int(get(headers, b"content-length")[0]) if get(headers, b"content-length") else (
        1 << 62 if until_eof else 0)
    while remaining:
        data = await reader.read(min(remaining, 1 << 16))
        if not data and until_eof:
            break
        if not data:
            raise asyncio.IncompleteReadError(b"cut", remaining)
        total, remaining = total + len(data), remaining - len(data)
        if keep:
            kept += data
    return total, bytes(kept), trailers


class RecordingUpstream:
    """A raw HTTP/1.1 upstream; behaviour chosen by the first path segment."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.closed = asyncio.Event()          # set when /endless notices the proxy went away

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line, headers = await read_head(reader)
                method, target, _ = line.split(b" ")
                length, _, trailers = await read_body(reader, headers, keep=False)
                self.seen.append({"method": method, "target": target, "headers": headers,
                                  "body_len": length, "trailers": trailers})
                await self.respond(method, target, length, reader, writer)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self.closed.set()                               # cut off mid-message
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def respond(self, method: bytes, target: bytes, length: int,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind = target.split(b"/")[1].split(b"?")[0]
        if kind == b"hang":
            await asyncio.wait_for(reader.read(), 10)       # until the proxy gives up
            self.closed.set()
            raise ConnectionError
        if kind == b"big":
            size = int(target.split(b"/")[2])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            while size > 0:
                writer.write(CHUNK[:size])
                size -= len(CHUNK)
                await writer.drain()
            return
        if kind == b"endless":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            deadline = time.monotonic() + 20                  # far longer than any test waits
            try:
                while time.monotonic() < deadline:
                    writer.write(b"10000\r\n" + CHUNK + b"\r\n")
                    await writer.drain()
            except ConnectionError:
                self.closed.set()                               # the proxy hung up on us
                raise
            return
        if kind == b"stall":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            await writer.drain()
            await asyncio.sleep(10)
            return
        extra = b""
        if kind == b"gzip":
            body = gzip.compress(b"hello " * 1000)
            extra = b"content-encoding: gzip\r\ncontent-type: text/plain\r\n"
        else:
            body = json.dumps({"body_len": length}).encode()
        if kind == b"cookie":
            extra = (b"set-cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\n"
                     b"connection: X-Internal\r\nx-internal: secret\r\nx-request-id: upstream\r\n")
        if method == b"HEAD":
            body = b""
        writer.write(b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n%s" % (extra, len(body), body))
        await writer.drain()


def gateway_app(transport: Transport, upstream: Upstream, metrics: Metrics) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = scope["headers"]
        try:
            check_framing(raw)
            path = normalise_path(scope["raw_path"])
            headers = upstream_request_headers(
                raw, remove=frozenset({b"x-auth-sub"}), peer=scope["client"][0], trusted=False,
                scheme=scope["scheme"], host=get(raw, b"host")[0],
                request_id=request_id(raw, trusted=False), upstream_authority=upstream.authority,
                extra=[])
            await forward(scope, receive, send, transport=transport, upstream=upstream, path=path,
                          headers=headers, metrics=metrics)
        except GatewayError as exc:
            body = json.dumps({"error": exc.error, "reason": exc.code}).encode()
            await send({"type": "http.response.start", "status": exc.status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
    return app


class Stack:
    def __init__(self, port: int, upstream: RecordingUpstream, authority: str,
                 metrics: Metrics) -> None:
        self.port, self.upstream, self.authority, self.metrics = port, upstream, authority, metrics

    async def request(self, head: bytes, body: AsyncIterator[bytes] | bytes = b"", *,
                      keep: bool = True) -> tuple[int, Headers, bytes, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(head.replace(b"\n", b"\r\n") + b"\r\n")
            if isinstance(body, bytes):
                writer.write(body)
            else:
                async for chunk in body:
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
            line, headers = await asyncio.wait_for(read_head(reader), 10)
            length, data, _ = await asyncio.wait_for(
                read_body(reader, headers, keep=keep, until_eof=b"HEAD" not in head[:5]), 30)
            return int(line.split(b" ")[1]), headers, data, length
        finally:
            writer.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TRANSPORTS = {"h1": H1Transport, "aiohttp": AiohttpTransport, "httpx": HttpxTransport}


@pytest.fixture(params=sorted(TRANSPORTS))
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    t: Transport = TRANSPORTS[request.param]()
    yield t
    await t.aclose()


async def start_stack(transport: Transport, *, port: int | None = None, timeout: float = 5,
                      idle: float = 5) -> AsyncIterator[Stack]:
    recorder = RecordingUpstream()
    up_server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    up_port = port or up_server.sockets[0].getsockname()[1]
    upstream = Upstream(id="orders", url=f"http://127.0.0.1:{up_port}", timeout_seconds=timeout,
                        idle_timeout_seconds=idle)
    metrics = Metrics()
    config = uvicorn.Config(gateway_app(transport, upstream, metrics), host="127.0.0.1", port=0,
                            lifespan="off", log_level="critical", proxy_headers=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield Stack(server.servers[0].sockets[0].getsockname()[1], recorder, upstream.authority,
                    metrics)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        up_server.close()
        await asyncio.wait_for(up_server.wait_closed(), 10)


@pytest.fixture
async def stack(transport: Transport) -> AsyncIterator[Stack]:
    async for s in start_stack(transport):
        yield s


GET = b"GET %s HTTP/1.1\nHost: api.example\nConnection: close\n"


async def test_raw_path_query_and_headers_forwarded(stack: Stack) -> None:
    status, headers, _body, _ = await stack.request(
        GET % b"/echo/a%7bb/./c/..//%7E?x=%2f&y=1&y=2&z=%7e" + b"X-Dup: 1\nX-Dup: 2\n"
        b"X_Auth_Sub: admin\nX-Request-Id: spoofed\nX-Forwarded-For: 6.6.6.6\n"
        b"X-HTTP-Method-Override: DELETE\nKeep-Alive: 5\n")
    assert status == 200
    seen = stack.upstream.seen[-1]
    assert seen["target"] == b"/echo/a%7Bb/~?x=%2f&y=1&y=2&z=%7e"
    up = seen["headers"]
    assert get(up, b"host") == [stack.authority.encode()]
    assert get(up, b"x-dup") == [b"1", b"2"]
    assert get(up, b"x-forwarded-for") == [b"6.6.6.6, 127.0.0.1"]
    assert get(up, b"x-forwarded-proto") == [b"http"]
    assert get(up, b"x-forwarded-host") == [b"api.example"]
    sent_rid = get(up, b"x-request-id")
    assert len(sent_rid) == 1 and sent_rid[0] != b"spoofed"
    assert get(headers, b"x-request-id") == sent_rid           # returned on the response too
    lowered = {n.lower() for n, _ in up}
    for absent in (b"x_auth_sub", b"x-http-method-override", b"keep-alive", b"connection",
                   b"user-agent", b"accept-encoding", b"accept", b"content-type", b"cookie"):
        assert absent not in lowered, absent


async def test_set_cookie_kept_hop_by_hop_dropped_and_no_cookie_jar(stack: Stack) -> None:
    status, headers, _, _ = await stack.request(GET % b"/cookie")
    assert status == 200
    assert get(headers, b"set-cookie") == [b"a=1; Path=/", b"b=2; Path=/"]
    assert get(headers, b"x-internal") == []                   # named in Connection upstream
    assert get(headers, b"x-request-id") == get(stack.upstream.seen[-1]["headers"],
                                                b"x-request-id")
    await stack.request(GET % b"/echo")                         # the same pooled transport
    assert get(stack.upstream.seen[-1]["headers"], b"cookie") == []


async def test_no_decompression(stack: Stack) -> None:
    status, headers, body, _ = await stack.request(GET % b"/gzip" + b"Accept-Encoding: gzip\n")
    assert status == 200
    assert get(headers, b"content-encoding") == [b"gzip"]
    assert gzip.decompress(body) == b"hello " * 1000            # passed as-is, still compressed
    assert get(stack.upstream.seen[-1]["headers"], b"accept-encoding") == [b"gzip"]


async def test_head_passes(stack: Stack) -> None:
    status, _headers, body, _ = await stack.request(b"HEAD /echo HTTP/1.1\nHost: a\n"
                                                   b"Connection: close\n")
    assert (status, body) == (200, b"")
    assert stack.upstream.seen[-1]["method"] == b"HEAD"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_small_upload_and_trailers_never_forwarded(stack: Stack, framing: str) -> None:
    payload = b"a" * 1000
    if framing == "chunked":
        head = (b"POST /echo HTTP/1.1\nHost: a\nConnection: close\nTransfer-Encoding: chunked\n"
                b"Trailer: X-Auth-Sub\n")
        body = b"3e8\r\n" + payload + b"\r\n0\r\nX-Auth-Sub: admin\r\n\r\n"
    else:
        head = b"POST /echo HTTP/1.1\nHost: a\nConnection: close\nContent-Length: 1000\n"
        body = payload
    status, _, data, _ = await stack.request(head, body)
    assert (status, json.loads(data)) == (200, {"body_len": 1000})
    seen = stack.upstream.seen[-1]
    assert seen["trailers"] == []
    assert get(seen["headers"], b"x-auth-sub") == [] and get(seen["headers"], b"trailer") == []
    if framing == "content-length":
        assert get(seen["headers"], b"content-length") == [b"1000"]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def measure_peak(work: Any) -> tuple[Any, int]:
    base, peak, done = rss(), [0], asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        result = await work
    finally:
        done.set()
        await asyncio.wait_for(sampler, 5)
    return result, max(peak[0], rss()) - base


async def test_20_mib_streams_both_ways_in_bounded_memory(stack: Stack) -> None:
    await stack.request(GET % b"/big/1000000", keep=False)      # warm pools and buffers
    size = 20 * MiB

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // len(CHUNK)):
            yield CHUNK

    head = b"POST /upload HTTP/1.1\nHost: a\nConnection: close\nContent-Length: %d\n" % size
    (status, _, data, _), growth = await measure_peak(stack.request(head, chunks()))
    assert (status, json.loads(data)) == (200, {"body_len": size})
    assert growth < 12 * MiB, f"upload grew RSS by {growth / MiB:.1f} MiB"

    (status, _, _, length), growth = await measure_peak(
        stack.request(GET % b"/big/%d" % size, keep=False))
    assert (status, length) == (200, size)
    assert growth < 12 * MiB, f"download grew RSS by {growth / MiB:.1f} MiB"


async def test_client_disconnect_stops_upstream(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(b"GET /endless HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.wait_for(read_head(reader), 10)
    await asyncio.wait_for(reader.readexactly(100000), 10)
    writer.close()
    await asyncio.wait_for(stack.upstream.closed.wait(), 5)


async def test_client_disconnect_while_waiting_for_headers(transport: Transport) -> None:
    async for stack in start_stack(transport, timeout=5):
        _reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.3)
        writer.close()
        started = time.monotonic()
        await asyncio.wait_for(stack.upstream.closed.wait(), 3)
        assert time.monotonic() - started < 2                     # not the 5 s timeout


async def test_client_disconnect_mid_upload(stack: Stack) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (10 * MiB))
    for _ in range(16):
        writer.write(CHUNK)
        await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.wait_for(stack.upstream.closed.wait(), 5)


async def test_502_when_upstream_refuses(transport: Transport) -> None:
    async for stack in start_stack(transport, port=closed_port()):
        status, _, body, _ = await stack.request(GET % b"/echo")
        assert (status, json.loads(body)) == (502, {"error": "bad_gateway",
                                                    "reason": "upstream_unreachable"})
        text = stack.metrics.exposition().decode()
        assert 'poolgate_upstream_errors_total{code="upstream_unreachable",upstream="orders"} 1.0' \
            in text


async def test_504_within_timeout(transport: Transport) -> None:
    async for stack in start_stack(transport, timeout=0.5):
        started = time.monotonic()
        status, _, body, _ = await stack.request(GET % b"/hang")
        elapsed = time.monotonic() - started
        assert (status, json.loads(body)["reason"]) == (504, "upstream_timeout")
        assert 0.45 <= elapsed < 1.5


async def test_slow_but_moving_upload_is_not_a_timeout(transport: Transport) -> None:
    async for stack in start_stack(transport, timeout=0.5):
        async def trickle() -> AsyncIterator[bytes]:
            for _ in range(5):                                  # 1 s in all, > timeout
                await asyncio.sleep(0.2)
                yield b"5\r\nhello\r\n"
            yield b"0\r\n\r\n"

        head = b"POST /echo HTTP/1.1\nHost: a\nConnection: close\nTransfer-Encoding: chunked\n"
        status, _, body, _ = await stack.request(head, trickle())
        assert (status, json.loads(body)) == (200, {"body_len": 25})


async def test_idle_timeout_after_start_aborts(transport: Transport) -> None:
    async for stack in start_stack(transport, idle=0.5):
        started = time.monotonic()
        status, headers, body, _length = await stack.request(GET % b"/stall")
        assert status == 200 and get(headers, b"content-length") == [b"100"]
        assert body == b"0123456789"                             # truncated: the client can tell
        assert time.monotonic() - started < 3
