"""The decisions listener(s) for ``poolgate serve``: bound in the parent, served by each worker.

``bind_decisions`` runs in the parent before any fork (the sockets are inherited, like the
proxy and admin ones); ``decision_servers`` builds the worker's servers on them, and
``run_decision_servers`` serves them until the proxy server is told to exit.
"""

from __future__ import annotations

import asyncio
import socket
from importlib import import_module
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..errors import ConfigError, ListenError
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
    line = f" decisions={_addr(_BOUND['http'])}"
    if d.grpc_enabled:
        _BOUND["grpc"] = _reserve(d.host, d.grpc_port)
        line += f" decisions_grpc={_addr(_BOUND['grpc'])}"
    return line


def _reserve(host: str, port: int) -> socket.socket:
    """Hold the gRPC port (bound with SO_REUSEPORT, not listening) so that ``port: 0`` names
    one port for every worker; each worker's grpc server listens on it with SO_REUSEPORT."""
    try:
        import_module(f"{__package__}.grpc_face")   # fail at start-up, not in a worker
    except ImportError as e:
        raise ConfigError("decisions.grpc.enabled", f"needs grpcio and xds-protos "
                                                    f"(pip install 'poolgate[grpc]'): {e}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        # a port in use is not a config error (issue 12): the same error and exit as bind()
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def close_decisions() -> None:
    """The parent's copy of the HTTP listener, once the workers hold it (as for proxy and
    admin). The gRPC reservation stays: it does not listen, and it keeps a ``port: 0`` port
    from being taken before every worker has bound it."""
    if "http" in _BOUND:
        _BOUND["http"].close()


def decision_servers(proxy_app: Any, make_server: Callable[[Any], Any]) -> list[tuple[Any, list[socket.socket]]]:
    """(server, sockets) pairs for this worker; ``make_server(asgi_app)`` is the caller's
    uvicorn server factory (lifespan off: the proxy listener owns the engine's lifespan)."""
    if "http" not in _BOUND:
        return []
    engine = lambda: proxy_app.engine  # noqa: E731
    out: list[tuple[Any, list[socket.socket]]] = [(make_server(DecisionApp(engine)),
                                                   [_BOUND["http"]])]
    if "grpc" in _BOUND:
        out.append((_GrpcRunner(engine, _addr(_BOUND["grpc"])), []))
    return out


class _GrpcRunner:
    """The gRPC server with the uvicorn server's ``run_on``/``should_exit`` surface."""

    def __init__(self, engine: Callable[[], Any], address: str) -> None:
        self.engine, self.address = engine, address
        self.should_exit = self.force_exit = False

    async def run_on(self, _sockets: list[socket.socket]) -> None:
        from .grpc_face import build_grpc_server  # noqa: PLC0415
        server = build_grpc_server(self.engine, self.address)
        await server.start()
        try:
            while not self.should_exit:
                await asyncio.sleep(FOLLOW_SECONDS)
        finally:
            grace = 0 if self.force_exit else self.engine().config.listen.grace_seconds
            await server.stop(grace)


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
