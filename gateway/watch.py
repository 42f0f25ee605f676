"""An accepted WebSocket lives only as long as its token: closed (1008) at expiry or revocation.

No peer gateway does this: a verified handshake otherwise keeps a socket open for hours
after the token expired or the user signed out. The client's messages reach the app through
a byte-bounded ``wsflow.Inbox`` (backpressure: a slow app makes the gateway stop reading).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .principal import VerifiedToken
from .wsflow import MESSAGE_TOO_BIG, Inbox

log = logging.getLogger("poolgate")
REVOCATION_POLL_SECONDS = 2.0
POLICY_VIOLATION = 1008


async def watch_websocket(app: Callable[..., Awaitable[None]], scope: dict[str, Any],
                          receive: Callable[[], Awaitable[dict[str, Any]]],
                          send: Callable[[dict[str, Any]], Awaitable[None]],
                          engine: Any, token: VerifiedToken | None) -> None:
    """Run the app for one WebSocket; close it with 1008 when the token stops being valid
    (no token, a public route: only the inbox's limits apply)."""
    closed = asyncio.Event()
    accepted = asyncio.Event()
    inbox = Inbox(receive, engine.config.websocket)

    async def guarded_send(msg: dict[str, Any]) -> None:
        if closed.is_set():
            return
        if msg["type"] == "websocket.close":
            closed.set()
        await send(msg)
        if msg["type"] == "websocket.accept":
            accepted.set()             # only once sent: the watch's close must follow it

    async def too_big() -> None:
        if not closed.is_set():
            closed.set()
            await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG,
                        "reason": "message too big"})

    async def expire() -> None:
        if token is None:
            return
        source = engine.config.source_by_id(token.source_id)
        deadline = token.exp + source.clock_skew_seconds
        reason = "token expired"
        while True:
            wait = min(deadline - engine.clock(), REVOCATION_POLL_SECONDS)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
            if engine.store is not None and engine.clock() < deadline:
                try:
                    if await engine.store.revoked(token) is not None:
                        reason = "token revoked"
                        break
                except Exception:      # a store outage does not cut live sockets
                    log.warning("revocation check for a live WebSocket failed", exc_info=True)
        await accepted.wait()          # an app that accepts only after the deadline is cut at once
        if not closed.is_set():
            closed.set()
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
            inbox.put_final({"type": "websocket.disconnect", "code": POLICY_VIOLATION})

    pump_task = asyncio.create_task(inbox.pump(too_big))
    timer = asyncio.create_task(expire())
    try:
        await app(scope, inbox.get, guarded_send)
    finally:
        for t in (timer, pump_task):
            t.cancel()
        await asyncio.gather(timer, pump_task, return_exceptions=True)
