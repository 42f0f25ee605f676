"""Structured JSON logging, written by a background thread so the hot path only enqueues."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={"fields": {...}}`` are merged at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


_listener: logging.handlers.QueueListener | None = None


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Route every poolgate (and uvicorn) log through one queue to a JSON stream handler."""
    global _listener
    if _listener is not None:
        _listener.stop()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(q, handler, respect_handler_level=False)
    _listener.start()
    atexit.register(_stop)
    qh = logging.handlers.QueueHandler(q)
    for name in ("poolgate", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [qh]
        lg.propagate = False
        lg.setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True


def _stop() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
