"""The parent process of ``poolgate serve --workers N``: fork, supervise, relay signals.

The parent has bound both listeners already (``server.serve``); each worker runs
``server._serve_worker`` on the inherited sockets. Metrics use prometheus-client's
multiprocess mode so /metrics on any worker reports all of them.
"""

from __future__ import annotations

import glob
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
from types import FrameType
from typing import NoReturn

from . import accesslog
from .config import Config
from .decisions.listener import close_decisions
from .logs import stop_logging
from .server import _EarlySignals, _serve_worker, run_loop, validate

log = logging.getLogger("poolgate")


def _multiprocess_dir() -> str | None:
    """A directory for prometheus-client's per-process files; returns it if we created it."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        # files of an earlier run would be summed into this one's counters
        for f in glob.glob(os.path.join(given, "*.db")):
            if os.path.basename(f).split("_", 1)[0] in ("counter", "gauge", "histogram",
                                                         "summary"):
                os.unlink(f)
        return None
    created = tempfile.mkdtemp(prefix="poolgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    return created


_PARENT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def supervise(path: str, config: Config, proxy_sock: socket.socket,
               admin_sock: socket.socket, workers: int, early: _EarlySignals) -> int:
    created = _multiprocess_dir()
    # prometheus-client picks its value class when it is imported (before the env was set
    # here): pick again so the metrics the workers create write to the multiprocess files
    from prometheus_client import values  # noqa: PLC0415
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    try:
        return _Supervisor(path, config, workers, early).run(proxy_sock, admin_sock)
    finally:
        if created:
            shutil.rmtree(created, ignore_errors=True)


class _Supervisor:
    """The parent of ``--workers N``: forks the workers, then turns signals into actions.

    Signal handlers only wake the main loop (``signal.set_wakeup_fd`` writes each signal's
    number to a pipe); the loop reads the numbers and acts on the full set of workers. Acting
    inside a handler raced with ``fork``: a SIGTERM landing between a ``fork`` and the
    bookkeeping after it left that worker running for ever.
    """

    def __init__(self, path: str, config: Config, workers: int, early: _EarlySignals) -> None:
        from prometheus_client import Counter  # noqa: PLC0415
        self.path, self.config, self.workers, self.early = path, config, workers, early
        self.children: set[int] = set()
        self.stopping = False
        self.status = 0
        # counted in the parent (its own file in the multiprocess dir): a reload the parent
        # refuses never reaches the workers, whose counters would not see it
        self.refused = Counter("poolgate_config_reloads_total", "Config reloads by result",
                               ["result"], registry=None).labels("error")

    def run(self, proxy_sock: socket.socket, admin_sock: socket.socket) -> int:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        for sig in _PARENT_SIGNALS:
            signal.signal(sig, _ignore)       # a Python handler: the number goes to the pipe
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        # signals that came before these handlers were in place
        queued = [signal.SIGTERM] * self.early.term + [signal.SIGHUP] * self.early.hup
        self.early.term = self.early.hup = False
        for _ in range(self.workers):
            self._fork(proxy_sock, admin_sock, (r, w))
        # the workers hold the listeners now; when the last one closes them on SIGTERM, new
        # connections are refused instead of queueing on a socket nobody accepts on
        proxy_sock.close()
        admin_sock.close()
        close_decisions()                     # decisions: listener (hook)
        log.info("started %d workers", self.workers, extra={"fields": {
            "event": "workers", "pids": sorted(self.children)}})
        for sig in queued:
            self._on(sig)
        try:
            while self.children:
                self._reap()
                if not self.children:
                    break
                try:
                    select.select([r], [], [], 1.0)
                except InterruptedError:
                    pass
                try:
                    data = os.read(r, 512)
                except BlockingIOError:
                    data = b""
                for signum in data:
                    self._on(signum)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(r)
            os.close(w)
        return self.status

    def _fork(self, proxy_sock: socket.socket, admin_sock: socket.socket,
              pipe: tuple[int, int]) -> None:
        # blocked across fork: the child must not run the parent's handlers (nor write to the
        # parent's pipe) before it has its own
        signal.pthread_sigmask(signal.SIG_BLOCK, _PARENT_SIGNALS)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for fd in pipe:
                os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal sends it to all of us
            self.early.install()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARENT_SIGNALS)
            _worker(self.path, self.config, proxy_sock, admin_sock, self.workers, self.early)
        self.children.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARENT_SIGNALS)

    def _on(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return                              # _reap runs on every turn of the loop
        send: int = sig
        if sig == signal.SIGHUP:
            try:
                validate(self.path, self.workers)
            except Exception as e:  # noqa: BLE001 (ConfigError or anything else: never forward it)
                self.refused.inc()
                log.error("reload refused by the parent, workers keep the old config: %s", e,
                          extra={"fields": {"event": "reload", "result": "error",
                                            "config": self.path, "error": str(e)}})
                return
            log.info("reload: config valid, signalling %d workers", len(self.children))
        elif sig in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
            send = signal.SIGTERM    # a second one reaches the workers as their second SIGTERM
        else:
            return
        for pid in self.children:
            try:
                os.kill(pid, send)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        """Collect exited workers. One that dies on its own takes the others down (exit 1):
        the orchestrator restarts the whole gateway rather than it running short-handed."""
        while self.children:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(st)
            if self.stopping:
                if code not in (0, -signal.SIGTERM):
                    self.status = 1
                continue
            log.error("worker %d exited unexpectedly (status %d); stopping the others", pid,
                      code, extra={"fields": {"event": "worker_exit", "worker": pid,
                                              "status": code}})
            self.status = 1
            self.stopping = True
            for other in self.children:
                try:
                    os.kill(other, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _ignore(_sig: int, _frame: FrameType | None) -> None:
    """The handler whose only effect is the signal number in the wakeup pipe."""


def _worker(path: str, config: Config, proxy_sock: socket.socket, admin_sock: socket.socket,
            workers: int, early: _EarlySignals) -> NoReturn:
    code = 0
    try:
        run_loop(_serve_worker(path, config, proxy_sock, admin_sock, workers=workers,
                                  early=early))
    except BaseException:            # the worker must exit, never return into the parent's code
        log.exception("worker failed")
        code = 1
    finally:
        accesslog.uninstall()        # flush both writers: os._exit skips atexit
        stop_logging()
        os._exit(code)
