"""Fixtures for the middleware tests: a JWKS server we control, real uvicorn servers with
lifespan on, and one config (routes, group mapping, a middleware default) written to a file."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from e2e.servers import JwksControl, Signer, ThreadServer, cognito_claims, free_port

POOL = "eu-west-1_MwTestPool"
ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
CLIENT = "5mwtestclient0000000000000"


class LiveServer:
    """uvicorn in a thread with lifespan on (bounded start and stop); proxy headers off."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        self.port = free_port()
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
        except SystemExit as e:            # uvicorn exits 3 when the app's start-up fails
            self.exit_code = e.code

    def start(self) -> LiveServer:
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


def middleware_config(jwks_url: str, **over: Any) -> dict[str, Any]:
    """Public, admin (policy) and item routes; everything else falls to middleware.default."""
    cfg: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{
            "id": "pool", "cognito": {"region": "eu-west-1", "user_pool_id": POOL},
            "jwks_uri": jwks_url, "client_ids": [CLIENT],
            "jwks": {"unknown_kid_cooldown_seconds": 1, "retry_seconds": 0.5,
                     "timeout_seconds": 1}}],
        "upstreams": {"app": {"url": "http://127.0.0.1:9", "timeout_seconds": 2}},
        "routes": [
            {"id": "public", "match": {"path": "/public/**"}, "upstream": "app", "auth": "public"},
            {"id": "admin", "match": {"path": "/admin/**"}, "upstream": "app", "auth": "policy"},
            {"id": "items", "match": {"path": "/items/{id}", "methods": ["GET", "DELETE"]},
             "upstream": "app", "auth": "policy"},
        ],
        "mappings": {"pool": {"mode": "token", "on_ambiguous": "default_role",
                              "token": {"source": "groups", "group_to_role": {"admins": "admin"}}}},
        "default_role": "member",
        "roles": {
            "admin": {"statements": [{"sid": "All", "effect": "allow", "action": ["http:*"],
                                      "resource": ["app:/**"]}]},
            "member": {"statements": [{"sid": "ReadItems", "effect": "allow",
                                       "action": ["http:GET"], "resource": ["app:/items/*"]}]},
        },
        "revocation": {"store": "memory"},
        "middleware": {"default": "authenticated", "service": "app"},
        "logging": {"access_log": False},
    }
    cfg.update(over)
    return cfg


def write_config(tmp: Path, cfg: dict[str, Any]) -> Path:
    path = tmp / "poolgate.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def jwks(signer: Signer) -> Iterator[tuple[JwksControl, ThreadServer]]:
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    srv = ThreadServer(control).start()
    try:
        yield control, srv
    finally:
        srv.stop()


@pytest.fixture
def config_path(jwks: tuple[JwksControl, ThreadServer], tmp_path: Path) -> Path:
    return write_config(tmp_path, middleware_config(jwks[1].url + "/jwks.json"))


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(app: Any, **kw: Any) -> LiveServer:
        srv = LiveServer(app, **kw).start()
        started.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture
def token(signer: Signer) -> Callable[..., str]:
    """``token(groups=[...], scope=..., exp=...)``: a Cognito access token for the test pool."""

    def make(*, groups: list[str] | None = None, **claims: Any) -> str:
        if groups is not None:
            claims["cognito:groups"] = groups
        return signer.token(cognito_claims(ISSUER, CLIENT, **claims))

    return make


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
