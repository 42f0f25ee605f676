"""One request and its response on a gateway connection: the ASGI ``receive``/``send`` pair.

``receive`` paces the request body (shared/LIMITS.md): the next chunk within
``body_timeout_seconds`` and, above ``buffer_body_bytes``, ``min_body_rate_bytes_per_second`` on
average after the first 5 s, else the connection answers 408. ``send`` writes the response head
together with the first body bytes (one write, one packet) and checks the head cannot be split.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .protocol import GatewayHttpProtocol

log = logging.getLogger("poolgate.listen")

RATE_GRACE_SECONDS = 5.0          # LIMITS: the body rate is judged after the first 5 s


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


STATUS_LINE = {code: _status_line(code) for code in range(100, 600)}


class Exchange:
    """One request and its response: the ASGI ``receive``/``send`` pair."""

    __slots__ = ("body", "cancel_app", "chunked", "complete", "conn", "continue_",
                 "delivered", "disconnected", "has_body", "head", "head_method", "keep_alive",
                 "length", "more_body", "received", "remaining", "scope", "started",
                 "started_at", "task", "waiter")

    def __init__(self, conn: GatewayHttpProtocol, scope: dict[str, Any], keep_alive: bool,
                 has_body: bool, length: int | None, expect_continue: bool) -> None:
        self.conn, self.scope, self.keep_alive = conn, scope, keep_alive
        self.has_body, self.length = has_body, length
        self.more_body = has_body
        self.delivered = False
        self.body = bytearray()
        self.received = 0
        self.started_at = conn.loop.time()
        self.continue_ = expect_continue
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        # the scope extension "poolgate.disconnect" (this object): an app that sets
        # cancel_app has its task cancelled when the client leaves, instead of watching
        # receive() for http.disconnect (the proxy's forward())
        self.cancel_app = False
        self.task: asyncio.Task[None] | None = None
        self.started = False
        self.complete = False
        self.chunked = False
        self.remaining = 0
        self.head: bytes | None = None
        self.head_method = scope["method"] == "HEAD"

    async def run(self, app: Any) -> None:
        try:
            # the scope holds this exchange (extensions["poolgate.disconnect"]); not holding the
            # scope back leaves no reference cycle per request for the cyclic GC to find
            scope, self.scope = self.scope, None
            await app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: BLE001 (the connection must be answered or closed)
            if isinstance(exc, asyncio.CancelledError) and self.disconnected:
                pass
            else:
                log.error("exception in the ASGI application", exc_info=exc)
            if not self.started and not self.disconnected:
                await self._internal_error()
            elif not self.complete:
                self.conn.transport.close()
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.started and not self.disconnected:
                log.error("the ASGI application returned without a response")
                await self._internal_error()
            elif not self.complete and not self.disconnected:
                self.conn.transport.close()

    async def _internal_error(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"),
            (b"connection", b"close")]})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    # -- receive ---------------------------------------------------------------------------

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def lost(self) -> None:
        self.disconnected = True
        self.wake()
        if self.cancel_app and not self.complete and self.task is not None:
            self.cancel_app = False
            self.task.cancel()

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if self.continue_:
            self.continue_ = False            # never to an HTTP/1.0 client (set at parse time)
            if not self.started and not conn.transport.is_closing():
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.disconnected and not self.complete:
            if self.body or not self.more_body and not self.delivered:
                body = bytes(self.body)
                self.body.clear()
                more = self.more_body
                self.delivered = not more
                conn.resume_reading()
                return {"type": "http.request", "body": body, "more_body": more}
            if not self.more_body:
                await self._wait(None)        # all delivered: wait for the response's end
            else:
                conn.resume_reading()
                await self._wait(self._body_deadline())
        return {"type": "http.disconnect"}

    def _body_deadline(self) -> float:
        """When the client is too slow: the next chunk within body_timeout_seconds, and a
        body above buffer_body_bytes at min_body_rate_bytes_per_second on average after 5 s."""
        limits = self.conn.limits
        loop_now = self.conn.loop.time()
        deadline = loop_now + limits.body_timeout
        larger = (self.length or 0) > limits.buffer_body or self.received > limits.buffer_body
        if larger and limits.min_rate > 0:
            t0 = self.started_at
            rate_deadline = t0 + max(RATE_GRACE_SECONDS, self.received / limits.min_rate)
            deadline = min(deadline, max(rate_deadline, loop_now + 0.001))
        return deadline

    async def _wait(self, deadline: float | None) -> None:
        conn = self.conn
        fut = conn.loop.create_future()
        self.waiter = fut
        timer = None if deadline is None else conn.loop.call_at(deadline, self._too_slow, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()

    def _too_slow(self, fut: asyncio.Future[None]) -> None:
        if fut.done() or self.disconnected:
            return
        self.conn.refuse(408, "the request body arrived too slowly")

    # -- send ------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected or self.complete:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind}")
            self.start_response(message["status"], message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind}")
        self.write_body(message.get("body", b""), message.get("more_body", False))

    # ``start_response`` / ``write_body``: ``send`` without the messages, for the proxy's own
    # forward() (gateway/forward/proxy.py); the caller awaits ``conn.drain()`` while
    # ``conn.write_paused``, as ``send`` does.

    def start_response(self, status: int, headers: Any) -> None:
        if self.disconnected or self.complete:
            return
        # rendered first: a head that cannot be written leaves the response unstarted, so
        # the client gets a 500 instead of a dropped connection
        self.head = self._render_head(status, headers)
        self.started = True
        self.continue_ = False

    def write_body(self, body: bytes, more: bool) -> None:
        if self.disconnected or self.complete:
            return
        conn = self.conn
        head, self.head = self.head, None
        if self.head_method:
            data = b""
        elif self.chunked:
            data = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + (
                b"" if more else b"0\r\n\r\n")
        else:
            if len(body) > self.remaining:
                raise RuntimeError("response body longer than its Content-Length")
            self.remaining -= len(body)
            data = body
        # the head goes out with the first body bytes: one write, one packet
        if head is not None:
            data = head + data if data else head
        if data:
            conn.transport.write(data)
        if not more:
            if self.remaining and not self.head_method:
                raise RuntimeError("response body shorter than its Content-Length")
            self.complete = True
            self.wake()
            conn.response_done(self)

    def _render_head(self, status: int, headers: Any) -> bytes:
        self.chunked, self.remaining = False, 0      # (a refused head may have set them)
        parts = [STATUS_LINE[status]]
        default = self.conn.server_state.default_headers
        if default:
            parts += _default_headers(self.conn.server_state)
        lines = 1 + len(default)
        length: int | None = None
        close = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                close = True
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if not self.keep_alive and not close:
            parts.append(b"connection: close\r\n")
            lines += 1
        if close:
            self.keep_alive = False
        if length is not None and not self.chunked:
            self.remaining = length
        elif not self.chunked and not self.head_method and status not in (204, 304) \
                and status >= 200:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        # values were parsed or rendered by the gateway; a CR/LF/NUL inside one would split
        # the head: count the line ends instead of scanning each value
        lines += 1
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
            raise RuntimeError("response head not representable")
        return head


def _default_headers(server_state: Any) -> list[bytes]:
    return [name + b": " + value + b"\r\n" for name, value in server_state.default_headers]


__all__ = ["STATUS_LINE", "Exchange"]
