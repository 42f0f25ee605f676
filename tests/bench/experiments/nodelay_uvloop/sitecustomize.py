"""Experiment, not part of poolgate: TCP_NODELAY (see ../nodelay) plus uvloop as the event loop.

``serve`` runs ``asyncio.run()`` itself, so uvicorn's ``loop="auto"`` never installs uvloop;
this installs uvloop's policy for every process started with this on PYTHONPATH:

    PYTHONPATH=tests/bench/experiments/nodelay_uvloop .venv/bin/python tests/bench/run.py ...
"""

import asyncio.base_events as _base_events
import socket as _socket

import uvloop as _uvloop


def _set_nodelay(sock: _socket.socket) -> None:
    if sock.family in {_socket.AF_INET, _socket.AF_INET6} and sock.type == _socket.SOCK_STREAM:
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)


_base_events._set_nodelay = _set_nodelay
_uvloop.install()
