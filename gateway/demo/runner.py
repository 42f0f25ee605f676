"""`poolgate demo`: the dev issuer, the echo upstream and the gateway in one process, one loop.

All four listeners are bound before anything starts (so a taken port is a one-line message, not
a traceback), then four uvicorn servers share one event loop on the pre-bound sockets, as
``poolgate serve`` runs its two. SIGINT and SIGTERM stop all four; a second signal forces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..config import Config, load_config, parse_config
from ..errors import ConfigError
from . import aws as aws_demo
from .guide import GuideInput, render
from .issuer import ISSUER, DemoIssuer, build_issuer_app
from .state import (ISSUER_KEY_FILE, credential_key_file, default_state_dir, issuer_key_pem,
                    state_dir)
from .upstream import CredentialVerifier, EchoApp

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Listener:
    name: str            # what listens there
    attr: str            # the argparse attribute
    flag: str            # the flag that changes it
    env: str             # the variable demo.yaml reads the port from


LISTENERS = (
    Listener("gateway", "port", "--port", "POOLGATE_DEMO_PORT"),
    Listener("admin API", "admin_port", "--admin-port", "POOLGATE_DEMO_ADMIN_PORT"),
    Listener("dev issuer", "issuer_port", "--issuer-port", "POOLGATE_DEMO_ISSUER_PORT"),
    Listener("echo upstream", "upstream_port", "--upstream-port", "POOLGATE_DEMO_UPSTREAM_PORT"),
)


class DemoError(Exception):
    """A one-line, user-facing reason the demo cannot start."""


@contextlib.contextmanager
def config_file() -> Iterator[Path]:
    """The packaged demo.yaml (gateway/data/demo.yaml), as a real file path."""
    res = importlib.resources.files("gateway").joinpath("data", "demo.yaml")
    with importlib.resources.as_file(res) as path:
        yield Path(path)


def bind_listeners(args: Any) -> dict[str, socket.socket]:
    """Bind every listener up front; a clash names the port and the flag that changes it."""
    requested = [(lst, int(getattr(args, lst.attr))) for lst in LISTENERS]
    seen: dict[int, Listener] = {}
    for lst, port in requested:
        if not 0 <= port <= 65535:
            raise DemoError(f"{lst.flag} {port} is not a port number (0-65535)")
        if port and port in seen:
            raise DemoError(f"port {port} is given to both {seen[port].flag} and {lst.flag}: "
                            f"change one of them")
        seen[port] = lst
    socks: dict[str, socket.socket] = {}
    try:
        for lst, port in requested:
            socks[lst.attr] = _bind(lst, port)
    except BaseException:
        for s in socks.values():
            s.close()
        raise
    return socks


def _bind(lst: Listener, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        why = "is already in use" if e.errno in (98, 48, 10048) else f"cannot be used ({e.strerror})"
        raise DemoError(f"port {port} on {HOST} ({lst.name}) {why}: choose another with "
                        f"{lst.flag} PORT") from None
    return sock


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _revoke_prog() -> tuple[str, dict[str, str]]:
    """How to run `poolgate revoke` from another shell, and any variable that needs."""
    on_path = shutil.which("poolgate")
    beside = Path(sys.executable).parent / "poolgate"     # this interpreter's own script
    if beside.is_file():
        same = on_path is not None and Path(on_path).resolve() == beside.resolve()
        return ("poolgate" if same else str(beside)), {}
    if on_path:
        return "poolgate", {}
    # not installed as a command (e.g. run from a checkout with `python -m gateway`)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    return f"{sys.executable} -m gateway", {"PYTHONPATH": pkg_parent}


def run(args: Any) -> int:
    try:
        directory = state_dir(args.state_dir)
    except OSError as e:
        where = args.state_dir or default_state_dir()
        raise DemoError(f"cannot use state directory {where} ({e.strerror or e}): choose "
                        "another with --state-dir DIR") from None
    print(f"poolgate demo: private keys (dev issuer RS256, credential ES256) are kept in "
          f"{directory} and reused across runs (--state-dir DIR to use another)", flush=True)
    socks = bind_listeners(args)
    try:
        issuer = DemoIssuer(issuer_key_pem(directory))
        key_file = credential_key_file(directory)
        ports = {lst.attr: _port(socks[lst.attr]) for lst in LISTENERS}
        env = {"POOLGATE_ADMIN_TOKEN": secrets.token_urlsafe(32),
               "POOLGATE_DEMO_STATE_DIR": str(directory),
               "POOLGATE_DEMO_SESSION_KEY": secrets.token_urlsafe(32)}
        env.update({lst.env: str(ports[lst.attr]) for lst in LISTENERS})
        aws = aws_demo.start() if aws_demo.available() else None   # pip install 'poolgate[aws]'
        with config_file() as path, _stopping(aws):
            config = _load(path, {**os.environ, **env}, aws)
            _setup_logging(config)
            prog, prog_env = _revoke_prog()
            url = {a: f"http://{HOST}:{p}" for a, p in ports.items()}
            guide = dict(
                gateway=url["port"], admin=url["admin_port"], issuer=url["issuer_port"],
                upstream=url["upstream_port"], pool_issuer=ISSUER, config_path=str(path),
                state_dir=str(directory), env={**env, **prog_env}, revoke_prog=prog,
                admin_token=env["POOLGATE_ADMIN_TOKEN"], signing_key_file=str(key_file),
                issuer_key_file=str(directory / ISSUER_KEY_FILE),
                aws_bucket=aws_demo.BUCKET if aws is not None else None)
            return asyncio.run(_serve(config, issuer, socks, guide))
    finally:
        for s in socks.values():
            s.close()


def _load(path: Path, env: dict[str, str], aws: aws_demo.AwsDemo | None) -> Config:
    """demo.yaml, plus the AWS part when moto is installed."""
    if aws is None:
        return load_config(path, env=env)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    aws_demo.extend_config(data, aws.endpoint)
    return parse_config(data, source=str(path), env=env)


@contextlib.contextmanager
def _stopping(aws: aws_demo.AwsDemo | None) -> Iterator[None]:
    try:
        yield
    finally:
        if aws is not None:
            aws.stop()


def _setup_logging(config: Config) -> None:
    """The gateway's JSON logs (access log included) on stderr; the walkthrough on stdout."""
    from ..logs import setup_logging  # noqa: PLC0415
    setup_logging(config.logging.level)


async def _serve(config: Config, issuer: DemoIssuer, socks: dict[str, socket.socket],
                 guide: dict[str, Any]) -> int:
    from ..app import build_apps  # noqa: PLC0415 (heavy; not needed for `demo token`)
    from ..server import _Server, _uvicorn_config, listener_limits  # noqa: PLC0415

    proxy_app, admin_app = build_apps(config, allow_generated_key=False)
    upstream_id = next(iter(config.upstreams))
    cred = config.downstream_credential
    verifier = CredentialVerifier(f"{guide['admin']}/.well-known/jwks.json",
                                  issuer=cred.issuer, audience=upstream_id)
    echo = EchoApp(verifier, upstream_id=upstream_id, credential_header=cred.header)

    def server(app: Any, lifespan: str = "off", which: str = "proxy") -> _Server:
        return _Server(_uvicorn_config(app, config, lifespan=lifespan, tls=False,
                                       limits=listener_limits(config, which)))

    servers = {"issuer_port": server(build_issuer_app(issuer)),
               "upstream_port": server(echo),
               "port": server(proxy_app, "on"),
               "admin_port": server(admin_app, which="admin")}
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if all(s.should_exit for s in servers.values()):
            for s in servers.values():      # second Ctrl-C: do not wait for in-flight requests
                s.force_exit = True
        for s in servers.values():
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    # the issuer and the upstream first, so the gateway's first JWKS fetch finds its issuer
    tasks = [asyncio.create_task(servers[k].run_on([socks[k]]))
             for k in ("issuer_port", "upstream_port", "port", "admin_port")]
    try:
        ready = await _wait_ready(servers, proxy_app, tasks)
        if ready is True:
            bob = issuer.claims("bob")
            print(render(GuideInput(**guide, alice=issuer.mint("alice"),
                                    bob=issuer.sign(bob), bob_jti=bob["jti"],
                                    expired=issuer.mint("expired"),
                                    bob_files=issuer.mint("bob"))), flush=True)
        elif ready is not None:
            print(f"poolgate demo: {ready}", file=sys.stderr, flush=True)
            stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0 if ready in (True, None) else 1


async def _wait_ready(servers: dict[str, Any], proxy_app: Any,
                      tasks: list[asyncio.Task[None]]) -> bool | str | None:
    """True when all four listen and the gateway is ready; None if told to stop meanwhile;
    else the reason it did not come up."""
    deadline = time.monotonic() + READY_TIMEOUT
    detail: Any = None
    while time.monotonic() < deadline:
        if any(s.should_exit for s in servers.values()):
            return None
        if any(t.done() for t in tasks):
            return "a listener stopped during start-up (see the log above)"
        if all(s.started for s in servers.values()):
            ok, detail = proxy_app.engine.readiness()
            if ok:
                return True
        await asyncio.sleep(0.05)
    return f"the gateway was not ready within {READY_TIMEOUT:.0f} s: {detail}"


def main(args: Any) -> int:
    try:
        return run(args)
    except DemoError as e:
        print(f"poolgate demo: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"poolgate demo: config error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:       # Ctrl-C before the servers took over the signals
        return 0
