"""Structured JSON logging, written by a background thread so the hot path only enqueues.

``serve --workers N`` forks after logging is set up; threads do not survive ``fork``, so each
child starts its own writer thread on a fresh queue (``os.register_at_fork``), or every log
line of every worker would sit in a queue nobody reads.
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from typing import Any

_LOGGERS = ("poolgate", "uvicorn", "uvicorn.error")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={"fields": {...}}`` are merged at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.levelno >= logging.ERROR:
            if record.exc_info:
                out["exc"] = self.formatException(record.exc_info)
            elif record.exc_text:            # formatted before it crossed the queue
                out["exc"] = record.exc_text
        return json.dumps(out, default=str, separators=(",", ":"))


class _QueueHandler(logging.handlers.QueueHandler):
    """Enqueue a copy with the message rendered and the traceback as text.

    The stdlib ``prepare`` formats the record with a plain ``Formatter`` and stores that
    (message + traceback) as ``msg``: the JSON writer would then print tracebacks inside
    ``msg`` and never in ``exc``.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        r = copy.copy(record)
        r.msg = r.message = record.getMessage()
        r.args = None
        if record.exc_info:
            r.exc_text = logging.Formatter().formatException(record.exc_info)
        r.exc_info = None
        r.stack_info = None
        return r


_listener: logging.handlers.QueueListener | None = None
_handler: logging.Handler | None = None
_names: tuple[str, ...] = _LOGGERS


class _LifecycleOnce(logging.Filter):
    """uvicorn logs its start/stop lines once per server; poolgate runs two (serve) or four
    (demo) servers in one process: let each of those lines through once per process."""

    LINES = ("Started server process", "Waiting for application startup",
             "Application startup complete", "Shutting down", "Waiting for application shutdown",
             "Application shutdown complete", "Finished server process")

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if not msg.startswith(self.LINES):
            return True
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


_lifecycle = _LifecycleOnce()


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Route every poolgate (and uvicorn) log through one queue to a JSON stream handler."""
    global _handler
    stop_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    _handler = handler
    _start(handler)
    set_level(level)
    logging.getLogger("uvicorn.access").disabled = True
    uv = logging.getLogger("uvicorn.error")
    if _lifecycle not in uv.filters:
        uv.addFilter(_lifecycle)


def ensure_logging(level: str = "info", stream: Any = None) -> bool:
    """Middleware mode (``uvicorn app:app``): when the host app configured no logging (no
    handler on ``poolgate`` or on the root logger), write poolgate's own loggers (the access log
    included) as JSON lines on stderr, as ``serve`` does; the host's loggers are left alone.
    When the host did configure logging, poolgate's records propagate to its handlers.
    Returns True if it installed the JSON writer."""
    global _handler
    if _listener is not None or logging.getLogger("poolgate").handlers \
            or logging.getLogger().handlers:
        return False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    _handler = handler
    _start(handler, ("poolgate",))
    logging.getLogger("poolgate").setLevel(level.upper())
    return True


def set_level(level: str) -> None:
    """Apply ``logging.level`` from the config (``debug`` | ``info`` | ``warning`` | ``error``)."""
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def _start(handler: logging.Handler, names: tuple[str, ...] = _LOGGERS) -> None:
    global _listener, _names
    _names = names
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(q, handler, respect_handler_level=False)
    _listener.start()
    qh = _QueueHandler(q)
    for name in names:
        lg = logging.getLogger(name)
        lg.handlers = [qh]
        lg.propagate = False


def _restart_in_child() -> None:
    # The parent's writer thread did not come along; records queued before the fork belong
    # to the parent (which still writes them), so the child starts on a new, empty queue.
    global _listener
    _lifecycle.seen.clear()             # a worker logs its own start and stop
    if _listener is not None and _handler is not None:
        _listener = None
        _start(_handler, _names)


def stop_logging() -> None:
    """Write out what is queued and stop the writer thread (``os._exit`` skips atexit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(stop_logging)
os.register_at_fork(after_in_child=_restart_in_child)
