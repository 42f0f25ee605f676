"""gateway/app.py: the composition root's default transport."""

from __future__ import annotations

import socket

import pytest

from gateway.app import _HttpsOnFirstUse
from gateway.errors import BadGateway
from gateway.forward.transports import AiohttpTransport


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_https_transport_is_made_on_first_use_and_used() -> None:
    lazy = _HttpsOnFirstUse()
    await lazy.aclose()                       # never used: nothing to close, nothing made
    assert lazy._transport is None
    with pytest.raises(BadGateway) as info:   # aiohttp's own refusal: the call reached it
        await lazy.send("GET", f"https://127.0.0.1:{_closed_port()}/", [], None,
                        timeout=5, idle_timeout=5)
    assert info.value.code == "upstream_unreachable"
    assert isinstance(lazy._transport, AiohttpTransport)
    first = lazy._transport
    with pytest.raises(BadGateway):
        await lazy.send("GET", f"https://127.0.0.1:{_closed_port()}/", [], None,
                        timeout=5, idle_timeout=5)
    assert lazy._transport is first           # one transport, its pool reused
    await lazy.aclose()
