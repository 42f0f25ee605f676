"""One pooled HTTP/1.1 upstream connection: an ``asyncio.Protocol`` with httptools' parser.

See h1.py for the transport, the pool and the framing/timeout rules they implement together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from .h1 import _Pool


Headers = list[tuple[bytes, bytes]]
MAX_HEAD_BYTES = 65536                 # response head cap (status line + headers)
_HIGH_WATER = 1 << 18                  # buffered response body above which reading pauses


class _BadResponse(Exception):
    """The upstream broke HTTP/1.1 (unparseable head, oversize head, an upgrade)."""


class _HeadDone(Exception):
    """Stops the parser after a HEAD response's headers (llhttp cannot be told 'no body')."""


class _Conn(asyncio.Protocol):
    """One upstream connection; at most one exchange at a time (no pipelining)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool, self.loop = pool, pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.drainer: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = self.timer_at = 0.0
        self.error: BaseException | None = None
        self.closed = self.write_paused = self.read_paused = self.busy = False
        self.reused = False
        self.counted = True            # holds one of the pool's connection slots
        self.idle_since = 0.0
        self.upload: asyncio.Task[None] | None = None
        self._reset(False)

    def _reset(self, head_only: bool) -> None:
        self.head_only, self.status = head_only, 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.head_bytes = self.raw_bytes = self.buffered = 0
        self.head_done = self.complete = self.keep_alive = False
        self.interim = self.received = False
        self.sent = True               # the request body (if any) went out in full
        self.problem: str | None = None

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:
            self.close()               # bytes nobody asked for: the connection is unusable
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self.problem is None and self.head_only and self.complete:   # _HeadDone
                self.keep_alive = self.keep_alive and data.endswith(b"\r\n\r\n")
                self.parser = httptools.HttpResponseParser(self)
            else:                      # our caps, or a callback bug: never reuse
                self._fail(_BadResponse(self.problem or "response parser callback failed"))
            return
        except httptools.HttpParserUpgrade:
            self._fail(_BadResponse("unexpected protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            self._fail(_BadResponse(f"unparseable response: {exc}"))
            return
        if not self.head_done:
            self.raw_bytes += len(data)     # a head that never ends, in small pieces
            if self.raw_bytes > MAX_HEAD_BYTES:
                self._fail(_BadResponse("response head too large"))

    def on_message_begin(self) -> None:
        if self.complete:              # a second answer to one request
            self.problem = "unsolicited response"
            raise _BadResponse(self.problem)
        self.headers = []              # a 1xx interim answer restarts the head

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:         # after the head: chunked trailers, dropped
            self.head_bytes += len(name) + len(value) + 4
            if self.head_bytes > MAX_HEAD_BYTES:
                self.problem = "response head too large"
                raise _BadResponse(self.problem)
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:               # 100/102/103: skipped; 101 ends in HttpParserUpgrade
            self.interim = status != 101
            return
        self.status, self.head_done = status, True
        if self.head_only:
            self.complete, self.keep_alive = True, self.parser.should_keep_alive()
            self._wake(None)
            raise _HeadDone()
        self._wake(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        if self.waiter is not None:
            self._wake(None)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete, self.keep_alive = True, self.parser.should_keep_alive()
        self._wake(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drainer, self.drainer = self.drainer, None
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        if self.busy and not self.complete:
            if self.head_done and exc is None and not _framed(self.headers):
                self.complete = True   # close-delimited body: EOF is its end
            elif self.error is None:
                self.error = exc or ConnectionResetError("upstream closed the connection")
        self._wake(self.error)
        drainer, self.drainer = self.drainer, None
        if drainer is not None and not drainer.done():
            drainer.set_exception(self.error or ConnectionResetError("upstream closed"))
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # ------------------------------------------------------------------ waiting

    def _wake(self, exc: BaseException | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._wake(exc)
        self.close()

    def arm(self, deadline: float) -> None:
        """Move the exchange's one deadline; a later one costs a float store (lazy timer)."""
        self.deadline = deadline
        if self.timer is None or deadline < self.timer_at:
            self._schedule()

    def _schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = self.deadline
        self.timer = self.loop.call_at(self.deadline, self._expire)

    def _expire(self) -> None:
        self.timer = None
        if self.waiter is None:        # nobody waiting: the next wait re-arms it
            return
        if self.loop.time() < self.deadline:
            self._schedule()
            return
        self._wake(TimeoutError())

    async def wait(self) -> None:
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.loop.create_future()
        if self.timer is None or self.deadline < self.timer_at:
            self._schedule()
        await waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.lost(self)

    # ------------------------------------------------------------------ one exchange

    async def exchange(self, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool,
                       head_only: bool, deadline: float, timeout: float) -> None:
        """Send the request; return once the response head is in (raises on failure)."""
        self._reset(head_only)
        self.busy = True
        self.arm(deadline)
        assert self.transport is not None
        self.transport.write(head)
        if body is not None:
            self.sent = False
            self.upload = self.loop.create_task(self._send_body(body, chunked, timeout))
        while not self.head_done:
            await self.wait()

    async def _send_body(self, body: AsyncIterator[bytes], chunked: bool, timeout: float) -> None:
        transport, loop = self.transport, self.loop
        assert transport is not None
        try:
            async for chunk in body:
                if self.closed:
                    return
                if not chunk:           # an empty chunk would end a chunked body
                    continue
                if not self.head_done:  # a moving upload is not the upstream's delay
                    self.deadline = loop.time() + timeout
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                if self.write_paused:
                    self.drainer = loop.create_future()
                    await self.drainer
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
            self.sent = True
            if not self.head_done:
                self.deadline = loop.time() + timeout
        except (ConnectionError, OSError):
            pass                        # connection_lost has the story
        except Exception as exc:  # noqa: BLE001 (any body failure, e.g. the client left)
            self._fail(exc)

    def finish(self) -> None:
        """The caller is done with this exchange: pool the connection or drop it.

        The timer stays armed: it fires into nobody (``_expire`` with no waiter) or the next
        exchange's later deadline moves it by a float store, instead of a timer made and
        cancelled per request."""
        self.busy = False
        upload, self.upload = self.upload, None
        if upload is not None and not upload.done():
            upload.cancel()
        if (self.complete and self.keep_alive and self.sent and not self.closed
                and self.error is None and not self.chunks):
            self.pool.put(self)
        else:
            self.close()


def _framed(headers: Headers) -> bool:
    for name, value in headers:
        key = name.lower()
        if key == b"content-length" or key == b"transfer-encoding" and b"chunked" in value.lower():
            return True
    return False
