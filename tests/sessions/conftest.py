"""Real processes for the browser-session tests: the demo issuer's Cognito-shaped authorization
server (the test steers it through ``OAuthControl``), a recording upstream, and `poolgate
serve` subprocesses on fixed free ports (``public_url`` must name the port)."""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from e2e.servers import Gateway, ThreadServer, Upstream, free_port
from gateway.demo.issuer import CLIENT_ID, USER_POOL_ID, DemoIssuer, build_issuer_app
from gateway.demo.oauth import OAuthControl

KEY = "test-session-key-0123456789abcdef-0123"
ADMIN = "admin-token-0123456789"


@pytest.fixture(autouse=True)
def loopback_is_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Browsers send Secure cookies to http://127.0.0.1 (a secure context); so do the test
    jars (httpx copies a client's jar into a default-policy jar per request, so the policy
    itself is patched, for this test process only)."""
    monkeypatch.setattr(DefaultCookiePolicy, "return_ok_secure", lambda self, c, r: True)


def browser(**kw: Any) -> httpx.Client:
    return httpx.Client(cookies=CookieJar(), timeout=10, **kw)


@pytest.fixture
def idp() -> Iterator[tuple[OAuthControl, ThreadServer]]:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    ctl = OAuthControl()
    srv = ThreadServer(build_issuer_app(DemoIssuer(pem), ctl)).start()
    ctl.base_url = srv.url
    try:
        yield ctl, srv
    finally:
        srv.stop()


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, ThreadServer]]:
    app = Upstream()
    srv = ThreadServer(app).start()
    try:
        yield app, srv
    finally:
        srv.stop()


def session_config(idp_url: str, upstream_url: str, public_url: str, **sessions: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"identity_source": "pool",
                         "provider": {"cognito_domain": idp_url, "client_id": CLIENT_ID},
                         "public_url": public_url, "encryption_keys": [KEY]}
    s.update(sessions)
    return {
        "version": 1,
        "admin": {"token": ADMIN},
        "identity_sources": [{"id": "pool",
                              "cognito": {"region": "us-east-1", "user_pool_id": USER_POOL_ID},
                              "jwks_uri": f"{idp_url}/.well-known/jwks.json",
                              "client_ids": [CLIENT_ID], "clock_skew_seconds": 0,
                              "jwks": {"retry_seconds": 0.5, "timeout_seconds": 1}}],
        "upstreams": {"app": {"url": upstream_url, "timeout_seconds": 5}},
        "routes": [{"id": "public", "match": {"path": "/public/**"}, "upstream": "app",
                    "auth": "public"},
                   {"id": "bearer-only", "match": {"path": "/api-bearer/**"}, "upstream": "app",
                    "auth": "authenticated", "credentials": ["bearer"]},
                   {"id": "session-only", "match": {"path": "/web-only/**"}, "upstream": "app",
                    "auth": "authenticated", "credentials": ["session"]},
                   {"id": "all", "match": {"path": "/**"}, "upstream": "app",
                    "auth": "authenticated"}],
        "default_role": "member",
        "roles": {"member": {"statements": [
            {"sid": "All", "effect": "allow", "action": ["http:*"], "resource": ["app:/**"]}]}},
        "revocation": {"store": "memory"},
        "sessions": s,
    }


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(config: dict[str, Any], port: int | None = None) -> Gateway:
        gw = Gateway(config, tmp_path)
        cfg = dict(config)
        cfg["listen"] = {"host": "127.0.0.1", "port": port or free_port()}
        gw.path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        started.append(gw)
        gw.start()
        gw.wait_ready()
        return gw

    try:
        yield make
    finally:
        for gw in started:
            gw.stop()


def sign_in(client: httpx.Client, gateway: str, idp_url: str, *, user: str = "alice",
            rd: str = "/app") -> httpx.Response:
    """The browser's dance: login -> provider form -> submit -> callback. Returns the callback
    response (302 to rd on success)."""
    r = client.get(f"{gateway}/_poolgate/login", params={"rd": rd})
    assert r.status_code == 302, r.text
    auth_url = r.headers["location"]
    assert auth_url.startswith(idp_url + "/oauth2/authorize?")
    assert client.get(auth_url).status_code == 200          # the sign-in form
    form = dict(parse_qsl(urlsplit(auth_url).query))
    form["username"] = user
    r = client.post(f"{idp_url}/oauth2/authorize", data=form)
    assert r.status_code == 302
    return client.get(r.headers["location"])


def redis_sessions(cfg: dict[str, Any], port: int, prefix: str) -> dict[str, Any]:
    """The same config with sessions and revocation in a real Redis (shared by replicas)."""
    cfg = dict(cfg)
    cfg["revocation"] = {"store": "redis",
                         "redis": {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": prefix}}
    cfg["sessions"] = dict(cfg["sessions"], store="redis")
    return cfg
