"""Real servers on 127.0.0.1 for end-to-end tests: a JWKS server the test controls, a recording
upstream, and poolgate itself as a subprocess (stopped by PID)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """A uvicorn server in a background thread (bounded start and stop); proxy headers off.

    ``lifespan="on"`` for apps under test whose start-up matters (the middleware); uvicorn's
    exit code (3 when the app's start-up fails) is kept in ``exit_code``.
    """

    def __init__(self, app: Any, port: int | None = None, *, lifespan: str = "off") -> None:
        self.port = port or free_port()
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                             access_log=False, lifespan=lifespan, proxy_headers=False,
                             timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(cfg)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.exit_code: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except SystemExit as e:
            self.exit_code = e.code

    def start(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("test server exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "test server did not stop"


# --------------------------------------------------------------------------- keys and tokens

class Signer:
    """An RSA signing key with a kid, minting Cognito-shaped tokens."""

    def __init__(self, kid: str | None = None, bits: int = 2048) -> None:
        self.kid = kid or uuid.uuid4().hex[:12]
        self.key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    def public_jwk(self) -> dict[str, Any]:
        d = self.key.as_dict(private=False)
        d.update(kid=self.kid, alg="RS256", use="sig")
        return d

    def token(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        h = {"alg": "RS256", "kid": self.kid}
        h.update(header or {})
        return jwt.encode(h, claims, self.key)


def cognito_claims(issuer: str, client: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    c: dict[str, Any] = {"iss": issuer, "sub": str(uuid.uuid4()), "client_id": client,
                         "token_use": "access", "scope": "aws.cognito.signin.user.admin",
                         "iat": now, "auth_time": now, "exp": now + 3600,
                         "jti": str(uuid.uuid4()), "origin_jti": str(uuid.uuid4()),
                         "username": "alice"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------- JWKS server

class JwksControl:
    """What the JWKS endpoint serves: keys, or an outage (status), a hang, or garbage."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.mode = "ok"          # ok | status | hang | garbage
        self.status = 500
        self.fetches = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "status":
            body, status = b"down", self.status
        elif self.mode == "garbage":
            body, status = b"<html>not json", 200
        else:
            body, status = json.dumps({"keys": self.keys}).encode(), 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- recording upstream

@dataclass
class Seen:
    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body_len: int

    def header(self, name: str) -> list[str]:
        n = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == n]


@dataclass
class Upstream:
    """Records every request it receives (without storing bodies) and echoes a JSON summary."""

    seen: list[Seen] = field(default_factory=list)
    delay: float = 0.0
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    response_bytes: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        n = 0
        while True:
            msg = await receive()
            n += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        self.seen.append(Seen(scope["method"], scope["path"], scope.get("raw_path", b""),
                              scope["query_string"], list(scope["headers"]), n))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.response_bytes:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream"),
                                    (b"content-length", str(self.response_bytes).encode())]})
            chunk = b"x" * 65536
            left = self.response_bytes
            while left > 0:
                part = chunk[:min(left, len(chunk))]
                left -= len(part)
                await send({"type": "http.response.body", "body": part, "more_body": left > 0})
            return
        body = json.dumps({"path": scope["path"], "method": scope["method"],
                           "received_bytes": n}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                                *self.extra_headers]})
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- poolgate process

class Gateway:
    """``poolgate serve`` as a subprocess on free loopback ports."""

    def __init__(self, config: dict[str, Any], tmp: Path, env: dict[str, str] | None = None,
                 workers: int = 1) -> None:
        config = dict(config)
        config.setdefault("listen", {}).update(host="127.0.0.1", port=0)
        config.setdefault("admin", {}).update(host="127.0.0.1", port=0)
        self.path = tmp / f"poolgate-{uuid.uuid4().hex[:6]}.yaml"
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = {**os.environ, **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[str] | None = None
        self.proxy = self.admin = ""
        self.lines: list[str] = []

    def start(self, timeout: float = 20) -> "Gateway":
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(self.path)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("poolgate listening"):
                break
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"poolgate exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
        parts = dict(p.split("=", 1) for p in line.split()[2:])
        self.proxy = f"http://{parts['proxy']}"
        self.admin = f"http://{parts['admin']}"
        self.listening = parts        # every bound listener by name (e.g. decisions=H:P)
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 15) -> None:
        import httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.admin + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway not ready in time:\n" + "".join(self.lines[-20:]))

    def wait_log(self, predicate: Any, timeout: float = 10) -> bool:
        """True once a stderr line satisfies predicate (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(line) for line in list(self.lines)):
                return True
            time.sleep(0.05)
        return False

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def raw_request(base_url: str, request: bytes, timeout: float = 5) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side path normalisation); return (status, body)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])
                          if k.strip().lower() == b"content-length"]
                if length and len(body) >= length[0]:
                    break
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.partition(b"\r\n\r\n")[2]
