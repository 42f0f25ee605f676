"""The decisions listener(s) for ``poolgate serve``: bound in the parent, served by each worker.

``bind_decisions`` runs in the parent before any fork (the sockets are inherited, like the
proxy and admin ones); ``decision_servers`` builds the worker's servers on them, and
``run_decision_servers`` serves them until the proxy server is told to exit.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from ..config import Config
from .app import DecisionApp

# sockets bound by the parent; a forked worker inherits this module's state with them
_BOUND: dict[str, socket.socket] = {}
FOLLOW_SECONDS = 0.05


def _addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_decisions(config: Config, bind: Callable[[str, int], socket.socket]) -> str:
    """Bind the decisions listener (``decisions:`` present); the text to append to the
    ``poolgate listening ...`` line (`` decisions=H:P``), or ``""``."""
    _BOUND.clear()
    d = config.decisions
    if d is None:
        return ""
    _BOUND["http"] = bind(d.host, d.port)
    return f" decisions={_addr(_BOUND['http'])}"


def decision_servers(proxy_app: Any, make_server: Callable[[Any], Any]) -> list[tuple[Any, list[socket.socket]]]:
    """(server, sockets) pairs for this worker; ``make_server(asgi_app)`` is the caller's
    uvicorn server factory (lifespan off: the proxy listener owns the engine's lifespan)."""
    if "http" not in _BOUND:
        return []
    app = DecisionApp(lambda: proxy_app.engine)
    return [(make_server(app), [_BOUND["http"]])]


async def run_decision_servers(servers: list[tuple[Any, list[socket.socket]]],
                               leader: Any) -> None:
    """Serve until ``leader`` (the proxy server) is told to exit, then exit the same way."""
    if not servers:
        return

    async def follow() -> None:
        while not leader.should_exit:
            await asyncio.sleep(FOLLOW_SECONDS)
        for s, _ in servers:
            s.force_exit = leader.force_exit
            s.should_exit = True

    watcher = asyncio.get_running_loop().create_task(follow())
    try:
        await asyncio.gather(*(s.run_on(socks) for s, socks in servers))
    finally:
        watcher.cancel()
