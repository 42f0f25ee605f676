"""The aiohttp and httpx transports behind the ``Transport`` interface of ``proxy.py``.

Both keep every forwarding guarantee: raw path, repeated headers, no cookie jar, no
decompression, streaming both ways; h1.py is the default, these remain selectable (aiohttp
also carries https upstreams).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import httpx
from yarl import URL

from ..errors import BadGateway, GatewayTimeout

if TYPE_CHECKING:
    from .proxy import UpstreamResponse

R = TypeVar("R")
Headers = list[tuple[bytes, bytes]]
_AIOHTTP_ERRORS = (aiohttp.ClientError, OSError)
_HTTPX_ERRORS = (httpx.TransportError, OSError)    # client timeouts are off: asyncio's rule


class _Deadline:
    """The response-headers deadline: one timer, pushed back while the request body moves.

    ``timeout`` bounds connect + time to response headers; a slow but progressing upload is
    not the upstream's fault, so each body chunk restarts the clock (as Envoy starts its route
    timeout once the request is complete). A stalled upload still times out. Moving the
    deadline is a float store; the timer re-arms itself lazily when it fires early (cheaper
    than ``asyncio.timeout`` + ``reschedule`` per chunk, which made a new timer every time).
    """

    __slots__ = ("at", "expired", "handle", "live", "loop", "task", "timeout")

    def __init__(self, timeout: float) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.task, self.timeout = asyncio.current_task(), timeout
        self.at = loop.time() + timeout
        self.expired, self.live = False, True
        self.handle = loop.call_at(self.at, self._fire)

    def _fire(self) -> None:
        if not self.live:
            return
        if self.loop.time() < self.at:
            self.handle = self.loop.call_at(self.at, self._fire)
            return
        self.expired = True
        assert self.task is not None
        self.task.cancel()

    def done(self) -> None:
        self.live = False
        self.handle.cancel()

    async def paced(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in body:
            self.at = self.loop.time() + self.timeout
            yield chunk
        self.at = self.loop.time() + self.timeout


async def _response_within(timeout: float, body: AsyncIterator[bytes] | None,
                           start: Callable[[AsyncIterator[bytes] | None], Awaitable[R]],
                           errors: tuple[type[BaseException], ...]) -> R:
    """Run ``start`` (send the request, await response headers), translating its failures."""
    deadline = _Deadline(timeout)
    try:
        return await start(deadline.paced(body) if body is not None else None)
    except asyncio.CancelledError:
        assert deadline.task is not None
        if deadline.expired and deadline.task.uncancel() == 0:
            raise GatewayTimeout("no response headers from the upstream in time",
                                 code="upstream_timeout") from None
        raise
    except errors as exc:
        raise BadGateway(f"upstream: {type(exc).__name__}", code="upstream_unreachable") from None
    finally:
        deadline.done()


async def _idle_bounded(read: Callable[[], Awaitable[bytes]], idle: float,
                        errors: tuple[type[BaseException], ...]) -> AsyncIterator[bytes]:
    """Body chunks until ``read`` returns b""; each read bounded by ``idle`` seconds."""
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await read()
        except TimeoutError:
            raise GatewayTimeout("upstream body idle", code="upstream_idle_timeout") from None
        except errors as exc:
            raise BadGateway(f"upstream body: {type(exc).__name__}",
                             code="upstream_reset") from None
        if not chunk:
            return
        yield chunk


# --------------------------------------------------------------------------- aiohttp

class _AiohttpResponse:
    def __init__(self, resp: aiohttp.ClientResponse, idle_timeout: float) -> None:
        self._resp, self._idle = resp, idle_timeout
        self.status = resp.status
        self.headers: Headers = list(resp.raw_headers)
        self._eof = False

    async def aiter_body(self) -> AsyncIterator[bytes]:
        async for chunk in _idle_bounded(self._resp.content.readany, self._idle, _AIOHTTP_ERRORS):
            yield chunk
        self._eof = True

    async def aclose(self) -> None:
        # release() keeps a fully read connection for reuse; close() drops a half-read one.
        if self._eof:
            self._resp.release()
        else:
            self._resp.close()


class AiohttpTransport:
    """aiohttp with a pooled connector: the default transport."""

    _SKIP = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})

    def __init__(self, *, limit: int = 1024, limit_per_host: int = 0) -> None:
        self._limit, self._limit_per_host = limit, limit_per_host
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession belongs to the running loop.
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit_per_host,
                                         ttl_dns_cache=10)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False, skip_auto_headers=self._SKIP,
                                     trust_env=False, timeout=aiohttp.ClientTimeout(total=None),
                                     max_field_size=16384)

    async def send(self, method: str, url: str, headers: Headers,
                   body: AsyncIterator[bytes] | None, *, timeout: float,
                   idle_timeout: float) -> UpstreamResponse:
        session = self._session
        if session is None:
            session = self._session = self._open()
        out = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
        target = URL(url, encoded=True)            # the normalised path goes out byte for byte

        async def start(data: AsyncIterator[bytes] | None) -> aiohttp.ClientResponse:
            return await session.request(method, target, headers=out, data=data,
                                         allow_redirects=False, skip_auto_headers=self._SKIP)

        resp = await _response_within(timeout, body, start, _AIOHTTP_ERRORS)
        return _AiohttpResponse(resp, idle_timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --------------------------------------------------------------------------- httpx

class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


class _HttpxResponse:
    def __init__(self, resp: httpx.Response, idle_timeout: float) -> None:
        self._resp, self._idle = resp, idle_timeout
        self.status = resp.status_code
        self.headers: Headers = list(resp.headers.raw)

    async def aiter_body(self) -> AsyncIterator[bytes]:
        # aiter_raw: the bytes as sent (no decompression); it never yields b"" before the end.
        async with contextlib.aclosing(self._resp.aiter_raw()) as raw:
            async for chunk in _idle_bounded(lambda: anext(raw, b""), self._idle, _HTTPX_ERRORS):
                yield chunk

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxTransport:
    """httpx.AsyncClient; requests are built directly so no client default header is merged."""

    def __init__(self, *, limit: int = 1024) -> None:
        self._limit = limit
        self._client: httpx.AsyncClient | None = None

    def _open(self) -> httpx.AsyncClient:
        jar = http.cookiejar.CookieJar(policy=_NoCookies())
        return httpx.AsyncClient(timeout=None, follow_redirects=False, trust_env=False,
                                 cookies=jar, limits=httpx.Limits(
                                     max_connections=self._limit,
                                     max_keepalive_connections=self._limit))

    async def send(self, method: str, url: str, headers: Headers,
                   body: AsyncIterator[bytes] | None, *, timeout: float,
                   idle_timeout: float) -> UpstreamResponse:
        client = self._client
        if client is None:
            client = self._client = self._open()

        async def start(data: AsyncIterator[bytes] | None) -> httpx.Response:
            request = httpx.Request(method, url, headers=headers, content=data)
            return await client.send(request, stream=True)

        resp = await _response_within(timeout, body, start, _HTTPX_ERRORS)
        return _HttpxResponse(resp, idle_timeout)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


# --------------------------------------------------------------------------- ASGI side
