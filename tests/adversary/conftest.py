"""Raw-socket adversary fixtures: a real HAProxy in front of a real ``poolgate serve``.

Everything is loopback, but not one address: the attacker connects from 127.0.0.2 (or the
"office" 127.0.0.3), HAProxy reaches the gateway from 127.0.0.1, and only 127.0.0.1 is in
``trusted_proxies`` -- so the real client address is never itself a trusted hop.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from e2e.conftest import CLIENT, ISSUER, base_config, gateway_factory, upstream  # noqa: F401
from e2e.servers import free_port

ATTACKER, OFFICE = "127.0.0.2", "127.0.0.3"


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ", 2)[1]) if lines and lines[0] else 0
        self.headers = [(k.strip().lower(), v.strip()) for k, _, v in
                        (ln.partition(b":") for ln in lines[1:])]

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


def send(base: str, request: bytes, *, source: str = ATTACKER, timeout: float = 5) -> Response:
    """Send bytes as they are from ``source``; read one response (Connection: close)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    return Response(data)


def get(base: str, path: str, headers: list[tuple[str, str]] = (), **kw: Any) -> Response:
    lines = [f"GET {path} HTTP/1.1", f"Host: {base.removeprefix('http://')}",
             "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return send(base, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), **kw)


HAPROXY_CFG = """
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    option forwardfor
    option http-server-close
frontend plain
    bind 127.0.0.1:{plain}
    http-request add-header X-Forwarded-Proto http
    default_backend gw
frontend tls_terminated
    # stands for a TLS frontend (`bind ... ssl crt ...`): it says https, the client did not
    bind 127.0.0.1:{tls}
    http-request add-header X-Forwarded-Proto https
    default_backend gw
backend gw
    server gw {gateway} source 127.0.0.1
"""


class HAProxy:
    def __init__(self, gateway: str, tmp: Path) -> None:
        self.plain_port, self.tls_port = free_port(), free_port()
        self.cfg = tmp / "haproxy.cfg"
        self.cfg.write_text(HAPROXY_CFG.format(plain=self.plain_port, tls=self.tls_port,
                                               gateway=gateway.removeprefix("http://")))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def plain(self) -> str:
        return f"http://127.0.0.1:{self.plain_port}"

    @property
    def tls(self) -> str:
        return f"http://127.0.0.1:{self.tls_port}"

    def start(self) -> "HAProxy":
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        subprocess.run([haproxy, "-c", "-q", "-f", str(self.cfg)], check=True, timeout=10)
        self.proc = subprocess.Popen([haproxy, "-db", "-f", str(self.cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.plain_port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"haproxy exited: {self.proc.stderr.read()!r}")
                time.sleep(0.05)
        raise RuntimeError("haproxy did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def haproxy_factory(tmp_path: Path) -> Iterator[Any]:
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed (apt-get install -y haproxy; .ci/run does)")
    started: list[HAProxy] = []

    def make(gateway: str) -> HAProxy:
        hp = HAProxy(gateway, tmp_path).start()
        started.append(hp)
        return hp
    try:
        yield make
    finally:
        for hp in started:
            hp.stop()
