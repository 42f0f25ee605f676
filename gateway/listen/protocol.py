"""The gateway's own HTTP/1.1 server protocol: every request head is bounded before the app sees it.

uvicorn stays the server (sockets, lifespan, signals, graceful shutdown, WebSockets); this is
the protocol class it runs per connection (``uvicorn.Config(http=...)``, or
``uvicorn app:app --http gateway.listen:GatewayHttpProtocol`` for the middleware). It does what
the ASGI app cannot (shared/LIMITS.md "Head and framing", "Time and space"):

- limits on the request line (414), the head's size and line count (431), counted while the
  head arrives, so a 100 MB header is refused after ~40 KB, never buffered whole;
- timeouts from accept: the head within ``header_timeout_seconds`` (408, then close), an idle
  keep-alive connection closed after ``keepalive_timeout_seconds``, and while the app waits for
  body bytes: the next chunk within ``body_timeout_seconds`` and, for bodies above
  ``buffer_body_bytes``, an average of ``min_body_rate_bytes_per_second`` after the first 5 s
  (408; the app sees ``http.disconnect``, so the upstream connection is closed, not pooled);
- ``max_body_bytes`` (413, from ``Content-Length`` before any byte, or as a chunked body passes it);
- trailer fields are parsed and dropped: they never join ``scope["headers"]``;
- ``OPTIONS *`` is answered here (204 with ``Allow``), an absolute-form target must agree with
  ``Host``, an HTTP/1.0 client never gets a ``100 Continue``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from urllib.parse import unquote

import httptools

from .exchange import STATUS_LINE, Exchange, _default_headers
from .head import HeadError, allow_header, check_target

log = logging.getLogger("poolgate.listen")

_NONE, _HEAD, _IDLE = 0, 1, 2     # what the connection's deadline is for
_ASGI = {"version": "3.0", "spec_version": "2.3"}   # the same for every request
_NO_LENGTH = object()             # no Content-Length seen (None: one that is not a number)
HIGH_WATER = 65536                # buffered body bytes the app has not read: stop reading
LINGER_SECONDS = 2.0              # after answering early, unread body bytes are dropped this long


class Limits:
    """The per-listener limits (``listen.limits`` and ``max_body_bytes``); plain attributes."""

    __slots__ = ("body_timeout", "buffer_body", "header_timeout", "keepalive_timeout",
                 "max_body", "max_connections", "max_header_bytes", "max_headers",
                 "max_line", "min_rate")

    def __init__(self, *, max_request_line_bytes: int = 8192, max_header_bytes: int = 32768,
                 max_headers: int = 100, header_timeout_seconds: float = 10.0,
                 keepalive_timeout_seconds: float = 15.0, body_timeout_seconds: float = 30.0,
                 buffer_body_bytes: int = 65536, min_body_rate_bytes_per_second: int = 1024,
                 max_connections: int = 10000, max_body_bytes: int | None = None) -> None:
        self.max_line, self.max_header_bytes = max_request_line_bytes, max_header_bytes
        self.max_headers, self.header_timeout = max_headers, header_timeout_seconds
        self.keepalive_timeout, self.body_timeout = keepalive_timeout_seconds, body_timeout_seconds
        self.buffer_body, self.min_rate = buffer_body_bytes, min_body_rate_bytes_per_second
        self.max_connections, self.max_body = max_connections, max_body_bytes


class _Refuse(Exception):
    """Raised inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class GatewayHttpProtocol(asyncio.Protocol):
    """One client connection. Built by uvicorn with ``(config, server_state, app_state)``."""

    limits = Limits()
    on_lost: Any = None                # set by the accept loop: frees a connection slot

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.ws_protocol_class = config.ws_protocol_class
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0                # when the timer fires (the earliest deadline set)
        self.deadline = 0.0                # the current wait's deadline; ``waiting`` says which
        self.waiting = _NONE
        self.idle = False                  # the keep-alive timer (not the head timer) is armed
        self.lingering = False             # response sent, unread request body: discard, close
        self.upgrade_scope: tuple[str, str] | None = None
        self.read_paused = False
        self.write_paused = False
        self.writable: asyncio.Future[None] | None = None
        self.pipeline: deque[Exchange] = deque()
        self.exchange: Exchange | None = None      # the one the app is running
        self.parsing: Exchange | None = None       # the one the parser is filling
        self.in_head = False
        self.head_bytes = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.hosts = 0
        self.length: int | None | object = _NO_LENGTH
        self.chunked = False
        self.expect_continue = False

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.server_state.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        sock_name = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        if isinstance(sock_name, tuple):
            self.server = (str(sock_name[0]), int(sock_name[1]))
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        # LIMITS: header_timeout_seconds counts from accept (a silent connection is closed too)
        self._arm(self.limits.header_timeout, _HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.on_lost is not None:
            self.on_lost()
        self._stop_timer()
        for ex in (self.exchange, *self.pipeline):
            if ex is not None:
                ex.lost()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.parser = None  # type: ignore[assignment]

    def eof_received(self) -> None:
        pass

    def shutdown(self) -> None:
        """Graceful shutdown (uvicorn): close when idle, else after the current response."""
        ex = self.exchange
        if ex is None or ex.complete:
            self.transport.close()
        else:
            ex.keep_alive = False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    async def drain(self) -> None:
        if self.write_paused and not self.transport.is_closing():
            if self.writable is None:
                self.writable = self.loop.create_future()
            await self.writable

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    # -- timers: one per connection, for whichever wait is current ---------------------------
    #
    # A kept-alive connection moves its deadline twice per request (the head's, then the
    # idle one): that is a float store. The timer fires at the earliest deadline set and, if
    # the current one is later, re-arms itself for it, so a busy connection creates about one
    # timer per header_timeout_seconds instead of two per request.

    def _arm(self, delay: float, waiting: int) -> None:
        deadline = self.loop.time() + delay
        self.deadline, self.waiting, self.idle = deadline, waiting, waiting == _IDLE
        if self.timer is None or deadline < self.timer_at:
            self._schedule(deadline)

    def _schedule(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._fire)

    def _disarm(self) -> None:
        self.idle = False
        self.waiting = _NONE

    def _stop_timer(self) -> None:
        self._disarm()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fire(self) -> None:
        self.timer = None
        waiting = self.waiting
        if waiting == _NONE:
            return
        if self.loop.time() < self.deadline:
            self._schedule(self.deadline)
            return
        self._disarm()
        if waiting == _HEAD:
            self._head_timeout()
        else:
            self._idle_timeout()

    def _head_timeout(self) -> None:
        if self.transport.is_closing():
            return
        if self.in_head or self.head_bytes:
            self.refuse(408, "the request head did not arrive in time")
        else:
            self.transport.close()          # nothing sent at all: nothing to answer

    def _idle_timeout(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    # -- bytes in --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return                          # the rest of an unread body: dropped
        if self.idle:
            # first byte of a kept-alive connection's next request: the head clock starts
            self._arm(self.limits.header_timeout, _HEAD)
        begun_here = not self.in_head
        try:
            self.parser.feed_data(data)
        except _Refuse as e:
            self.refuse(e.status, e.detail)
            return
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Refuse):
                self.refuse(cause.status, cause.detail)
            else:
                log.warning("HTTP parser callback failed: %r", cause)
                self.refuse(400, "invalid HTTP request")
            return
        except httptools.HttpParserUpgrade:
            self._upgrade()
            return
        except httptools.HttpParserInvalidMethodError:
            self.refuse(501 if self.in_head or not self.headers else 400, "unknown method")
            return
        except httptools.HttpParserError as e:
            self.refuse(400, _parser_reason(e))
            return
        if self.in_head:
            # a head still incomplete: httptools buffers a partial field until its end, so
            # bound what it may hold (exact limits are checked per field in on_header)
            if not begun_here:
                self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_line + self.limits.max_header_bytes:
                self.refuse(431 if self.headers or self.url else 414,
                            "request head too large")

    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self.url = b""
        self.headers = []
        self.hosts = 0
        self.length: int | None | object = _NO_LENGTH
        self.chunked = False
        self.expect_continue = False
        self.upgrade_scope = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_line:
            raise _Refuse(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # a chunked trailer field: never a request header (LIMITS "Trailers"); bounded
            self.head_bytes += len(name) + len(value) + 4
            if self.head_bytes > self.limits.max_header_bytes:
                raise _Refuse(431, "trailer section too large")
            return
        headers = self.headers
        if len(headers) >= self.limits.max_headers:
            raise _Refuse(431, "too many header fields")
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes + len(self.url) > self.limits.max_header_bytes:
            raise _Refuse(431, "request header fields too large")
        name = name.lower()
        value = value.rstrip(b" \t")        # llhttp keeps trailing OWS (RFC 9110 5.5)
        if name == b"host":
            self.hosts += 1
        elif name == b"content-length":
            if self.length is _NO_LENGTH:     # the first one frames (llhttp refuses a second)
                v = value.strip()
                self.length = int(v) if v.isdigit() and len(v) < 19 else None
        elif name == b"transfer-encoding":
            self.chunked = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Refuse(505, f"HTTP/{version} is not supported")
        method = parser.get_method().decode("ascii")
        headers = self.headers
        try:
            target = check_target(method, self.url, headers, version)
        except HeadError as e:
            raise _Refuse(e.status, e.detail) from None
        if target is None:                    # OPTIONS *: answered here, never forwarded
            self._disarm()
            self._answer_options(version)
            return
        raw_path, query = target
        upgrade = parser.should_upgrade()
        if upgrade and self._websocket_upgrade():
            self.upgrade_scope = (method, version)
            return
        length = None if self.length is _NO_LENGTH else self.length
        limits = self.limits
        if limits.max_body is not None and length is not None and length > limits.max_body:
            raise _Refuse(413, "request body too large")
        scope: dict[str, Any] = {
            "type": "http", "asgi": _ASGI,
            "http_version": version, "server": self.server, "client": self.client,
            "scheme": self.scheme, "root_path": "", "method": method,
            "path": _decoded(raw_path), "raw_path": raw_path, "query_string": query,
            "headers": headers,
        }
        if self.app_state:
            scope["state"] = self.app_state.copy()
        keep_alive = version == "1.1" and parser.should_keep_alive()
        has_body = length is not None and length > 0 or self.chunked
        ex = Exchange(self, scope, keep_alive, has_body, length,
                      self.expect_continue and version == "1.1")
        # the proxy registers a callback here instead of watching receive() for a disconnect
        scope["extensions"] = {"poolgate.disconnect": ex}
        self.parsing = ex
        if self.exchange is None:
            self._start(ex)
        else:                                 # pipelined: wait for the current response
            self.pause_reading()
            self.pipeline.append(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.complete:
            return
        ex.received += len(body)
        max_body = self.limits.max_body
        if max_body is not None and ex.received > max_body:
            raise _Refuse(413, "request body too large")
        ex.body += body
        if len(ex.body) > HIGH_WATER:
            self.pause_reading()
        ex.wake()

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.more_body = False
        ex.wake()

    # -- exchanges -------------------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        self._disarm()
        self.exchange = ex
        task = ex.task = self.loop.create_task(ex.run(self.app))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def response_done(self, ex: Exchange) -> None:
        """The response to ``ex`` was written completely."""
        self.server_state.total_requests += 1
        if self.exchange is ex:
            self.exchange = None
        if self.transport.is_closing():
            return
        if ex.more_body:
            # answered before its body was read (a refusal): the rest of the body cannot be
            # told apart from a next request, so the connection ends. Lingering close, as
            # nginx does: stop sending, drop what still arrives for a moment, then close, so
            # the client reads the answer instead of a reset.
            self.lingering = True
            self.resume_reading()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._arm(LINGER_SECONDS, _IDLE)
            return
        if not ex.keep_alive:
            self.transport.close()
            return
        self.resume_reading()
        if self.pipeline:
            self._start(self.pipeline.popleft())
        elif self.in_head:
            self._arm(self.limits.header_timeout, _HEAD)
        else:
            self._arm(self.limits.keepalive_timeout, _IDLE)

    def refuse(self, status: int, detail: str) -> None:
        """Answer an HTTP-level refusal and close: the request never reaches the app (or, once
        it has, the app's next ``receive`` is ``http.disconnect``)."""
        self._stop_timer()
        ex = self.exchange
        started = ex is not None and ex.started
        for pending in (ex, self.parsing, *self.pipeline):
            if pending is not None:
                pending.lost()
        self.pipeline.clear()
        if not started and not self.transport.is_closing():
            body = ('{"error":"invalid_request","reason":"%s","error_description":"%s"}'
                    % (_code(status), detail)).encode()
            head = [STATUS_LINE[status], *_default_headers(self.server_state),
                    b"content-type: application/json\r\n", b"cache-control: no-store\r\n",
                    b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
            self.transport.write(b"".join(head) + body)
            log.info("refused at the HTTP layer: %d %s", status, detail,
                     extra={"fields": {"event": "http_refused", "status": status,
                                       "reason": _code(status), "peer": _peer(self.client)}})
        self.transport.close()

    def _answer_options(self, version: str) -> None:
        head = [STATUS_LINE[204], *_default_headers(self.server_state),
                b"allow: " + allow_header() + b"\r\n", b"content-length: 0\r\n"]
        keep = version == "1.1" and self.parser.should_keep_alive()
        if not keep:
            head.append(b"connection: close\r\n")
        self.transport.write(b"".join(head) + b"\r\n")
        if not keep:
            self.transport.close()
        else:
            self._arm(self.limits.keepalive_timeout, _IDLE)

    # -- WebSocket upgrades: handed to uvicorn's WebSocket protocol ---------------------------

    def _websocket_upgrade(self) -> bool:
        if self.ws_protocol_class is None:
            return False
        connection, upgrade = [], None
        for name, value in self.headers:
            if name == b"connection":
                connection += [t.strip().lower() for t in value.split(b",")]
            elif name == b"upgrade":
                upgrade = value.lower()
        return upgrade == b"websocket" and b"upgrade" in connection

    def _upgrade(self) -> None:
        if self.upgrade_scope is None:
            # a non-WebSocket upgrade: served as a plain request (Upgrade is stripped as a
            # hop-by-hop header); nothing after the head is parsed
            return
        method, version = self.upgrade_scope
        self._stop_timer()
        self.server_state.connections.discard(self)
        out = [method.encode(), b" ", self.url, b" HTTP/", version.encode(), b"\r\n"]
        for name, value in self.headers:
            out += [name, b": ", value, b"\r\n"]
        out.append(b"\r\n")
        protocol = self.ws_protocol_class(config=self.config, server_state=self.server_state,
                                          app_state=self.app_state)
        if self.on_lost is not None:           # the slot is freed when the socket closes
            release, lost = self.on_lost, protocol.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                release()
                lost(exc)
            protocol.connection_lost = connection_lost
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.data_received(b"".join(out))


def _decoded(raw_path: bytes) -> str:
    path = raw_path.decode("latin-1")
    return unquote(path, errors="replace") if "%" in path else path


def _code(status: int) -> str:
    return {400: "bad_request", 408: "request_timeout", 413: "body_too_large",
            414: "uri_too_long", 431: "header_too_large", 501: "not_implemented",
            505: "bad_http_version"}.get(status, "bad_request")


def _peer(client: tuple[str, int] | None) -> str:
    return client[0] if client else ""


def _parser_reason(e: Exception) -> str:
    text = str(e).lower()
    if "content-length" in text and "transfer-encoding" in text:
        return "Content-Length together with Transfer-Encoding"
    return "invalid HTTP request"


__all__ = ["Exchange", "GatewayHttpProtocol", "Limits", "STATUS_LINE"]
