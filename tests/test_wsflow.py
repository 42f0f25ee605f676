"""wsflow: the byte-bounded WebSocket inbox, message sizes, the server options, and the
`websocket:` config section."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import ConfigError, WebSocketConfig, loads_config
from gateway.wsflow import Inbox, message_size, server_options

KIB = 1024


class Source:
    """A server's ``receive`` that records how many messages were taken from it."""

    def __init__(self, msgs: list[dict[str, Any]]) -> None:
        self.msgs = list(msgs)
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        if not self.msgs:
            await asyncio.Event().wait()          # nothing more: block like a quiet socket
        self.taken += 1
        return self.msgs.pop(0)


def binary(n: int) -> dict[str, Any]:
    return {"type": "websocket.receive", "bytes": b"x" * n}


@pytest.mark.parametrize("limit, message, size, held", [
    (4 * KIB, 4 * KIB, 4 * KIB, 1),          # limit == message: one at a time
    (16 * KIB, 4 * KIB, 4 * KIB, 4),         # four fit
    (16 * KIB, 4 * KIB, 1 * KIB, 13),        # small messages: until one more large might not fit
    (2 * KIB, 4 * KIB, 4 * KIB, 1),          # limit below a message: still one
])
async def test_pump_stops_reading_when_full(limit: int, message: int, size: int,
                                            held: int) -> None:
    src = Source([binary(size) for _ in range(50)])
    inbox = Inbox(src, WebSocketConfig(max_message_bytes=message, max_buffered_bytes=limit))
    pump = asyncio.create_task(inbox.pump(lambda: asyncio.sleep(0)))
    await asyncio.sleep(0.05)
    assert src.taken == held                  # the server is not asked for more
    assert inbox.buffered_bytes <= max(limit, message)
    await inbox.get()                         # the app works on one: still counted
    await asyncio.sleep(0.05)
    assert src.taken == held
    await asyncio.wait_for(inbox.get(), 1)    # done with it: room for exactly one more
    await asyncio.sleep(0.05)
    assert src.taken == held + 1
    for _ in range(30):
        await inbox.get()
        assert inbox.peak_bytes <= max(limit, message)
    pump.cancel()


async def test_messages_in_order_then_the_final_one() -> None:
    msgs = [binary(10), {"type": "websocket.receive", "text": "hé"}]
    src = Source(msgs)
    inbox = Inbox(src, WebSocketConfig())
    pump = asyncio.create_task(inbox.pump(lambda: asyncio.sleep(0)))
    assert await inbox.get() == msgs[0]
    assert await inbox.get() == msgs[1]
    inbox.put_final({"type": "websocket.disconnect", "code": 1008})
    assert (await inbox.get())["code"] == 1008
    pump.cancel()


async def test_too_big_is_not_queued_and_ends_with_1009() -> None:
    src = Source([binary(100), binary(4 * KIB + 1), binary(1)])
    closed: list[bool] = []

    async def too_big() -> None:
        closed.append(True)

    inbox = Inbox(src, WebSocketConfig(max_message_bytes=4 * KIB, max_buffered_bytes=64 * KIB))
    await asyncio.wait_for(inbox.pump(too_big), 1)       # returns: the pump is done
    assert closed == [True] and src.taken == 2
    assert (await inbox.get())["bytes"] == b"x" * 100
    assert await inbox.get() == {"type": "websocket.disconnect", "code": 1009}


async def test_disconnect_ends_the_pump() -> None:
    src = Source([binary(1), {"type": "websocket.disconnect", "code": 1000}, binary(1)])
    inbox = Inbox(src, WebSocketConfig(max_message_bytes=4 * KIB, max_buffered_bytes=64 * KIB))
    await asyncio.wait_for(inbox.pump(lambda: asyncio.sleep(0)), 1)
    assert src.taken == 2


@pytest.mark.parametrize("msg, n", [
    ({"type": "websocket.receive", "bytes": b"abc"}, 3),
    ({"type": "websocket.receive", "text": "abc"}, 3),
    ({"type": "websocket.receive", "text": "é€"}, 5),        # UTF-8 bytes, as on the wire
    ({"type": "websocket.connect"}, 0),
])
def test_message_size(msg: dict[str, Any], n: int) -> None:
    assert message_size(msg) == n


def test_config_section_and_server_options() -> None:
    cfg = loads_config("version: 1\n").websocket
    assert cfg == WebSocketConfig(max_message_bytes=1048576, max_buffered_bytes=1048576)
    cfg = loads_config("version: 1\nwebsocket: {max_message_bytes: 65536, "
                       "max_buffered_bytes: 262144}\n").websocket
    assert (cfg.max_message_bytes, cfg.max_buffered_bytes) == (65536, 262144)
    assert server_options(cfg) == {"ws_max_size": 65536, "ws_max_queue": 1}
    for bad, path in (("{max_message_bytes: 0}", "websocket.max_message_bytes"),
                      ("{max_buffered_bytes: true}", "websocket.max_buffered_bytes"),
                      ("{max_buffered_bytes: 1e12}", "websocket.max_buffered_bytes"),
                      ("{max_frame_bytes: 1}", "websocket.max_frame_bytes"),
                      ("[1]", "websocket")):
        with pytest.raises(ConfigError) as info:
            loads_config(f"version: 1\nwebsocket: {bad}\n")
        assert path in str(info.value), bad
