"""`poolgate ready`: the line that says /readyz turned 200 (keys loaded, store answering).

`poolgate listening ...` is printed as soon as both sockets are bound; requests that arrive
before the keys are loaded get 503. This watcher prints (stdout) and logs (``event: ready``)
a second line, ``poolgate ready``, the first time the engine's readiness is true, so scripts
and operators can wait for that instead of polling.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, Callable

log = logging.getLogger("poolgate")

READY_LINE = "poolgate ready"


async def announce_ready(current: Callable[[], Any], *, to_stdout: bool = True,
                         interval: float = 0.05) -> None:
    """Poll ``current().readiness()`` (the engine in service; it changes on reload) until it
    is ready, then announce it once. Cheap: one readiness check per ``interval``."""
    started = time.monotonic()
    while True:
        try:
            ok = bool(current().readiness()[0])
        except Exception:  # noqa: BLE001 - an engine mid-swap: look again
            ok = False
        if ok:
            break
        await asyncio.sleep(interval)
    seconds = round(time.monotonic() - started, 3)
    if to_stdout:
        print(READY_LINE, file=sys.stdout, flush=True)
    log.info(READY_LINE, extra={"fields": {"event": "ready", "seconds_after_listening": seconds}})
