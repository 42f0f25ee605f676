"""``poolgate serve``: both listeners in one event loop, signals, hot reload, N workers.

The parent binds both listeners before forking so every worker accepts on the same sockets;
SIGTERM drains (optional pre-stop delay, during which ``/readyz`` says 503 and the listener
still accepts; then in-flight requests finish within the grace period); SIGHUP validates the
config file first (in the parent, with ``--workers N``) and only then swaps each worker's
engine: the new engine gets its JWKS before it takes traffic, and keeps the metrics and the
revocation store (with ``store: memory``, the revocations themselves) of the old one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any, Literal

import uvicorn

from . import tracing
from .config import Config, load_config
from .decisions.listener import bind_decisions, decision_servers, run_decision_servers
from .errors import ConfigError, ListenError
from .listen import LimitedServer, Limits, limits_from, protocol_class
from .logs import set_level
from .wsflow import server_options
from .readiness import announce_ready

log = logging.getLogger("poolgate")

# how long a reload waits for the new engine's JWKS before swapping anyway (bounded: an IdP
# that is down must not block a reload forever; the old engine's keys would be gone by then)
RELOAD_WARMUP_SECONDS = 10.0


def run_loop(coro: Any) -> Any:
    """Run on uvloop when installed (uvicorn[standard] brings it): we call the loop ourselves,
    so uvicorn's own loop choice never applies."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose protocol is TCP, and
    # without it every response body waited ~40 ms for the client's delayed ACK (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- validation

def check_process_model(config: Config, workers: int) -> None:
    """What ``--workers N`` (N > 1) needs: state shared across processes, or none."""
    if workers <= 1:
        return
    if config.revocation.store == "memory":
        raise ConfigError("revocation.store", "store: memory keeps revocations in one process; "
                                              "with --workers > 1 use store: redis (or none)")
    if config.downstream_credential.enabled and not config.downstream_credential.signing_keys:
        raise ConfigError("downstream_credential.signing_keys",
                          "workers must share signing keys: configure signing_keys for --workers > 1")


def validate(path: str, workers: int) -> Config:
    """Load ``path`` and compile everything a worker compiles (routes, rules, statements,
    header templates, signing keys), without starting anything: a config that passes here
    does not fail in the workers. Raises ``ConfigError``."""
    from .forward.credential import CredentialSigner  # noqa: PLC0415
    from .forward.identity import IdentityHeaders  # noqa: PLC0415
    from .mapping import RoleMapper  # noqa: PLC0415
    from .policy import PolicyEngine  # noqa: PLC0415
    from .routes import Router  # noqa: PLC0415
    config = load_config(path)
    check_process_model(config, workers)
    Router(config.routes)
    RoleMapper(config)
    PolicyEngine(config)
    cred = config.downstream_credential
    IdentityHeaders(cred.identity_headers)
    if cred.enabled and cred.signing_keys:      # reads and type-checks every key file
        CredentialSigner(cred, allow_generated=False)
    return config


# --------------------------------------------------------------------------- one worker

ADMIN_MAX_BODY_BYTES = 65536      # LIMITS: the admin listener's request bodies, while reading


def listener_limits(config: Config, which: Literal["proxy", "admin"]) -> Limits:
    """The HTTP limits of one listener: the proxy's from ``listen``; the admin listener has
    the same head limits, its own connection ceiling and a 64 KiB body cap."""
    limits = limits_from(config.listen.limits, config.listen.max_body_bytes)
    if which == "admin":
        limits.max_connections = config.admin.max_connections
        limits.max_body = ADMIN_MAX_BODY_BYTES
    return limits


def _uvicorn_config(app: Any, config: Config, *, lifespan: Literal["on", "off"],
                    tls: bool, limits: Limits) -> uvicorn.Config:
    kw: dict[str, Any] = {}
    if tls and config.listen.tls.cert_file:
        kw = {"ssl_certfile": config.listen.tls.cert_file, "ssl_keyfile": config.listen.tls.key_file}
    kw.update(server_options(config.websocket))     # websocket.max_message_bytes: 1009 at the parser
    return uvicorn.Config(
        app, lifespan=lifespan, access_log=False, log_config=None, server_header=False,
        proxy_headers=False,      # X-Forwarded-* from a client must never rewrite the peer
        # a float is fine (uvicorn passes it to asyncio.wait_for); 0 means "do not wait",
        # whereas None would wait for ever
        timeout_graceful_shutdown=config.listen.grace_seconds,  # type: ignore[arg-type]
        # the proxy forwards the upstream's Date (and adds its own to its refusals): uvicorn's
        # would make a second one
        date_header=lifespan == "off",
        # the gateway's own HTTP/1.1 protocol (gateway/listen): head limits, timeouts from
        # accept, body pacing, trailers kept out of the headers
        loop="auto", http=protocol_class(limits), ws="auto",
        timeout_keep_alive=int(limits.keepalive_timeout) or 1, **kw)


class _Server(uvicorn.Server):
    """uvicorn.Server without its own signal handling (``serve`` owns the signals) and with
    an accept loop that stops accepting at the listener's ``max_connections``."""

    async def run_on(self, sockets: list[socket.socket]) -> None:
        await self._serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)
        config = self.config
        limit = config.http_protocol_class.limits.max_connections  # type: ignore[attr-defined]

        def create_protocol() -> Any:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state)

        self.servers = []
        for sock in sockets or ():
            server = LimitedServer(sock, create_protocol, limit, ssl=config.ssl)
            server.start()
            self.servers.append(server)  # type: ignore[arg-type]
        self.started = True


class _EarlySignals:
    """SIGTERM / SIGHUP that arrive before the event loop's handlers exist are remembered and
    acted on once it runs, instead of killing a process that is still starting."""

    def __init__(self) -> None:
        self.term = False
        self.hup = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.record)
        signal.signal(signal.SIGHUP, self.record)

    def record(self, sig: int, _frame: FrameType | None = None) -> None:
        if sig == signal.SIGHUP:
            self.hup = True
        else:
            self.term = True


class _Draining:
    """The admin app, answering ``/readyz`` with 503 while the gateway drains, so a load
    balancer that probes readiness stops sending before the listener closes."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.draining and scope["type"] == "http" and scope["path"] == "/readyz":
            body = b'{"ready":false,"draining":true}'
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", b"5"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


async def _serve_worker(path: str, config: Config, proxy_sock: socket.socket,
                        admin_sock: socket.socket, *, workers: int,
                        early: _EarlySignals) -> None:
    from .app import build_apps  # noqa: PLC0415 (after the multiprocess metrics env is set)
    tracing.setup()
    proxy_app, admin_app = build_apps(config, allow_generated_key=workers == 1)
    # everything built so far lives as long as the process: keep it out of the cyclic GC's
    # generations so collections under load scan only per-request garbage (measured with
    # tests/bench: policy+credential +8-15% req/s, p99 20-25 ms -> 12 ms)
    gc.collect()
    gc.freeze()
    admin_front = _Draining(admin_app)
    proxy = _Server(_uvicorn_config(proxy_app, config, lifespan="on", tls=True,
                                    limits=listener_limits(config, "proxy")))
    admin = _Server(_uvicorn_config(admin_front, config, lifespan="off", tls=False,
                                    limits=listener_limits(config, "admin")))
    decisions = decision_servers(proxy_app, lambda app: _Server(  # decisions: listener (hook)
        _uvicorn_config(app, config, lifespan="off", tls=False,
                        limits=listener_limits(config, "proxy"))))
    loop = asyncio.get_running_loop()
    reload_lock = asyncio.Lock()
    term_at: list[float] = []

    async def drain() -> None:
        listen = proxy_app.engine.config.listen
        admin_front.draining = True
        log.info("SIGTERM: draining (delay %.1f s, grace %.1f s)", listen.drain_delay_seconds,
                 listen.grace_seconds, extra={"fields": {
                     "event": "drain", "drain_delay_seconds": listen.drain_delay_seconds,
                     "grace_seconds": listen.grace_seconds}})
        if listen.drain_delay_seconds:
            await asyncio.sleep(listen.drain_delay_seconds)
        # the grace period of the config in service (a reload may have changed it)
        proxy.config.timeout_graceful_shutdown = listen.grace_seconds  # type: ignore[assignment]
        admin.config.timeout_graceful_shutdown = listen.grace_seconds  # type: ignore[assignment]
        proxy.should_exit = admin.should_exit = True

    def on_term() -> None:
        if term_at:             # a second signal: stop now, in-flight requests are cut
            proxy.should_exit = admin.should_exit = True
            proxy.force_exit = admin.force_exit = True
            return
        term_at.append(time.monotonic())
        loop.create_task(drain())

    async def reload() -> None:
        if term_at:                 # draining: the config in service finishes the job
            return
        async with reload_lock:     # one at a time: the file read last is the one that wins
            await _reload(path, proxy_app, workers)

    loop.add_signal_handler(signal.SIGTERM, on_term)
    if workers <= 1:
        loop.add_signal_handler(signal.SIGINT, on_term)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    if early.term:
        on_term()
    elif early.hup:
        loop.create_task(reload())
    ready_task = loop.create_task(_ready(proxy_app, to_stdout=workers <= 1))  # noqa: F841
    try:
        await asyncio.gather(proxy.run_on([proxy_sock]), admin.run_on([admin_sock]),
                             run_decision_servers(decisions, proxy))
    finally:
        if term_at:
            log.info("stopped %.2f s after SIGTERM", time.monotonic() - term_at[0],
                     extra={"fields": {"event": "stopped",
                                       "seconds": round(time.monotonic() - term_at[0], 3)}})
        tracing.shutdown()


async def _ready(proxy_app: Any, *, to_stdout: bool) -> None:
    """Announce readiness, then freeze what startup left (the listeners' lazily imported
    protocol modules, the JWKS client's first fetch, the keys) like the engine above: none of
    it is garbage, and a full collection scanned it every time (~1,200 functions and
    classes)."""
    await announce_ready(lambda: proxy_app.engine, to_stdout=to_stdout)
    gc.collect()
    gc.freeze()


async def _reload(path: str, proxy_app: Any, workers: int) -> None:
    """Validate the file, build a new engine next to the live one, warm it, swap atomically."""
    from .engine import Engine  # noqa: PLC0415
    from .sessions import carry_over as carry_over_sessions  # noqa: PLC0415
    t0 = time.monotonic()
    old = proxy_app.engine
    try:
        new = validate(path, workers)
        store = old.store if old.store is not None and new.revocation == old.config.revocation \
            else "build"
        engine = Engine(new, metrics=old.metrics, allow_generated_key=workers == 1,
                        signer=_reuse_signer(old, new), store=store)
    except ConfigError as e:
        old.metrics.reloads.labels("error").inc()
        log.error("reload refused, the old config keeps serving: %s", e, extra={"fields": {
            "event": "reload", "result": "error", "config": path, "error": str(e)}})
        return
    except Exception as e:           # never let a reload take the serving engine down
        old.metrics.reloads.labels("error").inc()
        log.exception("reload refused (internal error), the old config keeps serving",
                      extra={"fields": {"event": "reload", "result": "error", "config": path,
                                        "error": f"{type(e).__name__}: {e}"}})
        return
    if (new.listen.host, new.listen.port, new.admin.host, new.admin.port) != (
            old.config.listen.host, old.config.listen.port, old.config.admin.host,
            old.config.admin.port):
        log.warning("reload: listener addresses changed; they apply after a restart")
    if old.config.revocation.store == "memory" and engine.store is not old.store:
        log.warning("reload: revocation settings changed, so the memory store starts empty: "
                    "revocations made through the admin API before this reload are gone")
    carry_over_sessions(old.sessions, engine.sessions)   # memory sessions survive a reload
    await _warm(engine, old)
    if engine.store is old.store:
        # the store (and, for store: memory, every revocation in it) moves to the new engine;
        # closing the old engine must not close it
        old.store = None
    await proxy_app.swap(engine)
    set_level(new.logging.level)
    engine.metrics.reloads.labels("ok").inc()
    log.info("reload: new config in service", extra={"fields": {
        "event": "reload", "result": "ok", "config": path,
        "seconds": round(time.monotonic() - t0, 3)}})


async def _warm(engine: Any, old: Any) -> None:
    """Start the new engine and give it its JWKS before it takes traffic: swapping to an
    engine without keys would answer 503 until the first fetch completes."""
    await engine.start()
    if not old.jwks.ready():
        return                        # nothing to lose: the old engine has no keys either
    deadline = time.monotonic() + RELOAD_WARMUP_SECONDS
    while not engine.jwks.ready():
        if time.monotonic() > deadline:
            log.warning("reload: the new config's JWKS are not loaded after %.0f s; "
                        "swapping anyway (its tokens get 503 until they are)",
                        RELOAD_WARMUP_SECONDS)
            return
        await asyncio.sleep(0.02)


def _reuse_signer(old_engine: Any, new: Config) -> Any:
    """Keep a generated signing key across reloads (its credentials are still in flight)."""
    if old_engine.signer is not None and not new.downstream_credential.signing_keys \
            and old_engine.config.downstream_credential == new.downstream_credential:
        return old_engine.signer
    return None


# --------------------------------------------------------------------------- serve

def _without_trio() -> None:
    """httpcore (under httpx: the JWKS client, sessions) imports trio whenever it is
    installed, to offer trio locks; the gateway runs on asyncio only. With trio installed
    alongside (a test dependency pulls it in) that cost every worker 3.2 MB of RSS. A None
    in sys.modules makes ``import trio`` an ImportError, which httpcore expects."""
    if "trio" not in sys.modules:
        sys.modules["trio"] = None  # type: ignore[assignment]


def serve(path: str, *, workers: int = 1) -> int:
    early = _EarlySignals()
    early.install()
    _without_trio()
    config = validate(path, workers)
    set_level(config.logging.level)
    proxy_sock = bind(config.listen.host, config.listen.port)
    admin_sock = bind(config.admin.host, config.admin.port)
    extra = bind_decisions(config, bind)            # decisions: listener (hook)
    print(f"poolgate listening proxy={_addr(proxy_sock)} admin={_addr(admin_sock)}{extra}",
          flush=True)
    if workers <= 1:
        run_loop(_serve_worker(path, config, proxy_sock, admin_sock, workers=1, early=early))
        return 0
    from .supervisor import supervise  # noqa: PLC0415
    return supervise(path, config, proxy_sock, admin_sock, workers, early)


if __name__ == "__main__":   # pragma: no cover
    sys.exit(serve(sys.argv[1]))
