"""``poolgate serve``: both listeners in one event loop, signals, hot reload, N workers.

The parent binds both listeners before forking so every worker accepts on the same sockets;
SIGTERM drains (optional pre-stop delay, then in-flight requests finish within the grace
period); SIGHUP validates the config file first and only then swaps each worker's engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
from typing import Any

import uvicorn

from .config import Config, load_config
from .errors import ConfigError

log = logging.getLogger("poolgate")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError("", f"cannot listen on {host}:{port}: {e.strerror or e}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _uvicorn_config(app: Any, config: Config, *, lifespan: str, tls: bool) -> uvicorn.Config:
    kw: dict[str, Any] = {}
    if tls and config.listen.tls.cert_file:
        kw = {"ssl_certfile": config.listen.tls.cert_file, "ssl_keyfile": config.listen.tls.key_file}
    return uvicorn.Config(
        app, lifespan=lifespan, access_log=False, log_config=None, server_header=False,
        proxy_headers=False,      # X-Forwarded-* from a client must never rewrite the peer
        timeout_graceful_shutdown=int(config.listen.grace_seconds) or None,
        loop="auto", http="auto", ws="auto", **kw)


class _Server(uvicorn.Server):
    """uvicorn.Server without its own signal handling: ``serve`` owns the signals."""

    async def run_on(self, sockets: list[socket.socket]) -> None:
        await self._serve(sockets)


async def _serve_worker(path: str, config: Config, proxy_sock: socket.socket,
                        admin_sock: socket.socket, *, workers: int) -> None:
    from .app import build_apps  # noqa: PLC0415 (after the multiprocess metrics env is set)
    from .engine import Engine  # noqa: PLC0415
    proxy_app, admin_app = build_apps(config, allow_generated_key=workers == 1)
    proxy = _Server(_uvicorn_config(proxy_app, config, lifespan="on", tls=True))
    admin = _Server(_uvicorn_config(admin_app, config, lifespan="off", tls=False))
    loop = asyncio.get_running_loop()

    async def drain() -> None:
        delay = proxy_app.engine.config.listen.drain_delay_seconds
        if delay:
            log.info("SIGTERM: draining for %.1f s before closing the listeners", delay)
            await asyncio.sleep(delay)
        proxy.should_exit = True
        admin.should_exit = True

    def on_term() -> None:
        if proxy.should_exit:
            proxy.force_exit = admin.force_exit = True
            return
        loop.create_task(drain())

    async def reload() -> None:
        try:
            new = load_config(path)
            if (new.listen.host, new.listen.port, new.admin.host, new.admin.port) != (
                    config.listen.host, config.listen.port, config.admin.host, config.admin.port):
                log.warning("reload: listener addresses changed; they apply after a restart")
            engine = Engine(new, allow_generated_key=workers == 1,
                            signer=_reuse_signer(proxy_app.engine, new))
        except ConfigError as e:
            proxy_app.engine.metrics.reloads.labels("error").inc()
            log.error("reload refused, the old config keeps serving: %s", e)
            return
        await proxy_app.swap(engine)
        engine.metrics.reloads.labels("ok").inc()
        log.info("reload: new config in service")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    await asyncio.gather(proxy.run_on([proxy_sock]), admin.run_on([admin_sock]))


def _reuse_signer(old_engine: Any, new: Config) -> Any:
    """Keep a generated signing key across reloads (its credentials are still in flight)."""
    if old_engine.signer is not None and not new.downstream_credential.signing_keys \
            and old_engine.config.downstream_credential == new.downstream_credential:
        return old_engine.signer
    return None


def serve(path: str, *, workers: int = 1) -> int:
    config = load_config(path)
    if workers > 1 and config.revocation.store == "memory":
        raise ConfigError("revocation.store", "store: memory keeps revocations in one process; "
                                              "with --workers > 1 use store: redis (or none)")
    if workers > 1 and not config.downstream_credential.signing_keys \
            and config.downstream_credential.enabled:
        raise ConfigError("downstream_credential.signing_keys",
                          "workers must share signing keys: configure signing_keys for --workers > 1")
    proxy_sock = bind(config.listen.host, config.listen.port)
    admin_sock = bind(config.admin.host, config.admin.port)
    print(f"poolgate listening proxy={_addr(proxy_sock)} admin={_addr(admin_sock)}", flush=True)
    if workers <= 1:
        asyncio.run(_serve_worker(path, config, proxy_sock, admin_sock, workers=1))
        return 0
    return _supervise(path, config, proxy_sock, admin_sock, workers)


def _supervise(path: str, config: Config, proxy_sock: socket.socket,
               admin_sock: socket.socket, workers: int) -> int:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="poolgate-metrics-")
    from prometheus_client import values  # noqa: PLC0415
    values.ValueClass = values.get_value_class()
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            try:
                asyncio.run(_serve_worker(path, config, proxy_sock, admin_sock, workers=workers))
            finally:
                os._exit(0)
        children.append(pid)

    def forward(sig: int, _frame: Any) -> None:
        if sig == signal.SIGHUP:
            try:
                load_config(path)
            except ConfigError as e:
                log.error("reload refused by the parent, workers keep the old config: %s", e)
                return
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    status = 0
    for pid in children:
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                status |= os.waitstatus_to_exitcode(st) != 0
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    return int(status)


if __name__ == "__main__":   # pragma: no cover
    sys.exit(serve(sys.argv[1]))
