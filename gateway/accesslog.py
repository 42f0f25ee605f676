"""The access log: one JSON line per request, written off the hot path.

A request only enqueues its fields (about a microsecond); a writer thread formats and writes
the line. Without an installed sink (e.g. the middleware inside a host app that configures
logging itself) records go to the standard ``poolgate.access`` logger instead.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from typing import Any, TextIO

_logger = logging.getLogger("poolgate.access")
_sink: "_Sink | None" = None


class _Sink:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pid = os.getpid()             # once per process: a syscall per line is not free
        self.q: queue.SimpleQueue[tuple[float, dict[str, Any]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="poolgate-access-log", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            created, fields = item
            if isinstance(fields, tuple):
                fields = _request_fields(*fields)
            line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
                    + f".{int(created * 1000) % 1000:03d}Z",
                    "level": "info", "logger": "poolgate.access", "msg": "request",
                    "pid": self.pid, **fields}
            try:
                self.stream.write(json.dumps(line, default=str, separators=(",", ":")) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(2)


_stream: TextIO | None = None


def install(stream: TextIO) -> None:
    """Write access lines to ``stream`` from a background thread (``poolgate serve``). The
    thread starts on first use in each process (threads do not survive ``--workers`` forks)."""
    global _stream
    _stream = stream
    atexit.register(uninstall)


def uninstall() -> None:
    global _sink, _stream
    if _sink is not None:
        _sink.close()
        _sink = None
    _stream = None


def _forget_after_fork() -> None:
    global _sink
    _sink = None           # the parent's writer thread does not exist in the child


os.register_at_fork(after_in_child=_forget_after_fork)


_REQUEST_KEYS = ("request_id", "route", "method", "path", "status", "decision", "code", "role")


def _request_fields(*values: Any) -> dict[str, Any]:
    fields = dict(zip(_REQUEST_KEYS, values))
    fields["latency_ms"] = round(values[-1] * 1000, 3)
    return fields


def emit_request(rid: str, route: str, method: str, path: str, status: int,
                 decision: str | None, code: str | None, role: str | None,
                 seconds: float) -> None:
    """One request's line: the fields travel as a tuple and become a dict on the writer
    thread, so the request pays for a tuple and a queue put."""
    sink = _sink
    if sink is not None:
        sink.q.put_nowait((time.time(), (rid, route, method, path, status, decision, code,
                                         role, seconds)))
        return
    emit(_request_fields(rid, route, method, path, status, decision, code, role, seconds))


def emit(fields: dict[str, Any]) -> None:
    global _sink
    sink = _sink
    if sink is None and _stream is not None:
        sink = _sink = _Sink(_stream)
    if sink is not None:
        sink.q.put_nowait((time.time(), fields))
    elif _logger.isEnabledFor(logging.INFO):
        _logger.info("request", extra={"fields": fields})
