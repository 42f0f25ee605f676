"""The access log: one JSON line per request, written off the hot path.

A request only appends its fields to a deque (about a microsecond); a writer thread formats
and writes the lines every 50 ms, in one write. Without an installed sink (e.g. the middleware inside a host app that configures
logging itself) records go to the standard ``poolgate.access`` logger instead.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections import deque
from typing import Any, TextIO

_logger = logging.getLogger("poolgate.access")
FLUSH_SECONDS = 0.05              # access lines reach the stream this late at most
MIDDLES = 4096                    # rendered line middles kept (distinct route/path/status/...)
_sink: "_Sink | None" = None


class _Sink:
    """Lines wait in a deque; a thread wakes every FLUSH_SECONDS and writes them all at once.

    A queue that wakes its consumer per line costs a futex wake-up and a GIL hand-off on every
    request (measured: the largest cost of a proxied request with the log on); appending to a
    deque costs the event loop nothing more than the append."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pid = os.getpid()             # once per process: a syscall per line is not free
        self.lines: deque[tuple[float, Any]] = deque()
        self.middles: dict[tuple[Any, ...], str] = {}      # see _request_line
        self.prefix_ms, self.prefix = -1, ""
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="poolgate-access-log", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(FLUSH_SECONDS):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines = self.lines
        out = []
        while lines:
            created, fields = lines.popleft()
            if isinstance(fields, tuple):
                out.append(self._request_line(created, fields))
                continue
            line = {"ts": _timestamp(created), "level": "info", "logger": "poolgate.access",
                    "msg": "request", "pid": self.pid, **fields}
            out.append(json.dumps(line, default=str, separators=(",", ":")))
        if out:
            try:
                self.stream.write("\n".join(out) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def _request_line(self, created: float, values: tuple[Any, ...]) -> str:
        """The JSON of one request line, by template: json.dumps of a 14-key dict cost more
        CPU than the rest of the request (measured). The part between the request id and the
        latency repeats request after request (same route, path, status, decision, role): it
        is rendered once per distinct tuple (bounded); every string goes through ``_json``."""
        rid, route, method, path, status, decision, code, role, seconds = values
        key = values[1:8]
        middle = self.middles.get(key)
        if middle is None:
            if len(self.middles) >= MIDDLES:
                self.middles.clear()
            middle = self.middles[key] = (
                ',"route":%s,"method":%s,"path":%s,"status":%d,"decision":%s,"code":%s,'
                '"role":%s,"latency_ms":' % (_json(route), _json(method), _json(path), status,
                                             _json(decision), _json(code), _json(role)))
        ms = int(created * 1000)
        if ms != self.prefix_ms:           # lines of one millisecond share their start
            self.prefix_ms, self.prefix = ms, (
                '{"ts":"%s","level":"info","logger":"poolgate.access","msg":"request",'
                '"pid":%d,"request_id":' % (_timestamp(created), self.pid))
        return '%s%s%s%.3f}' % (self.prefix, _json(rid), middle, seconds * 1000)

    def put(self, item: tuple[float, Any]) -> None:
        self.lines.append(item)

    def close(self) -> None:
        self.stopping.set()
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


_TS: list[Any] = [-1, ""]


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once per second."""
    sec = int(created)
    if _TS[0] != sec:
        _TS[0], _TS[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_TS[1]}.{int(created * 1000) % 1000:03d}Z"


def _json(value: str | None) -> str:
    """A JSON string (or null); plain ASCII without quotes, backslashes or controls as is."""
    if value is None:
        return "null"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return json.dumps(value)


_REQUEST_KEYS = ("request_id", "route", "method", "path", "status", "decision", "code", "role")


def _request_fields(*values: Any) -> dict[str, Any]:
    fields = dict(zip(_REQUEST_KEYS, values))
    fields["latency_ms"] = round(values[-1] * 1000, 3)
    return fields


def emit_request(rid: str, route: str, method: str, path: str, status: int,
                 decision: str | None, code: str | None, role: str | None,
                 seconds: float) -> None:
    """One request's line: the fields travel as a tuple and become a dict on the writer
    thread, so the request pays for a tuple and a deque append."""
    sink = _sink
    if sink is not None:
        sink.lines.append((time.time(), (rid, route, method, path, status, decision, code,
                                         role, seconds)))
        return
    emit(_request_fields(rid, route, method, path, status, decision, code, role, seconds))


def emit(fields: dict[str, Any]) -> None:
    global _sink
    sink = _sink
    if sink is None and _stream is not None:
        sink = _sink = _Sink(_stream)
    if sink is not None:
        sink.lines.append((time.time(), fields))
    elif _logger.isEnabledFor(logging.INFO):
        _logger.info("request", extra={"fields": fields})
