"""Step 5 (I/O): stream one authorised request to its upstream and the answer back.

The only forwarding I/O in poolgate. Bodies stream both ways without buffering; nothing is
added to the request (no User-Agent, no Accept-Encoding) and nothing is decoded from the
response; there is no cookie jar. Three transports satisfy one protocol: the project's own
HTTP/1.1 client (``H1Transport``, forward/h1.py), aiohttp and httpx.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol


from ..config import Upstream
from ..errors import GatewayError
from ..metrics import Metrics
from .h1 import H1Transport
from .headers import canonical, response_headers

__all__ = [
    "AiohttpTransport",
    "ClientDisconnected",
    "H1Transport",
    "HttpxTransport",
    "Transport",
    "UpstreamResponse",
    "forward",
]

Headers = list[tuple[bytes, bytes]]
CLIENT_CLOSED = 499                      # nginx's status for "client went away", logs only
_X_REQUEST_ID = frozenset({b"x-request-id"})
_WATCH_AFTER = 0.05                      # seconds before a client disconnect is watched for


class ClientDisconnected(Exception):
    """The client went away while its request body was being read."""


class UpstreamResponse(Protocol):
    status: int
    headers: Headers

    def aiter_body(self) -> AsyncIterator[bytes]: ...   # raises BadGateway / GatewayTimeout
    async def aclose(self) -> None: ...


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: Headers,
                   body: AsyncIterator[bytes] | None, *, timeout: float,
                   idle_timeout: float) -> UpstreamResponse: ...
    async def aclose(self) -> None: ...


class _Downstream:
    """The client side of one exchange: reads the body once; under an ASGI server other than
    the gateway's own, notices a disconnect by watching ``receive()``."""

    # ``disconnected`` and ``cancel_app`` mean what they mean on the gateway server's exchange
    # (gateway/listen/exchange.py), so forward() reads either the same way
    __slots__ = ("_body_done", "_watcher", "body_finished", "cancel_app", "disconnected",
                 "receive", "task")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]],
                 body_finished: bool) -> None:
        self.receive = receive
        self.body_finished = body_finished
        self._body_done: asyncio.Event | None = None     # made only if the watcher waits
        self._watcher: asyncio.Task[None] | None = None
        self.task: asyncio.Task[Any] | None = None
        self.disconnected = False
        self.cancel_app = True           # cleared before the final send: no more cancelling

    def _finished(self) -> None:
        self.body_finished = True
        if self._body_done is not None:
            self._body_done.set()

    async def read_first(self, limit: int) -> tuple[list[bytes], bool]:
        """Read the body until it ends or passes ``limit`` bytes: (chunks, complete).

        Called before an upstream connection is taken, so a client that trickles its body
        holds no pool slot; the server's body pacing (408) ends such a client meanwhile.
        """
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
            if not message.get("more_body", False):
                self._finished()
                return chunks, True
        return chunks, False

    async def body(self, first: list[bytes] | None = None) -> AsyncIterator[bytes]:
        for chunk in first or ():
            yield chunk
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                break
        self._finished()

    def start_watch(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self.watch())

    def stop_watch(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def watch(self) -> None:
        """After the body, wait for ``http.disconnect`` and stop the exchange early."""
        if not self.body_finished:
            self._body_done = asyncio.Event()
            await self._body_done.wait()
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if self.cancel_app and self.task is not None:
                    self.disconnected = True
                    self.task.cancel()
                return


async def _one(chunks: list[bytes]) -> AsyncIterator[bytes]:
    yield chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _has_body(raw: Headers) -> bool:
    for name, value in raw:
        key = canonical(name)
        if key == b"transfer-encoding" or key == b"content-length" and value.strip() != b"0":
            return True
    return False


def _url(upstream: Upstream, path: str, query: bytes) -> str:
    url = upstream.url.rstrip("/") + path
    return url + "?" + query.decode("latin-1") if query else url


async def forward(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                  send: Callable[[dict[str, Any]], Awaitable[None]], *, transport: Transport,
                  upstream: Upstream, path: str, headers: Headers,
                  metrics: Metrics | None = None, buffer_bytes: int = 65536,
                  request_id: bytes | None = None, direct: bool = False) -> int:
    """Forward one HTTP exchange; returns the status sent (499 if the client went away).

    Before the response starts, upstream failures raise ``BadGateway``/``GatewayTimeout`` for
    the caller to render. After it started, a failure aborts: the body is left incomplete so
    the server closes the connection and the client sees a truncated response. A request body
    is read up to ``buffer_bytes`` before the upstream is contacted (sent with its length when
    that is all of it); a longer one then streams.
    ``X-Request-Id`` on the response is the one sent upstream (the upstream's copy is dropped).
    ``direct``: ``send`` is the gateway server's own and nothing wraps it (the proxy
    listener): the response goes to the exchange's ``start_response``/``write_body`` without
    ASGI messages.
    """
    extensions = scope.get("extensions")
    hook = extensions.get("poolgate.disconnect") if extensions else None
    watch_timer: asyncio.TimerHandle | None = None
    if hook is not None:
        # the gateway's own server (gateway/listen) frames the body and cancels this task
        # when the client leaves: nothing runs for that until it happens
        down: _Downstream | None = _Downstream(receive, False) if hook.has_body else None
        client: Any = hook
        direct = direct and hasattr(hook, "write_body")
        hook.cancel_app = True
    else:
        # Any other ASGI server: a watcher task (a task, two steps and a cancellation) reads
        # receive() for http.disconnect; it starts only after _WATCH_AFTER seconds, since most
        # exchanges end before anyone could notice, so a client that leaves is noticed that
        # much later at worst.
        down = client = _Downstream(receive, not _has_body(scope.get("headers", [])))
        down.task = asyncio.current_task()
        direct = False
        watch_timer = asyncio.get_running_loop().call_later(_WATCH_AFTER, down.start_watch)
    rid = [(b"x-request-id", request_id)] if request_id is not None else \
        [(n, v) for n, v in headers if canonical(n) == b"x-request-id"][:1]
    url = _url(upstream, path, scope.get("query_string", b""))
    response: UpstreamResponse | None = None
    status = CLIENT_CLOSED
    try:
        body: AsyncIterator[bytes] | None = None
        if down is not None and not down.body_finished:
            try:
                first, complete = await down.read_first(buffer_bytes)
            except ClientDisconnected:
                return CLIENT_CLOSED
            if not complete:
                body = down.body(first)
            elif first:
                body = _one(first)
                if not any(canonical(n) == b"content-length" for n, _ in headers):
                    headers = [*headers, (b"content-length", b"%d" % sum(map(len, first)))]
        started = time.perf_counter()
        try:
            response = await transport.send(
                scope["method"], url, headers, body,
                timeout=upstream.timeout_seconds, idle_timeout=upstream.idle_timeout_seconds)
        except (GatewayError, ClientDisconnected) as exc:
            if client.disconnected:
                return CLIENT_CLOSED
            if metrics is not None and isinstance(exc, GatewayError):
                metrics.upstream_errors.labels(upstream.id, exc.code).inc()
            raise
        if metrics is not None:
            metrics.observe(metrics.child(metrics.upstream_seconds, upstream.id),
                            time.perf_counter() - started)
        status = response.status
        out = response_headers(response.headers, remove=_X_REQUEST_ID if rid else frozenset())
        if direct:
            failed = await _relay(hook, response, status, out + rid)
            if failed is not None and metrics is not None:
                metrics.upstream_errors.labels(upstream.id, failed.code).inc()
            return status
        await send({"type": "http.response.start", "status": status, "headers": out + rid})
        chunks = response.aiter_body()
        try:
            async for chunk in chunks:
                if getattr(chunks, "last", False):
                    # the whole rest of the body is here (a small response): one message
                    client.cancel_app = False
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": False})
                    return status
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except GatewayError as exc:
            client.cancel_app = False
            if metrics is not None:
                metrics.upstream_errors.labels(upstream.id, exc.code).inc()
            return status                # abort: no final message, the server drops the line
        finally:
            if chunks is not response:   # a generator (aiohttp, httpx): close it now
                await chunks.aclose()    # type: ignore[attr-defined]
        client.cancel_app = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if client.disconnected and task is not None and task.uncancel() == 0:
            return status if response is not None else CLIENT_CLOSED
        raise
    finally:
        client.cancel_app = False
        if watch_timer is not None:
            watch_timer.cancel()
            down.stop_watch()
        if response is not None and not getattr(response, "last", False):
            await response.aclose()        # (a response read to its end has let go already)


async def _relay(ex: Any, response: UpstreamResponse, status: int,
                 headers: Headers) -> GatewayError | None:
    """The response through the gateway server's exchange (``forward(direct=True)``); the
    upstream's failure after the start is returned: the response is left unfinished."""
    conn = ex.conn
    ex.start_response(status, headers)
    chunks = response.aiter_body()
    try:
        async for chunk in chunks:
            last = getattr(chunks, "last", False)
            if last:
                ex.cancel_app = False          # the end is here: no more cancelling
            if conn.write_paused and not ex.disconnected:
                await conn.drain()
            ex.write_body(chunk, not last)
            if last:
                return None
    except GatewayError as exc:
        ex.cancel_app = False
        return exc                          # abort: no final write, the server drops the line
    finally:
        if chunks is not response:          # a generator (aiohttp, httpx): close it now
            await chunks.aclose()           # type: ignore[attr-defined]
    ex.cancel_app = False
    if conn.write_paused and not ex.disconnected:
        await conn.drain()
    ex.write_body(b"", False)
    return None


def __getattr__(name: str) -> Any:
    """``AiohttpTransport`` / ``HttpxTransport`` on first use: aiohttp and httpx stay out of a
    gateway that forwards only to http upstreams (idle RSS 62.2 -> 54.2 MB, measured)."""
    if name in ("AiohttpTransport", "HttpxTransport"):
        from . import transports  # noqa: PLC0415
        return getattr(transports, name)
    raise AttributeError(name)
