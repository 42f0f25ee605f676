"""The gateway's own CPU per request, in one process, on one core: poolgate vs the floor.

    .venv/bin/python tests/bench/hotpath.py [--requests 20000] [--upstream socket|canned]
                                            [--only floor,policy,...] [--profile FILE]

Load tests on a 2-core machine measure the gateway, the load generator and the upstream
fighting for the same cores; this measures only the work issue 13 is about. Each system gets
one keep-alive client connection driven by direct ``data_received`` calls on the gateway's own
HTTP/1.1 protocol (gateway/listen), exactly the bytes wrk sends, with a fake client transport
that collects the response. The upstream is either a real loopback socket to a minimal
in-process HTTP/1.1 server (``socket``: the h1 client's real I/O, whose server side is counted
too, equally for every system) or a canned response object (``canned``: no I/O at all).

Systems: ``floor`` (tests/bench/floor_proxy.py's pass-through app, no auth), ``policy``
(scenario (d): auth: policy, downstream credential, access log on), ``policy_nolog`` (the
same without the access log), ``policy_redis`` (scenario (e): Redis revocation on
127.0.0.1:6379 with the near-cache), ``authenticated`` (scenario (b)). Prints microseconds
of process CPU (all threads) per request, and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import issuer  # noqa: E402
from floor_proxy import H1FloorProxy  # noqa: E402

from gateway.listen import GatewayHttpProtocol  # noqa: E402
from gateway.listen.protocol import Limits  # noqa: E402

BODY = b'{"ok":true}'
UPSTREAM_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 08 Dec 2026 03:00:00 GMT\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: keep-alive\r\n\r\n%b" % (len(BODY), BODY))


class _Upstream(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 server: one fixed answer per request head."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(UPSTREAM_RESPONSE * n)


class _Canned:
    """A Transport whose every answer is the same small response, with no I/O."""

    class Response:
        status = 200
        headers = [(b"Server", b"nginx"), (b"Content-Type", b"application/json"),
                   (b"Content-Length", b"%d" % len(BODY))]

        def __init__(self) -> None:
            self._done = False
            self.last = False              # as gateway/forward/h1.py says it

        def aiter_body(self) -> Any:
            return self

        def __aiter__(self) -> Any:
            return self

        async def __anext__(self) -> bytes:
            if self._done:
                raise StopAsyncIteration
            self._done = self.last = True
            return BODY

        async def aclose(self) -> None:
            pass

    async def send(self, method: str, url: str, headers: Any, body: Any, *, timeout: float,
                   idle_timeout: float) -> Any:
        return self.Response()

    async def aclose(self) -> None:
        pass


class _Client:
    """The client side of one connection: a fake transport the protocol writes into."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.got = bytearray()
        self.done: asyncio.Future[None] | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        self.got += data
        if self.done is None or self.done.done():
            return
        if self.got.endswith(BODY):
            self.done.set_result(None)
        elif not self.got.startswith(b"HTTP/1.1 200") and b"\r\n\r\n" in self.got:
            self.done.set_exception(ConnectionError(bytes(self.got[:600]).decode()))

    def writelines(self, parts: Any) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed: " + bytes(self.got[:600]).decode()))

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        pass

    def set_protocol(self, p: Any) -> None:
        pass


def _config(system: str, jwks_url: str, upstream_url: str, tmp: Path) -> dict[str, Any]:
    sys.argv[:1] = ["run.py"]
    import run
    b = SimpleNamespace(jwks_url=jwks_url, upstream_url=upstream_url, tmp=tmp)
    redis_prefix = f"poolgate-hotpath-{os.getpid()}:" if system == "policy_redis" else None
    cfg = run.poolgate_config(b, policy=system.startswith("policy"), redis_prefix=redis_prefix)
    if system == "policy_nolog":                         # (d) without the access log
        cfg["logging"]["access_log"] = False
    return cfg


class _Driver:
    """One system under test and its one client connection."""

    def __init__(self, app: Any, request: bytes) -> None:
        self.app, self.request = app, request
        self.loop = asyncio.get_running_loop()
        self.server_state = SimpleNamespace(connections=set(), tasks=set(), total_requests=0,
                                            default_headers=[])
        self.uv = SimpleNamespace(loaded=True, loaded_app=app, ws_protocol_class=None)
        self.proto_cls = type("P", (GatewayHttpProtocol,), {"limits": Limits()})
        self.connect()

    def connect(self) -> None:
        self.proto = self.proto_cls(self.uv, self.server_state, {})
        self.client = _Client(self.loop)
        self.proto.connection_made(self.client)

    async def one(self) -> None:
        client = self.client
        client.got.clear()
        client.done = self.loop.create_future()
        self.proto.data_received(self.request)
        await client.done

    async def warm(self, n: int) -> None:
        deadline = time.monotonic() + 10                    # the JWKS arrives after start-up
        while True:
            try:
                await self.one()
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
                self.connect()
        for _ in range(n):                                  # every cache warm
            await self.one()
        if not self.client.got.startswith(b"HTTP/1.1 200"):
            raise SystemExit("not a 200:\n" + bytes(self.client.got).decode(errors="replace"))

    async def measure(self, n: int, prof: cProfile.Profile | None = None) -> float:
        """Microseconds of process CPU (all threads: the access log writer too) per request."""
        gc.collect()
        if prof:
            prof.enable()
        t0 = time.process_time()
        for _ in range(n):
            await self.one()
        cpu = time.process_time() - t0
        if prof:
            prof.disable()
        return cpu / n * 1e6


async def _build(system: str, args: argparse.Namespace, jwks_url: str, upstream_url: str,
                 tmp: Path) -> Any:
    from gateway.app import build_proxy_app
    from gateway.config import parse_config
    from gateway.engine import Engine
    transport = _Canned() if args.upstream == "canned" else None
    if system == "floor":
        app = H1FloorProxy(upstream_url)
        if transport is not None:
            app.transport = transport
        return app
    cfg = parse_config(_config(system, jwks_url, upstream_url, tmp))
    proxy = build_proxy_app(Engine(cfg), transport)
    await proxy.startup()
    await proxy.engine.jwks.wait_ready(10)
    return proxy


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", 0)
    upstream_url = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
    key, tokens = issuer.load_or_create(1)
    request = (b"GET /tenants/t0/orders/1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
               b"Authorization: Bearer %b\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
               % tokens[0].encode())
    systems = args.only.split(",")
    samples: dict[str, list[float]] = {s: [] for s in systems}
    prof = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as tmp, issuer.JwksServer(key.jwks()) as jwks:
        apps = {s: await _build(s, args, jwks.url, upstream_url, Path(tmp)) for s in systems}
        drivers = {s: _Driver(app, request) for s, app in apps.items()}
        for d in drivers.values():
            await d.warm(args.warm)
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):                      # alternate: drift hits all alike
            for s, d in drivers.items():
                samples[s].append(await d.measure(per_round, prof if s == systems[-1] else None))
        for app in apps.values():
            if hasattr(app, "shutdown"):
                await app.shutdown()
    server.close()
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").dump_stats(args.profile)
    floor = min(samples["floor"]) if "floor" in samples else None
    print(f"{'system':14s} {'min':>7s} {'median':>7s}  us of CPU per request "
          f"({args.rounds} rounds of {per_round}, upstream: {args.upstream})")
    for s, xs in samples.items():
        best = min(xs)
        ratio = f"  floor/this {floor / best:.2f}x" if floor and s != "floor" else ""
        print(f"{s:14s} {best:7.1f} {statistics.median(xs):7.1f}{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--warm", type=int, default=2000)
    ap.add_argument("--upstream", choices=["socket", "canned"], default="socket")
    ap.add_argument("--only", default="floor,policy")
    ap.add_argument("--profile", help="write cProfile stats of the last system listed here")
    args = ap.parse_args()
    logging.basicConfig(level=os.environ.get("HOTPATH_LOG", "WARNING"))
    from gateway import accesslog
    accesslog.install(open(os.devnull, "w"))      # as `poolgate serve` does, to stderr
    try:
        import uvloop
        uvloop.run(_main(args))
    except ImportError:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
