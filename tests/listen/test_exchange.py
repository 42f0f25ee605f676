"""gateway/listen/exchange.py: the response head an app's messages render to (unit)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.listen.exchange import Exchange


class _Conn:
    """The connection side an Exchange talks to: records writes, counts responses."""

    def __init__(self) -> None:
        self.loop = asyncio.get_event_loop()
        self.server_state = SimpleNamespace(default_headers=[])
        self.written = bytearray()
        self.done = 0
        self.closed = False
        self.write_paused = False
        self.transport = SimpleNamespace(write=self.written.extend, close=self._close,
                                         is_closing=lambda: self.closed)

    def _close(self) -> None:
        self.closed = True

    def response_done(self, ex: Exchange) -> None:
        self.done += 1

    def resume_reading(self) -> None:
        pass


def _exchange(method: str = "GET", keep_alive: bool = True) -> tuple[Exchange, _Conn]:
    conn = _Conn()
    ex = Exchange(conn, {"method": method}, keep_alive, False, None, False)  # type: ignore[arg-type]
    return ex, conn


async def _respond(ex: Exchange, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> None:
    await ex.send({"type": "http.response.start", "status": status, "headers": headers})
    await ex.send({"type": "http.response.body", "body": body})


async def test_head_and_body_go_out_in_one_write_with_the_headers_as_given() -> None:
    ex, conn = _exchange()
    await _respond(ex, 200, [(b"Content-Type", b"text/plain"), (b"content-length", b"2")], b"ok")
    assert bytes(conn.written) == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   b"content-length: 2\r\n\r\nok")
    assert conn.done == 1 and ex.keep_alive


async def test_no_length_means_chunked_and_a_closing_request_says_close() -> None:
    ex, conn = _exchange(keep_alive=False)
    await ex.send({"type": "http.response.start", "status": 200, "headers": []})
    await ex.send({"type": "http.response.body", "body": b"abc", "more_body": True})
    await ex.send({"type": "http.response.body", "body": b"", "more_body": False})
    assert bytes(conn.written) == (b"HTTP/1.1 200 OK\r\nconnection: close\r\n"
                                   b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


async def test_an_upstream_connection_close_ends_keep_alive() -> None:
    ex, conn = _exchange()
    await _respond(ex, 204, [(b"Connection", b"Close")], b"")
    assert not ex.keep_alive and conn.written.startswith(b"HTTP/1.1 204 No Content\r\n")


@pytest.mark.parametrize("name, value", [
    (b"x-split", b"a\r\nset-cookie: evil=1"),
    (b"x-split", b"a\nb"),
    (b"x-split", b"a\rb"),
    (b"x-nul", b"a\0b"),
    (b"x-bad\r\nname", b"v"),
])
async def test_a_value_that_would_split_the_head_is_never_written(name: bytes,
                                                                   value: bytes) -> None:
    ex, conn = _exchange()
    with pytest.raises(RuntimeError, match="not representable"):
        await ex.send({"type": "http.response.start", "status": 200,
                       "headers": [(name, value), (b"content-length", b"0")]})
    assert conn.written == b""


async def test_the_app_failing_on_such_a_head_gets_a_500_not_a_split_response() -> None:
    ex, conn = _exchange()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _respond(ex, 200, [(b"x-split", b"a\r\nx-injected: 1"),
                                 (b"content-length", b"0")], b"")

    await ex.run(app)
    assert conn.written.startswith(b"HTTP/1.1 500 ")
    assert b"x-injected" not in conn.written
