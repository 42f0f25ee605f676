"""HTTP/1.1 upstream client for the forwarding hot path: pooled keep-alive connections.

A proxy needs little of a general HTTP client: the request head is already built (raw path,
headers exactly as given, ``Host`` included), nothing is decoded, there is no cookie jar, no
redirects, no URL object. Written on ``asyncio.Protocol`` (so it runs under uvloop) with
httptools' llhttp response parser, one round trip costs a fraction of aiohttp's
(tests/bench/upstream_clients.py: 11-33 us against 85-117 us).

Framing: a request body with ``content-length`` goes out as is, one without goes out chunked;
responses may be content-length, chunked (framing and trailers stripped, chunks streamed) or
close-delimited; HEAD, 204, 304 and 1xx carry no body; interim 1xx responses are skipped.
Timeouts run on one timer per exchange, re-armed lazily (moving a deadline is a float store):
``timeout`` bounds connect + time to response headers, pushed back while the request body is
moving; ``idle_timeout`` bounds every wait for body bytes afterwards.

A connection goes back to the pool only when its response was read to the end, the request
body was fully sent and both sides allow keep-alive. A pooled connection found dead before any
response byte arrived is retried once on a fresh connection, for an idempotent request without
a body only. ``https`` upstreams go to the ``https`` transport given (TLS is not done here).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit


from ..errors import BadGateway, GatewayTimeout
from .h1conn import MAX_HEAD_BYTES, _BadResponse, _Conn, _framed, _HeadDone  # noqa: F401

if TYPE_CHECKING:
    from .proxy import Transport, UpstreamResponse

__all__ = ["MAX_HEAD_BYTES", "H1Transport"]

Headers = list[tuple[bytes, bytes]]
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _Pool:
    """Connections to one origin: idle ones LIFO (the warmest first), at most ``limit`` open."""

    def __init__(self, host: str, port: int, limit: int, expiry: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port, self.limit, self.expiry = host, port, limit, expiry
        self.idle: list[_Conn] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, deadline: float) -> _Conn:
        idle, now = self.idle, self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.expiry:
                conn.close()
                continue
            return conn
        while self.open >= self.limit:
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise GatewayTimeout("no upstream connection free in time",
                                     code="upstream_timeout") from None
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
            if idle:
                return await self.acquire(deadline)
        return await self.connect(deadline)

    async def connect(self, deadline: float) -> _Conn:
        self.open += 1
        try:
            async with asyncio.timeout_at(deadline):
                transport, conn = await self.loop.create_connection(
                    lambda: _Conn(self), self.host, self.port)
        except TimeoutError:
            self._free()
            raise GatewayTimeout("upstream connect timed out", code="upstream_timeout") from None
        except OSError as exc:
            self._free()
            raise BadGateway(f"upstream: {type(exc).__name__}",
                             code="upstream_unreachable") from None
        except BaseException:
            self._free()               # cancelled (the client went away): give the slot back
            raise
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):   # asyncio and uvloop set it too
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def put(self, conn: _Conn) -> None:
        conn.idle_since, conn.reused = self.loop.time(), True
        self.idle.append(conn)
        self._wake_one()

    def lost(self, conn: _Conn) -> None:
        if conn.counted:
            conn.counted = False
            if not conn.busy and conn in self.idle:
                self.idle.remove(conn)
            self._free()

    def _free(self) -> None:
        self.open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()


class _H1Response:
    """The response head, and its body as an async iterator over the connection's buffer."""

    __slots__ = ("_conn", "_idle", "headers", "last", "status")

    def __init__(self, conn: _Conn, idle_timeout: float) -> None:
        self._conn: _Conn | None = conn
        self._idle = idle_timeout
        self.last = False              # the chunk just returned was the body's end
        self.status: int = conn.status
        self.headers: Headers = conn.headers

    def aiter_body(self) -> _H1Response:
        return self

    def __aiter__(self) -> _H1Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            chunks = conn.chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                conn.chunks, conn.buffered = [], 0
                if conn.complete:      # all of it: the caller can end the response with it
                    self._conn, self.last = None, True
                    conn.finish()      # back to the pool before the last ASGI message
                    return data
                if conn.read_paused and conn.transport is not None and not conn.closed:
                    conn.read_paused = False
                    conn.transport.resume_reading()
                return data
            if conn.complete:
                self._conn = None
                conn.finish()          # back to the pool before the last ASGI message
                raise StopAsyncIteration
            conn.deadline = conn.loop.time() + self._idle
            try:
                await conn.wait()
            except TimeoutError:
                raise GatewayTimeout("upstream body idle", code="upstream_idle_timeout") from None
            except Exception as exc:  # noqa: BLE001 (reset, bad framing, a failed upload)
                if conn.chunks or conn.complete:
                    continue           # deliver what arrived before the end
                raise BadGateway(f"upstream body: {type(exc).__name__}",
                                 code="upstream_reset") from None

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish()


def _split(url: str) -> tuple[str, str, str]:
    """``scheme://authority/target`` -> (scheme, authority, target)."""
    start = url.find("://") + 3
    slash = url.find("/", start)
    if slash < 0:
        return url[:start - 3], url[start:], "/"
    return url[:start - 3], url[start:slash], url[slash:]


def _host_port(authority: str) -> tuple[str, int]:
    parts = urlsplit("http://" + authority)
    return parts.hostname or "", parts.port or 80


class H1Transport:
    """The project's own HTTP/1.1 client behind the ``Transport`` protocol (plain http)."""

    def __init__(self, *, limit: int = 1024, keepalive_expiry: float = 15.0,
                 https: Transport | None = None, limits: dict[str, int] | None = None) -> None:
        self._limit, self._expiry, self._https = limit, keepalive_expiry, https
        self._limits = limits or {}           # per authority (upstreams.*.max_connections)
        self._pools: dict[str, _Pool] = {}

    def _pool(self, authority: str) -> _Pool:
        host, port = _host_port(authority)
        limit = self._limits.get(authority, self._limit)
        pool = self._pools[authority] = _Pool(host, port, limit, self._expiry)
        return pool

    async def send(self, method: str, url: str, headers: Headers,
                   body: AsyncIterator[bytes] | None, *, timeout: float,
                   idle_timeout: float) -> UpstreamResponse:
        scheme, authority, target = _split(url)
        if scheme != "http":
            if self._https is None:
                raise BadGateway(f"{scheme} upstreams need another transport",
                                 code="upstream_unreachable")
            return await self._https.send(method, url, headers, body, timeout=timeout,
                                          idle_timeout=idle_timeout)
        pool = self._pools.get(authority) or self._pool(authority)
        head, chunked = _head(method, target, headers, body is not None)
        head_only = method == "HEAD"
        deadline = pool.loop.time() + timeout
        retry = body is None and method in _IDEMPOTENT
        while True:
            conn = await pool.acquire(deadline)
            try:
                await conn.exchange(head, body, chunked, head_only, deadline, timeout)
            except TimeoutError:
                conn.finish()
                raise GatewayTimeout("no response headers from the upstream in time",
                                     code="upstream_timeout") from None
            except OSError as exc:
                stale = conn.reused and not conn.received
                conn.finish()
                if stale and retry:
                    retry = False      # once, and on a fresh connection
                    pool.close()
                    continue
                raise BadGateway(f"upstream: {type(exc).__name__}",
                                 code="upstream_unreachable") from None
            except _BadResponse as exc:
                conn.finish()
                raise BadGateway(f"upstream: {exc}", code="upstream_bad_response") from None
            except BaseException:
                conn.finish()          # cancelled (client gone) or the upload failed
                raise
            return _H1Response(conn, idle_timeout)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._https is not None:
            await self._https.aclose()


def _head(method: str, target: str, headers: Headers, has_body: bool) -> tuple[bytes, bool]:
    """The request head, byte for byte; chunked framing added only for a body of no length."""
    start = f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
    parts = [start]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    lines = len(headers) + 2                   # the request line, the fields, the blank line
    chunked = False
    if has_body:
        chunked = not any(n.lower() == b"content-length" for n, _ in headers)
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    # The headers were parsed or rendered by the gateway; a CR/LF here would split the head.
    if (head.count(b"\n") != lines or head.count(b"\r") != lines or start.count(b" ") != 2):
        raise BadGateway("request head not representable", code="upstream_bad_request")
    return head, chunked
