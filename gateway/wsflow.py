"""WebSocket flow control: a byte-bounded inbox between the server and the app, the message size
limit (close 1009), and the server options that enforce the limit at the parser.

Backpressure is by not reading: while the inbox holds ``max_buffered_bytes`` the pump does not
call ``receive()``, so the ASGI server stops reading the socket (uvicorn pauses its transport
while a received message waits) and TCP flow control pushes back on the peer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .config import WebSocketConfig

__all__ = ["MESSAGE_TOO_BIG", "Inbox", "message_size", "server_options"]

MESSAGE_TOO_BIG = 1009
Message = dict[str, Any]


def server_options(limits: WebSocketConfig) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments: the server's WebSocket parser refuses a message
    above ``max_message_bytes`` with 1009 before assembling it, and (for uvicorn's legacy
    ``websockets`` implementation) queues at most one message per socket."""
    return {"ws_max_size": limits.max_message_bytes, "ws_max_queue": 1}


def message_size(msg: Message) -> int:
    """Payload bytes of a ``websocket.receive``/``websocket.send`` message (0 for others)."""
    data = msg.get("bytes")
    if data is not None:
        return len(data)
    text = msg.get("text")
    if text is None:
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Inbox:
    """The client's messages on their way to the app, holding at most
    max(``max_buffered_bytes``, one message) of payload, counting the message the app is
    still working on (it is released when the app asks for the next one).

    ``pump()`` reads from the server only while a message of the largest allowed size would
    still fit; ``get()`` is the app's ``receive``. ``put_final()`` appends a message the
    gateway itself makes (the token watch's disconnect).
    """

    def __init__(self, receive: Callable[[], Awaitable[Message]], limits: WebSocketConfig) -> None:
        self._receive = receive
        self._limit = limits.max_buffered_bytes
        self._max_message = limits.max_message_bytes
        self._items: deque[tuple[Message, int]] = deque()
        self._bytes = 0                      # queued + held
        self._held = 0                       # the message the app took last
        self._changed = asyncio.Event()
        self.peak_bytes = 0                  # for tests and metrics: the most ever held

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _full(self) -> bool:
        return self._bytes > 0 and self._bytes + self._max_message > self._limit

    async def pump(self, too_big: Callable[[], Awaitable[None]]) -> None:
        """Move messages from the server into the inbox until the client disconnects.

        A message above ``max_message_bytes`` (a server that does not enforce it) is not
        queued: ``too_big()`` closes the client, and the app gets a 1009 disconnect.
        """
        while True:
            while self._full():
                await self._wait()
            msg = await self._receive()
            size = message_size(msg)
            if size > self._max_message:
                await too_big()
                self.put_final({"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG})
                return
            self._put(msg, size)
            if msg["type"] == "websocket.disconnect":
                return

    def _put(self, msg: Message, size: int) -> None:
        self._items.append((msg, size))
        self._bytes += size
        self.peak_bytes = max(self.peak_bytes, self._bytes)
        self._changed.set()

    def put_final(self, msg: Message) -> None:
        self._put(msg, 0)

    async def get(self) -> Message:
        if self._held:                       # the app is done with the previous message
            self._bytes -= self._held
            self._held = 0
            self._changed.set()
        while not self._items:
            await self._wait()
        msg, self._held = self._items.popleft()
        return msg
