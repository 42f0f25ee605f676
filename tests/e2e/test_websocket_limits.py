"""WebSocket backpressure and message size, end to end (LIMITS.md "Time and space").

A real ``poolgate serve`` in front of a real WebSocket upstream that reads slowly or not at
all: one authenticated client pushes as fast as it can, and the gateway must stop reading
(its resident memory grows by less than 2 x max_buffered_bytes + one message + slack) while a
second client is still served; the reverse direction (an upstream flooding a client that does
not read) too; a message above max_message_bytes closes with 1009 in both directions. The
middleware path (``watch_websocket``) is run the same way: a host app under uvicorn in its own
process, reading one message a second.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import CLIENT, ISSUER, base_config
from .servers import ROOT, ThreadServer, cognito_claims, free_port

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
LIMITS = {"max_message_bytes": MIB, "max_buffered_bytes": MIB}
SLACK = 6 * MIB              # interpreter / allocator noise, sockets, a few 64 KiB buffers
BOUND = 2 * LIMITS["max_buffered_bytes"] + LIMITS["max_message_bytes"] + SLACK
PUSH_SECONDS = 6.0           # the flooding client's budget (200 MiB unbounded took ~1 s)
PUSH_CAP = 200 * MIB
WAIT = 10.0
SERVED_WITHIN = 5.0          # the second client's round trips (generous: 2 shared cores)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Sampler:
    """Peak VmRSS of a process, sampled every 20 ms while active."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss(pid)
        self.peak = self.base
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await asyncio.sleep(0.02)

    def __enter__(self) -> "Sampler":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.base


class SlowUpstream:
    """/stall: accepts and never reads; /slow: one message a second; /echo: echoes;
    /flood: sends 1 MiB messages for as long as it can; /big: sends one message above
    the limit; HTTP: 200."""

    def __init__(self) -> None:
        self.stop = False
        self.received = 0
        self.flooded = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        path = scope["path"]
        if path == "/stall":
            deadline = time.monotonic() + 60
            while not self.stop and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return
        if path == "/flood":
            chunk = b"u" * MIB
            deadline = time.monotonic() + 60
            while not self.stop and time.monotonic() < deadline:
                await send({"type": "websocket.send", "bytes": chunk})
                self.flooded += len(chunk)
                # uvicorn's send returns without suspending while its transport is writable:
                # yield, or this handler holds the (shared, in-thread) loop
                await asyncio.sleep(0)
            return
        if path == "/big":
            await send({"type": "websocket.send", "bytes": b"b" * (MIB + 1)})
        while not self.stop:
            if path == "/slow":
                await asyncio.sleep(1.0)
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            self.received += len(msg.get("bytes") or b"") + len(msg.get("text") or "")
            if path == "/echo":
                await send({"type": "websocket.send", "text": msg.get("text") or "bin"})


@pytest.fixture
def slow_upstream() -> Iterator[tuple[SlowUpstream, ThreadServer]]:
    app = SlowUpstream()
    srv = ThreadServer(app).start()
    try:
        yield app, srv
    finally:
        app.stop = True
        srv.stop()


@pytest.fixture
def ws_gateway(jwks, slow_upstream, gateway_factory) -> Any:
    _, jsrv = jwks
    _, usrv = slow_upstream
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, websocket=dict(LIMITS),
                      logging={"access_log": False})
    # the machine is shared: a handshake may wait on a busy core for a moment
    cfg["upstreams"]["app"]["timeout_seconds"] = 10
    return gateway_factory(cfg)


def _auth(signer: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(cognito_claims(ISSUER, CLIENT))}"}


async def push(url: str, headers: dict[str, str], seconds: float) -> int:
    """Send 1 MiB messages as fast as the connection takes them, for ``seconds``."""
    sent = 0
    chunk = b"c" * MIB
    # no permessage-deflate: every payload byte crosses the wire (compressed, 200 MiB of one
    # letter is ~200 KiB that kernel buffers alone absorb)
    async with connect(url, additional_headers=headers, open_timeout=WAIT, compression=None,
                       max_size=None, ping_interval=None, close_timeout=1) as ws:
        try:
            async with asyncio.timeout(seconds):
                while sent < PUSH_CAP:
                    await ws.send(chunk)
                    sent += len(chunk)
        except TimeoutError:
            pass
    return sent


async def still_served(ws_base: str, http_base: str, headers: dict[str, str]) -> float:
    """A second client: an echo round trip and an HTTP request; the time they took."""
    t0 = time.monotonic()
    async with connect(ws_base + "/echo", additional_headers=headers, open_timeout=WAIT) as ws:
        await ws.send("ping")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "ping"
    async with httpx.AsyncClient(timeout=WAIT) as c:
        r = await c.get(http_base + "/other", headers=headers)
        assert r.status_code == 200, r.text
    return time.monotonic() - t0


async def warm_up(ws_base: str, headers: dict[str, str]) -> None:
    """Load the relay's and the HTTP path's modules and touch message-sized buffers before
    the baseline."""
    await still_served(ws_base, ws_base.replace("ws://", "http://"), headers)
    async with connect(ws_base + "/echo", additional_headers=headers, open_timeout=WAIT,
                       max_size=None) as ws:
        for _ in range(4):
            await ws.send(b"w" * MIB)
            async with asyncio.timeout(WAIT):
                await ws.recv()


async def flood_client_to_upstream(pid: int, ws_base: str, http_base: str,
                                   headers: dict[str, str], path: str) -> tuple[int, int, float]:
    await warm_up(ws_base, headers)
    await asyncio.sleep(0.3)
    with Sampler(pid) as s:
        pusher = asyncio.create_task(push(ws_base + path, headers, PUSH_SECONDS))
        await asyncio.sleep(PUSH_SECONDS / 2)              # mid-flood
        took = await still_served(ws_base, http_base, headers)
        sent = await pusher
    return s.growth, sent, took


async def test_proxy_stops_reading_a_client_whose_upstream_does_not_read(
        ws_gateway, signer, slow_upstream) -> None:
    headers = _auth(signer)
    ws_base = ws_gateway.proxy.replace("http://", "ws://")
    for path in ("/stall", "/slow"):
        growth, sent, took = await flood_client_to_upstream(
            ws_gateway.proc.pid, ws_base, ws_gateway.proxy, headers, path)
        print(f"\n{path}: client pushed {sent / MIB:.0f} MiB in {PUSH_SECONDS:g}s; gateway RSS "
              f"+{growth / MIB:.1f} MiB (bound {BOUND / MIB:.0f}); second client {took:.2f}s")
        assert growth < BOUND, (path, growth / MIB)
        assert sent < 64 * MIB, (path, sent / MIB)         # the gateway stopped reading
        assert took < SERVED_WITHIN


async def test_proxy_stops_reading_an_upstream_whose_client_does_not_read(
        ws_gateway, signer, slow_upstream) -> None:
    headers = _auth(signer)
    ws_base = ws_gateway.proxy.replace("http://", "ws://")
    await warm_up(ws_base, headers)
    await asyncio.sleep(0.3)
    with Sampler(ws_gateway.proc.pid) as s:
        async with connect(ws_base + "/flood", additional_headers=headers, open_timeout=WAIT,
                           max_size=None, max_queue=1, ping_interval=None, close_timeout=1):
            await asyncio.sleep(PUSH_SECONDS / 2)           # never read
            took = await still_served(ws_base, ws_gateway.proxy, headers)
            await asyncio.sleep(PUSH_SECONDS / 2)
    flooded = slow_upstream[0].flooded
    print(f"\n/flood: upstream pushed {flooded / MIB:.0f} MiB; gateway RSS "
          f"+{s.growth / MIB:.1f} MiB (bound {BOUND / MIB:.0f}); second client {took:.2f}s")
    assert s.growth < BOUND, s.growth / MIB
    assert flooded < 64 * MIB, flooded / MIB          # the gateway stopped reading it
    assert took < SERVED_WITHIN


async def closed_code(ws: Any) -> int | None:
    async with asyncio.timeout(WAIT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code


async def test_oversize_messages_close_with_1009(ws_gateway, signer) -> None:
    headers = _auth(signer)
    ws_base = ws_gateway.proxy.replace("http://", "ws://")
    async with connect(ws_base + "/echo", additional_headers=headers, open_timeout=WAIT,
                       max_size=None) as ws:
        await ws.send(b"x" * MIB)                           # exactly the limit: relayed
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "bin"
        await ws.send(b"x" * (MIB + 1))
        assert await closed_code(ws) == 1009
    async with connect(ws_base + "/big", additional_headers=headers, open_timeout=WAIT,
                       max_size=None) as ws:
        assert await closed_code(ws) == 1009                # from the upstream, too


# --------------------------------------------------------------------------- middleware mode

HOST_APP = '''
import asyncio, os
from gateway import GatewayMiddleware

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    echo = scope["path"].endswith("/echo")
    while True:
        if not echo:
            await asyncio.sleep(1.0)                  # a slow app: one message a second
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if echo:
            await send({"type": "websocket.send", "text": msg.get("text") or "bin"})

app = GatewayMiddleware(app, config=os.environ["HOST_APP_CONFIG"])
'''


@pytest.fixture
def host_app(jwks, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A host app behind GatewayMiddleware under plain uvicorn (its defaults: 16 MiB
    messages), in its own process."""
    _, jsrv = jwks
    cfg = base_config(jsrv.url + "/jwks.json", "http://127.0.0.1:9", websocket=dict(LIMITS),
                      logging={"access_log": False},
                      middleware={"default": "authenticated", "service": "app"})
    (tmp_path / "poolgate.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "hostapp.py").write_text(HOST_APP)
    port = free_port()
    env = {**os.environ, "HOST_APP_CONFIG": str(tmp_path / "poolgate.yaml"),
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "hostapp:app", "--host",
                             "127.0.0.1", "--port", str(port), "--lifespan", "on",
                             "--log-level", "warning", "--no-access-log"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/x", timeout=1).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "host app did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def test_middleware_stops_reading_for_a_slow_app(host_app, signer) -> None:
    base, pid = host_app
    headers = _auth(signer)
    ws_base = base.replace("http://", "ws://")
    growth, sent, took = await flood_client_to_upstream(pid, ws_base, base, headers, "/slow")
    print(f"\nmiddleware /slow: client pushed {sent / MIB:.0f} MiB in {PUSH_SECONDS:g}s; "
          f"host RSS +{growth / MIB:.1f} MiB (bound {BOUND / MIB:.0f}); second client {took:.2f}s")
    assert growth < BOUND, growth / MIB
    assert sent < 64 * MIB, sent / MIB
    assert took < SERVED_WITHIN
    # the server here accepts 16 MiB messages: the middleware enforces max_message_bytes
    for path, hdrs in (("/echo", headers), ("/public/echo", {})):     # public routes too
        async with connect(ws_base + path, additional_headers=hdrs, open_timeout=WAIT,
                           max_size=None) as ws:
            await ws.send(b"x" * MIB)
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == "bin"
            await ws.send(b"x" * (MIB + 1))
            assert await closed_code(ws) == 1009, path
