"""Fixtures for the middleware tests: a JWKS server we control, real uvicorn servers with
lifespan on, and one config (routes, group mapping, a middleware default) written to a file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.servers import JwksControl, Signer, ThreadServer, cognito_claims

POOL = "eu-west-1_MwTestPool"
ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
CLIENT = "5mwtestclient0000000000000"


class LiveServer(ThreadServer):
    """uvicorn in a thread with lifespan on (the middleware's start-up is under test)."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        super().__init__(app, lifespan=lifespan)


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
