"""Experiment, not part of poolgate: what TCP_NODELAY on accepted sockets would buy.

asyncio sets TCP_NODELAY on a transport's socket only if ``sock.proto == IPPROTO_TCP``; a
listening socket made with ``socket.socket(AF_INET, SOCK_STREAM)`` has proto 0, and so do the
sockets it accepts, so responses written in two segments (headers, then body) wait for the
client's delayed ACK (~40 ms). This drops the proto check. Use:

    PYTHONPATH=tests/bench/experiments/nodelay .venv/bin/python tests/bench/run.py ...

(run.py puts the repo first on PYTHONPATH and keeps what you set after it.) The real fix belongs
in the gateway: ``socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)`` in its bind().
"""

import asyncio.base_events as _base_events
import socket as _socket


def _set_nodelay(sock: _socket.socket) -> None:
    if sock.family in {_socket.AF_INET, _socket.AF_INET6} and sock.type == _socket.SOCK_STREAM:
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)


_base_events._set_nodelay = _set_nodelay
