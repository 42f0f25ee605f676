"""Accepting connections with a ceiling: beyond ``max_connections`` new ones wait in the backlog.

asyncio's ``create_server`` accepts whatever arrives; uvicorn's ``limit_concurrency`` then
answers 503 to connections it already accepted (each an fd and a protocol object). Here the
listener simply stops calling ``accept()`` while the ceiling is reached, so a flood queues in
the kernel's backlog (shared/LIMITS.md ``max_connections``) and costs the process nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

log = logging.getLogger("poolgate.listen")

ACCEPT_ERROR_PAUSE = 0.1          # EMFILE and kin: try again shortly instead of spinning
TLS_HANDSHAKE_SECONDS = 10.0


class LimitedServer:
    """The accept loop of one listening socket; ``close``/``wait_closed`` like ``asyncio.Server``."""

    def __init__(self, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
                 limit: int, ssl: ssl_module.SSLContext | None = None) -> None:
        self.sock, self.factory, self.limit, self.ssl = sock, protocol_factory, limit, ssl
        self.open = 0
        self._slot: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.sock.setblocking(False)
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.sock]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.open >= self.limit:
                self._slot = loop.create_future()
                await self._slot
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                log.warning("accept failed: %s", e)
                await asyncio.sleep(ACCEPT_ERROR_PAUSE)
                continue
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.open += 1
            if self.ssl is None:
                self._connect(loop, conn)
            else:
                loop.create_task(self._connect_tls(loop, conn))

    def _protocol(self) -> asyncio.Protocol:
        protocol = self.factory()
        protocol.on_lost = self._release  # type: ignore[attr-defined]
        return protocol

    def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        # connect_accepted_socket is a coroutine only to wait for a TLS handshake; for plain
        # TCP a task per connection would be waste, so drive it to its first suspension
        coro = loop.connect_accepted_socket(self._protocol, conn)
        task = loop.create_task(coro)
        task.add_done_callback(lambda t: self._failed(t, conn))

    async def _connect_tls(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self._protocol, conn, ssl=self.ssl,
                                               ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS)
        except (OSError, ssl_module.SSLError, asyncio.TimeoutError, ConnectionError):
            self._release()
            conn.close()

    def _failed(self, task: asyncio.Task[Any], conn: socket.socket) -> None:
        if task.cancelled() or task.exception() is not None:
            self._release()
            conn.close()

    def _release(self) -> None:
        self.open -= 1
        slot = self._slot
        if slot is not None and not slot.done():
            self._slot = None
            slot.set_result(None)


__all__ = ["LimitedServer"]
