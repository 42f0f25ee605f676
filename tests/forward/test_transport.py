"""H1Transport (gateway/forward/h1.py): framing edge cases over real loopback sockets.

Each test scripts a raw upstream: for every request it receives (head and body parsed here),
a function returns the exact bytes to answer, or ``None`` to hang up without answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from gateway.errors import BadGateway, GatewayError, GatewayTimeout
from gateway.forward.h1 import MAX_HEAD_BYTES, H1Transport
from gateway.forward.proxy import UpstreamResponse

Headers = list[tuple[bytes, bytes]]


@dataclass
class Seen:
    conn: int
    head: bytes
    body: bytes


@dataclass
class Scripted:
    answer: Callable[[Seen], bytes | None]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                body = b""
                if b"transfer-encoding: chunked" in lower:
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        body += await reader.readexactly(size)
                        await reader.readexactly(2)
                    await reader.readuntil(b"\r\n")
                elif b"content-length: " in lower:
                    length = int(lower.split(b"content-length: ")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                seen = Seen(conn, head, body)
                self.seen.append(seen)
                out = self.answer(seen)
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass                                         # cancelled: the test is over
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    scripted = Scripted(lambda s: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    scripted.port = server.sockets[0].getsockname()[1]
    yield scripted
    server.close()


@pytest.fixture
async def h1() -> AsyncIterator[H1Transport]:
    t = H1Transport()
    yield t
    await t.aclose()


def host(up: Scripted) -> Headers:
    return [(b"host", b"127.0.0.1:%d" % up.port)]


async def call(t: H1Transport, up: Scripted, method: str = "GET", path: str = "/x",
               headers: Headers | None = None, body: AsyncIterator[bytes] | None = None,
               timeout: float = 5, idle: float = 5) -> tuple[UpstreamResponse, bytes]:
    resp = await t.send(method, f"http://127.0.0.1:{up.port}{path}",
                        headers if headers is not None else host(up), body,
                        timeout=timeout, idle_timeout=idle)
    data = b""
    try:
        async for chunk in resp.aiter_body():
            data += chunk
    finally:
        await resp.aclose()
    return resp, data


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_head_is_sent_byte_for_byte(h1: H1Transport, upstream: Scripted) -> None:
    headers = [*host(upstream), (b"X-Dup", b"1"), (b"x-dup", b"2"), (b"cookie", b"a=1")]
    await call(h1, upstream, path="/a%7Bb/~?x=%2f&y=1&y=2", headers=headers)
    assert upstream.seen[0].head == (b"GET /a%7Bb/~?x=%2f&y=1&y=2 HTTP/1.1\r\n"
                                     b"host: 127.0.0.1:" + str(upstream.port).encode() +
                                     b"\r\nX-Dup: 1\r\nx-dup: 2\r\ncookie: a=1\r\n\r\n")


async def test_body_with_length_passes_and_without_goes_chunked(
        h1: H1Transport, upstream: Scripted) -> None:
    await call(h1, upstream, "POST", headers=[*host(upstream), (b"content-length", b"5")],
               body=chunks(b"he", b"llo"))
    assert upstream.seen[-1].body == b"hello"
    assert b"transfer-encoding" not in upstream.seen[-1].head
    await call(h1, upstream, "POST", body=chunks(b"he", b"", b"llo"))
    assert upstream.seen[-1].body == b"hello"
    assert upstream.seen[-1].head.endswith(b"\r\ntransfer-encoding: chunked\r\n\r\n")


async def test_crlf_in_a_header_never_reaches_the_wire(h1: H1Transport, upstream: Scripted) -> None:
    with pytest.raises(BadGateway):
        await call(h1, upstream, headers=[*host(upstream), (b"x", b"a\r\nx-auth-sub: admin")])
    assert upstream.seen == []


async def test_chunked_response_with_extensions_and_trailers(
        h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                 b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
                                 b"5;name=value\r\nhello\r\n6\r\n world\r\n"
                                 b"0\r\nX-Trailer: t\r\n\r\n")
    resp, body = await call(h1, upstream)
    assert (resp.status, body) == (200, b"hello world")
    assert resp.headers == [(b"Transfer-Encoding", b"chunked"), (b"Set-Cookie", b"a=1"),
                            (b"Set-Cookie", b"b=2")]
    await call(h1, upstream)
    assert upstream.connections == 1                    # fully read: the connection is reused


async def test_close_delimited_response(h1: H1Transport, upstream: Scripted) -> None:
    def answer(seen: Seen) -> bytes | None:
        if len(upstream.seen) == 1:
            asyncio.get_running_loop().call_later(0.05, lambda: None)
            return b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    upstream.answer = answer
    # the scripted server keeps the line open; closing it after the answer ends the body
    original = upstream.handle

    async def close_after_first(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        if upstream.connections == 0:
            upstream.connections += 1
            await reader.readuntil(b"\r\n\r\n")
            upstream.seen.append(Seen(1, b"", b""))
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil ")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"the end")
            writer.close()
            return
        await original(reader, writer)

    server = await asyncio.start_server(close_after_first, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        resp, body = await call(h1, upstream)
        assert (resp.status, body) == (200, b"until the end")
        resp, body = await call(h1, upstream)
        assert body == b"ok" and upstream.connections == 2   # never reused after EOF framing
    finally:
        server.close()


async def test_head_with_content_length_has_no_body_and_reuses(
        h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: (b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"
                                 if s.head.startswith(b"HEAD") else
                                 b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    resp, body = await asyncio.wait_for(call(h1, upstream, "HEAD"), 3)
    assert (resp.status, body, resp.headers) == (200, b"", [(b"content-length", b"1234")])
    _, body = await call(h1, upstream)
    assert body == b"ok" and upstream.connections == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(h1: H1Transport, upstream: Scripted, status: int) -> None:
    upstream.answer = lambda s: b"HTTP/1.1 %d X\r\netag: e\r\n\r\n" % status
    resp, body = await asyncio.wait_for(call(h1, upstream), 3)
    assert (resp.status, body) == (status, b"")
    await call(h1, upstream)
    assert upstream.connections == 1


async def test_interim_100_continue_is_skipped(h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: (b"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\n"
                                 b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
                                 b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
    resp, body = await call(h1, upstream, "POST", body=chunks(b"data"))
    assert (resp.status, resp.headers, body) == (201, [(b"content-length", b"2")], b"ok")


async def test_upgrade_answer_is_502(h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n"
                                 b"connection: upgrade\r\n\r\n")
    with pytest.raises(BadGateway) as info:
        await call(h1, upstream)
    assert info.value.code == "upstream_bad_response"


@pytest.mark.parametrize("shape", ["one header", "many headers", "garbage"])
async def test_oversize_or_bad_head_is_502(h1: H1Transport, upstream: Scripted,
                                           shape: str) -> None:
    big = {"one header": b"x-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n",
           "many headers": b"x-h: 0123456789012345678901234567890123456789\r\n" * 2000,
           "garbage": b"\x00\x01 nonsense\r\n"}[shape]
    upstream.answer = lambda s: b"HTTP/1.1 200 OK\r\n" + big + b"content-length: 0\r\n\r\n"
    with pytest.raises(BadGateway) as info:
        await call(h1, upstream)
    assert info.value.code == "upstream_bad_response"


async def test_pooled_connection_reused_sequentially_and_bounded(upstream: Scripted) -> None:
    t = H1Transport(limit=2)
    try:
        for _ in range(5):
            await call(t, upstream)
        assert upstream.connections == 1
        await asyncio.gather(*(call(t, upstream) for _ in range(6)))
        assert upstream.connections == 2                # the limit, waited for, never exceeded
    finally:
        await t.aclose()


async def test_unread_response_is_not_reused(h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    resp = await h1.send("GET", f"http://127.0.0.1:{upstream.port}/", host(upstream), None,
                         timeout=5, idle_timeout=5)
    await resp.aclose()                                  # body never read
    await call(h1, upstream)
    assert upstream.connections == 2


async def test_connection_close_is_honoured(h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    await call(h1, upstream)
    await call(h1, upstream)
    assert upstream.connections == 2


async def test_stale_pooled_connection_retried_once_for_get(
        h1: H1Transport, upstream: Scripted) -> None:
    def answer(seen: Seen) -> bytes | None:
        if seen.conn == 1 and len([s for s in upstream.seen if s.conn == 1]) == 2:
            return None                                  # hang up instead of answering
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    upstream.answer = answer
    await call(h1, upstream)
    resp, body = await call(h1, upstream)
    assert (resp.status, body, upstream.connections) == (200, b"ok", 2)


async def test_stale_pooled_connection_never_retried_with_a_body(
        h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: (None if len(upstream.seen) == 2 else
                                 b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await call(h1, upstream)
    with pytest.raises(BadGateway) as info:
        await call(h1, upstream, "POST", headers=[*host(upstream), (b"content-length", b"1")],
                   body=chunks(b"x"))
    assert info.value.code == "upstream_unreachable"
    assert len(upstream.seen) == 2                       # sent once, not replayed


async def test_fresh_connection_hangup_is_502_not_retried(
        h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: None
    with pytest.raises(BadGateway):
        await call(h1, upstream)
    assert upstream.connections == 1


async def test_timeouts(h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: b""                      # never answers, keeps the line open
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayTimeout) as info:
        await call(h1, upstream, timeout=0.3)
    assert info.value.code == "upstream_timeout" and 0.25 < loop.time() - started < 1.5

    upstream.answer = lambda s: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234"
    resp = await h1.send("GET", f"http://127.0.0.1:{upstream.port}/", host(upstream), None,
                         timeout=5, idle_timeout=0.3)
    try:
        body = resp.aiter_body()
        assert await anext(body) == b"01234"
        started = loop.time()
        with pytest.raises(GatewayTimeout) as info:
            await anext(body)
        assert info.value.code == "upstream_idle_timeout" and loop.time() - started < 1.5
    finally:
        await resp.aclose()


async def test_reset_mid_body_is_upstream_reset(h1: H1Transport, upstream: Scripted) -> None:
    upstream.answer = lambda s: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234"

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        resp = await h1.send("GET", f"http://127.0.0.1:{upstream.port}/", host(upstream), None,
                             timeout=5, idle_timeout=5)
        got = b""
        with pytest.raises(BadGateway) as info:
            async for chunk in resp.aiter_body():
                got += chunk
        assert (got, info.value.code) == (b"01234", "upstream_reset")
        await resp.aclose()
    finally:
        server.close()


async def test_refused_is_502() -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = H1Transport()
    with pytest.raises(BadGateway) as info:
        await t.send("GET", f"http://127.0.0.1:{port}/", [], None, timeout=2, idle_timeout=2)
    assert info.value.code == "upstream_unreachable"
    await t.aclose()


class _Recorder:
    def __init__(self) -> None:
        self.urls: list[str] = []
        self.closed = False

    async def send(self, method: str, url: str, headers: Headers,
                   body: AsyncIterator[bytes] | None, *, timeout: float,
                   idle_timeout: float) -> UpstreamResponse:
        self.urls.append(url)
        raise GatewayTimeout("recorded")

    async def aclose(self) -> None:
        self.closed = True


async def test_https_goes_to_the_https_transport() -> None:
    with pytest.raises(BadGateway):
        await H1Transport().send("GET", "https://example.test/", [], None, timeout=1,
                                 idle_timeout=1)
    other = _Recorder()
    t = H1Transport(https=other)
    with pytest.raises(GatewayError):
        await t.send("GET", "https://example.test/a?b", [], None, timeout=1, idle_timeout=1)
    await t.aclose()
    assert other.urls == ["https://example.test/a?b"] and other.closed


async def test_cancelled_while_waiting_gives_the_slot_back(upstream: Scripted) -> None:
    upstream.answer = lambda s: b""                      # never answers
    t = H1Transport(limit=1)
    try:
        first = asyncio.create_task(call(t, upstream))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(call(t, upstream))  # waits for the only slot
        await asyncio.sleep(0.1)
        second.cancel()
        first.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        upstream.answer = lambda s: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        _, body = await asyncio.wait_for(call(t, upstream), 3)
        assert body == b"ok"
    finally:
        await t.aclose()
